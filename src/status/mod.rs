//! Shared-memory status regions.
//!
//! The master creates one memfd mapping (MAP_SHARED) before it spawns any shard, so the
//! same physical pages are visible to forked shard processes and to shard threads alike
//! (an anonymous private mapping would be copied on fork). The mapping is a [`Header`]
//! followed by one cache-line-aligned [`Slot`] per shard.
//!
//! Invariants:
//! - Each slot has exactly one writer: the shard with that index. Everyone else only
//!   reads, so plain relaxed atomics suffice and nothing on the query path contends.
//! - A re-spawned shard reuses its slot: gauges (current connections) are reset, running
//!   totals are kept.

pub mod digests;
pub mod guard;
pub mod latency;
pub mod mailbox;
pub mod plot;
pub mod reload;
pub mod seal;
pub mod seqlock;
pub mod tables;
pub mod zookeeper;

use std::fs::File;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use memmap2::MmapRaw;
use thiserror::Error;

pub use latency::Buckets;
pub use tables::Tables;

/// Users whose connections are counted per shard (indexes into the config's user list).
pub const MAX_USERS: usize = 1024;
/// `[[rule]]` entries a configuration may have (each has a hit counter per shard).
pub const MAX_RULES: usize = 256;
/// Servers whose health the master publishes (indexes are server ids).
pub const MAX_SERVERS: usize = 256;
/// Servers with a latency histogram of their own per shard (ids beyond share none).
pub const MAX_LATENCY_SERVERS: usize = 32;
/// Command bytes counted one by one (COM_SLEEP .. COM_RESET_CONNECTION); others in the last.
pub const COMMAND_KINDS: usize = 33;
/// Pin reasons counted (bits of [`crate::router::statement::pin`]).
pub const PIN_KINDS: usize = 24;

const MAGIC: u64 = u64::from_le_bytes(*b"CORELAY1");
const LAYOUT_VERSION: u32 = 8;

#[derive(Debug, Error)]
pub enum StatusError {
    #[error("cannot create the status memfd: {0}")]
    Memfd(#[source] std::io::Error),
    #[error("cannot size or map the status region: {0}")]
    Map(#[source] std::io::Error),
}

/// The region's first cache lines.
#[repr(C, align(64))]
pub struct Header {
    pub magic: AtomicU64,
    pub layout_version: AtomicU32,
    pub shard_count: AtomicU32,
    /// Set by the master to ask every shard to stop accepting and drain.
    pub shutdown: AtomicU32,
    /// Set by the admin port's PAUSE: shards stop accepting new clients until RESUME.
    pub paused: AtomicU32,
    pub config_version: AtomicU64,
    /// Capacity of each keyed table of a shard ([`Tables`]).
    pub table_capacity: AtomicU32,
    /// The master's pid (admin RELOAD and SHUTDOWN signal it).
    pub master_pid: AtomicU32,
    /// The master's thread (the one that reads its signals): a signal sent to it alone
    /// reaches it even when corelay runs inside a larger program's process.
    pub master_tid: AtomicU32,
    pub started_unix_s: AtomicU64,
    /// The ZooKeeper watcher, as the master last heard from it.
    pub zookeeper: zookeeper::ZooKeeperStatus,
    /// Bumped by RESET DIGESTS: shards start their digest tables over.
    pub digest_generation: AtomicU64,
    /// Entries of each shard's digest table.
    pub digest_capacity: AtomicU32,
}

/// Statement classes, for counters and latency histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Read = 0,
    Write = 1,
    /// Commands that are not statements (ping, init db, prepare, ...), and statements
    /// corelay answers itself.
    Other = 2,
}

impl Class {
    pub const ALL: [Class; 3] = [Class::Read, Class::Write, Class::Other];

    pub fn name(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Write => "write",
            Class::Other => "other",
        }
    }
}

