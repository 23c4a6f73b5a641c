//! One backend connection: connect, log in with a db user's credentials, and the facts
//! the session needs about it afterwards.
//!
//! The login speaks MariaDB's and MySQL's client side: `mysql_native_password`,
//! auth switch, MariaDB's `client_ed25519`, and the `caching_sha2_password` fast path.

pub mod blocking;
mod stmts;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::net::{read_packet, Buffer, Connector, PacketReadError, Transport};
use crate::pool::Key;
use crate::protocol::auth;
use crate::protocol::caps;
use crate::protocol::err::ErrPacket;
use crate::protocol::handshake::{AuthSwitch, Greeting, HandshakeResponse};
use crate::protocol::packet::{Header, HEADER_LEN};
use crate::protocol::scanner::{Expect, Progress, Scanner};
use crate::protocol::ProtocolError;
use crate::session::state::Vars;
pub use stmts::{CachedStmt, StmtCache};

/// Largest packet the proxy tells a backend it accepts.
pub const MAX_PACKET: u32 = 1 << 30;

#[derive(Debug, Error)]
pub enum BackendError {
    #[error("can't connect to db server {addr}: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("lost connection to db server {addr} during login: {source}")]
    Io { addr: SocketAddr, source: std::io::Error },
    #[error("db server {addr} sent a malformed packet during login: {source}")]
    Protocol { addr: SocketAddr, source: ProtocolError },
    #[error("db server {addr} refused the login: {} ({})", .err.message, .err.code)]
    Refused { addr: SocketAddr, err: ErrPacket },
    #[error("db server {addr} asks for authentication plugin {plugin:?}, which corelay cannot answer")]
    Plugin { addr: SocketAddr, plugin: String },
}

impl BackendError {
    /// Whether trying again later (or elsewhere) may succeed: network trouble is
    /// retryable, a refusal of the credentials is not.
    pub fn retryable(&self) -> bool {
        matches!(self, BackendError::Connect { .. } | BackendError::Io { .. })
    }
}

/// Who to log in as and how.
#[derive(Debug, Clone)]
pub struct Login<'a> {
    pub user: &'a str,
    pub password: &'a str,
    pub database: Option<&'a str>,
    pub charset: u8,
    /// The client's capability flags; those that shape results are copied.
    pub client_caps: u32,
    /// Becomes the connection's [`Backend::reply_timeout`].
    pub reply_timeout: Option<Duration>,
}

/// A logged-in backend connection and the session state it currently holds.
pub struct Backend<T> {
    pub stream: T,
    pub addr: SocketAddr,
    /// The server's id for this connection (`CONNECTION_ID()` on the backend).
    pub thread_id: u32,
    /// Capabilities in force on this connection.
    pub caps: u32,
    pub server_version: String,
    /// What the connection was opened for; it is only lent to sessions with the same key.
    pub key: Key,
    /// Character set the connection was opened with (what NAMES goes back to).
    pub charset_name: &'static str,
    /// Current schema, as far as the proxy knows.
    pub schema: Option<String>,
    /// Session variables set on this connection by the proxy's replay or by a session.
    pub vars: Vars,
    /// What `LAST_INSERT_ID()` returns on this connection, as far as the proxy knows
    /// (None: not known).
    pub last_insert_id: Option<u64>,
    /// Statements prepared on this connection.
    pub stmts: StmtCache,
    /// Times this connection has been lent.
    pub uses: u64,
    /// When it was last returned to the pool.
    pub idle_since: Instant,
    /// Longest wait for each read of an [`Backend::exchange`] reply (the session sets it
    /// from `query_timeout_ms`); None: no limit.
    pub reply_timeout: Option<Duration>,
}

/// The proxy's view of one reply it read (and did not forward).
#[derive(Debug, Default)]
pub struct Reply {
    /// The ERR packet, if the reply was an error.
    pub err: Option<ErrPacket>,
    /// Payload of the reply's first packet (for PREPARE_OK: the statement id).
    pub first: Vec<u8>,
    /// Status flags of the last OK/EOF.
    pub status: Option<u16>,
}

impl<T: Transport> Backend<T> {
    /// Whether result sets end with OK instead of EOF on this connection.
    pub fn deprecate_eof(&self) -> bool {
        self.caps & caps::DEPRECATE_EOF != 0
    }

