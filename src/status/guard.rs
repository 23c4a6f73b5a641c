//! The login guard: per client address, connections that have not finished logging in
//! and recent failed logins, counted across every shard.
//!
//! Each shard owns one [`Guard`] table in the status region and is its only writer; a
//! check sums the address's entries of every shard's table. An address has up to
//! [`PROBES`] places in a table (from a hash of it); readers look at all of them, so an
//! entry freed in between hides no other. An address that finds no free place in its
//! shard's table is not counted there (the table holds [`ENTRIES`]; addresses with
//! nothing to count give their place back).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// Addresses one shard tracks at once.
pub const ENTRIES: usize = 1024;
/// Places an address may have in a table.
const PROBES: usize = 8;

#[repr(C)]
pub struct Entry {
    /// The address as 128 bits (IPv4 mapped), 0 = free.
    ip: [AtomicU64; 2],
    unauthenticated: AtomicU32,
    failures: AtomicU32,
    last_failure_ms: AtomicU64,
}

/// One shard's table.
#[repr(C, align(64))]
pub struct Guard {
    entries: [Entry; ENTRIES],
}

/// The address as 128 bits; an IPv4 address and its IPv6-mapped form are one key.
fn key(ip: IpAddr) -> [u64; 2] {
    let v6 = match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let b = v6.to_bits();
    [(b >> 64) as u64, b as u64]
}

fn places(k: [u64; 2]) -> impl Iterator<Item = usize> {
    let h = (k[0] ^ k[1].rotate_left(17)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let first = (h >> 32) as usize;
    (0..PROBES).map(move |i| (first + i) % ENTRIES)
}

impl Entry {
    fn holds(&self, k: [u64; 2]) -> bool {
        self.ip[0].load(Relaxed) == k[0] && self.ip[1].load(Relaxed) == k[1]
    }
    fn is_free(&self) -> bool {
        self.ip[0].load(Relaxed) == 0 && self.ip[1].load(Relaxed) == 0
    }
}

/// What the shards together know of an address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    pub unauthenticated: u32,
    pub failures: u32,
    pub last_failure_ms: u64,
}

impl Guard {
    /// This shard's entry of `ip`, taking a free place for it when `make`.
    fn entry(&self, k: [u64; 2], make: bool) -> Option<&Entry> {
        if let Some(i) = places(k).find(|&i| self.entries[i].holds(k)) {
            return Some(&self.entries[i]);
        }
        if !make {
            return None;
        }
        let i = places(k).find(|&i| self.entries[i].is_free())?;
        let e = &self.entries[i];
        e.unauthenticated.store(0, Relaxed);
        e.failures.store(0, Relaxed);
        e.last_failure_ms.store(0, Relaxed);
        e.ip[1].store(k[1], Relaxed);
        e.ip[0].store(k[0], Relaxed);
        Some(e)
    }

    /// Gives the place back when nothing is counted in it (failures older than `forget_ms`
    /// count as nothing).
    fn tidy(&self, e: &Entry, now_ms: u64, forget_ms: u64) {
        let stale = now_ms.saturating_sub(e.last_failure_ms.load(Relaxed)) > forget_ms;
        if e.unauthenticated.load(Relaxed) == 0 && (e.failures.load(Relaxed) == 0 || stale) {
            e.ip[0].store(0, Relaxed);
            e.ip[1].store(0, Relaxed);
        }
    }

    /// A connection from `ip` starts logging in. False: not counted (no place).
    pub fn enter(&self, ip: IpAddr) -> bool {
        match self.entry(key(ip), true) {
            Some(e) => {
                e.unauthenticated.fetch_add(1, Relaxed);
                true
            }
            None => false,
        }
    }

    /// A connection counted by [`Guard::enter`] finished logging in (either way).
    pub fn leave(&self, ip: IpAddr, now_ms: u64, forget_ms: u64) {
        if let Some(e) = self.entry(key(ip), false) {
            let n = e.unauthenticated.load(Relaxed);
            e.unauthenticated.store(n.saturating_sub(1), Relaxed);
            self.tidy(e, now_ms, forget_ms);
        }
    }

    /// A login from `ip` failed.
    pub fn failed(&self, ip: IpAddr, now_ms: u64) {
        if let Some(e) = self.entry(key(ip), true) {
            e.failures.fetch_add(1, Relaxed);
            e.last_failure_ms.store(now_ms, Relaxed);
        }
    }