/// One shard's counters. Gauges go up and down; totals only go up.
#[repr(C, align(64))]
pub struct Slot {
    pub pid: AtomicU64,
    /// The shard's thread id (its pid in fork mode).
    pub tid: AtomicU64,
    /// The CPU the shard is pinned to.
    pub cpu: AtomicU64,
    pub started_unix_s: AtomicU64,
    /// Gauge: client sessions open on this shard.
    pub client_connections: AtomicU64,
    /// Gauge: backend connections open on this shard.
    pub backend_connections: AtomicU64,
    pub clients_accepted: AtomicU64,
    pub clients_rejected: AtomicU64,
    pub auth_failures: AtomicU64,
    pub commands: AtomicU64,
    pub bytes_from_clients: AtomicU64,
    pub bytes_from_backends: AtomicU64,
    pub backend_connect_errors: AtomicU64,
    pub backend_errors: AtomicU64,
    pub client_errors: AtomicU64,
    pub respawns: AtomicU64,
    /// Statements sent again after their connection died before replying.
    pub retries: AtomicU64,
    /// Statements sent down a pipelined connection shared with other sessions.
    pub statements_pipelined: AtomicU64,
    /// Sessions that ended in a panic (contained at the session boundary).
    pub session_panics: AtomicU64,
    /// Logins answered late, and refused outright, for an address's failed logins
    /// (`login_failures_before_delay` / `_before_block`).
    pub logins_delayed: AtomicU64,
    pub logins_blocked: AtomicU64,
    /// Connections refused for their address's unfinished logins
    /// (`max_unauthenticated_per_ip`).
    pub unauthenticated_refused: AtomicU64,
    /// Pipelined connections left to a slow-reading client (`pipeline_slow_reader_ms`).
    pub pipes_evicted: AtomicU64,
    /// Client TLS handshakes completed, and failed.
    pub tls_handshakes: AtomicU64,
    pub tls_failures: AtomicU64,
    /// 1 when the master stopped restarting this shard (a crash loop).
    pub given_up: AtomicU64,
    /// 1 while the shard drains (stopped accepting, sessions finishing).
    pub draining: AtomicU64,
    /// Gauge: commands per second over the last status interval.
    pub commands_per_s: AtomicU64,
    /// The configuration version the shard runs.
    pub config_version: AtomicU64,
    /// ERR packets servers answered statements with.
    pub error_replies: AtomicU64,
    /// Sessions that had to wait for a backend connection, the time they waited, and the
    /// waits that ran out (`pool_wait_timeout_ms`).
    pub pool_waits: AtomicU64,
    pub pool_wait_us: AtomicU64,
    pub pool_timeouts: AtomicU64,
    /// Statements by [`Class`].
    pub statements: [AtomicU64; 3],
    /// Commands by command byte (the last entry: any other byte).
    pub commands_by_kind: [AtomicU64; COMMAND_KINDS],
    /// Times a session started holding its connection, by pin reason bit.
    pub pins: [AtomicU64; PIN_KINDS],
    /// Gauge: open client sessions per product user index.
    pub user_connections: [AtomicU32; MAX_USERS],
    /// The last connection id handed out (kept across respawns, so ids stay unique).
    pub last_conn_id: AtomicU32,
    /// Which rules `rule_hits` counts: a hash of the rules the shard runs (a reload that
    /// changes them starts the counts again).
    pub rules_id: AtomicU64,
    /// Statements each `[[rule]]` matched, by the rule's index.
    pub rule_hits: [AtomicU64; MAX_RULES],
    /// Per server id: statements sent to it, the errors it answered, and (a gauge the shard
    /// sets every status interval) statements per second.
    pub server_statements: [AtomicU64; MAX_SERVERS],
    pub server_errors: [AtomicU64; MAX_SERVERS],
    pub server_statements_per_s: [AtomicU64; MAX_SERVERS],
}

impl Slot {
    /// Resets the gauges when a shard (re)starts in this slot.
    pub fn start(&self, pid: u32, cpu: usize) {
        if self.started_unix_s.load(Relaxed) != 0 {
            self.respawns.fetch_add(1, Relaxed);
        }
        self.pid.store(u64::from(pid), Relaxed);
        // SAFETY: gettid has no preconditions.
        self.tid.store(unsafe { libc::gettid() } as u64, Relaxed);
        self.cpu.store(cpu as u64, Relaxed);
        self.started_unix_s.store(crate::util::time::unix_s(), Relaxed);
        self.reset_gauges();
    }

