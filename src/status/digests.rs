//! Each shard's statement digest table: per (fingerprint, user, schema, side), how often
//! the statement shape ran, how long it took, what it returned. A fixed number of entries
//! per shard in the status region; the shard is the only writer, and when the table is
//! full the least recently seen entry makes room (counted). Readers sum the shards.
//!
//! Every entry is a sequence lock ([`super::seqlock`]): a reader never sees half of an
//! update, and the writer never waits.
//!
//! `RESET DIGESTS` bumps a generation in the header; a shard that sees it starts its table
//! over, and readers skip entries of an older generation meanwhile.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};

use super::Slot;

/// Bytes of fingerprint text kept per entry.
pub const TEXT_BYTES: usize = 256;
/// Bytes of schema name kept per entry.
pub const SCHEMA_BYTES: usize = 64;

/// Where a statement ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Primary = 0,
    Replica = 1,
    /// Answered without a server of its own (a pipelined read counts where it ran).
    None = 2,
}

impl Side {
    pub fn name(v: u32) -> &'static str {
        match v {
            0 => "primary",
            1 => "replica",
            _ => "none",
        }
    }
}

/// One entry.
#[repr(C, align(64))]
pub struct Entry {
    seq: AtomicU64,
    generation: AtomicU64,
    hash: AtomicU64,
    schema_hash: AtomicU64,
    user: AtomicU32,
    side: AtomicU32,
    count: AtomicU64,
    sum_us: AtomicU64,
    min_us: AtomicU64,
    max_us: AtomicU64,
    rows_sent: AtomicU64,
    rows_affected: AtomicU64,
    errors: AtomicU64,
    warnings: AtomicU64,
    first_ms: AtomicU64,
    last_ms: AtomicU64,
    schema_len: AtomicU32,
    text_len: AtomicU32,
    schema: [AtomicU64; SCHEMA_BYTES / 8],
    text: [AtomicU64; TEXT_BYTES / 8],
}

/// A shard's table: its head, then `capacity` entries.
#[repr(C, align(64))]
pub struct Head {
    /// Entries in use (they are filled in order).
    used: AtomicU64,
    /// Entries that made room for a new one.
    pub evictions: AtomicU64,
}

/// A shard's table in the mapping.
pub struct Table<'a> {
    head: &'a Head,
    entries: &'a [Entry],
}

/// One entry as read, or as summed over shards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row {
    pub hash: u64,
    pub user: u32,
    pub side: u32,
    pub schema: String,
    pub text: String,
    pub count: u64,
    pub sum_us: u64,
    pub min_us: u64,
    pub max_us: u64,
    pub rows_sent: u64,
    pub rows_affected: u64,
    pub errors: u64,
    pub warnings: u64,
    pub first_ms: u64,
    pub last_ms: u64,
}

impl Row {
    /// Adds another shard's entry of the same key.
    pub fn merge(&mut self, o: &Row) {
        self.count += o.count;
        self.sum_us += o.sum_us;
        self.min_us = self.min_us.min(o.min_us);
        self.max_us = self.max_us.max(o.max_us);
        self.rows_sent += o.rows_sent;
        self.rows_affected += o.rows_affected;
        self.errors += o.errors;
        self.warnings += o.warnings;
        self.first_ms = self.first_ms.min(o.first_ms);
        self.last_ms = self.last_ms.max(o.last_ms);
    }
}

/// One statement to count.
pub struct Sample<'s> {
    pub hash: u64,
    pub user: u32,
    pub side: Side,
    pub schema: &'s str,
    pub us: u64,
    pub rows_sent: u64,
    pub rows_affected: u64,
    pub error: bool,
    pub warnings: u64,
    pub now_ms: u64,
}

/// Size of a shard's table of `capacity` entries.
pub fn size(capacity: usize) -> usize {
    std::mem::size_of::<Head>() + capacity * std::mem::size_of::<Entry>()
}

fn pack(words: &[AtomicU64], bytes: &[u8]) {
    for (i, w) in words.iter().enumerate() {
        let mut b = [0u8; 8];
        let from = (i * 8).min(bytes.len());
        let to = (i * 8 + 8).min(bytes.len());
        b[..to - from].copy_from_slice(&bytes[from..to]);
        w.store(u64::from_ne_bytes(b), Relaxed);
    }
}

fn unpack(words: &[AtomicU64], len: usize) -> String {
    let mut out = Vec::with_capacity(words.len() * 8);
    for w in words {
        out.extend_from_slice(&w.load(Relaxed).to_ne_bytes());
    }
    out.truncate(len.min(out.len()));
    String::from_utf8_lossy(&out).into_owned()
}

