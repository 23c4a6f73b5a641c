//! A client session: login, then the command loop, on one shard.
//!
//! A session is three named parts and the client it serves:
//! - what it recorded ([`recorded::Recorded`]): pins, locks, schema, variables, prepared
//!   statements, what its last statement left — plain data, unit-tested;
//! - the connection it holds ([`held::Held`]): borrowed from the shard's pool for a
//!   command and given back afterwards, unless the session holds state that lives only on
//!   that connection (a transaction, user variables, locks, ...: see
//!   [`crate::router::statement::pin`]); then it keeps ("pins") it until that state is gone.
//!   Everything else a client set up — schema, tracked variables, prepared statements — is
//!   replayed onto whichever connection it borrows;
//! - the command in flight ([`command::CommandContext`]): its class, its server, its
//!   timings.
//!
//! The life of a command: [`dispatch`] reads it; [`query`] (COM_QUERY) and [`execute`]
//! (prepared statements) analyse it, route it ([`route`]), borrow a connection
//! ([`held`]), send it — once, or with the one retry loop ([`retry`]) — and relay the reply
//! ([`relay`]); [`effects`] applies what it did, for both protocols through one function;
//! [`failure`] says what the client is told when something breaks. Statements corelay
//! answers itself are in [`local`]; stateless reads may share a pipelined connection
//! ([`pipelined`]).
//!
//! Invariants:
//! - Every error a client sees is a MySQL ERR packet with a real code and SQLSTATE whose
//!   sequence id follows the last packet the client received; none is ever inserted in
//!   the middle of a packet.
//! - A failure of one session never affects another: errors end this session only.
//! - A connection goes back to the pool only after a complete response and with no pin;
//!   a pinned connection is reset (COM_RESET_CONNECTION) before another session gets it.
//! - Counters in the shard's status slot are balanced by [`shard::Counted`] on every exit
//!   path.

mod auth;
mod client;
mod command;
mod dispatch;
mod effects;
mod error;
mod execute;
mod failure;
pub mod gate;
mod held;
pub mod local;
mod pipelined;
mod query;
mod recorded;
mod relay;
mod retry;
mod route;
mod rules;
mod shard;
#[cfg(test)]
mod tests;

pub use error::{SessionError, Side};
pub use held::prewarm;
pub use shard::{Abort, Doing, LogPolicy, Presence, ShardState};

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

use crate::backend::Key;
use crate::config::Config;
use crate::net::{Buffer, Connector, Transport};
use crate::pool::pipe::Reply;
use crate::protocol::auth::{new_scramble, SCRAMBLE_LEN};
use crate::protocol::code;
use crate::router::hook::Connect;
use crate::status::Slot;
use command::CommandContext;
use held::Held;
use recorded::Recorded;
use shard::Counted;

/// One client connection.
pub struct Session<'a, C: Transport, N: Connector> {
    shard: &'a ShardState<N>,
    /// The configuration this command runs with (the shard's, as of the command's start).
    config: Arc<Config>,
    config_version: u64,
    client: C,
    peer: SocketAddr,
    /// Counts the client as logging in from its address until its proof is checked.
    login_slot: Option<gate::LoginSlot<'a>>,
    /// Bytes from the client not yet handled.
    cbuf: Buffer,
    /// Packets corelay writes to the client itself.
    out: Vec<u8>,
    conn_id: u32,
    scramble: [u8; SCRAMBLE_LEN],
    /// Capabilities negotiated with the client.
    caps: u32,
    /// The client negotiated MariaDB's metadata cache ([`caps::ext::CACHE_METADATA`]):
    /// every column-count packet it gets carries the "metadata follows" byte.
    cache_metadata: bool,
    charset: u8,
    /// The product user, once logged in.
    user: Option<usize>,
    /// Pool key of this session's connections (set at login; its server is the primary).
    key: Option<Key>,
    /// What the session recorded of its own state.
    recorded: Recorded,
    /// The connection it holds, if any.
    held: Held<N::Conn>,
    /// The command in flight.
    cmd: CommandContext,
    /// Where a pipelined connection hands this session its replies (reused).
    reply: Rc<Reply>,
    /// Reply bytes taken from `reply`, on their way to the client (reused).
    piped: Vec<u8>,
    /// This session as the shard's other sessions see it.
    presence: Rc<Presence>,
    counted: Counted<'a>,
}

