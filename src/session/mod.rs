//! A client session: login, then the command loop, on one shard.
//!
//! The session owns the client stream and (in this version) one backend connection for its
//! whole life. It forwards each command's bytes as they arrive and streams the response
//! back, using [`crate::protocol::response::Scanner`] to find where the response ends.
//! Commands the proxy must not forward (COM_SHUTDOWN, COM_PROCESS_KILL, unknown bytes) are
//! answered locally; COM_CHANGE_USER is authenticated by the proxy and re-opens the backend
//! connection as the new user's db user.
//!
//! Invariants:
//! - Every error a client sees is a MySQL ERR packet with a real code and SQLSTATE whose
//!   sequence id follows the last packet the client received.
//! - A failure of one session never affects another: errors end this session only.
//! - Counters in the shard's status slot are balanced by [`Counted`] on every exit path.

mod auth;
mod command;
pub mod io;

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tracing::debug;

use crate::backend::{Backend, BackendError};
use crate::config::Config;
use crate::protocol::response::write_err;
use crate::protocol::{code, ProtocolError};
use crate::status::{Slot, StatusRegion};
use io::{Buffer, Connector, Transport};

/// What a shard gives each of its sessions.
pub struct Context<N: Connector> {
    pub config: Arc<Config>,
    pub status: Arc<StatusRegion>,
    pub shard: usize,
    pub connector: N,
    next_id: Cell<u32>,
}

impl<N: Connector> Context<N> {
    pub fn new(config: Arc<Config>, status: Arc<StatusRegion>, shard: usize, connector: N) -> Self {
        Context {
            config,
            status,
            shard,
            connector,
            next_id: Cell::new(0),
        }
    }

    pub fn slot(&self) -> &Slot {
        self.status.slot(self.shard)
    }

    /// A connection id unique across shards: the shard index in the top byte.
    fn next_connection_id(&self) -> u32 {
        let n = self.next_id.get().wrapping_add(1) & 0x00FF_FFFF;
        self.next_id.set(n);
        ((self.shard as u32 & 0xFF) << 24) | n.max(1)
    }
}

/// Why a session ended. `Client*` errors are the client's doing; `Backend*` ones the
/// server's; the session has already told the client what it could.
#[derive(Debug, Error)]
pub enum SessionError {
    #[error("client went away: {0}")]
    ClientGone(#[source] std::io::Error),
    #[error("client idle for longer than {0:?}")]
    ClientIdle(Duration),
    #[error("client sent a packet of {0} bytes, more than max_packet_bytes")]
    ClientPacketTooLarge(usize),
    #[error("client broke the protocol: {0}")]
    ClientProtocol(#[from] ProtocolError),
    #[error("login refused: {0}")]
    LoginRefused(String),
    #[error("backend: {0}")]
    Backend(#[from] BackendError),
    #[error("lost backend {addr} mid-command: {reason}")]
    BackendLost { addr: SocketAddr, reason: String },
}

/// Keeps the shard's gauges balanced however the session ends.
struct Counted<'a> {
    slot: &'a Slot,
    user: Option<usize>,
    backend: bool,
}

impl Counted<'_> {
    fn set_user(&mut self, user: Option<usize>) {
        if let Some(u) = self.user.take() {
            self.slot.user_dec(u);
        }
        if let Some(u) = user {
            self.slot.user_inc(u);
        }
        self.user = user;
    }

    fn set_backend(&mut self, open: bool) {
        if open != self.backend {
            if open {
                Slot::add(&self.slot.backend_connections, 1);
            } else {
                Slot::sub(&self.slot.backend_connections, 1);
            }
            self.backend = open;
        }
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.set_user(None);
        self.set_backend(false);
        Slot::sub(&self.slot.client_connections, 1);
    }
}

/// One client connection.
pub struct Session<'a, C: Transport, N: Connector> {
    ctx: &'a Context<N>,
    client: C,
    peer: SocketAddr,
    cbuf: Buffer,
    bbuf: Buffer,
    out: Vec<u8>,
    conn_id: u32,
    scramble: [u8; crate::protocol::auth::SCRAMBLE_LEN],
    /// Capabilities negotiated with the client.
    caps: u32,
    charset: u8,
    user: Option<usize>,
    backend: Option<Backend<N::Conn>>,
    counted: Counted<'a>,
}

/// Serves one accepted client until it quits or fails.
pub async fn serve<C: Transport, N: Connector>(ctx: &Context<N>, client: C, peer: SocketAddr) {
    let slot = ctx.slot();
    Slot::add(&slot.clients_accepted, 1);
    let mut client = client;
    if ctx.status.total_clients() >= ctx.config.proxy.max_client_connections {
        Slot::add(&slot.clients_rejected, 1);
        let mut out = Vec::new();
        let limit = ctx.config.proxy.max_client_connections;
        write_err(
            &mut out,
            0,
            code::CON_COUNT_ERROR,
            &format!("Too many connections: corelay accepts at most {limit} client connections (proxy.max_client_connections)"),
        );
        let _ = client.write_all(&out).await;
        return;
    }
    Slot::add(&slot.client_connections, 1);
    let mut s = Session {
        ctx,
        client,
        peer,
        cbuf: Buffer::new(),
        bbuf: Buffer::new(),
        out: Vec::with_capacity(256),
        conn_id: ctx.next_connection_id(),
        scramble: crate::protocol::auth::new_scramble(),
        caps: 0,
        charset: 0,
        user: None,
        backend: None,
        counted: Counted {
            slot,
            user: None,
            backend: false,
        },
    };
    let result = match s.login().await {
        Ok(()) => s.command_loop().await,
        Err(e) => Err(e),
    };
    match &result {
        Ok(()) => debug!(peer = %s.peer, id = s.conn_id, "session closed"),
        Err(e @ (SessionError::ClientGone(_) | SessionError::ClientIdle(_))) => {
            debug!(peer = %s.peer, id = s.conn_id, "session ended: {e}")
        }
        Err(e @ (SessionError::Backend(_) | SessionError::BackendLost { .. })) => {
            Slot::add(&slot.backend_errors, 1);
            tracing::warn!(peer = %s.peer, id = s.conn_id, "session ended: {e}")
        }
        Err(e) => {
            Slot::add(&slot.client_errors, 1);
            tracing::info!(peer = %s.peer, id = s.conn_id, "session ended: {e}")
        }
    }
    if let Some(mut b) = s.backend.take() {
        if result.is_ok() {
            b.quit().await;
        }
    }
}

impl<C: Transport, N: Connector> Session<'_, C, N> {
    fn config(&self) -> &Config {
        &self.ctx.config
    }

    /// Sends an ERR packet to the client. A failure to send is not reported: the session
    /// is ending anyway or the next read will notice.
    async fn send_err(&mut self, seq: u8, code: (u16, &str), message: &str) {
        self.out.clear();
        write_err(&mut self.out, seq, code, message);
        let _ = self.client.write_all(&self.out).await;
    }

    /// Sends the buffered output packets.
    async fn flush(&mut self) -> Result<(), SessionError> {
        let r = self.client.write_all(&self.out).await;
        self.out.clear();
        r.map_err(SessionError::ClientGone)
    }

    fn idle_timeout(&self) -> Option<Duration> {
        match self.config().proxy.client_idle_timeout_s {
            0 => None,
            s => Some(Duration::from_secs(s)),
        }
    }

    fn set_backend(&mut self, backend: Option<Backend<N::Conn>>) {
        self.counted.set_backend(backend.is_some());
        self.backend = backend;
    }
}