    /// Zeroes what only a live shard has: its sessions and connections. The master calls
    /// this for a shard that died (it is then the slot's only writer), so totals do not
    /// count sessions that are gone.
    pub fn reset_gauges(&self) {
        self.client_connections.store(0, Relaxed);
        self.backend_connections.store(0, Relaxed);
        self.draining.store(0, Relaxed);
        self.commands_per_s.store(0, Relaxed);
        for r in &self.server_statements_per_s {
            r.store(0, Relaxed);
        }
        for u in &self.user_connections {
            u.store(0, Relaxed);
        }
    }

    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        // Single writer: a load and a store are enough and cheaper than a locked add.
        counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Relaxed).saturating_sub(n), Relaxed);
    }

    pub fn user_inc(&self, user: usize) {
        if let Some(c) = self.user_connections.get(user) {
            c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
        }
    }

    pub fn user_dec(&self, user: usize) {
        if let Some(c) = self.user_connections.get(user) {
            c.store(c.load(Relaxed).saturating_sub(1), Relaxed);
        }
    }

    /// Counts one command by its command byte.
    #[inline]
    pub fn command(&self, byte: u8) {
        Slot::add(&self.commands, 1);
        Slot::add(&self.commands_by_kind[usize::from(byte).min(COMMAND_KINDS - 1)], 1);
    }

    /// Counts the pin reasons in `new_bits` (bits the session did not hold before).
    pub fn pinned(&self, new_bits: u32) {
        let mut bits = new_bits;
        while bits != 0 {
            let b = bits.trailing_zeros() as usize;
            if let Some(c) = self.pins.get(b) {
                Slot::add(c, 1);
            }
            bits &= bits - 1;
        }
    }
}

/// One server's health as the master last saw it. Written by the master only.
#[repr(C, align(64))]
pub struct ServerHealth {
    /// [`health::UNKNOWN`], [`health::UP`], [`health::DOWN`] or [`health::LAGGING`].
    pub state: AtomicU32,
    /// Replication lag in seconds (u64::MAX when the server does not know it).
    pub lag_s: AtomicU64,
    pub checked_unix_ms: AtomicU64,
    /// 1 when the server's `read_only` is ON.
    pub read_only: AtomicU32,
}

/// Health states.
pub mod health {
    /// Not checked yet: treated as usable.
    pub const UNKNOWN: u32 = 0;
    pub const UP: u32 = 1;
    pub const DOWN: u32 = 2;
    pub const LAGGING: u32 = 3;
}

/// Histograms per shard: one per [`Class`], then one per server.
const HISTOGRAMS: usize = 3 + MAX_LATENCY_SERVERS;

/// Digest table entries per shard when none is configured.
pub const DEFAULT_DIGEST_CAPACITY: usize = 1024;

/// Table capacity when none is configured.
pub const DEFAULT_TABLE_CAPACITY: usize = 4096;

/// The mapped region. Cheap to share: an `Arc` in thread mode, inherited across fork.
///
/// Layout: [`Header`], one [`Slot`] per shard, one [`Tables`] area per shard (sized by the
/// table capacity), [`Buckets`] (`HISTOGRAMS` per shard), [`ServerHealth`] per server, the
/// [`reload::ReloadArea`], one [`mailbox::Mailbox`] per shard, one [`guard::Guard`] per
/// shard. Beside the mapping, one [`mailbox::Doorbell`] per shard (descriptors, inherited
/// across fork like the mapping).
pub struct StatusRegion {
    map: MmapRaw,
    shards: usize,
    capacity: usize,
    /// Entries of each shard's digest table.
    digest_capacity: usize,
    doorbells: Vec<mailbox::Doorbell>,
    /// Seals the secrets of published configurations (its key is not in the mapping).
    sealer: seal::Sealer,
    _file: File,
}

// SAFETY: the region only holds atomics; every access goes through them.
unsafe impl Send for StatusRegion {}
unsafe impl Sync for StatusRegion {}

impl StatusRegion {
    /// Creates a zeroed region for `shards` slots with the default table capacity.
    pub fn create(shards: usize) -> Result<Arc<StatusRegion>, StatusError> {
        Self::create_with(shards, DEFAULT_TABLE_CAPACITY)
    }

    /// Creates a zeroed region for `shards` slots whose keyed tables hold `capacity`
    /// entries each.
    pub fn create_with(shards: usize, capacity: usize) -> Result<Arc<StatusRegion>, StatusError> {
        Self::create_sized(shards, capacity, DEFAULT_DIGEST_CAPACITY)
    }

