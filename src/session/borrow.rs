//! Borrowing a backend connection from the shard's pool, bringing it in line with the
//! session's state, and giving it back.

use std::time::{Duration, Instant};

use super::Session;
use crate::backend::Key;
use crate::backend::{self, Backend, BackendError, Login};
use crate::net::{Connector, Transport};
use crate::pool::Take;
use crate::protocol::err::ErrPacket;
use crate::protocol::packet::write_packet;
use crate::protocol::scanner::Expect;
use crate::protocol::{caps, code, command};
use crate::router::classify::{Class, Hint};

/// Opens one connection for `key` in a slot [`crate::pool::Pool::reserve_warm`] reserved,
/// logged in to the db user's default schema, and puts it in the pool.
pub async fn prewarm<N: Connector>(ctx: &super::Context<N>, key: Key) {
    let config = ctx.config();
    let config = &*config;
    let (Some(server), Some(db_user)) = (config.server(key.server), config.db_users.get(key.db_user)) else {
        ctx.pool.forget(key.server);
        return;
    };
    let login = Login {
        user: &db_user.name,
        password: &db_user.password,
        database: db_user.default_db.as_deref(),
        charset: key.charset,
        client_caps: key.caps,
        reply_timeout: reply_timeout(config),
    };
    let mut buf = crate::net::Buffer::new();
    let timeout = Duration::from_millis(server.connect_timeout_ms);
    match backend::connect(&ctx.connector, server.addr, timeout, &login, key, &mut buf).await {
        Ok(b) => ctx.pool.put(b),
        Err(e) => {
            tracing::debug!(server = %server.address, "pre-warming a connection failed: {e}");
            ctx.pool.forget(key.server);
        }
    }
    ctx.publish_pool();
}

/// Replies corelay reads itself (pings, state replay, re-prepares, resets) wait no longer
/// than a statement may (`query_timeout_ms`).
fn reply_timeout(config: &crate::config::Config) -> Option<Duration> {
    match config.proxy.query_timeout_ms {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    }
}

/// Connection attempts before a server is skipped for its `reconnect_interval_s`.
const CONNECT_ATTEMPTS: usize = 3;

/// Why a session could not get a usable connection. The client is told with
/// [`Session::report_acquire_error`]; the session itself carries on.
#[derive(Debug)]
pub(super) enum AcquireError {
    /// Connecting or logging in failed.
    Connect(BackendError),
    /// Connecting failed repeatedly; the server is skipped until `until`.
    Down { server: String, seconds: u64 },
    /// Every connection stayed busy for `pool_wait_timeout_ms`.
    Timeout { server: String, waited: Duration, limit: usize },
    /// The server refused to take the session's state (schema, variables).
    Replay(ErrPacket),
    /// The server was removed from the configuration by a reload.
    Removed { server: String },
}

