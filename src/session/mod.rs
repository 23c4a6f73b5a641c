//! A client session: login, then the command loop, on one shard.
//!
//! The session borrows a backend connection from its shard's pool for each command and
//! gives it back afterwards, unless it holds state that lives only on that connection
//! (a transaction, user variables, locks, ... — see [`crate::router::statement::pin`]);
//! then it keeps ("pins") the connection until that state is gone. Everything else a
//! client set up — schema, tracked variables, prepared statements — is recorded here and
//! replayed onto whichever connection it borrows ([`borrow`], [`stmt`]).
//!
//! Command bytes are forwarded as they arrive and the response is streamed back, with
//! [`crate::protocol::scanner::Scanner`] finding where it ends. Commands the proxy must not
//! forward (COM_SHUTDOWN, COM_PROCESS_KILL, unknown bytes) are answered locally;
//! COM_CHANGE_USER is authenticated by the proxy.
//!
//! Invariants:
//! - Every error a client sees is a MySQL ERR packet with a real code and SQLSTATE whose
//!   sequence id follows the last packet the client received; none is ever inserted in
//!   the middle of a packet.
//! - A failure of one session never affects another: errors end this session only.
//! - A connection goes back to the pool only after a complete response and with no pin;
//!   a pinned connection is reset (COM_RESET_CONNECTION) before another session gets it.
//! - Counters in the shard's status slot are balanced by [`Counted`] on every exit path.

mod auth;
mod borrow;
pub use borrow::prewarm;
mod command;
mod pipelined;
mod report;
mod stmt;

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tracing::debug;

use crate::backend::Key;
use crate::backend::{Backend, BackendError};
use crate::config::Config;
use crate::net::{Buffer, Connector, Transport};
use crate::pool::Pool;
use crate::protocol::code::Code;
use crate::protocol::err::{write_err, ErrPacket};
use crate::protocol::{code, ProtocolError};
use crate::status::{Slot, StatusRegion};

/// What a shard gives each of its sessions.
pub struct Context<N: Connector> {
    /// The shard's current configuration; sessions take a copy of the pointer per command
    /// when its version changes ([`Context::apply`]).
    config: std::cell::RefCell<Arc<Config>>,
    config_version: Cell<u64>,
    pub status: Arc<StatusRegion>,
    pub shard: usize,
    pub connector: N,
    /// Shared with the drivers of pipelined connections, which give connections back.
    pub pool: std::rc::Rc<Pool<N::Conn>>,
    /// Connections carrying several sessions' stateless reads at once.
    pub pipes: crate::pool::pipe::Pipes,
    log: Cell<LogPolicy>,
    /// Backend read buffers of sessions that hold no connection, for the next borrower:
    /// an idle session keeps none, and a busy one allocates none.
    spare_buffers: std::cell::RefCell<Vec<Buffer>>,
    /// The shard's live sessions by connection id, for KILL.
    sessions: std::cell::RefCell<std::collections::HashMap<u32, std::rc::Rc<Presence>>>,
    next_id: Cell<u32>,
    /// The shard stopped accepting: idle sessions are told and closed.
    draining: Cell<bool>,
}

/// What the query log needs, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct LogPolicy {
    /// `log_dir` is set.
    pub on: bool,
    pub min_us: u64,
    pub sql_max_chars: usize,
    pub connections: bool,
    /// Commands are timed (for the histograms or the log).
    pub timed: bool,
    pub histograms: bool,
}

impl LogPolicy {
    fn new(config: &Config) -> LogPolicy {
        let p = &config.proxy;
        LogPolicy {
            on: !p.log_dir.trim().is_empty(),
            min_us: p.log_query_min_time_us,
            sql_max_chars: p.log_sql_max_chars,
            connections: p.log_connections,
            timed: p.latency_histograms || !p.log_dir.trim().is_empty(),
            histograms: p.latency_histograms,
        }
    }
}

/// One command's timings and results, for the query log (kept only when it is on).
#[derive(Debug, Default)]
struct Trace {
    /// The command's last byte went to the server.
    sent: Option<std::time::Instant>,
    /// The first byte of the reply came back.
    first_byte: Option<std::time::Instant>,
    /// Reply bytes passed to the client.
    bytes: u64,
    rows: u64,
    error: u16,
    thread: u32,
    /// The statement, cut to `log_sql_max_chars` (reused buffer).
    sql: String,
}

impl Trace {
    /// A new command: forget the last one's figures (the SQL buffer is kept for reuse).
    fn start(&mut self) {
        self.sent = None;
        self.first_byte = None;
        self.bytes = 0;
        self.rows = 0;
        self.error = 0;
        self.sql.clear();
    }
}