    /// Creates a zeroed region for `shards` slots whose keyed tables hold `capacity`
    /// entries each and whose digest tables hold `digest_capacity`.
    pub fn create_sized(
        shards: usize,
        capacity: usize,
        digest_capacity: usize,
    ) -> Result<Arc<StatusRegion>, StatusError> {
        use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
        let fd =
            memfd_create(c"corelay-status", MemFdCreateFlag::MFD_CLOEXEC).map_err(|e| StatusError::Memfd(e.into()))?;
        let file = File::from(fd);
        let capacity = capacity.max(1);
        let len = Self::digest_offset(shards, capacity, digest_capacity, shards);
        file.set_len(len as u64).map_err(StatusError::Map)?;
        let map = MmapRaw::map_raw(&file).map_err(StatusError::Map)?;
        let doorbells =
            (0..shards).map(|_| mailbox::Doorbell::new()).collect::<Result<_, _>>().map_err(StatusError::Map)?;
        let region = StatusRegion {
            map,
            shards,
            capacity,
            digest_capacity,
            doorbells,
            sealer: seal::Sealer::new(),
            _file: file,
        };
        let h = region.header();
        h.magic.store(MAGIC, Relaxed);
        h.layout_version.store(LAYOUT_VERSION, Relaxed);
        h.shard_count.store(shards as u32, Relaxed);
        h.table_capacity.store(capacity as u32, Relaxed);
        h.digest_capacity.store(digest_capacity as u32, Relaxed);
        h.master_pid.store(std::process::id(), Relaxed);
        // SAFETY: gettid has no preconditions.
        h.master_tid.store(unsafe { libc::gettid() } as u32, Relaxed);
        h.started_unix_s.store(crate::util::time::unix_s(), Relaxed);
        Ok(Arc::new(region))
    }

    fn slot_offset(k: usize) -> usize {
        std::mem::size_of::<Header>() + k * std::mem::size_of::<Slot>()
    }

    fn tables_offset(shards: usize, capacity: usize, k: usize) -> usize {
        Self::slot_offset(shards) + k * Tables::size(capacity)
    }

    fn latency_offset(shards: usize, capacity: usize, k: usize, h: usize) -> usize {
        Self::tables_offset(shards, capacity, shards) + (k * HISTOGRAMS + h) * std::mem::size_of::<Buckets>()
    }

    fn health_offset(shards: usize, capacity: usize) -> usize {
        Self::latency_offset(shards, capacity, shards, 0)
    }

    fn reload_offset(shards: usize, capacity: usize) -> usize {
        Self::health_offset(shards, capacity) + MAX_SERVERS * std::mem::size_of::<ServerHealth>()
    }

    fn mailbox_offset(shards: usize, capacity: usize, k: usize) -> usize {
        Self::reload_offset(shards, capacity)
            + std::mem::size_of::<reload::ReloadArea>()
            + k * std::mem::size_of::<mailbox::Mailbox>()
    }

    fn guard_offset(shards: usize, capacity: usize, k: usize) -> usize {
        Self::mailbox_offset(shards, capacity, shards) + k * std::mem::size_of::<guard::Guard>()
    }

    fn digest_offset(shards: usize, capacity: usize, digest_capacity: usize, k: usize) -> usize {
        Self::guard_offset(shards, capacity, shards) + k * digests::size(digest_capacity)
    }