/// `s` cut to at most `max` bytes on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// FNV-1a of the schema name (entries are keyed by it).
fn schema_hash(schema: &str) -> u64 {
    schema.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

impl<'a> Table<'a> {
    /// # Safety
    /// `at` points to [`size`]`(capacity)` bytes of zero-initialised (or previously
    /// written) shared memory, 64-byte aligned, that live as long as `'a`.
    pub unsafe fn at(at: *const u8, capacity: usize) -> Table<'a> {
        let head = &*(at as *const Head);
        let entries = std::slice::from_raw_parts(at.add(std::mem::size_of::<Head>()) as *const Entry, capacity);
        Table { head, entries }
    }

    pub fn evictions(&self) -> u64 {
        self.head.evictions.load(Relaxed)
    }

    /// Every entry of generation `generation`, each read whole.
    pub fn read(&self, generation: u64) -> Vec<Row> {
        let used = (self.head.used.load(Acquire) as usize).min(self.entries.len());
        let mut rows = Vec::with_capacity(used);
        for e in &self.entries[..used] {
            if let Some(r) = read_entry(e).filter(|_| e.generation.load(Relaxed) == generation) {
                rows.push(r);
            }
        }
        rows
    }
}

/// Reads an entry consistently (None if the writer kept changing it, or it is empty).
fn read_entry(e: &Entry) -> Option<Row> {
    let row = super::seqlock::read(&e.seq, || Row {
        hash: e.hash.load(Relaxed),
        user: e.user.load(Relaxed),
        side: e.side.load(Relaxed),
        schema: unpack(&e.schema, e.schema_len.load(Relaxed) as usize),
        text: unpack(&e.text, e.text_len.load(Relaxed) as usize),
        count: e.count.load(Relaxed),
        sum_us: e.sum_us.load(Relaxed),
        min_us: e.min_us.load(Relaxed),
        max_us: e.max_us.load(Relaxed),
        rows_sent: e.rows_sent.load(Relaxed),
        rows_affected: e.rows_affected.load(Relaxed),
        errors: e.errors.load(Relaxed),
        warnings: e.warnings.load(Relaxed),
        first_ms: e.first_ms.load(Relaxed),
        last_ms: e.last_ms.load(Relaxed),
    })?;
    (row.count > 0).then_some(row)
}

/// The writing shard's index of its table (process memory: nobody else needs it).
#[derive(Default)]
pub struct Index {
    map: HashMap<(u64, u32, u32, u64), usize>,
    generation: u64,
}

