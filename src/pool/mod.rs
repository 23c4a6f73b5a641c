//! Per-shard backend connection pools.
//!
//! Each shard owns one [`Pool`]; nothing in it is shared with other shards, so it needs no
//! lock: a `RefCell` borrowed only for the instant of a take or a put, never across an
//! await. Per server the pool counts the connections this shard has open against its share
//! of the server's `max_connections`, keeps idle connections (most recently used first, so
//! the hot ones stay warm), and queues sessions waiting for one.
//!
//! Connections are keyed: a session may only get a connection opened for the same db user,
//! result-shaping capability flags and character set ([`Key`]). Everything else about a
//! connection's state (schema, variables, prepared statements) is brought in line by the
//! session when it borrows it.

pub mod pipe;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::backend::{Backend, Key};
use crate::config::Config;
use crate::util::waker::WakerSlot;

/// The outcome of asking for a connection.
pub enum Take<T> {
    /// An idle connection with the same key.
    Idle(Backend<T>),
    /// A slot was reserved: open a new connection (and call [`Pool::forget`] if that fails).
    Open,
    /// The server is at its limit but this idle connection has another key: close it and
    /// open a new one in its slot.
    Replace(Backend<T>),
    /// At the limit with nothing idle: wait.
    Full,
    /// Connecting failed repeatedly; the server is skipped until then.
    Down(Instant),
    /// The server was removed from the configuration: nothing new goes to it.
    Removed,
}

struct ServerPool<T> {
    /// Removed by a reload: no borrows; returned connections are closed.
    removed: bool,
    limit: usize,
    /// This shard's share of the server's `min_connections`, kept open once a session has
    /// shown which key to open them with.
    min: usize,
    /// The key of the last connection asked for, used to pre-warm.
    warm_key: Option<Key>,
    /// Statements routed here by this shard (for weighted balancing).
    picks: u64,
    open: usize,
    /// After repeated connect failures: no new connections before this.
    down_until: Option<Instant>,
    idle: Vec<Backend<T>>,
    waiters: VecDeque<Rc<WaitSlot>>,
}

/// One shard's pools, one per configured server (by server id).
pub struct Pool<T> {
    servers: RefCell<Vec<ServerPool<T>>>,
    /// Connections to close politely (COM_QUIT) and forget: idle ones of removed servers
    /// or beyond a lowered limit, and ones given back to a removed server.
    retired: RefCell<Vec<Backend<T>>>,
}

impl<T> Pool<T> {
    /// Pools for every server of `config`, each limited to this shard's share of the
    /// server's `max_connections` (rounded up, at least one).
    pub fn new(config: &Config, shards: usize) -> Pool<T> {
        let pool = Pool { servers: RefCell::new(Vec::new()), retired: RefCell::new(Vec::new()) };
        pool.reconfigure(config, shards);
        pool
    }

    /// Follows a new configuration: pools for new servers, new limits for the others;
    /// removed servers get no more borrows and their idle connections are retired (see
    /// [`Pool::take_retired`]); connections in use finish first. Waiting sessions are woken
    /// to look again.
    pub fn reconfigure(&self, config: &Config, shards: usize) {
        let mut servers = self.servers.borrow_mut();
        let mut retired = self.retired.borrow_mut();
        let shards = shards.max(1);
        for id in 0..config.server_ids() {
            let Some(s) = config.server(id) else { continue };
            if servers.len() <= id {
                servers.push(ServerPool {
                    removed: false,
                    limit: 0,
                    min: 0,
                    warm_key: None,
                    picks: 0,
                    open: 0,
                    down_until: None,
                    idle: Vec::new(),
                    waiters: VecDeque::new(),
                });
            }
            let sp = &mut servers[id];
            sp.removed = s.removed;
            sp.limit = (s.max_connections as usize).div_ceil(shards).max(1);
            sp.min = if s.removed { 0 } else { (s.min_connections as usize).div_ceil(shards) };
            if s.removed {
                sp.warm_key = None;
                retired.append(&mut sp.idle);
            } else {
                // A lowered limit: the least recently used idle connections go first.
                let busy = sp.open - sp.idle.len();
                let excess = (busy + sp.idle.len()).saturating_sub(sp.limit).min(sp.idle.len());
                retired.extend(sp.idle.drain(..excess));
            }
            while !sp.waiters.is_empty() {
                wake_one(&mut sp.waiters);
            }
        }
    }

