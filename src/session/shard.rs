//! What a shard gives its sessions ([`ShardState`]) and what its sessions show each other
//! ([`Presence`]).
//!
//! A shard owns one `ShardState`; every session of the shard borrows it. It holds the
//! shard's configuration, its pools and pipes, its status slot, and the registry of its
//! live sessions (for KILL, the drain, the statement-timeout sweep and the status tables).
//! Single-threaded: cells, never locks, and no borrow is held across an await.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::net::{Buffer, Connector};
use crate::pool::pipe::Pipes;
use crate::pool::Pool;
use crate::router::rules::Rules;
use crate::status::mailbox::{self, KillRequest, Verdict};
use crate::status::{Slot, StatusRegion};
use crate::util::waker::WakerSlot;

/// A shard's state, as its sessions see it.
pub struct ShardState<N: Connector> {
    /// The shard's current configuration; sessions take a copy of the pointer per command
    /// when its version changes ([`ShardState::apply`]).
    config: RefCell<Arc<Config>>,
    config_version: Cell<u64>,
    pub status: Arc<StatusRegion>,
    /// The shard's index (its status slot).
    pub index: usize,
    pub connector: N,
    /// Shared with the drivers of pipelined connections, which give connections back.
    pub pool: Rc<Pool<N::Conn>>,
    /// Connections carrying several sessions' stateless reads at once.
    pub pipes: Pipes,
    log: Cell<LogPolicy>,
    /// Backend read buffers of sessions that hold no connection, for the next borrower:
    /// an idle session keeps none, and a busy one allocates none.
    spare_buffers: RefCell<Vec<Buffer>>,
    /// The shard's live sessions by connection id.
    sessions: RefCell<HashMap<u32, Rc<Presence>>>,
    /// The shard stopped accepting: idle sessions are told and closed.
    draining: Cell<bool>,
    /// caching_sha2_password fast-path hashes learnt from full authentications, by the
    /// stored form they were checked against.
    sha2_cache: RefCell<HashMap<String, [u8; 32]>>,
    /// Where each key of the shard's digest table is (the shard alone writes it).
    pub digests: RefCell<crate::status::digests::Index>,
    /// The configuration's `[[rule]]`s, compiled.
    rules: RefCell<Rc<Rules>>,
}

/// Compiles `config`'s rules for shard `index`. Their hit counters start again when the
/// rules are not those the slot counted (a reload changed them).
fn adopt_rules(config: &Config, status: &Arc<StatusRegion>, index: usize) -> Rules {
    let slot = status.slot(index);
    let id = crate::config::rules::id(&config.rules);
    if slot.rules_id.load(Relaxed) != id {
        for hits in &slot.rule_hits {
            hits.store(0, Relaxed);
        }
        slot.rules_id.store(id, Relaxed);
    }
    Rules::new(config, Some((status.clone(), index)))
}

/// What the query log needs, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct LogPolicy {
    /// `log_dir` is set.
    pub on: bool,
    pub min_us: u64,
    pub sql_max_chars: usize,
    pub connections: bool,
    /// Commands are timed (for the histograms, the digests or the log).
    pub timed: bool,
    pub histograms: bool,
    /// Statements are counted by fingerprint (`digests`), their text kept to this many
    /// characters.
    pub digests: bool,
    pub digest_text_max_chars: usize,
}

impl LogPolicy {
    fn new(config: &Config) -> LogPolicy {
        let p = &config.proxy;
        LogPolicy {
            on: !p.log_dir.trim().is_empty(),
            min_us: p.log_query_min_time_us,
            sql_max_chars: p.log_sql_max_chars,
            connections: p.log_connections,
            timed: p.latency_histograms || p.digests || !p.log_dir.trim().is_empty(),
            histograms: p.latency_histograms,
            digests: p.digests,
            digest_text_max_chars: p.digest_text_max_chars,
        }
    }
}