impl Index {
    /// Counts `s` in `table` (generation `generation`: a newer one than the index knows
    /// starts the table over). `text` gives the fingerprint's text when the entry is new.
    pub fn record(&mut self, table: &Table<'_>, generation: u64, s: &Sample<'_>, text: impl FnOnce() -> String) {
        if generation != self.generation {
            self.map.clear();
            self.generation = generation;
            table.head.used.store(0, Release);
        }
        let key = (s.hash, s.user, s.side as u32, schema_hash(s.schema));
        if let Some(&i) = self.map.get(&key) {
            let e = &table.entries[i];
            super::seqlock::write(&e.seq, || {
                Slot::add(&e.count, 1);
                Slot::add(&e.sum_us, s.us);
                e.min_us.store(e.min_us.load(Relaxed).min(s.us), Relaxed);
                e.max_us.store(e.max_us.load(Relaxed).max(s.us), Relaxed);
                Slot::add(&e.rows_sent, s.rows_sent);
                Slot::add(&e.rows_affected, s.rows_affected);
                Slot::add(&e.errors, u64::from(s.error));
                Slot::add(&e.warnings, s.warnings);
                e.last_ms.store(s.now_ms, Relaxed);
            });
            return;
        }
        if table.entries.is_empty() {
            return;
        }
        let used = table.head.used.load(Relaxed) as usize;
        let i = if used < table.entries.len() {
            used
        } else {
            // Full: the least recently seen entry makes room.
            let (i, _) = table
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_ms.load(Relaxed))
                .unwrap_or((0, &table.entries[0]));
            let e = &table.entries[i];
            let old = (e.hash.load(Relaxed), e.user.load(Relaxed), e.side.load(Relaxed), e.schema_hash.load(Relaxed));
            self.map.remove(&old);
            Slot::add(&table.head.evictions, 1);
            i
        };
        let e = &table.entries[i];
        let text = text();
        let text = cut(&text, TEXT_BYTES);
        let schema = cut(s.schema, SCHEMA_BYTES);
        super::seqlock::write(&e.seq, || {
            e.generation.store(generation, Relaxed);
            e.hash.store(key.0, Relaxed);
            e.user.store(key.1, Relaxed);
            e.side.store(key.2, Relaxed);
            e.schema_hash.store(key.3, Relaxed);
            e.count.store(1, Relaxed);
            e.sum_us.store(s.us, Relaxed);
            e.min_us.store(s.us, Relaxed);
            e.max_us.store(s.us, Relaxed);
            e.rows_sent.store(s.rows_sent, Relaxed);
            e.rows_affected.store(s.rows_affected, Relaxed);
            e.errors.store(u64::from(s.error), Relaxed);
            e.warnings.store(s.warnings, Relaxed);
            e.first_ms.store(s.now_ms, Relaxed);
            e.last_ms.store(s.now_ms, Relaxed);
            e.schema_len.store(schema.len() as u32, Relaxed);
            pack(&e.schema, schema.as_bytes());
            e.text_len.store(text.len() as u32, Relaxed);
            pack(&e.text, text.as_bytes());
        });
        if i == used {
            table.head.used.store(used as u64 + 1, Release);
        }
        self.map.insert(key, i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Owned {
        mem: Vec<u64>,
        capacity: usize,
    }

    impl Owned {
        fn new(capacity: usize) -> Owned {
            // u64s keep 8-byte alignment; Entry wants 64: over-allocate and align.
            Owned { mem: vec![0u64; size(capacity) / 8 + 16], capacity }
        }
        fn table(&self) -> Table<'_> {
            let p = self.mem.as_ptr() as *const u8;
            let aligned = p.wrapping_add(p.align_offset(64));
            // SAFETY: zeroed, aligned, large enough, lives as long as self.
            unsafe { Table::at(aligned, self.capacity) }
        }
    }

    fn sample(hash: u64, now_ms: u64) -> Sample<'static> {
        Sample {
            hash,
            user: 0,
            side: Side::Primary,
            schema: "app",
            us: 10,
            rows_sent: 1,
            rows_affected: 0,
            error: false,
            warnings: 0,
            now_ms,
        }
    }

    #[test]
    fn counts_and_evicts_the_least_recently_seen() {
        let mem = Owned::new(2);
        let t = mem.table();
        let mut index = Index::default();
        index.record(&t, 0, &sample(1, 100), || "A".into());
        index.record(&t, 0, &sample(2, 200), || "B".into());
        index.record(&t, 0, &sample(1, 300), || unreachable!("known"));
        // Full: 2 (last seen at 200) makes room for 3.
        index.record(&t, 0, &sample(3, 400), || "C".into());
        let mut rows = t.read(0);
        rows.sort_by_key(|r| r.hash);
        assert_eq!(
            rows.iter().map(|r| (r.hash, r.count, r.text.as_str())).collect::<Vec<_>>(),
            [(1, 2, "A"), (3, 1, "C")]
        );
        assert_eq!(t.evictions(), 1);
        assert_eq!(rows[0].schema, "app");
        // A reset generation starts over; readers of the new one see nothing old.
        assert!(t.read(1).is_empty());
        index.record(&t, 1, &sample(4, 500), || "D".into());
        assert_eq!(t.read(1).len(), 1);
    }

    #[test]
    fn readers_see_whole_updates_while_the_shard_writes() {
        let mem = std::sync::Arc::new(Owned::new(4));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (mem, stop) = (mem.clone(), stop.clone());
            std::thread::spawn(move || {
                let t = mem.table();
                let mut index = Index::default();
                let mut n = 0u64;
                while !stop.load(Relaxed) {
                    n += 1;
                    // Every update adds 10 µs and one row: sum_us is always 10 × count.
                    index.record(&t, 0, &sample(n % 3, n), || "SELECT ?".into());
                }
            })
        };
        let t = mem.table();
        let mut checked = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while std::time::Instant::now() < deadline || checked < 1000 {
            for r in t.read(0) {
                assert_eq!(r.sum_us, 10 * r.count, "{r:?}");
                assert_eq!(r.rows_sent, r.count, "{r:?}");
                assert_eq!(r.text, "SELECT ?");
                checked += 1;
            }
        }
        stop.store(true, Relaxed);
        writer.join().unwrap();
        assert!(checked >= 1000);
    }
}
