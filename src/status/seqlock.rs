//! The sequence lock that the status region's shared tables use: one writer, any number of
//! readers, nobody waits on the writer.
//!
//! The writer makes the counter odd, writes relaxed stores, and makes it even again. A
//! reader that saw an odd counter, or a different one after reading, reads again. A
//! writer that died half-way (a killed shard) leaves the counter odd: the next write
//! starts from `seq | 1`, so the counter is never even while a write is under way.

use std::sync::atomic::{fence, AtomicU64, Ordering};

/// Runs `write` (relaxed stores) under the lock `seq`.
#[inline]
pub fn write<T>(seq: &AtomicU64, write: impl FnOnce() -> T) -> T {
    let odd = seq.load(Ordering::Relaxed) | 1;
    seq.store(odd, Ordering::Relaxed);
    fence(Ordering::Release);
    let out = write();
    seq.store(odd.wrapping_add(1), Ordering::Release);
    out
}

/// Runs `read` (relaxed loads) until it saw no write under way; None if the writer kept
/// writing through 1000 tries.
pub fn read<T>(seq: &AtomicU64, mut read: impl FnMut() -> T) -> Option<T> {
    for _ in 0..1000 {
        let before = seq.load(Ordering::Acquire);
        if before & 1 == 1 {
            std::thread::yield_now();
            continue;
        }
        let value = read();
        fence(Ordering::Acquire);
        if seq.load(Ordering::Relaxed) == before {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_left_half_done_does_not_make_the_next_one_look_finished() {
        let seq = AtomicU64::new(0);
        write(&seq, || {});
        assert_eq!(read(&seq, || 7), Some(7));
        seq.store(3, Ordering::Relaxed); // a writer died during its write
        assert_eq!(read(&seq, || 7), None);
        write(&seq, || assert_eq!(seq.load(Ordering::Relaxed) & 1, 1, "odd while writing"));
        assert_eq!(read(&seq, || 7), Some(7));
    }
}
