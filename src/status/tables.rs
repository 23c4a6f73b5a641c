//! A shard's keyed tables in the status region: who is connected and what they use.
//!
//! Three tables, each of the same fixed capacity:
//! - clients: (product user, client ip) → client connections;
//! - backends: (role, server, product user, client ip) → backend connections that
//!   sessions of that user and address hold right now;
//! - pools: (db user, server) → connections open and idle in the shard's pool.
//!
//! The shard rebuilds all three every `status_interval_ms` from its own sessions and pool
//! (nothing on the query path touches them). It is the only writer; readers (any shard
//! answering `checkproxystatus`, the admin port) take a consistent copy through the
//! sequence lock `seq` ([`super::seqlock`]). Entries that do not fit are counted in
//! `overflow`, never written past the end. `generation` counts rebuilds; a re-spawned shard
//! starts from empty tables in the same place.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The tables' header: one cache line.
#[repr(C, align(64))]
pub struct TablesHeader {
    pub seq: AtomicU64,
    pub generation: AtomicU64,
    pub clients: AtomicU32,
    pub backends: AtomicU32,
    pub pools: AtomicU32,
    pub _pad: AtomicU32,
    /// Entries that did not fit in the last rebuild.
    pub overflow: AtomicU64,
    /// Process figures of the shard at the last rebuild.
    pub rss_kib: AtomicU64,
    pub vsize_kib: AtomicU64,
    /// Buffers kept for reuse (the original's socket pool).
    pub spare_buffers: AtomicU64,
    pub updated_unix_ms: AtomicU64,
}

#[repr(C)]
pub struct ClientEntry {
    pub user: AtomicU32,
    pub clients: AtomicU32,
    pub ip: [AtomicU64; 2],
}

#[repr(C)]
pub struct BackendEntry {
    pub server: AtomicU32,
    pub user: AtomicU32,
    pub ip: [AtomicU64; 2],
    /// 0 primary, 1 replica.
    pub role: AtomicU32,
    pub conns: AtomicU32,
}

#[repr(C)]
pub struct PoolEntry {
    pub db_user: AtomicU32,
    pub server: AtomicU32,
    pub open: AtomicU32,
    pub idle: AtomicU32,
    pub waiting: AtomicU32,
    pub role: AtomicU32,
}

/// A view of one shard's tables.
pub struct Tables<'a> {
    pub header: &'a TablesHeader,
    clients: &'a [ClientEntry],
    backends: &'a [BackendEntry],
    pools: &'a [PoolEntry],
}

fn round64(n: usize) -> usize {
    n.div_ceil(64) * 64
}

/// Plain copies of the tables, as a reader gets them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub generation: u64,
    pub overflow: u64,
    pub rss_kib: u64,
    pub vsize_kib: u64,
    pub spare_buffers: u64,
    pub updated_unix_ms: u64,
    /// (user, ip, client connections)
    pub clients: Vec<(u32, IpAddr, u32)>,
    /// (replica?, server, user, ip, backend connections)
    pub backends: Vec<(bool, u32, u32, IpAddr, u32)>,
    pub pools: Vec<PoolRow>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolRow {
    pub db_user: u32,
    pub server: u32,
    pub replica: bool,
    pub open: u32,
    pub idle: u32,
    pub waiting: u32,
}

fn ip_words(ip: IpAddr) -> [u64; 2] {
    let v6 = match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let v = u128::from_be_bytes(v6.octets());
    [(v >> 64) as u64, v as u64]
}