    /// A login from `ip` succeeded: its failures are forgiven.
    pub fn succeeded(&self, ip: IpAddr, now_ms: u64, forget_ms: u64) {
        if let Some(e) = self.entry(key(ip), false) {
            e.failures.store(0, Relaxed);
            self.tidy(e, now_ms, forget_ms);
        }
    }

    /// Adds this table's counts of `ip` to `into`.
    fn add_to(&self, k: [u64; 2], into: &mut Standing) {
        for i in places(k) {
            let e = &self.entries[i];
            if e.holds(k) {
                into.unauthenticated += e.unauthenticated.load(Relaxed);
                into.failures += e.failures.load(Relaxed);
                into.last_failure_ms = into.last_failure_ms.max(e.last_failure_ms.load(Relaxed));
            }
        }
    }
}

/// `ip`'s standing summed over `tables` (every shard's).
pub fn standing<'a>(tables: impl Iterator<Item = &'a Guard>, ip: IpAddr) -> Standing {
    let k = key(ip);
    let mut s = Standing::default();
    for t in tables {
        t.add_to(k, &mut s);
    }
    s
}

/// What a login from an address with `s` gets, under the `[proxy]` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Go,
    /// Answer only after this long.
    Delay(std::time::Duration),
    /// Refuse: too many failures; this many seconds are left.
    Blocked(u64),
}

/// What failed logins cost an address (the `[proxy]` keys `login_failures_before_delay`,
/// `login_delay_max_ms`, `login_failures_before_block`, `login_block_s`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    pub failures_before_delay: u32,
    pub delay_max_ms: u64,
    pub failures_before_block: u32,
    pub block_s: u64,
}

impl Policy {
    /// Failures count for this long after the last one.
    pub fn forget_ms(&self) -> u64 {
        self.block_s.max(60) * 1000
    }
}

impl Standing {
    pub fn verdict(&self, p: &Policy, now_ms: u64) -> Verdict {
        let since = now_ms.saturating_sub(self.last_failure_ms);
        if self.failures == 0 || since > p.forget_ms() {
            return Verdict::Go;
        }
        if p.failures_before_block > 0 && self.failures >= p.failures_before_block {
            let block_ms = p.block_s * 1000;
            if since < block_ms {
                return Verdict::Blocked((block_ms - since).div_ceil(1000));
            }
            return Verdict::Go;
        }
        if p.failures_before_delay > 0 && self.failures >= p.failures_before_delay {
            let over = self.failures - p.failures_before_delay;
            let ms = 100u64.saturating_mul(1 << over.min(20)).min(p.delay_max_ms);
            return Verdict::Delay(std::time::Duration::from_millis(ms));
        }
        Verdict::Go
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Box<Guard> {
        // SAFETY: Guard is atomics only, for which zero bytes are valid.
        unsafe { Box::new_zeroed().assume_init() }
    }

    #[test]
    fn counts_sum_over_shards_and_places_are_given_back() {
        let (a, b) = (table(), table());
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let other: IpAddr = "10.1.2.4".parse().unwrap();
        assert!(a.enter(ip) && a.enter(ip) && b.enter(ip) && a.enter(other));
        let s = standing([&*a, &*b].into_iter(), ip);
        assert_eq!(s.unauthenticated, 3);
        a.leave(ip, 0, 1000);
        a.leave(ip, 0, 1000);
        b.leave(ip, 0, 1000);
        assert_eq!(standing([&*a, &*b].into_iter(), ip), Standing::default());
        assert!(a.entries.iter().filter(|e| !e.is_free()).count() == 1, "only `other` keeps a place");
    }

    #[test]
    fn failures_delay_then_block_then_are_forgotten() {
        let p = Policy { failures_before_delay: 2, failures_before_block: 4, block_s: 60, delay_max_ms: 1000 };
        let g = table();
        let ip: IpAddr = "::1".parse().unwrap();
        let at = |n: u64| standing(std::iter::once(&*g), ip).verdict(&p, n);
        g.failed(ip, 1000);
        assert_eq!(at(1000), Verdict::Go);
        g.failed(ip, 1000);
        assert_eq!(at(1000), Verdict::Delay(std::time::Duration::from_millis(100)));
        g.failed(ip, 1000);
        assert_eq!(at(1000), Verdict::Delay(std::time::Duration::from_millis(200)));
        g.failed(ip, 1000);
        assert_eq!(at(2000), Verdict::Blocked(59));
        assert_eq!(at(62_000), Verdict::Go, "the block ends");
        g.succeeded(ip, 62_000, 60_000);
        assert_eq!(at(62_000), Verdict::Go);
        assert_eq!(standing(std::iter::once(&*g), ip).failures, 0);
    }
}