/// What other sessions of the shard may see of a session: the backend connection serving
/// it (server id, server thread id), whether it was KILLed, and who it is (for the status
/// tables the shard publishes).
#[derive(Debug)]
pub struct Presence {
    pub backend: Cell<Option<(usize, u32)>>,
    /// The session's statement waits on a pipelined connection (shared: KILL cannot reach
    /// it there by thread id).
    pub piped: Cell<bool>,
    pub killed: Cell<bool>,
    /// The product user, once logged in.
    pub user: Cell<Option<usize>>,
    pub ip: std::net::IpAddr,
    /// What the session is doing, for the shard's drain and statement-timeout sweeps.
    pub doing: Cell<Doing>,
    /// Set by the shard: the session must give up what it waits for.
    abort: Cell<Option<Abort>>,
    waker: crate::util::waker::WakerSlot,
}

/// What a session is doing, as the shard sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doing {
    /// Logging in.
    Login,
    /// Waiting for the client's next command; `pinned`: holding a connection (an open
    /// transaction, ...).
    Idle { pinned: bool },
    /// Serving a command since then.
    Busy { since: std::time::Instant },
}

/// Why the shard interrupts a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    /// The shard is stopping and the session is idle with nothing open: tell it and close.
    Drain,
    /// The drain time is over: tell the session and close, whatever it holds.
    Stop,
    /// The statement ran longer than `query_timeout_ms`.
    Timeout,
    /// KILL [QUERY] of a statement waiting on a pipelined connection.
    Killed,
}

impl Presence {
    fn new(ip: std::net::IpAddr) -> Presence {
        let ip = crate::config::canonical_ip(ip);
        Presence {
            backend: Cell::new(None),
            piped: Cell::new(false),
            killed: Cell::new(false),
            user: Cell::new(None),
            ip,
            doing: Cell::new(Doing::Login),
            abort: Cell::new(None),
            waker: Default::default(),
        }
    }

    /// Interrupts the session's current wait (client or server) with `why`.
    pub fn abort(&self, why: Abort) {
        if self.abort.get() != Some(Abort::Stop) {
            self.abort.set(Some(why));
        }
        self.waker.wake();
    }

    /// Resolves when the shard interrupts the session. No allocation: the session's one
    /// waker slot is refreshed on every poll.
    fn aborted(&self) -> Aborted<'_> {
        Aborted(self)
    }
}

struct Aborted<'a>(&'a Presence);

impl std::future::Future for Aborted<'_> {
    type Output = Abort;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Abort> {
        match self.0.abort.get() {
            Some(why) => std::task::Poll::Ready(why),
            None => {
                self.0.waker.register(cx);
                std::task::Poll::Pending
            }
        }
    }
}

impl<N: Connector> Context<N> {
    pub fn new(config: Arc<Config>, status: Arc<StatusRegion>, shard: usize, connector: N) -> Self {
        let pool = std::rc::Rc::new(Pool::new(&config, status.shards()));
        let log = Cell::new(LogPolicy::new(&config));
        Context {
            log,
            config_version: Cell::new(config.version),
            config: std::cell::RefCell::new(config),
            status,
            shard,
            connector,
            pool,
            pipes: Default::default(),
            spare_buffers: Default::default(),
            sessions: Default::default(),
            next_id: Cell::new(0),
            draining: Cell::new(false),
        }
    }

    /// The shard's current configuration.
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    pub fn config_version(&self) -> u64 {
        self.config_version.get()
    }

    pub fn log(&self) -> LogPolicy {
        self.log.get()
    }

    /// Switches the shard to `next`: new sessions and every session's next command use it;
    /// pools follow it (see [`Pool::reconfigure`]); nothing established is dropped.
    pub fn apply(&self, next: Arc<Config>) {
        self.pool.reconfigure(&next, self.status.shards());
        self.pipes.retire_where(|p| next.server(p.key.server).is_none_or(|s| s.removed));
        self.log.set(LogPolicy::new(&next));
        self.config_version.set(next.version);
        *self.config.borrow_mut() = next;
    }

    /// Backend read buffers kept for reuse.
    pub fn spare_buffers(&self) -> usize {
        self.spare_buffers.borrow().len()
    }

    /// Starts the drain: idle sessions with nothing open are told and closed now, the others
    /// when their transaction ends.
    pub fn start_drain(&self) {
        self.draining.set(true);
        self.each_session(|p| {
            if matches!(p.doing.get(), Doing::Idle { pinned: false } | Doing::Login) {
                p.abort(Abort::Drain);
            }
        });
    }

    /// The drain time is over: every session is told and closed.
    pub fn stop_sessions(&self) {
        self.each_session(|p| p.abort(Abort::Stop));
    }

