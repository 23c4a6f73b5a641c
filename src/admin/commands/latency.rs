//! `SHOW LATENCY`: count and percentiles of command latency per class and shard, and in
//! total, from the shards' histograms merged.

use crate::admin::{Command, Reply, View};
use crate::protocol::resultset::ResultSet;
use crate::status::latency::Merged;
use crate::status::Class;

pub struct ShowLatency;

/// One row; percentiles from the buckets merged into an HdrHistogram.
fn row(rs: &mut ResultSet, class: &str, shard: &str, m: &Merged) {
    let h = m.to_hdr();
    let q = |p: f64| if h.is_empty() { 0 } else { h.value_at_quantile(p).min(m.max_us) };
    rs.push([
        class.to_string(),
        shard.to_string(),
        m.count().to_string(),
        q(0.5).to_string(),
        q(0.9).to_string(),
        q(0.99).to_string(),
        q(0.999).to_string(),
        m.max_us.to_string(),
        format!("{:.1}", m.mean()),
    ]);
}

impl Command for ShowLatency {
    fn words(&self) -> &'static [&'static str] {
        &["SHOW", "LATENCY"]
    }

    fn help(&self) -> &'static str {
        "SHOW LATENCY: count, p50, p90, p99, p99.9, max and mean (microseconds) per class (read, write, other) and shard, and totals"
    }

    fn run(&self, view: &View, _args: &[String]) -> Reply {
        let status = view.status;
        let shards = status.shards();
        let mut rs =
            ResultSet::new(&["class", "shard", "count", "p50_us", "p90_us", "p99_us", "p99_9_us", "max_us", "mean_us"]);
        for class in Class::ALL {
            for k in 0..shards {
                row(&mut rs, class.name(), &k.to_string(), &status.merged_latency(std::iter::once(k), Some(class)));
            }
            row(&mut rs, class.name(), "all", &status.merged_latency(0..shards, Some(class)));
        }
        row(&mut rs, "total", "all", &status.merged_latency(0..shards, None));
        Reply::Rows(rs)
    }
}
