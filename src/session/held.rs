//! The connection a session holds: borrowing one from the shard's pool (or opening one),
//! bringing it in line with the session's record, and giving it back.
//!
//! Invariants:
//! - A connection goes back to the pool only after a complete response (`clean`) and with
//!   nothing pinned; one whose state is unknown (a reply half read, a failed replay) is
//!   closed and its pool slot freed.
//! - At the end of a session a connection that holds the session's state is reset
//!   (COM_RESET_CONNECTION) before another session can have it.

use std::time::{Duration, Instant};

use super::shard::ShardState;
use super::Session;
use crate::backend::{self, Backend, BackendError, Key, Login, TRACK_ALL};
use crate::net::{Buffer, Connector, Transport};
use crate::pool::Take;
use crate::protocol::code;
use crate::protocol::err::ErrPacket;
use crate::protocol::packet::write_command;
use crate::protocol::scanner::Expect;
use crate::protocol::{caps, command};
use crate::router::statement::pin;
use crate::status::Slot;

/// Connection attempts before a server is skipped for its `reconnect_interval_s`.
pub(super) const CONNECT_ATTEMPTS: usize = 3;

/// The borrowed connection and what the session knows of it.
pub(super) struct Held<T> {
    /// The connection, if any: during a command, or while pinned.
    pub conn: Option<Backend<T>>,
    /// The connection saw a complete response to every command sent on it.
    pub clean: bool,
    /// The statement in flight may be sent again if the connection dies before replying.
    pub retry_armed: bool,
    /// Server the next connection is borrowed from (None: the primary).
    pub route: Option<usize>,
    /// Server of the last connection the session used ("its current side").
    pub side: Option<usize>,
    /// The next borrow is a read that wanted a replica but goes to the primary.
    pub fallback_read: bool,
    /// A statement that may set LAST_INSERT_ID() ran on this connection since it was
    /// borrowed: what its LAST_INSERT_ID() holds now is the session's own doing
    /// (`LAST_INSERT_ID(expr)`, a procedure), not to be overwritten.
    pub insert_id_set_here: bool,
    /// The connection's read buffer (given back to the shard while no connection is held).
    pub buf: Buffer,
}

impl<T> Default for Held<T> {
    fn default() -> Held<T> {
        Held {
            conn: None,
            clean: true,
            retry_armed: false,
            route: None,
            side: None,
            fallback_read: false,
            insert_id_set_here: false,
            buf: Buffer::new(),
        }
    }
}

/// Why a session could not get a usable connection. The client is told with
/// [`Session::report_acquire_error`]; the session itself carries on.
#[derive(Debug)]
pub(super) enum AcquireError {
    /// Connecting or logging in failed.
    Connect(BackendError),
    /// Connecting failed repeatedly; the server is skipped for `seconds` more.
    Down { server: String, seconds: u64 },
    /// Every connection stayed busy for `pool_wait_timeout_ms`.
    Timeout { server: String, waited: Duration, limit: usize },
    /// The server refused to take the session's state (schema, variables).
    Replay(ErrPacket),
    /// The server was removed from the configuration by a reload.
    Removed { server: String },
}

/// How a connection for `key` logs in: the db user of the key, into `database`.
pub(super) fn login_for<'a>(
    config: &'a crate::config::Config,
    key: Key,
    database: Option<&'a str>,
    client_caps: u32,
    track_all: bool,
) -> Login<'a> {
    let db_user = &config.db_users[key.db_user];
    Login {
        user: &db_user.name,
        password: &db_user.password,
        database,
        charset: key.charset,
        client_caps,
        cache_metadata: key.cache_metadata,
        reply_timeout: config.proxy.query_timeout(),
        track_all,
        tls: config.server(key.server).and_then(|s| s.tls.as_ref()),
    }
}

/// Opens one connection for `key` in a slot [`crate::pool::Pool::reserve_warm`] reserved,
/// logged in to the db user's default schema, and puts it in the pool.
pub async fn prewarm<N: Connector>(shard: &ShardState<N>, key: Key) {
    let config = shard.config();
    let (Some(server), Some(db_user)) = (config.server(key.server), config.db_users.get(key.db_user)) else {
        shard.pool.forget(key.server);
        return;
    };
    let login = login_for(&config, key, db_user.default_db.as_deref(), key.caps, true);
    let mut buf = Buffer::new();
    let timeout = Duration::from_millis(server.connect_timeout_ms);
    match backend::connect(&shard.connector, server.addr, timeout, &login, key, &mut buf).await {
        Ok(b) => shard.pool.put(b),
        Err(e) => {
            tracing::debug!(server = %server.address, "pre-warming a connection failed: {e}");
            shard.pool.forget(key.server);
        }
    }
    shard.publish_pool();
}

