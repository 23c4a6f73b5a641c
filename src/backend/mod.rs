//! One backend connection: the [`Key`] that says which sessions may borrow it, opening
//! it and logging in ([`connect`]), what it holds of sessions' state ([`State`], the
//! variables of [`vars`], the statements of [`stmts`]), and the exchanges corelay makes on
//! it for itself (state replay, re-prepares, pings), whose replies no client sees.
//! [`blocking`] is a small synchronous client for the master's health checks and tools.

pub mod blocking;
mod connect;
mod stmts;
mod vars;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::net::{Buffer, Transport};
use crate::protocol::caps;
use crate::protocol::err::ErrPacket;
use crate::protocol::metadata::{Defs, SentDefs, StmtDefs};
use crate::protocol::ok::Trackers;
use crate::protocol::packet::{Header, HEADER_LEN};
use crate::protocol::scanner::{Expect, Progress, Scanner};
use crate::protocol::ProtocolError;
pub use connect::{connect, Login, TRACK_ALL};
pub use stmts::{CachedStmt, StmtCache};
pub use vars::{canonical_name, is_charset_var, server_literal, Vars};

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
    #[error("db server {addr}: {message}")]
    Tls { addr: SocketAddr, message: String },
}

impl BackendError {
    /// Whether trying again later (or elsewhere) may succeed: network trouble is
    /// retryable, a refusal of the credentials is not.
    pub fn retryable(&self) -> bool {
        matches!(self, BackendError::Connect { .. } | BackendError::Io { .. })
    }
}

/// What a pooled connection must match to be lent to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    /// Server id ([`crate::config::Server::id`]).
    pub server: usize,
    pub db_user: usize,
    /// The client's result-shaping capability flags.
    pub caps: u32,
    /// The client negotiated MariaDB's metadata cache: so is the connection, where the
    /// server offers it.
    pub cache_metadata: bool,
    pub charset: u8,
}

/// A logged-in backend connection and the session state it currently holds.
pub struct Backend<T> {
    pub stream: T,
    pub addr: SocketAddr,
    /// The server's id for this connection (`CONNECTION_ID()` on the backend).
    pub thread_id: u32,
    /// Capabilities in force on this connection.
    pub caps: u32,
    /// MariaDB's metadata cache is in force on this connection: column-count packets
    /// carry the "metadata follows" byte.
    pub cache_metadata: bool,
    pub server_version: String,
    /// What the connection was opened for; it is only lent to sessions with the same key.
    pub key: Key,
    /// Character set the connection was opened with (what NAMES goes back to).
    pub charset_name: &'static str,
    /// What the connection holds of its sessions' state, as far as the proxy knows.
    pub state: State,
    /// Statements prepared on this connection.
    pub stmts: StmtCache,
    /// Times this connection has been lent.
    pub uses: u64,
    /// When it was last returned to the pool.
    pub idle_since: Instant,
    /// The session-state trackers a client connected directly has (the server's defaults):
    /// what a client is told of.
    pub trackers: Rc<Trackers>,
    /// Session tracking is to report everything on this connection (see
    /// [`Login::track_all`]).
    pub track_all_wanted: bool,
    /// Session tracking reports everything on this connection ([`connect::TRACK_ALL`]);
    /// false after COM_RESET_CONNECTION, until the next state replay turns it on again.
    pub tracks_all: bool,
    /// Longest wait for each read of an [`Backend::exchange`] reply (the session sets it
    /// from `query_timeout_ms`); None: no limit.
    pub reply_timeout: Option<Duration>,
}

/// What a connection holds of the state sessions left on it, as far as the proxy knows: a
/// session borrowing it replays what differs from its own record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// Current schema.
    pub schema: Option<String>,
    /// Session variables set on this connection by the proxy's replay or by a session.
    pub vars: Vars,
    /// What `LAST_INSERT_ID()` returns on this connection (None: not known).
    pub last_insert_id: Option<u64>,
}

impl State {
    /// A connection just logged in to `schema`.
    pub fn fresh(schema: Option<&str>) -> State {
        State { schema: schema.map(str::to_string), vars: Vars::default(), last_insert_id: Some(0) }
    }
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
    /// A PREPARE reply's column definitions, on a connection with MariaDB's metadata
    /// cache.
    pub defs: Option<Defs>,
}

impl<T: Transport> Backend<T> {
    /// Whether result sets end with OK instead of EOF on this connection.
    pub fn deprecate_eof(&self) -> bool {
        self.caps & caps::DEPRECATE_EOF != 0
    }

    /// After COM_RESET_CONNECTION succeeded: variables at their defaults (the character
    /// set not known for sure), no insert id, no prepared statements.
    pub fn after_reset(&mut self) {
        self.state.vars = Vars::after_reset();
        self.tracks_all = false;
        self.state.last_insert_id = Some(0);
        self.stmts.clear();
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
        self.exchange_tracking(requests, expects, buf, None).await
    }

    /// [`Backend::exchange`], where reply `track.0` is an EXECUTE of the statement whose
    /// record of column definitions is `track.1` (kept current: the server counts what it
    /// sends there as sent).
    pub async fn exchange_tracking(
        &mut self,
        requests: &[u8],
        expects: &[Expect],
        buf: &mut Buffer,
        track: Option<(usize, SentDefs)>,
    ) -> Result<Vec<Reply>, BackendError> {
        self.stream.write_all(requests).await.map_err(|e| self.lost(e))?;
        let mut replies = Vec::with_capacity(expects.len());
        for (i, &expect) in expects.iter().enumerate() {
            let stmt = match &track {
                Some((at, sent)) if *at == i => Some(StmtDefs { sent: sent.clone(), client: None, to_client: false }),
                _ => None,
            };
            let mut scanner =
                Scanner::new(expect, self.deprecate_eof()).metadata(self.cache_metadata, false).statement(stmt);
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
            reply.defs = scanner.prepared_defs.take();
            replies.push(reply);
        }
        Ok(replies)
    }
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
            cache_metadata: false,
            server_version: String::new(),
            key: Key { server: 0, db_user: 0, caps: 0, cache_metadata: false, charset: 45 },
            charset_name: "utf8mb4",
            state: State { last_insert_id: None, ..State::default() },
            stmts: StmtCache::default(),
            uses: 0,
            idle_since: Instant::now(),
            reply_timeout: Some(Duration::from_millis(10)),
            trackers: Rc::default(),
            track_all_wanted: false,
            tracks_all: false,
        };
        let ping = [1, 0, 0, 0, crate::protocol::command::PING];
        let r = futures_lite::future::block_on(b.exchange(&ping, &[Expect::Single], &mut Buffer::new()));
        assert!(matches!(r, Err(BackendError::Io { .. })), "{r:?}");
    }
}
