//! Latency histograms that live in shared memory: fixed log-linear buckets of microseconds.
//!
//! A value below 64 µs has a bucket of its own; above, every power of two is split into 64
//! equal buckets, so a bucket is never wider than 1/64 (1.6 %) of the values it holds. The
//! bucket layout is fixed, so a shard records with one index computation and a
//! single-writer add, and a reader (another shard, the master, the admin port) merges the
//! slots into an [`hdrhistogram::Histogram`] for percentiles.
//!
//! Values above [`MAX_US`] (about 18 minutes) are counted in the last bucket.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use hdrhistogram::Histogram;

/// Sub-buckets per power of two (and the number of exact buckets below it).
const SUB: u64 = 64;
const SUB_BITS: u32 = 6;
/// Highest power of two with buckets of its own: values up to 2^31 µs.
const TOP_BIT: u32 = 30;
/// Number of buckets.
pub const BUCKETS: usize = (SUB + (TOP_BIT - SUB_BITS + 1) as u64 * SUB) as usize;
/// Largest value recorded exactly (larger values land in the last bucket).
pub const MAX_US: u64 = (1 << (TOP_BIT + 1)) - 1;

/// The bucket a value of `us` microseconds falls in.
#[inline]
pub fn bucket_of(us: u64) -> usize {
    if us < SUB {
        return us as usize;
    }
    let us = us.min(MAX_US);
    let top = 63 - us.leading_zeros();
    let shift = top - SUB_BITS;
    let mantissa = (us >> shift) - SUB;
    (SUB + u64::from(shift) * SUB + mantissa) as usize
}

/// The lowest and highest value of bucket `i`.
pub fn bucket_range(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < SUB {
        return (i, i);
    }
    let shift = (i - SUB) / SUB;
    let mantissa = (i - SUB) % SUB + SUB;
    let low = mantissa << shift;
    (low, low + (1 << shift) - 1)
}

/// The value a bucket stands for when merged: its middle.
pub fn bucket_value(i: usize) -> u64 {
    let (lo, hi) = bucket_range(i);
    lo + (hi - lo) / 2
}

/// One histogram in shared memory; written by one shard only.
#[repr(C, align(64))]
pub struct Buckets {
    pub counts: [AtomicU64; BUCKETS],
    /// Sum of the recorded values (µs), for means and Prometheus `_sum`.
    pub sum_us: AtomicU64,
    /// Largest value recorded.
    pub max_us: AtomicU64,
}

impl Buckets {
    /// Records one value. Single writer: a load and a store, no locked instruction.
    #[inline]
    pub fn record(&self, us: u64) {
        let c = &self.counts[bucket_of(us)];
        c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
        self.sum_us.store(self.sum_us.load(Relaxed).wrapping_add(us), Relaxed);
        if us > self.max_us.load(Relaxed) {
            self.max_us.store(us, Relaxed);
        }
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }
}

/// A merged view of several [`Buckets`]: counts per bucket, total, sum and max.
#[derive(Clone)]
pub struct Merged {
    pub counts: Vec<u64>,
    pub sum_us: u64,
    pub max_us: u64,
}

impl Default for Merged {
    fn default() -> Self {
        Merged { counts: vec![0; BUCKETS], sum_us: 0, max_us: 0 }
    }
}

impl Merged {
    pub fn add(&mut self, b: &Buckets) {
        for (m, c) in self.counts.iter_mut().zip(b.counts.iter()) {
            *m += c.load(Relaxed);
        }
        self.sum_us = self.sum_us.wrapping_add(b.sum_us.load(Relaxed));
        self.max_us = self.max_us.max(b.max_us.load(Relaxed));
    }

    pub fn merge(&mut self, other: &Merged) {
        for (m, c) in self.counts.iter_mut().zip(&other.counts) {
            *m += c;
        }
        self.sum_us = self.sum_us.wrapping_add(other.sum_us);
        self.max_us = self.max_us.max(other.max_us);
    }

