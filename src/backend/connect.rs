//! Opening a backend connection and logging in with a db user's credentials.
//!
//! The login speaks MariaDB's and MySQL's client side: `mysql_native_password`, auth
//! switch, MariaDB's `client_ed25519`, and the `caching_sha2_password` fast path.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{Backend, BackendError, Key, State, StmtCache, MAX_PACKET};
use crate::config::ServerTls;
use crate::net::tls::{BackendTls, TlsStart};
use crate::net::{read_packet, Buffer, Connector, PacketReadError, Transport};
use crate::protocol::auth;
use crate::protocol::caps;
use crate::protocol::err::ErrPacket;
use crate::protocol::handshake::{AuthSwitch, Greeting, HandshakeResponse};
use crate::protocol::ok::Trackers;
use crate::protocol::packet::{write_command, write_packet, Reader};
use crate::protocol::{command, ProtocolError};

/// Who to log in as and how.
#[derive(Debug, Clone)]
pub struct Login<'a> {
    pub user: &'a str,
    pub password: &'a str,
    pub database: Option<&'a str>,
    pub charset: u8,
    /// The client's capability flags; those that shape results are copied.
    pub client_caps: u32,
    /// Ask for MariaDB's metadata cache (the client has it).
    pub cache_metadata: bool,
    /// Becomes the connection's [`Backend::reply_timeout`].
    pub reply_timeout: Option<Duration>,
    /// Turn session tracking on for everything ([`TRACK_ALL`]); false for a connection one
    /// session keeps for its life (`multiplex = false`), which stays as the client would
    /// have it directly: the client's own CLIENT_SESSION_TRACK, and no statement of
    /// corelay's in its status counters.
    pub track_all: bool,
    /// TLS to the server (None: `tls = "disabled"`).
    pub tls: Option<&'a ServerTls>,
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
    let mut exchange = Exchange { addr, timeout: Some(timeout), buf };
    let payload = exchange.read(&mut stream).await?.1;
    if payload.first() == Some(&0xFF) {
        return Err(exchange.refused(&payload));
    }
    let greeting = Greeting::parse(&payload).map_err(|source| BackendError::Protocol { addr, source })?;
    let mut response = handshake_response(&greeting, login);
    let mut out = Vec::with_capacity(128);
    let encrypted = exchange.start_tls(&mut stream, &greeting, &mut response, login).await?;
    let capabilities = response.capabilities;
    let cache_metadata = response.mariadb_capabilities & caps::ext::CACHE_METADATA != 0;
    response.write(&mut out, if encrypted { 2 } else { 1 });
    exchange.write(&mut stream, &out).await?;
    exchange
        .authenticate(&mut stream, login, encrypted, &greeting.scramble)
        .await
        .map_err(|e| tls_hint(e, &greeting, login))?;
    let trackers = if login.track_all && capabilities & caps::SESSION_TRACK != 0 {
        exchange.track_everything(&mut stream, capabilities & caps::DEPRECATE_EOF != 0).await?
    } else {
        None
    };
    Ok(Backend {
        stream,
        addr,
        thread_id: greeting.connection_id,
        caps: capabilities,
        cache_metadata,
        server_version: greeting.server_version,
        key,
        charset_name: crate::protocol::charset::charset_of(login.charset).unwrap_or("utf8mb4"),
        state: State::fresh(login.database),
        stmts: StmtCache::default(),
        uses: 0,
        idle_since: Instant::now(),
        reply_timeout: login.reply_timeout,
        // (A server that refused it once is not asked again on this connection.)
        track_all_wanted: trackers.is_some(),
        tracks_all: trackers.is_some(),
        trackers: Rc::new(trackers.unwrap_or_default()),
    })
}

/// A server that offers TLS refused a login made without it (`tls = "disabled"`): it may
/// require TLS (MariaDB says only "Access denied" under `require_secure_transport`, MySQL
/// 3159), so the error names the key.
fn tls_hint(e: BackendError, greeting: &Greeting, login: &Login<'_>) -> BackendError {
    match e {
        BackendError::Refused { addr, err }
            if login.tls.is_none() && greeting.capabilities & caps::SSL != 0 && matches!(err.code, 1045 | 3159) =>
        {
            let message = format!(
                "refused the login: {} ({}); if the server requires TLS (require_secure_transport), set tls = \"required\" or \"verify\" on its [[cluster.server]] (now tls = \"disabled\")",
                err.message, err.code
            );
            BackendError::Tls { addr, message }
        }
        other => other,
    }
}

/// What corelay asks every backend connection's session tracking to report: every system
/// variable a statement sets, the schema, and any other state change.
pub const TRACK_ALL: &str =
    "session_track_system_variables = '*', session_track_schema = ON, session_track_state_change = ON";