    /// Takes out the retired connections, to close them and [`Pool::forget`] each.
    pub fn take_retired(&self) -> Vec<Backend<T>> {
        std::mem::take(&mut *self.retired.borrow_mut())
    }

    /// Asks for a connection for `key`.
    ///
    /// `reserved`: connections of this shard's share that this borrower may not use (reads
    /// falling back to the primary leave its last `reserved_primary_connections` to writes).
    ///
    /// `fresh`: a connection nobody used before (a session of a user with `multiplex =
    /// false` sees its own connection's counters and the server's current globals): a
    /// new one in a free slot, or in the slot of the least recently used idle one.
    pub fn take(&self, key: &Key, reserved: usize, fresh: bool) -> Take<T> {
        let mut servers = self.servers.borrow_mut();
        let Some(sp) = servers.get_mut(key.server) else { return Take::Removed };
        if sp.removed {
            return Take::Removed;
        }
        sp.warm_key = Some(*key);
        let busy = sp.open - sp.idle.len();
        if reserved > 0 && busy + reserved >= sp.limit {
            return Take::Full;
        }
        if let Some(i) = sp.idle.iter().rposition(|b| b.key == *key).filter(|_| !fresh) {
            return Take::Idle(sp.idle.remove(i));
        }
        match sp.down_until {
            Some(t) if Instant::now() < t => return Take::Down(t),
            Some(_) => sp.down_until = None,
            None => {}
        }
        if sp.open < sp.limit {
            sp.open += 1;
            return Take::Open;
        }
        if !sp.idle.is_empty() {
            // The least recently used connection of another key gives up its slot.
            return Take::Replace(sp.idle.remove(0));
        }
        Take::Full
    }

    /// Returns a healthy connection to the idle list and wakes a waiting session (or
    /// retires it, when its server was removed or is over its limit).
    pub fn put(&self, b: Backend<T>) {
        let mut servers = self.servers.borrow_mut();
        match servers.get_mut(b.key.server) {
            Some(sp) if !sp.removed && sp.open <= sp.limit => {
                sp.idle.push(b);
                wake_one(&mut sp.waiters);
            }
            _ => self.retired.borrow_mut().push(b),
        }
    }

    /// A connection of `server` was closed (or never opened): frees its slot.
    pub fn forget(&self, server: usize) {
        let mut servers = self.servers.borrow_mut();
        if let Some(sp) = servers.get_mut(server) {
            sp.open = sp.open.saturating_sub(1);
            wake_one(&mut sp.waiters);
        }
    }

    /// Records that connecting to `server` failed `connect attempts` times in a row: no new
    /// connection is tried before `until`.
    pub fn mark_down(&self, server: usize, until: Instant) {
        if let Some(sp) = self.servers.borrow_mut().get_mut(server) {
            sp.down_until = Some(until);
        }
    }

