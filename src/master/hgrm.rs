//! Periodic latency files: every `histogram_interval_s` the master merges the shards'
//! histograms and writes what the last interval added, per class and in total, as
//! HdrHistogram percentile-distribution text (`.hgrm`) into `histogram_dir`:
//! `corelay-<UTC time>-<class>.hgrm`. Nothing is written when `histogram_dir` is empty.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::status::latency::{write_hgrm, Merged};
use crate::status::{Class, StatusRegion};

pub struct Writer {
    dir: Option<PathBuf>,
    every: Duration,
    due: Instant,
    /// What the previous files covered, per class and total.
    last: Vec<Merged>,
    warned: bool,
}

impl Writer {
    pub fn new(config: &Config, status: &StatusRegion) -> Writer {
        let dir = Some(config.proxy.histogram_dir.trim()).filter(|d| !d.is_empty()).map(PathBuf::from);
        let every = Duration::from_secs(config.proxy.histogram_interval_s.max(1));
        let last = Writer::now(status);
        Writer { dir, every, due: Instant::now() + every, last, warned: false }
    }

    fn now(status: &StatusRegion) -> Vec<Merged> {
        let shards = status.shards();
        let mut v: Vec<Merged> = Class::ALL.iter().map(|c| status.merged_latency(0..shards, Some(*c))).collect();
        v.push(status.merged_latency(0..shards, None));
        v
    }

    /// Writes the files if the interval is over.
    pub fn run_due(&mut self, status: &StatusRegion) {
        let Some(dir) = &self.dir else { return };
        if Instant::now() < self.due {
            return;
        }
        self.due += self.every;
        let now = Writer::now(status);
        let stamp =
            crate::util::time::format_time(crate::util::time::unix_ms()).replace([' ', ':'], "").replace('-', "");
        let names = ["read", "write", "other", "all"];
        let mut failed = None;
        if let Err(e) = std::fs::create_dir_all(dir) {
            failed = Some(e.to_string());
        }
        for ((cur, prev), name) in now.iter().zip(&self.last).zip(names) {
            let interval = cur.minus(prev);
            let mut text = String::new();
            write_hgrm(&interval, &mut text);
            let path = dir.join(format!("corelay-{stamp}-{name}.hgrm"));
            if let Err(e) = std::fs::write(&path, text) {
                failed = Some(format!("{}: {e}", path.display()));
            }
        }
        match failed {
            Some(e) if !self.warned => {
                tracing::warn!("cannot write latency files into {} (proxy.histogram_dir): {e}", dir.display());
                self.warned = true;
            }
            Some(_) => {}
            None => self.warned = false,
        }
        self.last = now;
    }
}