fn words_ip(w: [u64; 2]) -> IpAddr {
    let v6 = Ipv6Addr::from((u128::from(w[0]) << 64) | u128::from(w[1]));
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

const R: Ordering = Ordering::Relaxed;

impl<'a> Tables<'a> {
    /// Bytes one shard's tables take for `capacity` entries each (a multiple of 64).
    pub fn size(capacity: usize) -> usize {
        std::mem::size_of::<TablesHeader>()
            + round64(capacity * std::mem::size_of::<ClientEntry>())
            + round64(capacity * std::mem::size_of::<BackendEntry>())
            + round64(capacity * std::mem::size_of::<PoolEntry>())
    }

    /// # Safety
    /// `base` must point to [`Tables::size`]`(capacity)` bytes of zero-initialised (or
    /// previously written by this type) shared memory, 64-byte aligned, that outlive `'a`.
    pub unsafe fn at(base: *const u8, capacity: usize) -> Tables<'a> {
        let header = &*(base as *const TablesHeader);
        let mut off = std::mem::size_of::<TablesHeader>();
        let clients = std::slice::from_raw_parts(base.add(off) as *const ClientEntry, capacity);
        off += round64(capacity * std::mem::size_of::<ClientEntry>());
        let backends = std::slice::from_raw_parts(base.add(off) as *const BackendEntry, capacity);
        off += round64(capacity * std::mem::size_of::<BackendEntry>());
        let pools = std::slice::from_raw_parts(base.add(off) as *const PoolEntry, capacity);
        Tables { header, clients, backends, pools }
    }

    pub fn capacity(&self) -> usize {
        self.clients.len()
    }

    /// Replaces the tables' contents (the shard that owns them only).
    pub fn publish(&self, s: &Snapshot) {
        let h = self.header;
        super::seqlock::write(&h.seq, || self.write(s));
    }

    fn write(&self, s: &Snapshot) {
        let h = self.header;
        let mut overflow = 0u64;
        let n = s.clients.len().min(self.clients.len());
        for (e, (user, ip, count)) in self.clients.iter().zip(&s.clients) {
            e.user.store(*user, R);
            e.clients.store(*count, R);
            let w = ip_words(*ip);
            e.ip[0].store(w[0], R);
            e.ip[1].store(w[1], R);
        }
        overflow += (s.clients.len() - n) as u64;
        h.clients.store(n as u32, R);
        let n = s.backends.len().min(self.backends.len());
        for (e, (replica, server, user, ip, conns)) in self.backends.iter().zip(&s.backends) {
            e.role.store(u32::from(*replica), R);
            e.server.store(*server, R);
            e.user.store(*user, R);
            let w = ip_words(*ip);
            e.ip[0].store(w[0], R);
            e.ip[1].store(w[1], R);
            e.conns.store(*conns, R);
        }
        overflow += (s.backends.len() - n) as u64;
        h.backends.store(n as u32, R);
        let n = s.pools.len().min(self.pools.len());
        for (e, p) in self.pools.iter().zip(&s.pools) {
            e.db_user.store(p.db_user, R);
            e.server.store(p.server, R);
            e.role.store(u32::from(p.replica), R);
            e.open.store(p.open, R);
            e.idle.store(p.idle, R);
            e.waiting.store(p.waiting, R);
        }
        overflow += (s.pools.len() - n) as u64;
        h.pools.store(n as u32, R);
        h.overflow.store(h.overflow.load(R) + overflow, R);
        h.rss_kib.store(s.rss_kib, R);
        h.vsize_kib.store(s.vsize_kib, R);
        h.spare_buffers.store(s.spare_buffers, R);
        h.updated_unix_ms.store(s.updated_unix_ms, R);
        h.generation.store(h.generation.load(R) + 1, R);
    }

    /// Empties the tables (a shard starting in this slot).
    pub fn clear(&self) {
        self.publish(&Snapshot::default());
    }

    /// A consistent copy of the tables, or None if the writer kept changing them.
    pub fn read(&self) -> Option<Snapshot> {
        let h = self.header;
        super::seqlock::read(&h.seq, || {
            let mut s = Snapshot {
                generation: h.generation.load(R),
                overflow: h.overflow.load(R),
                rss_kib: h.rss_kib.load(R),
                vsize_kib: h.vsize_kib.load(R),
                spare_buffers: h.spare_buffers.load(R),
                updated_unix_ms: h.updated_unix_ms.load(R),
                ..Snapshot::default()
            };
            let n = (h.clients.load(R) as usize).min(self.clients.len());
            s.clients = self.clients[..n]
                .iter()
                .map(|e| (e.user.load(R), words_ip([e.ip[0].load(R), e.ip[1].load(R)]), e.clients.load(R)))
                .collect();
            let n = (h.backends.load(R) as usize).min(self.backends.len());
            s.backends = self.backends[..n]
                .iter()
                .map(|e| {
                    let ip = words_ip([e.ip[0].load(R), e.ip[1].load(R)]);
                    (e.role.load(R) == 1, e.server.load(R), e.user.load(R), ip, e.conns.load(R))
                })
                .collect();
            let n = (h.pools.load(R) as usize).min(self.pools.len());
            s.pools = self.pools[..n]
                .iter()
                .map(|e| PoolRow {
                    db_user: e.db_user.load(R),
                    server: e.server.load(R),
                    replica: e.role.load(R) == 1,
                    open: e.open.load(R),
                    idle: e.idle.load(R),
                    waiting: e.waiting.load(R),
                })
                .collect();
            s
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::StatusRegion;

    #[test]
    fn publish_and_read_back_with_overflow_counted() {
        let r = StatusRegion::create_with(2, 2).unwrap();
        let t = r.tables(1);
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let ip6: IpAddr = "2001:db8::7".parse().unwrap();
        let snap = Snapshot {
            clients: vec![(0, ip, 10), (1, ip6, 5), (2, ip, 1)],
            backends: vec![(false, 0, 0, ip, 10)],
            pools: vec![PoolRow { db_user: 0, server: 1, replica: true, open: 4, idle: 3, waiting: 0 }],
            rss_kib: 1234,
            ..Snapshot::default()
        };
        t.publish(&snap);
        let got = t.read().unwrap();
        assert_eq!(got.clients, vec![(0, ip, 10), (1, ip6, 5)], "third entry does not fit");
        assert_eq!(got.overflow, 1);
        assert_eq!(got.backends, snap.backends);
        assert_eq!(got.pools, snap.pools);
        assert_eq!(got.rss_kib, 1234);
        assert_eq!(got.generation, 1);
        assert!(r.tables(0).read().unwrap().clients.is_empty(), "shard 0's tables are its own");
        t.clear();
        assert!(t.read().unwrap().clients.is_empty());
    }

    #[test]
    fn readers_see_whole_rebuilds_only() {
        let r = StatusRegion::create_with(1, 64).unwrap();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        std::thread::scope(|s| {
            let r2 = &r;
            s.spawn(move || {
                for i in 1..2000u32 {
                    // Every rebuild is (i entries of count i): a torn read would mix them.
                    let n = (i % 50) as usize + 1;
                    let snap = Snapshot { clients: vec![(0, ip, i); n], ..Snapshot::default() };
                    r2.tables(0).publish(&snap);
                }
            });
            for _ in 0..2000 {
                if let Some(s) = r.tables(0).read() {
                    if let Some(first) = s.clients.first() {
                        assert!(s.clients.iter().all(|c| c.2 == first.2), "torn read");
                        assert_eq!(s.clients.len(), (first.2 % 50) as usize + 1);
                    }
                }
            }
        });
    }
}