    /// Interrupts statements running longer than `limit` (the shard calls this
    /// periodically).
    pub fn sweep_timeouts(&self, limit: std::time::Duration) {
        let now = std::time::Instant::now();
        self.each_session(|p| {
            if let Doing::Busy { since } = p.doing.get() {
                if now.duration_since(since) > limit {
                    p.abort(Abort::Timeout);
                }
            }
        });
    }

    /// Calls `f` with every live session of this shard.
    pub fn each_session(&self, mut f: impl FnMut(&Presence)) {
        for p in self.sessions.borrow().values() {
            f(p);
        }
    }

    fn take_buffer(&self) -> Buffer {
        self.spare_buffers.borrow_mut().pop().unwrap_or_default()
    }

    fn give_buffer(&self, b: Buffer) {
        const KEEP: usize = 1024;
        const LARGEST: usize = 256 * 1024;
        let mut spare = self.spare_buffers.borrow_mut();
        if b.is_empty() && b.capacity() > 0 && b.capacity() <= LARGEST && spare.len() < KEEP {
            spare.push(b);
        }
    }

    /// Publishes the pool's size in the status slot.
    pub fn publish_pool(&self) {
        self.slot().backend_connections.store(self.pool.open_total() as u64, std::sync::atomic::Ordering::Relaxed);
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
    #[error("no backend connection free within {0:?}")]
    PoolTimeout(Duration),
    /// corelay is stopping; the client was told.
    #[error("corelay is shutting down")]
    Shutdown,
    /// The connection died before replying to a statement that may be sent again.
    #[error("backend connection lost before the reply; retrying")]
    Retry,
    /// The backend failed one statement of an unpinned session; the client was told and
    /// the session goes on.
    #[error("statement failed on backend {addr}: {reason}")]
    StatementFailed { addr: SocketAddr, reason: String },
}

/// Keeps the shard's gauges and session registry balanced however the session ends.
struct Counted<'a> {
    slot: &'a Slot,
    user: Option<usize>,
    sessions: &'a std::cell::RefCell<std::collections::HashMap<u32, std::rc::Rc<Presence>>>,
    conn_id: u32,
    presence: std::rc::Rc<Presence>,
}

impl Counted<'_> {
    fn set_user(&mut self, user: Option<usize>) {
        self.presence.user.set(user);
        if let Some(u) = self.user.take() {
            self.slot.user_dec(u);
        }
        if let Some(u) = user {
            self.slot.user_inc(u);
        }
        self.user = user;
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.set_user(None);
        self.sessions.borrow_mut().remove(&self.conn_id);
        Slot::sub(&self.slot.client_connections, 1);
    }
}

/// One client connection.
pub struct Session<'a, C: Transport, N: Connector> {
    ctx: &'a Context<N>,
    /// The configuration this command runs with (the shard's, as of the command's start).
    config: Arc<Config>,
    config_version: u64,
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
    /// Pool key of this session's connections (set at login; its server is the primary).
    key: Option<Key>,
    /// Server the next connection is borrowed from (None: the primary).
    route: Option<usize>,
    /// Server of the last connection the session used ("its current side").
    side: Option<usize>,
    /// The class of the command being served, and the server it was sent to (for the
    /// counters and latency histograms).
    cmd_class: crate::status::Class,
    cmd_server: Option<usize>,
    trace: Trace,
    /// The last non-zero insert id the server reported to this session.
    last_insert_id: u64,
    /// A statement that may set LAST_INSERT_ID() ran on the borrowed connection since it
    /// was borrowed: what that connection's LAST_INSERT_ID() holds now is the session's
    /// own doing (`LAST_INSERT_ID(expr)`, a procedure), not to be overwritten.
    insert_id_set_here: bool,
    /// What `ROW_COUNT()` returns now: what the session's last statement affected (-1
    /// after a result set or an error).
    row_count: i64,
    /// The next borrow is a read that wanted a replica but goes to the primary.
    fallback_read: bool,
    /// When this session's last write finished (read-your-writes).
    last_write: Option<std::time::Instant>,
    /// The borrowed connection, if any: during a command, or while pinned.
    backend: Option<Backend<N::Conn>>,
    /// The borrowed connection saw a complete response to every command sent on it.
    backend_clean: bool,
    /// The statement in flight may be sent again if the connection dies before replying.
    retry_armed: bool,
    /// Where a pipelined connection hands this session its replies (reused).
    reply: std::rc::Rc<crate::pool::pipe::Reply>,
    /// Reply bytes taken from `reply`, on their way to the client (reused).
    piped: Vec<u8>,
    /// The last command, when it was a pipelined read whose reply had warnings.
    warned: Option<Vec<u8>>,
    /// Why the session keeps its connection ([`crate::router::statement::pin`] bits).
    pins: u32,
    /// GET_LOCK calls minus releases.
    locks: i32,
    /// The schema the client is in.
    schema: Option<String>,
    /// Session variables the client set, to replay on other connections.
    vars: crate::backend::Vars,
    /// Prepared statements by the ids this session handed out.
    stmts: stmt::Statements,
    /// This session as the shard's other sessions see it.
    presence: std::rc::Rc<Presence>,
    counted: Counted<'a>,
}