    /// Adds `n` values of `us` (used to rebuild a histogram from a bucket listing).
    pub fn add_value(&mut self, us: u64, n: u64) {
        self.counts[bucket_of(us)] += n;
        self.sum_us = self.sum_us.wrapping_add(us.saturating_mul(n));
        self.max_us = self.max_us.max(us);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// What `self` recorded since `earlier` (a copy taken before from the same buckets).
    /// The maximum cannot be split by time: it is the largest value of the buckets left.
    pub fn minus(&self, earlier: &Merged) -> Merged {
        let counts: Vec<u64> = self.counts.iter().zip(&earlier.counts).map(|(a, b)| a.saturating_sub(*b)).collect();
        let max_us = counts.iter().rposition(|c| *c > 0).map_or(0, |i| bucket_range(i).1.min(self.max_us));
        Merged { counts, sum_us: self.sum_us.saturating_sub(earlier.sum_us), max_us }
    }

    /// Values recorded at or below `us` (for cumulative Prometheus buckets): the buckets
    /// whose highest value is at most `us`.
    pub fn count_at_or_below(&self, us: u64) -> u64 {
        self.counts.iter().enumerate().take_while(|(i, _)| bucket_range(*i).1 <= us).map(|(_, c)| c).sum()
    }

    /// The non-empty buckets as (value, count) pairs.
    pub fn nonzero(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.counts.iter().enumerate().filter(|(_, c)| **c > 0).map(|(i, c)| (bucket_value(i), *c))
    }

    /// The same data as an HdrHistogram (2 significant digits, like the buckets).
    pub fn to_hdr(&self) -> Histogram<u64> {
        let mut h = Histogram::<u64>::new_with_bounds(1, MAX_US.max(2), 2).expect("valid histogram bounds");
        for (v, n) in self.nonzero() {
            let _ = h.record_n(v.max(1), n);
        }
        h
    }

    /// The value at quantile `q` (0..=1), from the buckets directly: the middle of the
    /// bucket that holds it, capped at the recorded maximum.
    pub fn quantile(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_value(i).min(self.max_us);
            }
        }
        self.max_us
    }

    pub fn mean(&self) -> f64 {
        let n = self.count();
        if n == 0 {
            0.0
        } else {
            self.sum_us as f64 / n as f64
        }
    }
}

/// HdrHistogram's percentile-distribution text (`.hgrm`), values in milliseconds, as
/// `HistogramLogProcessor` and the online plotters read it.
pub fn write_hgrm(m: &Merged, out: &mut String) {
    use std::fmt::Write as _;
    let h = m.to_hdr();
    let _ = writeln!(out, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    let total = h.len();
    if total > 0 {
        for v in h.iter_quantiles(5) {
            let q = v.quantile_iterated_to();
            let value = v.value_iterated_to() as f64 / 1000.0;
            let cum = (q * total as f64).round() as u64;
            if q < 1.0 {
                let _ = writeln!(out, "{value:>12.3} {q:>14.12} {cum:>10} {:>14.2}", 1.0 / (1.0 - q));
            } else {
                let _ = writeln!(out, "{value:>12.3} {q:>14.12} {cum:>10}", q = 1.0);
            }
        }
    }
    let mean = h.mean() / 1000.0;
    let stdev = h.stdev() / 1000.0;
    let _ = writeln!(out, "#[Mean    = {mean:>12.3}, StdDeviation   = {stdev:>12.3}]");
    let _ = writeln!(out, "#[Max     = {:>12.3}, Total count    = {total:>12}]", h.max() as f64 / 1000.0);
    // HdrHistogram's sub-bucket count: the power of two covering 2 x 10^digits.
    let sub_buckets = 1u64 << (2.0 * 10f64.powi(i32::from(h.sigfig()))).log2().ceil() as u32;
    let _ = writeln!(out, "#[Buckets = {:>12}, SubBuckets     = {:>12}]", h.buckets(), sub_buckets);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_with_bounded_error() {
        let mut last = 0;
        for us in (0..5000).chain((5000..MAX_US).step_by(7919)).chain([MAX_US]) {
            let i = bucket_of(us);
            assert!(i < BUCKETS, "{us} -> {i}");
            assert!(i >= last, "buckets are ordered");
            last = i;
            let (lo, hi) = bucket_range(i);
            assert!(lo <= us && us <= hi, "{us} in [{lo}, {hi}]");
            assert!((hi - lo) as f64 <= lo as f64 / 64.0 + 0.5, "bucket {i} [{lo}, {hi}] wider than 1/64");
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_range(BUCKETS - 1).1, MAX_US);
    }

    #[test]
    fn quantiles_agree_with_hdrhistogram() {
        let region = crate::status::StatusRegion::create(1).unwrap();
        let b = region.latency(0, crate::status::Class::Read);
        let mut exact = Histogram::<u64>::new(3).unwrap();
        let mut x: u64 = 12345;
        for _ in 0..20_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let us = 50 + (x >> 40) % 20_000;
            b.record(us);
            exact.record(us).unwrap();
        }
        let mut m = Merged::default();
        m.add(b);
        assert_eq!(m.count(), 20_000);
        for q in [0.5, 0.9, 0.99, 0.999] {
            let ours = m.quantile(q) as f64;
            let theirs = exact.value_at_quantile(q) as f64;
            assert!((ours - theirs).abs() / theirs < 0.02, "q{q}: {ours} vs {theirs}");
            let hdr = m.to_hdr().value_at_quantile(q) as f64;
            assert!((hdr - theirs).abs() / theirs < 0.02, "hdr q{q}: {hdr} vs {theirs}");
        }
        let mut text = String::new();
        write_hgrm(&m, &mut text);
        assert!(text.contains("Percentile") && text.contains("Total count    =        20000"), "{text}");
    }
}