    /// Sends COM_QUIT so the server closes the connection without an "aborted" warning.
    pub async fn quit(&mut self) {
        let _ = self.stream.write_all(&[1, 0, 0, 0, crate::protocol::command::QUIT]).await;
    }

    fn lost(&self, e: impl ToString) -> BackendError {
        BackendError::Io { addr: self.addr, source: std::io::Error::other(e.to_string()) }
    }

    /// Sends `requests` (one or more complete command packets, pipelined) and reads one
    /// reply per entry of `expects`, keeping only what [`Reply`] holds. Used for state
    /// replay and re-prepares, whose replies the client must not see.
    pub async fn exchange(
        &mut self,
        requests: &[u8],
        expects: &[Expect],
        buf: &mut Buffer,
    ) -> Result<Vec<Reply>, BackendError> {
        self.stream.write_all(requests).await.map_err(|e| self.lost(e))?;
        let mut replies = Vec::with_capacity(expects.len());
        for &expect in expects {
            let mut scanner = Scanner::new(expect, self.deprecate_eof());
            let mut reply = Reply::default();
            let mut first = true;
            loop {
                if first {
                    // Keep the first packet whole: it says OK, ERR or the statement id.
                    if let Some(h) = Header::parse(buf.filled()) {
                        if h.len < 1 << 16 && buf.len() >= h.total() {
                            reply.first = buf.filled()[HEADER_LEN..h.total()].to_vec();
                            first = false;
                        }
                    }
                }
                if !first || buf.len() >= 1 << 16 {
                    let (n, progress) = scanner.feed(buf.filled()).map_err(|e| self.lost(e))?;
                    buf.consume(n);
                    match progress {
                        Progress::Done => break,
                        Progress::LocalInfile => return Err(self.lost("unexpected LOCAL INFILE request")),
                        Progress::More => {}
                    }
                }
                match buf.fill_from(&mut self.stream, self.reply_timeout).await {
                    Ok(0) => return Err(self.lost("connection closed by the server")),
                    Ok(_) => {}
                    Err(e) => return Err(self.lost(e)),
                }
            }
            if reply.first.first() == Some(&0xFF) {
                reply.err = ErrPacket::parse(&reply.first).ok();
            }
            reply.status = scanner.status_seen().then_some(scanner.status);
            replies.push(reply);
        }
        Ok(replies)
    }
}