/// Serves one accepted client until it quits or fails.
pub async fn serve<C: Transport, N: Connector>(ctx: &Context<N>, client: C, peer: SocketAddr) {
    let slot = ctx.slot();
    Slot::add(&slot.clients_accepted, 1);
    let mut client = client;
    let config = ctx.config();
    if ctx.status.total_clients() >= config.proxy.max_client_connections {
        Slot::add(&slot.clients_rejected, 1);
        let mut out = Vec::new();
        let limit = config.proxy.max_client_connections;
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
    let conn_id = ctx.next_connection_id();
    let presence = std::rc::Rc::new(Presence::new(peer.ip()));
    ctx.sessions.borrow_mut().insert(conn_id, presence.clone());
    let mut s = Session {
        ctx,
        config_version: config.version,
        config,
        client,
        peer,
        cbuf: Buffer::new(),
        bbuf: Buffer::new(),
        out: Vec::new(),
        conn_id,
        scramble: crate::protocol::auth::new_scramble(),
        caps: 0,
        charset: 0,
        user: None,
        key: None,
        route: None,
        side: None,
        last_write: None,
        fallback_read: false,
        last_insert_id: 0,
        insert_id_set_here: false,
        row_count: -1,
        cmd_class: crate::status::Class::Other,
        cmd_server: None,
        trace: Trace::default(),
        backend: None,
        backend_clean: true,
        retry_armed: false,
        reply: Default::default(),
        piped: Vec::new(),
        warned: None,
        pins: 0,
        locks: 0,
        schema: None,
        vars: crate::backend::Vars::default(),
        stmts: stmt::Statements::default(),
        presence: presence.clone(),
        counted: Counted { slot, user: None, sessions: &ctx.sessions, conn_id, presence },
    };
    let result = match s.login().await {
        Ok(()) => {
            s.log_connection("connect", None);
            s.command_loop().await
        }
        Err(e) => Err(e),
    };
    if s.user.is_some() {
        let reason = result.as_ref().err().map(|e| e.to_string());
        s.log_connection("quit", reason.as_deref());
    }
    match &result {
        Ok(()) => debug!(peer = %s.peer, id = s.conn_id, "session closed"),
        Err(e @ (SessionError::ClientGone(_) | SessionError::ClientIdle(_))) => {
            debug!(peer = %s.peer, id = s.conn_id, "session ended: {e}")
        }
        Err(
            e @ (SessionError::Backend(_)
            | SessionError::BackendLost { .. }
            | SessionError::PoolTimeout(_)
            | SessionError::StatementFailed { .. }),
        ) => {
            Slot::add(&slot.backend_errors, 1);
            tracing::warn!(peer = %s.peer, id = s.conn_id, "session ended: {e}")
        }
        Err(e) => {
            Slot::add(&slot.client_errors, 1);
            tracing::info!(peer = %s.peer, id = s.conn_id, "session ended: {e}")
        }
    }
    s.end_backend().await;
}

impl<N: Connector> Context<N> {
    /// A live session of this shard by connection id.
    pub fn session(&self, id: u32) -> Option<std::rc::Rc<Presence>> {
        self.sessions.borrow().get(&id).cloned()
    }
}

impl<C: Transport, N: Connector> Session<'_, C, N> {
    fn config(&self) -> &Config {
        &self.config
    }

    /// Between commands: takes the shard's configuration if a reload changed it. The
    /// session's connections follow its user to the (possibly new) primary and db user;
    /// one it holds now stays until released.
    fn follow_config(&mut self) {
        if self.config_version == self.ctx.config_version() {
            return;
        }
        self.config = self.ctx.config();
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
        let log = self.ctx.log();
        if log.on && log.connections {
            tracing::info!(target: crate::log::CONN, event, conn = self.conn_id, client = %self.peer, user = self.user_name(), reason = reason.unwrap_or(""));
        }
    }

    /// Sends an ERR packet to the client. A failure to send is not reported: the session
    /// is ending anyway or the next read will notice.
    async fn send_err(&mut self, seq: u8, code: Code, message: &str) {
        self.out.clear();
        write_err(&mut self.out, seq, code, message);
        let _ = self.client.write_all(&self.out).await;
    }

    /// Passes a server's error on to the client (as [`Session::send_err`]).
    async fn send_server_err(&mut self, seq: u8, err: &ErrPacket) {
        self.out.clear();
        err.write(&mut self.out, seq);
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
}