/// The handshake response to `greeting`: the capabilities corelay needs and the client's
/// result-shaping ones, and a proof for the server's plugin (or native, which the server
/// will switch from).
fn handshake_response(greeting: &Greeting, login: &Login<'_>) -> HandshakeResponse {
    // Session tracking always (the server's word on what a statement changed), unless
    // the connection is to stay as the client would have it.
    let track = if login.track_all { caps::SESSION_TRACK } else { login.client_caps & caps::SESSION_TRACK };
    let mut capabilities =
        (caps::BACKEND_REQUIRED | track | (login.client_caps & caps::RESULT_SHAPING)) & greeting.capabilities;
    capabilities |= caps::PROTOCOL_41 | caps::SECURE_CONNECTION;
    // LONG_PASSWORD doubles as CLIENT_MYSQL, "a MySQL client": it is cleared only to ask
    // a MariaDB server (which clears it in its greeting) for the extended capabilities.
    let offered = greeting.extended_capabilities();
    let mariadb_capabilities = if login.cache_metadata { offered & caps::ext::CACHE_METADATA } else { 0 };
    if mariadb_capabilities == 0 {
        capabilities |= caps::LONG_PASSWORD;
    } else {
        capabilities &= !caps::LONG_PASSWORD;
    }
    let mut plugin = greeting.auth_plugin.clone();
    let proof = match auth::proof_for(&plugin, login.password.as_bytes(), &greeting.scramble) {
        Ok(p) => p,
        Err(_) => {
            // Answer with native; the server will switch us to what it wants.
            plugin = auth::NATIVE.to_string();
            auth::native_proof(login.password.as_bytes(), &greeting.scramble)
        }
    };
    HandshakeResponse {
        capabilities,
        mariadb_capabilities,
        max_packet: MAX_PACKET,
        charset: login.charset,
        user: login.user.to_string(),
        auth_response: proof,
        database: login.database.map(str::to_string),
        auth_plugin: Some(plugin),
        attributes: b"\x0c_client_name\x07corelay".to_vec(),
    }
}

/// The packets of one login, with the server's address for errors.
struct Exchange<'b> {
    addr: SocketAddr,
    timeout: Option<Duration>,
    buf: &'b mut Buffer,
}