impl<N: Connector> ShardState<N> {
    pub fn new(config: Arc<Config>, status: Arc<StatusRegion>, index: usize, connector: N) -> Self {
        let pool = Rc::new(Pool::new(&config, status.shards()));
        let rules = RefCell::new(Rc::new(adopt_rules(&config, &status, index)));
        ShardState {
            rules,
            log: Cell::new(LogPolicy::new(&config)),
            config_version: Cell::new(config.version),
            config: RefCell::new(config),
            status,
            index,
            connector,
            pool,
            pipes: Pipes::default(),
            spare_buffers: RefCell::default(),
            sessions: RefCell::default(),
            draining: Cell::new(false),
            sha2_cache: RefCell::default(),
            digests: RefCell::default(),
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
        *self.rules.borrow_mut() = Rc::new(adopt_rules(&next, &self.status, self.index));
        self.config_version.set(next.version);
        *self.config.borrow_mut() = next;
    }

    /// The rules of the shard's configuration.
    pub fn rules(&self) -> Rc<Rules> {
        self.rules.borrow().clone()
    }

    /// The fast-path hash learnt for the stored form `key`.
    pub fn sha2_cached(&self, key: Option<&str>) -> Option<[u8; 32]> {
        key.and_then(|k| self.sha2_cache.borrow().get(k).copied())
    }

    /// Keeps the fast-path hash a full authentication against `key` proved.
    pub fn cache_sha2(&self, key: Option<&str>, stage2: [u8; 32]) {
        const MOST: usize = 100_000;
        let Some(k) = key else { return };
        let mut cache = self.sha2_cache.borrow_mut();
        if cache.len() >= MOST {
            cache.clear();
        }
        cache.insert(k.to_string(), stage2);
    }

    /// This shard's status slot.
    pub fn slot(&self) -> &Slot {
        self.status.slot(self.index)
    }

    /// Publishes the pool's size in the status slot.
    pub fn publish_pool(&self) {
        self.slot().backend_connections.store(self.pool.open_total() as u64, Relaxed);
    }

    /// Backend read buffers kept for reuse.
    pub fn spare_buffers(&self) -> usize {
        self.spare_buffers.borrow().len()
    }

    pub(super) fn take_buffer(&self) -> Buffer {
        self.spare_buffers.borrow_mut().pop().unwrap_or_default()
    }

    pub(super) fn give_buffer(&self, b: Buffer) {
        const KEEP: usize = 1024;
        const LARGEST: usize = 256 * 1024;
        let mut spare = self.spare_buffers.borrow_mut();
        if b.is_empty() && b.capacity() > 0 && b.capacity() <= LARGEST && spare.len() < KEEP {
            spare.push(b);
        }
    }

    /// Whether the shard stopped accepting.
    pub(super) fn draining(&self) -> bool {
        self.draining.get()
    }

    /// Starts the drain: idle sessions with nothing open are told and closed now, the others
    /// when their transaction ends.
    pub fn start_drain(&self) {
        self.draining.set(true);
        self.slot().draining.store(1, Relaxed);
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
    pub fn sweep_timeouts(&self, limit: Duration) {
        let now = Instant::now();
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

    /// A live session of this shard by connection id.
    pub fn session(&self, id: u32) -> Option<Rc<Presence>> {
        self.sessions.borrow().get(&id).cloned()
    }

    /// A KILL for one of this shard's sessions, from any shard: only the session's own
    /// product user (or an admin) may. KILL CONNECTION marks the session to end before its
    /// next command; a statement waiting on a pipelined connection is given up here; a
    /// statement on a connection of the session's own is for the asker to kill there.
    pub fn kill_verdict(&self, req: KillRequest) -> Verdict {
        let Some(target) = self.session(req.target) else { return Verdict::NoSuchSession };
        let owner = target.user.get().and_then(|u| u32::try_from(u).ok());
        if req.user != mailbox::ADMIN && owner != Some(req.user) {
            return Verdict::NotOwner;
        }
        if !req.query_only {
            target.killed.set(true);
        }
        if target.piped.get() {
            target.abort(Abort::Killed);
            return Verdict::Done;
        }
        match target.backend.get() {
            Some((server, thread)) => Verdict::KillOn { server: server as u32, thread },
            None => Verdict::Done,
        }
    }

    /// Answers the KILLs other shards left in this shard's mailbox.
    pub fn answer_mailbox(&self) {
        self.status.mailbox(self.index).answer_all(|req| self.kill_verdict(req));
    }

    /// A connection id unique across shards (the shard index in the top byte) and across
    /// the shard's respawns (the count lives in its slot).
    pub fn next_conn_id(&self) -> u32 {
        let n = self.slot().last_conn_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed).wrapping_add(1);
        ((self.index as u32 & 0xFF) << 24) | (n & 0x00FF_FFFF).max(1)
    }

    /// Registers a new session under a new connection id, counted in the slot until the
    /// returned guard drops.
    pub(super) fn register(&self, presence: Rc<Presence>) -> Counted<'_> {
        let conn_id = self.next_conn_id();
        Slot::add(&self.slot().client_connections, 1);
        self.sessions.borrow_mut().insert(conn_id, presence.clone());
        Counted { slot: self.slot(), user: None, sessions: &self.sessions, conn_id, presence }
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
    pub ip: IpAddr,
    /// What the session is doing, for the shard's drain and statement-timeout sweeps.
    pub doing: Cell<Doing>,
    /// Set by the shard: the session must give up what it waits for.
    pub(super) abort: Cell<Option<Abort>>,
    waker: WakerSlot,
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
    Busy { since: Instant },
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
    pub(super) fn new(ip: IpAddr) -> Presence {
        Presence {
            backend: Cell::new(None),
            piped: Cell::new(false),
            killed: Cell::new(false),
            user: Cell::new(None),
            ip: crate::config::canonical_ip(ip),
            doing: Cell::new(Doing::Login),
            abort: Cell::new(None),
            waker: WakerSlot::default(),
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
    pub(super) fn aborted(&self) -> Aborted<'_> {
        Aborted(self)
    }
}

pub(super) struct Aborted<'a>(&'a Presence);

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

/// Keeps the shard's gauges and session registry balanced however the session ends.
pub(super) struct Counted<'a> {
    slot: &'a Slot,
    user: Option<usize>,
    sessions: &'a RefCell<HashMap<u32, Rc<Presence>>>,
    pub conn_id: u32,
    presence: Rc<Presence>,
}

impl Counted<'_> {
    /// The session logged in as `user` (or, with None, left it).
    pub fn set_user(&mut self, user: Option<usize>) {
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