/// Serves one accepted client until it quits or fails.
pub async fn serve<C: Transport, N: Connector>(shard: &ShardState<N>, client: C, peer: SocketAddr) {
    let slot = shard.slot();
    Slot::add(&slot.clients_accepted, 1);
    let mut client = client;
    let config = shard.config();
    if shard.status.total_clients() >= config.proxy.max_client_connections {
        Slot::add(&slot.clients_rejected, 1);
        let limit = config.proxy.max_client_connections;
        let msg = format!(
            "Too many connections: corelay accepts at most {limit} client connections (proxy.max_client_connections)"
        );
        gate::refuse(&mut client, code::CON_COUNT_ERROR, &msg).await;
        return;
    }
    if let Some(r) =
        crate::router::hook::installed().and_then(|h| h.on_connect(&Connect { client: peer.ip(), shard: shard.index }))
    {
        Slot::add(&slot.clients_rejected, 1);
        gate::refuse(&mut client, rules::code_of(&r), &r.message).await;
        return;
    }
    let Some(login) =
        gate::LoginSlot::take(&shard.status, shard.index, &config.proxy, &mut client, peer.ip(), true).await
    else {
        return;
    };
    let presence = Rc::new(Presence::new(peer.ip()));
    let counted = shard.register(presence.clone());
    let mut s = Session {
        shard,
        config_version: config.version,
        config,
        client,
        peer,
        login_slot: Some(login),
        cbuf: Buffer::new(),
        out: Vec::new(),
        conn_id: counted.conn_id,
        scramble: new_scramble(),
        caps: 0,
        cache_metadata: false,
        charset: 0,
        user: None,
        key: None,
        recorded: Recorded::default(),
        held: Held::default(),
        cmd: CommandContext::default(),
        reply: Rc::default(),
        piped: Vec::new(),
        presence,
        counted,
    };
    let result = match s.login().await {
        Ok(()) => {
            s.log_connection("connect", None);
            s.command_loop().await
        }
        Err(e) => Err(e),
    };
    s.ended(&result);
    s.end_backend().await;
}

impl<C: Transport, N: Connector> Session<'_, C, N> {
    /// Logs and counts how the session ended.
    fn ended(&self, result: &Result<(), SessionError>) {
        if self.user.is_some() {
            let reason = result.as_ref().err().map(|e| e.to_string());
            self.log_connection("quit", reason.as_deref());
        }
        let (peer, id, slot) = (self.peer, self.conn_id, self.shard.slot());
        match result {
            Ok(()) => debug!(%peer, id, "session closed"),
            Err(e @ (SessionError::ClientGone(_) | SessionError::ClientIdle(_))) => {
                debug!(%peer, id, "session ended: {e}")
            }
            Err(e) if e.side() == Side::Backend => {
                Slot::add(&slot.backend_errors, 1);
                tracing::warn!(%peer, id, "session ended: {e}")
            }
            Err(e) => {
                Slot::add(&slot.client_errors, 1);
                tracing::info!(%peer, id, "session ended: {e}")
            }
        }
    }

    /// Between commands: takes the shard's configuration if a reload changed it. The
    /// session's connections follow its user to the (possibly new) primary and db user;
    /// one it holds now stays until released.
    fn follow_config(&mut self) {
        if self.config_version == self.shard.config_version() {
            return;
        }
        self.config = self.shard.config();
        self.config_version = self.config.version;
        if let (Some(key), Some(user)) = (self.key, self.user) {
            self.key = Some(self.key_for(user, key.charset));
        }
    }

    fn user_name(&self) -> &str {
        self.user.and_then(|u| self.config.users.get(u)).map_or("", |u| u.name.as_str())
    }

    /// A connect or quit line in the query log.
    fn log_connection(&self, event: &str, reason: Option<&str>) {
        let log = self.shard.log();
        if log.on && log.connections {
            tracing::info!(target: crate::log::CONN, event, conn = self.conn_id, client = %self.peer, user = self.user_name(), reason = reason.unwrap_or(""));
        }
    }

    fn idle_timeout(&self) -> Option<Duration> {
        match self.config.proxy.client_idle_timeout_s {
            0 => None,
            s => Some(Duration::from_secs(s)),
        }
    }
}