impl<C: Transport, N: Connector> Session<'_, C, N> {
    /// The pool key for this session's connections.
    pub(super) fn key_for(&self, user: usize, charset: u8) -> Key {
        Key {
            server: crate::router::target(&self.config, user).id,
            db_user: self.config.users[user].db_user,
            caps: self.caps & caps::RESULT_SHAPING,
            cache_metadata: self.cache_metadata,
            charset,
        }
    }

    /// Makes sure the session holds a connection whose state matches the session's.
    pub(super) async fn ensure_backend(&mut self) -> Result<(), AcquireError> {
        if self.held.conn.is_some() {
            return Ok(());
        }
        if self.held.buf.capacity() == 0 {
            self.held.buf = self.shard.take_buffer();
        }
        let b = self.acquire().await?;
        self.held.side = Some(b.key.server);
        self.presence.backend.set(Some((b.key.server, b.thread_id)));
        self.held.conn = Some(b);
        self.held.clean = true;
        self.held.insert_id_set_here = false;
        self.sync_state().await
    }

    /// [`Session::ensure_backend`] on the routed server, falling back to the primary when a
    /// replica cannot be had.
    pub(super) async fn ensure_routed(&mut self) -> Result<(), AcquireError> {
        match self.ensure_backend().await {
            Err(e) if self.held.route.is_some() => {
                tracing::debug!("replica unavailable ({e:?}); using the primary");
                self.held.route = None;
                self.held.fallback_read = true;
                self.ensure_backend().await
            }
            r => r,
        }
    }

    /// Borrows a connection for the session's key on the routed server: an idle one (pinged
    /// if idle long), a new one in a free slot, or, when the server is at its limit, one
    /// given back within `pool_wait_timeout_ms`.
    async fn acquire(&mut self) -> Result<Backend<N::Conn>, AcquireError> {
        let Some(mut key) = self.key else {
            return Err(AcquireError::Replay(ErrPacket::new(code::ACCESS_DENIED, "not logged in")));
        };
        if let Some(server) = self.held.route {
            key.server = server;
        }
        let shard = self.shard;
        let deadline = Instant::now() + Duration::from_millis(self.config.proxy.pool_wait_timeout_ms);
        loop {
            let reserved = if self.held.fallback_read && self.held.route.is_none() {
                let primary = self.config.server(key.server);
                primary.map_or(0, |s| (s.reserved_primary_connections as usize).div_ceil(shard.status.shards().max(1)))
            } else {
                0
            };
            let fresh = self.recorded.pins & pin::NO_MULTIPLEX != 0;
            match shard.pool.take(&key, reserved, fresh) {
                Take::Idle(b) => match self.check_idle(b).await {
                    Some(b) => return Ok(b),
                    None => shard.pool.forget(key.server),
                },
                Take::Down(until) => {
                    let seconds = until.saturating_duration_since(Instant::now()).as_secs().max(1);
                    return Err(AcquireError::Down { server: self.address_of(key.server), seconds });
                }
                Take::Removed => {
                    // A reload moved the session's primary: follow the user to the new one.
                    if let (None, Some(user)) = (self.held.route, self.user) {
                        let primary = crate::router::target(&shard.config(), user).id;
                        if primary != key.server {
                            key.server = primary;
                            continue;
                        }
                    }
                    return Err(AcquireError::Removed { server: self.address_of(key.server) });
                }
                Take::Open => return self.open(key).await,
                Take::Replace(mut other) => {
                    other.quit().await;
                    return self.open(key).await;
                }
                Take::Full => self.wait_for_pool(key.server, deadline).await?,
            }
        }
    }

    /// An idle connection taken from the pool, if it is still usable: not closed by the
    /// server meanwhile, and answering a ping when it was idle longer than
    /// `ping_after_idle_ms`.
    async fn check_idle(&mut self, mut b: Backend<N::Conn>) -> Option<Backend<N::Conn>> {
        if b.stream.peer_closed() {
            // Killed or timed out on the server while idle: discard silently.
            return None;
        }
        if b.idle_since.elapsed() > Duration::from_millis(self.config.proxy.ping_after_idle_ms) {
            let ping = [1, 0, 0, 0, command::PING];
            match b.exchange(&ping, &[Expect::Single], &mut self.held.buf).await {
                Ok(r) if r[0].err.is_none() => {}
                _ => {
                    self.held.buf.consume(self.held.buf.len());
                    return None;
                }
            }
        }
        Some(b)
    }

    /// Waits until a connection of `server` is given back or freed, or `deadline` passes.
    /// Pipelined connections to the server come back to the pool once their replies are in.
    async fn wait_for_pool(&mut self, server: usize, deadline: Instant) -> Result<(), AcquireError> {
        let shard = self.shard;
        shard.pipes.give_back(server);
        let left = deadline.saturating_duration_since(Instant::now());
        let slot = shard.slot();
        Slot::add(&slot.pool_waits, 1);
        let waiting = Instant::now();
        let woken = !left.is_zero()
            && futures_lite::future::or(
                async {
                    shard.pool.wait(server).await;
                    true
                },
                async {
                    shard.connector.sleep(left).await;
                    false
                },
            )
            .await;
        Slot::add(&slot.pool_wait_us, waiting.elapsed().as_micros() as u64);
        if woken {
            return Ok(());
        }
        Slot::add(&slot.pool_timeouts, 1);
        let (limit, _, _) = shard.pool.stats(server);
        let waited = Duration::from_millis(self.config.proxy.pool_wait_timeout_ms);
        Err(AcquireError::Timeout { server: self.address_of(server), waited, limit })
    }

    /// A server's address as configured, for messages.
    fn address_of(&self, server: usize) -> String {
        self.config.server(server).map(|s| s.address.clone()).unwrap_or_default()
    }

    /// Opens a connection in a slot the pool reserved.
    async fn open(&mut self, key: Key) -> Result<Backend<N::Conn>, AcquireError> {
        let shard = self.shard;
        let config = self.config.clone();
        let Some(server) = config.server(key.server) else {
            shard.pool.forget(key.server);
            return Err(AcquireError::Removed { server: format!("(server id {})", key.server) });
        };
        let own = self.recorded.pins & pin::NO_MULTIPLEX != 0;
        let login = login_for(&config, key, self.recorded.schema.as_deref(), self.caps, !own);
        let timeout = Duration::from_millis(server.connect_timeout_ms);
        let mut last = None;
        let mut reclaimed = false;
        for _ in 0..CONNECT_ATTEMPTS {
            self.held.buf.consume(self.held.buf.len());
            match backend::connect(&shard.connector, server.addr, timeout, &login, key, &mut self.held.buf).await {
                Ok(b) => {
                    shard.publish_pool();
                    return Ok(b);
                }
                Err(BackendError::Refused { err, .. }) if err.code == code::CON_COUNT_ERROR.number && !reclaimed => {
                    // The server is full: give back what this shard holds idle there, and
                    // try once more.
                    reclaimed = true;
                    for mut idle in shard.pool.take_idle_of(key.server) {
                        idle.quit().await;
                        shard.pool.forget(key.server);
                    }
                    tracing::warn!(server = %server.address, "server has too many connections; closed this shard's idle ones and retrying");
                    last = Some(BackendError::Refused { addr: server.addr, err });
                }
                Err(e) => {
                    Slot::add(&shard.slot().backend_connect_errors, 1);
                    let retry = e.retryable();
                    last = Some(e);
                    if !retry {
                        break;
                    }
                }
            }
        }
        shard.pool.forget(key.server);
        let e = last.unwrap_or(BackendError::Connect { addr: server.addr, source: std::io::ErrorKind::Other.into() });
        if e.retryable() {
            let until = Instant::now() + Duration::from_secs(server.reconnect_interval_s);
            shard.pool.mark_down(key.server, until);
            tracing::warn!(server = %server.address, "{e}; not connecting again for {} s (reconnect_interval_s)", server.reconnect_interval_s);
        }
        Err(AcquireError::Connect(e))
    }

    /// Replays schema and variables onto the borrowed connection, pipelined, in one round
    /// trip; the replies never reach the client. A connection whose replay failed holds
    /// state nobody knows: it is closed, never pooled.
    async fn sync_state(&mut self) -> Result<(), AcquireError> {
        let r = self.replay_state().await;
        if r.is_err() {
            self.drop_backend();
        }
        r
    }

    async fn replay_state(&mut self) -> Result<(), AcquireError> {
        let Some(b) = self.held.conn.as_mut() else { return Ok(()) };
        let mine = &self.recorded;
        let mut req = Vec::new();
        let mut expects = Vec::new();
        let want_schema = mine.schema.is_some() && b.state.schema != mine.schema;
        if let (true, Some(schema)) = (want_schema, &mine.schema) {
            write_command(&mut req, command::INIT_DB, schema.as_bytes());
            expects.push(Expect::Single);
        }
        let mut set_sql = mine.vars.replay_sql(&b.state.vars, b.charset_name, b.server_version.contains("MariaDB"));
        let track = b.track_all_wanted && !b.tracks_all && b.caps & caps::SESSION_TRACK != 0;
        if track {
            // COM_RESET_CONNECTION put session tracking back to the server's defaults.
            set_sql = Some(match set_sql {
                Some(sql) => format!("{sql}, {TRACK_ALL}"),
                None => format!("SET {TRACK_ALL}"),
            });
        }
        if let Some(sql) = &set_sql {
            write_command(&mut req, command::QUERY, sql.as_bytes());
            expects.push(Expect::ResultSets);
        }
        if expects.is_empty() {
            return Ok(());
        }
        match b.exchange(&req, &expects, &mut self.held.buf).await {
            Ok(replies) => {
                let mut replies = replies.into_iter();
                if want_schema {
                    if let Some(err) = replies.next().unwrap_or_default().err {
                        return Err(AcquireError::Replay(err));
                    }
                    b.state.schema = mine.schema.clone();
                }
                if set_sql.is_some() {
                    if let Some(err) = replies.next().unwrap_or_default().err {
                        return Err(AcquireError::Replay(err));
                    }
                    b.state.vars = mine.vars.clone();
                    b.tracks_all |= track;
                }
                Ok(())
            }
            Err(e) => Err(AcquireError::Connect(e)),
        }
    }

    /// Gives the connection back if nothing pins it.
    pub(super) fn release_if_unpinned(&mut self) {
        if self.recorded.pinned() || !self.held.clean {
            return;
        }
        let Some(mut b) = self.held.conn.take() else { return };
        self.presence.backend.set(None);
        b.uses += 1;
        b.idle_since = Instant::now();
        if b.uses >= self.config.proxy.backend_max_uses {
            // Recycled: dropping the stream closes it.
            self.shard.pool.forget(b.key.server);
            self.shard.publish_pool();
            return;
        }
        self.shard.pool.put(b);
        if self.held.buf.is_empty() {
            self.shard.give_buffer(std::mem::take(&mut self.held.buf));
        }
    }

    /// Closes the borrowed connection (its state is unknown) and frees its pool slot.
    pub(super) fn drop_backend(&mut self) {
        self.presence.backend.set(None);
        if let Some(b) = self.held.conn.take() {
            self.shard.pool.forget(b.key.server);
            self.shard.publish_pool();
        }
        self.held.clean = true;
    }

    /// At the end of the session (or of its user, at COM_CHANGE_USER): a connection with a
    /// complete last response is reset (if the session left state on it) and returned; any
    /// other is closed.
    pub(super) async fn end_backend(&mut self) {
        let Some(mut b) = self.held.conn.take() else { return };
        self.presence.backend.set(None);
        if !self.held.clean || self.recorded.pins & pin::NO_MULTIPLEX != 0 {
            // A half-read reply, or a connection that was one session's alone (as a
            // direct connection is, it ends with the session).
            self.held.conn = Some(b);
            self.drop_backend();
            return;
        }
        if self.recorded.pinned() {
            let reset = [1, 0, 0, 0, command::RESET_CONNECTION];
            match b.exchange(&reset, &[Expect::Single], &mut self.held.buf).await {
                Ok(r) if r[0].err.is_none() => b.after_reset(),
                _ => {
                    self.held.conn = Some(b);
                    self.drop_backend();
                    return;
                }
            }
        }
        self.recorded.pins &= pin::SESSION_OWN;
        b.idle_since = Instant::now();
        b.uses += 1;
        self.shard.pool.put(b);
    }
}