impl Exchange<'_> {
    /// Switches to TLS when the server's `tls` mode says so: sends the SSLRequest (the
    /// response's first 32 bytes, with CLIENT_SSL) and runs the handshake. Returns whether
    /// the connection is now encrypted.
    async fn start_tls<T: Transport>(
        &mut self,
        stream: &mut T,
        greeting: &Greeting,
        response: &mut HandshakeResponse,
        login: &Login<'_>,
    ) -> Result<bool, BackendError> {
        let addr = self.addr;
        let Some(tls) = login.tls else { return Ok(false) };
        if greeting.capabilities & caps::SSL == 0 {
            if tls.mode == BackendTls::Preferred {
                return Ok(false);
            }
            let message = format!(
                "the server offers no TLS, and its [[cluster.server]] says tls = {:?} (set tls = \"preferred\" or \"disabled\", or give the server a certificate)",
                format!("{:?}", tls.mode).to_ascii_lowercase()
            );
            return Err(BackendError::Tls { addr, message });
        }
        response.capabilities |= caps::SSL;
        let mut out = Vec::with_capacity(36);
        write_packet(&mut out, 1, &response.ssl_request());
        self.write(stream, &out).await?;
        let start = TlsStart::Client(tls.config.clone(), tls.name.clone());
        crate::net::upgrade(stream, self.buf, start, self.timeout).await.map_err(|e| BackendError::Tls {
            addr,
            message: format!("TLS handshake failed ([[cluster.server]] tls = {:?}): {e}", tls.mode),
        })?;
        Ok(true)
    }

    async fn read<T: Transport>(&mut self, stream: &mut T) -> Result<(u8, Vec<u8>), BackendError> {
        let addr = self.addr;
        read_packet(stream, self.buf, 1 << 16, self.timeout).await.map_err(|e| match e {
            PacketReadError::Io(source) => BackendError::Io { addr, source },
            PacketReadError::TooLarge(n) => BackendError::Protocol {
                addr,
                source: ProtocolError::Malformed(if n > 0 { "login packet too large" } else { "empty login packet" }),
            },
        })
    }

    async fn write<T: Transport>(&self, stream: &mut T, bytes: &[u8]) -> Result<(), BackendError> {
        stream.write_all(bytes).await.map_err(|source| BackendError::Io { addr: self.addr, source })
    }

    /// The server's ERR packet as the error it is.
    fn refused(&self, payload: &[u8]) -> BackendError {
        match ErrPacket::parse(payload) {
            Ok(err) => BackendError::Refused { addr: self.addr, err },
            Err(source) => BackendError::Protocol { addr: self.addr, source },
        }
    }

    /// After the login, in one round trip: reads the connection's session-tracking settings
    /// (the server's defaults, what a direct client is told of) and turns tracking on for
    /// everything. None: the server refused, and keeps its own settings.
    async fn track_everything<T: Transport>(
        &mut self,
        stream: &mut T,
        deprecate_eof: bool,
    ) -> Result<Option<Trackers>, BackendError> {
        let mut out = Vec::with_capacity(256);
        write_command(
            &mut out,
            command::QUERY,
            b"SELECT @@session_track_system_variables, @@session_track_schema, @@session_track_state_change",
        );
        write_command(&mut out, command::QUERY, format!("SET {TRACK_ALL}").as_bytes());
        self.write(stream, &out).await?;
        let addr = self.addr;
        let malformed = |what| BackendError::Protocol { addr, source: ProtocolError::Malformed(what) };
        // The SELECT: column count, definitions, (EOF,) one row, terminator; or ERR (or an
        // OK from a server that is not quite MySQL).
        let (_, first) = self.read(stream).await?;
        let mut defaults = None;
        if !matches!(first.first(), Some(0xFF | 0x00)) {
            let columns = Reader::new(&first).lenenc_int("column count").map_err(|_| malformed("bad column count"))?;
            for _ in 0..columns.min(64) + u64::from(!deprecate_eof) {
                self.read(stream).await?;
            }
            let (_, row) = self.read(stream).await?;
            let terminator = |p: &[u8]| p.first() == Some(&0xFF) || (p.first() == Some(&0xFE) && p.len() < 0xFF_FFFF);
            if !terminator(&row) {
                let mut r = Reader::new(&row);
                let mut value = || r.lenenc_bytes("value").map(|v| String::from_utf8_lossy(v).into_owned());
                if let (Ok(vars), Ok(schema), Ok(state)) = (value(), value(), value()) {
                    defaults = Some(Trackers::parse(&vars, &schema, &state));
                }
                self.read(stream).await?;
            }
        }
        let (_, set) = self.read(stream).await?;
        if set.first() == Some(&0xFF) {
            tracing::debug!(server = %addr, "the server keeps its own session tracking: {:?}", self.refused(&set));
            return Ok(None);
        }
        Ok(Some(defaults.unwrap_or_default()))
    }

    /// After the handshake response: answers auth switches and the caching_sha2 fast path
    /// until the server says OK (at most a few round trips).
    async fn authenticate<T: Transport>(
        &mut self,
        stream: &mut T,
        login: &Login<'_>,
        encrypted: bool,
        scramble: &[u8],
    ) -> Result<(), BackendError> {
        let addr = self.addr;
        let mut scramble = scramble.to_vec();
        for _ in 0..6 {
            let (seq, payload) = self.read(stream).await?;
            match payload.first() {
                Some(0x00) => return Ok(()),
                Some(0xFF) => return Err(self.refused(&payload)),
                Some(0xFE) => {
                    let switch =
                        AuthSwitch::parse(&payload).map_err(|source| BackendError::Protocol { addr, source })?;
                    let proof = auth::proof_for(&switch.plugin, login.password.as_bytes(), &switch.data)
                        .map_err(|_| BackendError::Plugin { addr, plugin: switch.plugin.clone() })?;
                    let mut out = Vec::with_capacity(proof.len() + 4);
                    write_packet(&mut out, seq.wrapping_add(1), &proof);
                    self.write(stream, &out).await?;
                    scramble = switch.data.clone();
                }
                Some(0x01) => match payload.get(1) {
                    // caching_sha2_password fast path succeeded: the OK follows.
                    Some(3) => continue,
                    // Full authentication: over TLS the password itself may go.
                    Some(4) if encrypted => {
                        let mut password = login.password.as_bytes().to_vec();
                        password.push(0);
                        let mut out = Vec::with_capacity(password.len() + 4);
                        write_packet(&mut out, seq.wrapping_add(1), &password);
                        self.write(stream, &out).await?;
                    }
                    // Without TLS: ask for the server's RSA public key...
                    Some(4) => {
                        let mut out = Vec::with_capacity(8);
                        write_packet(&mut out, seq.wrapping_add(1), &[0x02]);
                        self.write(stream, &out).await?;
                    }
                    // ... and send the password encrypted with it.
                    Some(b'-') => {
                        let sealed = crate::protocol::rsa::encrypt_password(
                            &payload[1..],
                            login.password.as_bytes(),
                            scramble.strip_suffix(&[0]).unwrap_or(&scramble),
                        )
                        .map_err(|e| BackendError::Plugin {
                            addr,
                            plugin: format!("caching_sha2_password RSA: {e}"),
                        })?;
                        let mut out = Vec::with_capacity(sealed.len() + 4);
                        write_packet(&mut out, seq.wrapping_add(1), &sealed);
                        self.write(stream, &out).await?;
                    }
                    _ => {
                        return Err(BackendError::Protocol {
                            addr,
                            source: ProtocolError::Malformed("unexpected caching_sha2_password packet"),
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
}