impl<C: Transport, N: Connector> Session<'_, C, N> {
    /// The pool key for this session's connections.
    pub(super) fn key_for(&self, user: usize, charset: u8) -> Key {
        let config = &self.config;
        Key {
            server: crate::router::target(config, user).id,
            db_user: config.users[user].db_user,
            caps: self.caps & caps::RESULT_SHAPING,
            charset,
        }
    }

    /// Makes sure the session holds a connection whose state matches the session's.
    pub(super) async fn ensure_backend(&mut self) -> Result<(), AcquireError> {
        if self.backend.is_some() {
            return Ok(());
        }
        if self.bbuf.capacity() == 0 {
            self.bbuf = self.ctx.take_buffer();
        }
        let b = self.acquire().await?;
        self.side = Some(b.key.server);
        self.presence.backend.set(Some((b.key.server, b.thread_id)));
        self.backend = Some(b);
        self.backend_clean = true;
        self.insert_id_set_here = false;
        self.sync_state().await
    }

    /// Chooses the server for a statement of `class` (see [`crate::router::pick`]); a
    /// session holding a connection stays on it.
    pub(super) fn route_statement(&mut self, class: Class, hint: Option<Hint>) {
        self.cmd_class = match class {
            Class::Read => crate::status::Class::Read,
            Class::Write => crate::status::Class::Write,
        };
        if self.backend.is_some() {
            return;
        }
        let (Some(key), Some(user)) = (self.key, self.user) else { return };
        let config = &self.config;
        let cluster = &config.clusters[config.db_users[config.users[user].db_user].cluster];
        let window = Duration::from_millis(cluster.write_time_interval_ms);
        let recent_write = self.last_write.is_some_and(|t| t.elapsed() < window);
        let pool = &self.ctx.pool;
        let status = &self.ctx.status;
        let pick = crate::router::pick(cluster, class, hint, recent_write, |id| pool.picks(id), |id| status.usable(id));
        pool.picked(pick.server);
        self.route = (pick.server != key.server).then_some(pick.server);
        self.fallback_read = pick.fallback;
    }

    /// Commands that are not statements stay on the session's current side.
    pub(super) fn route_to_side(&mut self) {
        self.fallback_read = false;
        if self.backend.is_none() {
            self.route = self.side.filter(|s| Some(*s) != self.key.map(|k| k.server));
        }
    }

    /// [`Session::ensure_backend`] on the routed server, falling back to the primary when a
    /// replica cannot be had.
    pub(super) async fn ensure_routed(&mut self) -> Result<(), AcquireError> {
        match self.ensure_backend().await {
            Err(e) if self.route.is_some() => {
                tracing::debug!("replica unavailable ({e:?}); using the primary");
                self.route = None;
                self.fallback_read = true;
                self.ensure_backend().await
            }
            r => r,
        }
    }

    async fn acquire(&mut self) -> Result<Backend<N::Conn>, AcquireError> {
        let Some(mut key) = self.key else {
            return Err(AcquireError::Replay(ErrPacket::new(code::ACCESS_DENIED, "not logged in")));
        };
        if let Some(server) = self.route {
            key.server = server;
        }
        let ctx = self.ctx;
        let p = &self.config.proxy;
        let wait = Duration::from_millis(p.pool_wait_timeout_ms);
        let deadline = Instant::now() + wait;
        let ping_after = Duration::from_millis(p.ping_after_idle_ms);
        loop {
            let reserved = if self.fallback_read && self.route.is_none() {
                let primary = self.config.server(key.server);
                primary.map_or(0, |s| (s.reserved_primary_connections as usize).div_ceil(ctx.status.shards().max(1)))
            } else {
                0
            };
            match ctx.pool.take(&key, reserved) {
                Take::Idle(mut b) => {
                    if b.stream.peer_closed() {
                        // Killed or timed out on the server while idle: discard silently.
                        ctx.pool.forget(key.server);
                        continue;
                    }
                    if b.idle_since.elapsed() > ping_after {
                        let ping = [1, 0, 0, 0, command::PING];
                        match b.exchange(&ping, &[Expect::Single], &mut self.bbuf).await {
                            Ok(r) if r[0].err.is_none() => {}
                            _ => {
                                ctx.pool.forget(key.server);
                                self.bbuf.consume(self.bbuf.len());
                                continue;
                            }
                        }
                    }
                    return Ok(b);
                }
                Take::Down(until) => {
                    let server = self.config.server(key.server).map(|s| s.address.clone()).unwrap_or_default();
                    let seconds = until.saturating_duration_since(Instant::now()).as_secs().max(1);
                    return Err(AcquireError::Down { server, seconds });
                }
                Take::Removed => {
                    // A reload moved the session's primary: follow the user to the new one.
                    if let (None, Some(user)) = (self.route, self.user) {
                        let primary = crate::router::target(&ctx.config(), user).id;
                        if primary != key.server {
                            key.server = primary;
                            continue;
                        }
                    }
                    let server = self.config.server(key.server).map(|s| s.address.clone()).unwrap_or_default();
                    return Err(AcquireError::Removed { server });
                }
                Take::Open => return self.open(key).await,
                Take::Replace(mut other) => {
                    other.quit().await;
                    return self.open(key).await;
                }
                Take::Full => {
                    // Pipelined connections to the server come back to the pool once their
                    // replies are in.
                    ctx.pipes.give_back(key.server);
                    let left = deadline.saturating_duration_since(Instant::now());
                    let slot = ctx.slot();
                    crate::status::Slot::add(&slot.pool_waits, 1);
                    let waiting = Instant::now();
                    let woken = !left.is_zero()
                        && futures_lite::future::or(
                            async {
                                ctx.pool.wait(key.server).await;
                                true
                            },
                            async {
                                ctx.connector.sleep(left).await;
                                false
                            },
                        )
                        .await;
                    crate::status::Slot::add(&slot.pool_wait_us, waiting.elapsed().as_micros() as u64);
                    if !woken {
                        crate::status::Slot::add(&slot.pool_timeouts, 1);
                        let server = self.config.server(key.server).map(|s| s.address.clone()).unwrap_or_default();
                        let (limit, _, _) = ctx.pool.stats(key.server);
                        return Err(AcquireError::Timeout { server, waited: wait, limit });
                    }
                }
            }
        }
    }

    /// Opens a connection in a slot the pool reserved.
    async fn open(&mut self, key: Key) -> Result<Backend<N::Conn>, AcquireError> {
        let ctx = self.ctx;
        let config = self.config.clone();
        let db_user = &config.db_users[key.db_user];
        let server = match config.server(key.server) {
            Some(s) => s,
            None => {
                return Err(AcquireError::Connect(BackendError::Plugin {
                    addr: ([0, 0, 0, 0], 0).into(),
                    plugin: String::new(),
                }))
            }
        };
        let login = Login {
            user: &db_user.name,
            password: &db_user.password,
            database: self.schema.as_deref(),
            charset: key.charset,
            client_caps: self.caps,
            reply_timeout: reply_timeout(&config),
        };
        let timeout = Duration::from_millis(server.connect_timeout_ms);
        let mut last = None;
        let mut reclaimed = false;
        for _ in 0..CONNECT_ATTEMPTS {
            self.bbuf.consume(self.bbuf.len());
            match backend::connect(&ctx.connector, server.addr, timeout, &login, key, &mut self.bbuf).await {
                Ok(b) => {
                    ctx.publish_pool();
                    return Ok(b);
                }
                Err(BackendError::Refused { err, .. }) if err.code == code::CON_COUNT_ERROR.number && !reclaimed => {
                    // The server is full: give back what this shard holds idle there, and
                    // try once more.
                    reclaimed = true;
                    for mut idle in ctx.pool.take_idle_of(key.server) {
                        idle.quit().await;
                        ctx.pool.forget(key.server);
                    }
                    tracing::warn!(server = %server.address, "server has too many connections; closed this shard's idle ones and retrying");
                    last = Some(BackendError::Refused { addr: server.addr, err });
                }
                Err(e) => {
                    crate::status::Slot::add(&ctx.slot().backend_connect_errors, 1);
                    let retry = e.retryable();
                    last = Some(e);
                    if !retry {
                        break;
                    }
                }
            }
        }
        ctx.pool.forget(key.server);
        let e = last.unwrap_or(BackendError::Connect { addr: server.addr, source: std::io::ErrorKind::Other.into() });
        if e.retryable() {
            let until = Instant::now() + Duration::from_secs(server.reconnect_interval_s);
            ctx.pool.mark_down(key.server, until);
            tracing::warn!(server = %server.address, "{e}; not connecting again for {} s (reconnect_interval_s)", server.reconnect_interval_s);
        }
        Err(AcquireError::Connect(e))
    }

    /// Replays schema and variables onto the borrowed connection, pipelined, in one round
    /// trip; the replies never reach the client.
    async fn sync_state(&mut self) -> Result<(), AcquireError> {
        let Some(b) = self.backend.as_mut() else { return Ok(()) };
        let mut req = Vec::new();
        let mut expects = Vec::new();
        let want_schema = self.schema.is_some() && b.state.schema != self.schema;
        if let (true, Some(schema)) = (want_schema, &self.schema) {
            let mut p = vec![command::INIT_DB];
            p.extend_from_slice(schema.as_bytes());
            write_packet(&mut req, 0, &p);
            expects.push(Expect::Single);
        }
        let set_sql = self.vars.replay_sql(&b.state.vars, b.charset_name, b.server_version.contains("MariaDB"));
        if let Some(sql) = &set_sql {
            let mut p = vec![command::QUERY];
            p.extend_from_slice(sql.as_bytes());
            write_packet(&mut req, 0, &p);
            expects.push(Expect::ResultSets);
        }
        if expects.is_empty() {
            return Ok(());
        }
        match b.exchange(&req, &expects, &mut self.bbuf).await {
            Ok(replies) => {
                let mut replies = replies.into_iter();
                if want_schema {
                    let r = replies.next().unwrap_or_default();
                    if let Some(err) = r.err {
                        return Err(AcquireError::Replay(err));
                    }
                    b.state.schema = self.schema.clone();
                }
                if set_sql.is_some() {
                    let r = replies.next().unwrap_or_default();
                    if let Some(err) = r.err {
                        return Err(AcquireError::Replay(err));
                    }
                    b.state.vars = self.vars.clone();
                }
                Ok(())
            }
            Err(e) => {
                self.drop_backend();
                Err(AcquireError::Connect(e))
            }
        }
    }

    /// Tells the client why no connection could be had (sequence id `seq`).
    pub(super) async fn report_acquire_error(&mut self, seq: u8, e: AcquireError) {
        match e {
            AcquireError::Connect(BackendError::Refused { err, .. }) | AcquireError::Replay(err) => {
                self.send_server_err(seq, &err).await;
            }
            AcquireError::Connect(other) => {
                let msg = format!("corelay {other}; check that the server is up and reachable");
                self.send_err(seq, code::BACKEND_UNREACHABLE, &msg).await;
            }
            AcquireError::Down { server, seconds } => {
                let msg = format!(
                    "corelay can't connect to db server {server}: it failed {CONNECT_ATTEMPTS} connection attempts and is skipped for another {seconds} s (reconnect_interval_s)"
                );
                self.send_err(seq, code::BACKEND_UNREACHABLE, &msg).await;
            }
            AcquireError::Removed { server } => {
                let msg = format!(
                    "corelay: db server {server} was removed from the configuration; the statement was not sent, run it again"
                );
                self.send_err(seq, code::BACKEND_UNREACHABLE, &msg).await;
            }
            AcquireError::Timeout { server, waited, limit } => {
                let msg = format!(
                    "corelay: no connection to {server} became free within {} ms (this shard's share of max_connections is {limit}); \
raise the server's max_connections or proxy.pool_wait_timeout_ms",
                    waited.as_millis()
                );
                crate::status::Slot::add(&self.ctx.slot().clients_rejected, 1);
                self.send_err(seq, code::CON_COUNT_ERROR, &msg).await;
            }
        }
    }

    /// Gives the connection back if nothing pins it.
    pub(super) fn release_if_unpinned(&mut self) {
        if self.pins != 0 || self.locks > 0 || !self.backend_clean {
            return;
        }
        let Some(mut b) = self.backend.take() else { return };
        self.presence.backend.set(None);
        b.uses += 1;
        b.idle_since = Instant::now();
        if b.uses >= self.config.proxy.backend_max_uses {
            // Recycled: dropping the stream closes it.
            self.ctx.pool.forget(b.key.server);
            self.ctx.publish_pool();
            return;
        }
        self.ctx.pool.put(b);
        if self.bbuf.is_empty() {
            self.ctx.give_buffer(std::mem::take(&mut self.bbuf));
        }
    }

    /// Closes the borrowed connection (its state is unknown) and frees its pool slot.
    pub(super) fn drop_backend(&mut self) {
        self.presence.backend.set(None);
        if let Some(b) = self.backend.take() {
            self.ctx.pool.forget(b.key.server);
            self.ctx.publish_pool();
        }
        self.backend_clean = true;
    }

    /// At the end of the session: a connection with a complete last response is reset (if
    /// the session left state on it) and returned; any other is closed.
    pub(super) async fn end_backend(&mut self) {
        let Some(mut b) = self.backend.take() else { return };
        self.presence.backend.set(None);
        if !self.backend_clean {
            self.backend = Some(b);
            self.drop_backend();
            return;
        }
        if self.pins != 0 || self.locks > 0 {
            let reset = [1, 0, 0, 0, command::RESET_CONNECTION];
            match b.exchange(&reset, &[Expect::Single], &mut self.bbuf).await {
                Ok(r) if r[0].err.is_none() => {
                    b.after_reset();
                }
                _ => {
                    self.backend = Some(b);
                    self.drop_backend();
                    return;
                }
            }
        }
        self.pins = 0;
        self.locks = 0;
        b.idle_since = Instant::now();
        b.uses += 1;
        self.ctx.pool.put(b);
    }
}