    /// Shard `k`'s statement digest table.
    pub fn digests(&self, k: usize) -> digests::Table<'_> {
        assert!(k < self.shards, "digests {k} out of range");
        let off = Self::digest_offset(self.shards, self.capacity, self.digest_capacity, k);
        // SAFETY: within the mapping (sized for every shard's table), 64-byte aligned
        // (every part before it is a multiple of 64 long, and so is a table), atomics only.
        unsafe { digests::Table::at(self.map.as_ptr().add(off), self.digest_capacity) }
    }

    /// Every shard's digest entries of the current generation, summed by key.
    pub fn merged_digests(&self) -> Vec<digests::Row> {
        let generation = self.header().digest_generation.load(Relaxed);
        let mut by_key: std::collections::HashMap<(u64, u32, u32, String), digests::Row> = Default::default();
        for k in 0..self.shards {
            for r in self.digests(k).read(generation) {
                match by_key.entry((r.hash, r.user, r.side, r.schema.clone())) {
                    std::collections::hash_map::Entry::Occupied(mut o) => o.get_mut().merge(&r),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(r);
                    }
                }
            }
        }
        by_key.into_values().collect()
    }

    /// Shard `k`'s login guard table.
    pub fn guard(&self, k: usize) -> &guard::Guard {
        assert!(k < self.shards, "guard {k} out of range");
        let off = Self::guard_offset(self.shards, self.capacity, k);
        // SAFETY: within the mapping (sized for every shard's table), 64-byte aligned
        // (every part before it is a multiple of 64 long), atomics only.
        unsafe { &*(self.map.as_ptr().add(off) as *const guard::Guard) }
    }

    /// What every shard knows of logins from `ip`.
    pub fn login_standing(&self, ip: std::net::IpAddr) -> guard::Standing {
        guard::standing((0..self.shards).map(|k| self.guard(k)), ip)
    }

    /// What seals and opens the secrets of published configurations.
    pub fn sealer(&self) -> &seal::Sealer {
        &self.sealer
    }

    /// Shard `k`'s mailbox (requests about its sessions from other shards).
    pub fn mailbox(&self, k: usize) -> &mailbox::Mailbox {
        assert!(k < self.shards, "mailbox {k} out of range");
        let off = Self::mailbox_offset(self.shards, self.capacity, k);
        // SAFETY: within the mapping (sized for every shard's mailbox), 64-byte aligned
        // (every part before it is a multiple of 64 long), atomics only.
        unsafe { &*(self.map.as_ptr().add(off) as *const mailbox::Mailbox) }
    }

    /// Shard `k`'s doorbell.
    pub fn doorbell(&self, k: usize) -> &mailbox::Doorbell {
        &self.doorbells[k]
    }

    fn reload_area(&self) -> &reload::ReloadArea {
        let off = Self::reload_offset(self.shards, self.capacity);
        // SAFETY: the area is the last thing in the mapping (sized for it), 64-byte
        // aligned (every part before it is a multiple of 64 long), atomics only.
        unsafe { &*(self.map.as_ptr().add(off) as *const reload::ReloadArea) }
    }

    /// Sends `signal` to the master's thread (admin SHUTDOWN). Returns the master's pid,
    /// and the error if it could not be sent.
    pub fn signal_master(&self, signal: libc::c_int) -> (u32, std::io::Result<()>) {
        let h = self.header();
        let (pid, tid) = (h.master_pid.load(Relaxed), h.master_tid.load(Relaxed));
        // SAFETY: tgkill has no memory preconditions; a stale pid/tid pair fails (ESRCH).
        let rc = unsafe { libc::syscall(libc::SYS_tgkill, pid as libc::pid_t, tid as libc::pid_t, signal) };
        (pid, if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) })
    }

    pub fn header(&self) -> &Header {
        // SAFETY: the mapping is at least one Header long, page aligned, zero-initialised,
        // and Header is made of atomics, for which all-zero bytes are valid.
        unsafe { &*(self.map.as_ptr() as *const Header) }
    }

    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Shard `k`'s slot.
    pub fn slot(&self, k: usize) -> &Slot {
        assert!(k < self.shards, "slot {k} out of range");
        // SAFETY: in bounds (checked above), 64-byte aligned (Header and Slot sizes are
        // multiples of 64 and the mapping is page aligned), atomics only.
        unsafe { &*(self.map.as_ptr().add(Self::slot_offset(k)) as *const Slot) }
    }

    /// Shard `k`'s keyed tables.
    pub fn tables(&self, k: usize) -> Tables<'_> {
        assert!(k < self.shards, "tables {k} out of range");
        let off = Self::tables_offset(self.shards, self.capacity, k);
        // SAFETY: the area lies within the mapping (sized for every shard's tables),
        // 64-byte aligned (Tables::size is a multiple of 64), atomics only.
        unsafe { Tables::at(self.map.as_ptr().add(off), self.capacity) }
    }

    /// Shard `k`'s latency histogram for statements of `class`.
    pub fn latency(&self, k: usize, class: Class) -> &Buckets {
        self.buckets(k, class as usize)
    }

    /// Shard `k`'s latency histogram for statements served by server `id` (None for ids
    /// beyond [`MAX_LATENCY_SERVERS`]).
    pub fn server_latency(&self, k: usize, id: usize) -> Option<&Buckets> {
        (id < MAX_LATENCY_SERVERS).then(|| self.buckets(k, 3 + id))
    }

    fn buckets(&self, k: usize, h: usize) -> &Buckets {
        assert!(k < self.shards && h < HISTOGRAMS, "histogram {k}/{h} out of range");
        let off = Self::latency_offset(self.shards, self.capacity, k, h);
        // SAFETY: within the mapping, 64-byte aligned (Buckets is align(64)), atomics only.
        unsafe { &*(self.map.as_ptr().add(off) as *const Buckets) }
    }

    /// Server `id`'s health entry (None beyond [`MAX_SERVERS`]).
    pub fn server_health(&self, id: usize) -> Option<&ServerHealth> {
        if id >= MAX_SERVERS {
            return None;
        }
        let off = Self::health_offset(self.shards, self.capacity) + id * std::mem::size_of::<ServerHealth>();
        // SAFETY: within the mapping (sized for MAX_SERVERS entries after the histograms),
        // 64-byte aligned, atomics only.
        Some(unsafe { &*(self.map.as_ptr().add(off) as *const ServerHealth) })
    }

    /// Whether reads may go to server `id` (not known to be down or lagging).
    pub fn usable(&self, id: usize) -> bool {
        self.server_health(id).is_none_or(|h| matches!(h.state.load(Relaxed), health::UNKNOWN | health::UP))
    }

    pub fn slots(&self) -> impl Iterator<Item = &Slot> {
        (0..self.shards).map(|k| self.slot(k))
    }

    pub fn request_shutdown(&self) {
        self.header().shutdown.store(1, Relaxed);
    }

    pub fn shutdown_requested(&self) -> bool {
        self.header().shutdown.load(Relaxed) != 0
    }

    pub fn paused(&self) -> bool {
        self.header().paused.load(Relaxed) != 0
    }

    /// Client sessions open on all shards.
    pub fn total_clients(&self) -> u64 {
        self.slots().map(|s| s.client_connections.load(Relaxed)).sum()
    }

    /// Sessions of product user `user` open on all shards.
    pub fn user_connections(&self, user: usize) -> u64 {
        self.slots().map(|s| s.user_connections.get(user).map_or(0, |c| u64::from(c.load(Relaxed)))).sum()
    }

    /// The latency histogram of `class` (None: all classes) merged over `shards`.
    pub fn merged_latency(&self, shards: impl Iterator<Item = usize>, class: Option<Class>) -> latency::Merged {
        let mut m = latency::Merged::default();
        for k in shards {
            match class {
                Some(c) => m.add(self.latency(k, c)),
                None => Class::ALL.iter().for_each(|c| m.add(self.latency(k, *c))),
            }
        }
        m
    }

    /// Server `id`'s latency histogram merged over all shards.
    pub fn merged_server_latency(&self, id: usize) -> latency::Merged {
        let mut m = latency::Merged::default();
        for k in 0..self.shards {
            if let Some(b) = self.server_latency(k, id) {
                m.add(b);
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_aligned_and_independent() {
        let r = StatusRegion::create(3).unwrap();
        assert_eq!(std::mem::size_of::<Slot>() % 64, 0);
        assert_eq!(r.slot(1) as *const Slot as usize % 64, 0);
        r.slot(0).start(10, 0);
        r.slot(2).start(12, 0);
        Slot::add(&r.slot(0).client_connections, 2);
        Slot::add(&r.slot(2).client_connections, 3);
        r.slot(2).user_inc(5);
        r.slot(0).user_inc(5);
        assert_eq!(r.total_clients(), 5);
        assert_eq!(r.user_connections(5), 2);
        assert_eq!(r.header().shard_count.load(Relaxed), 3);
        r.slot(2).start(13, 0);
        assert_eq!(r.total_clients(), 2, "a restarted shard's gauges start at zero");
        assert_eq!(r.slot(2).respawns.load(Relaxed), 1);
    }

    #[test]
    fn region_is_shared_across_fork() {
        let r = StatusRegion::create(1).unwrap();
        // SAFETY: the child only touches atomics and exits at once.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                Slot::add(&r.slot(0).commands, 41);
                unsafe { libc::_exit(0) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(r.slot(0).commands.load(Relaxed), 41);
            }
        }
    }
}