/// Opens a connection to `addr` and logs in. `buf` receives anything the server sent past
/// the login (normally nothing).
pub async fn connect<N: Connector>(
    connector: &N,
    addr: SocketAddr,
    timeout: Duration,
    login: &Login<'_>,
    key: Key,
    buf: &mut Buffer,
) -> Result<Backend<N::Conn>, BackendError> {
    let mut stream = connector.connect(addr, timeout).await.map_err(|source| BackendError::Connect { addr, source })?;
    let io_err = |e: PacketReadError| match e {
        PacketReadError::Io(source) => BackendError::Io { addr, source },
        PacketReadError::TooLarge(n) => BackendError::Protocol {
            addr,
            source: ProtocolError::Malformed(if n > 0 { "login packet too large" } else { "empty login packet" }),
        },
    };
    let t = Some(timeout);
    let (_, payload) = read_packet(&mut stream, buf, 1 << 16, t).await.map_err(io_err)?;
    if payload.first() == Some(&0xFF) {
        let err = ErrPacket::parse(&payload).map_err(|source| BackendError::Protocol { addr, source })?;
        return Err(BackendError::Refused { addr, err });
    }
    let greeting = Greeting::parse(&payload).map_err(|source| BackendError::Protocol { addr, source })?;
    let mut capabilities =
        (caps::BACKEND_REQUIRED | (login.client_caps & caps::RESULT_SHAPING)) & greeting.capabilities;
    // LONG_PASSWORD doubles as "this is a MySQL client" for MariaDB: always keep it.
    capabilities |= caps::LONG_PASSWORD | caps::PROTOCOL_41 | caps::SECURE_CONNECTION;
    let mut plugin = greeting.auth_plugin.clone();
    let proof = match auth::proof_for(&plugin, login.password.as_bytes(), &greeting.scramble) {
        Ok(p) => p,
        Err(_) => {
            // Answer with native; the server will switch us to what it wants.
            plugin = auth::NATIVE.to_string();
            auth::native_proof(login.password.as_bytes(), &greeting.scramble)
        }
    };
    let response = HandshakeResponse {
        capabilities,
        max_packet: MAX_PACKET,
        charset: login.charset,
        user: login.user.to_string(),
        auth_response: proof,
        database: login.database.map(str::to_string),
        auth_plugin: Some(plugin),
        attributes: b"\x0c_client_name\x07corelay".to_vec(),
    };
    let mut out = Vec::with_capacity(128);
    response.write(&mut out, 1);
    stream.write_all(&out).await.map_err(|source| BackendError::Io { addr, source })?;

    // At most a few round trips: switch, more data, OK.
    for _ in 0..6 {
        let (seq, payload) = read_packet(&mut stream, buf, 1 << 16, t).await.map_err(io_err)?;
        match payload.first() {
            Some(0x00) => {
                return Ok(Backend {
                    stream,
                    addr,
                    thread_id: greeting.connection_id,
                    caps: capabilities,
                    server_version: greeting.server_version,
                    key,
                    charset_name: crate::protocol::charset::charset_of(login.charset).unwrap_or("utf8mb4"),
                    schema: login.database.map(str::to_string),
                    vars: Vars::default(),
                    last_insert_id: Some(0),
                    stmts: StmtCache::default(),
                    uses: 0,
                    idle_since: Instant::now(),
                    reply_timeout: login.reply_timeout,
                })
            }
            Some(0xFF) => {
                let err = ErrPacket::parse(&payload).map_err(|source| BackendError::Protocol { addr, source })?;
                return Err(BackendError::Refused { addr, err });
            }
            Some(0xFE) => {
                let switch = AuthSwitch::parse(&payload).map_err(|source| BackendError::Protocol { addr, source })?;
                let proof = auth::proof_for(&switch.plugin, login.password.as_bytes(), &switch.data)
                    .map_err(|_| BackendError::Plugin { addr, plugin: switch.plugin.clone() })?;
                out.clear();
                crate::protocol::packet::write_packet(&mut out, seq.wrapping_add(1), &proof);
                stream.write_all(&out).await.map_err(|source| BackendError::Io { addr, source })?;
            }
            Some(0x01) => match payload.get(1) {
                // caching_sha2_password fast path succeeded: the OK follows.
                Some(3) => continue,
                _ => {
                    return Err(BackendError::Plugin {
                        addr,
                        plugin: "caching_sha2_password (full authentication over RSA or TLS)".into(),
                    })
                }
            },
            _ => {
                return Err(BackendError::Protocol {
                    addr,
                    source: ProtocolError::Malformed("unexpected packet during login"),
                });
            }
        }
    }
    Err(BackendError::Protocol { addr, source: ProtocolError::Malformed("login did not finish") })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that takes every byte and never answers: a read with a timeout times out,
    /// one without would wait forever.
    struct Silent;

    impl Transport for Silent {
        async fn read(&mut self, _dst: &mut [u8], timeout: Option<Duration>) -> std::io::Result<usize> {
            match timeout {
                Some(_) => Err(std::io::ErrorKind::TimedOut.into()),
                None => std::future::pending().await,
            }
        }

        async fn write_all(&mut self, _src: &[u8]) -> std::io::Result<()> {
            Ok(())
        }

        fn peer_closed(&self) -> bool {
            false
        }
    }

    #[test]
    fn replies_corelay_waits_for_itself_time_out() {
        let mut b = Backend {
            stream: Silent,
            addr: ([127, 0, 0, 1], 3306).into(),
            thread_id: 1,
            caps: 0,
            server_version: String::new(),
            key: Key { server: 0, db_user: 0, caps: 0, charset: 45 },
            charset_name: "utf8mb4",
            schema: None,
            vars: Vars::default(),
            last_insert_id: None,
            stmts: StmtCache::default(),
            uses: 0,
            idle_since: Instant::now(),
            reply_timeout: Some(Duration::from_millis(10)),
        };
        let ping = [1, 0, 0, 0, crate::protocol::command::PING];
        let r = futures_lite::future::block_on(b.exchange(&ping, &[Expect::Single], &mut Buffer::new()));
        assert!(matches!(r, Err(BackendError::Io { .. })), "{r:?}");
    }
}