    /// Waits until a connection of `server` is returned or freed.
    pub fn wait(&self, server: usize) -> Wait<'_, T> {
        Wait { pool: self, server, slot: None }
    }

    /// Takes out idle connections unused for longer than `max_idle`, for closing.
    pub fn take_expired(&self, now: Instant, max_idle: Duration) -> Vec<Backend<T>> {
        let mut out = Vec::new();
        for sp in self.servers.borrow_mut().iter_mut() {
            let mut i = 0;
            let mut open = sp.open;
            while i < sp.idle.len() {
                // Never below the pre-warmed minimum.
                if open > sp.min && now.saturating_duration_since(sp.idle[i].idle_since) > max_idle {
                    open -= 1;
                    out.push(sp.idle.remove(i));
                } else {
                    i += 1;
                }
            }
        }
        out
    }

    /// For every server below its minimum whose key is known and that is not down: reserves
    /// a slot and returns the key to open a connection with (at most one per server per
    /// call, so warming is gradual). The caller opens it and calls [`Pool::put`], or
    /// [`Pool::forget`] if that fails.
    pub fn reserve_warm(&self) -> Vec<Key> {
        let now = Instant::now();
        let mut out = Vec::new();
        for sp in self.servers.borrow_mut().iter_mut() {
            let down = sp.down_until.is_some_and(|t| now < t);
            if let (Some(key), false) = (sp.warm_key, down) {
                if sp.open < sp.min && sp.open < sp.limit {
                    sp.open += 1;
                    out.push(key);
                }
            }
        }
        out
    }

    /// Takes out the idle connections of `server` (to close them when it is full).
    pub fn take_idle_of(&self, server: usize) -> Vec<Backend<T>> {
        self.servers.borrow_mut().get_mut(server).map(|sp| std::mem::take(&mut sp.idle)).unwrap_or_default()
    }

    /// Takes out every idle connection (at shutdown).
    pub fn take_all_idle(&self) -> Vec<Backend<T>> {
        self.servers.borrow_mut().iter_mut().flat_map(|sp| std::mem::take(&mut sp.idle)).collect()
    }

    /// Whether sessions wait for a connection to `server`.
    pub fn has_waiters(&self, server: usize) -> bool {
        self.servers.borrow().get(server).is_some_and(|s| !s.waiters.is_empty())
    }

    /// Statements routed to `server` by this shard so far.
    pub fn picks(&self, server: usize) -> u64 {
        self.servers.borrow().get(server).map_or(0, |s| s.picks)
    }

    /// Counts one statement routed to `server`.
    pub fn picked(&self, server: usize) {
        if let Some(s) = self.servers.borrow_mut().get_mut(server) {
            s.picks += 1;
        }
    }

    /// (open, idle, waiting) for `server`.
    pub fn stats(&self, server: usize) -> (usize, usize, usize) {
        self.servers.borrow().get(server).map_or((0, 0, 0), |s| (s.open, s.idle.len(), s.waiters.len()))
    }

    /// Idle connections of `server` per db user, as (db user, count).
    pub fn idle_by_db_user(&self, server: usize) -> Vec<(usize, usize)> {
        let servers = self.servers.borrow();
        let mut out: Vec<(usize, usize)> = Vec::new();
        for b in servers.get(server).map_or(&[][..], |s| &s.idle[..]) {
            match out.iter_mut().find(|(d, _)| *d == b.key.db_user) {
                Some(e) => e.1 += 1,
                None => out.push((b.key.db_user, 1)),
            }
        }
        out
    }

    /// Total connections open on this shard.
    pub fn open_total(&self) -> usize {
        self.servers.borrow().iter().map(|s| s.open).sum()
    }
}

/// A waiting session's place in the queue.
#[derive(Default)]
struct WaitSlot {
    waker: WakerSlot,
    notified: Cell<bool>,
    done: Cell<bool>,
}

fn wake_one(waiters: &mut VecDeque<Rc<WaitSlot>>) {
    // Skip waiters that gave up (their future was dropped).
    while let Some(w) = waiters.pop_front() {
        if Rc::strong_count(&w) > 1 {
            w.notified.set(true);
            w.waker.wake();
            return;
        }
    }
}

/// Future returned by [`Pool::wait`].
pub struct Wait<'a, T> {
    pool: &'a Pool<T>,
    server: usize,
    slot: Option<Rc<WaitSlot>>,
}

impl<T> Future for Wait<'_, T> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(slot) = &self.slot {
            if slot.notified.get() {
                slot.done.set(true);
                return Poll::Ready(());
            }
            slot.waker.register(cx);
            return Poll::Pending;
        }
        let slot = Rc::new(WaitSlot::default());
        slot.waker.register(cx);
        if let Some(sp) = self.pool.servers.borrow_mut().get_mut(self.server) {
            sp.waiters.push_back(slot.clone());
        }
        self.slot = Some(slot);
        Poll::Pending
    }
}

impl<T> Drop for Wait<'_, T> {
    fn drop(&mut self) {
        // Woken but gave up before using the wake-up: hand it to the next waiter.
        if let Some(slot) = &self.slot {
            if slot.notified.get() && !slot.done.get() {
                if let Ok(mut servers) = self.pool.servers.try_borrow_mut() {
                    if let Some(sp) = servers.get_mut(self.server) {
                        wake_one(&mut sp.waiters);
                    }
                }
            }
        }
    }
}
