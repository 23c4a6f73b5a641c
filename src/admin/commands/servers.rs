//! `SHOW SERVERS`: every configured server with its health (as the master last checked
//! it), its connections on all shards, and what it served.

use std::sync::atomic::Ordering::Relaxed;

use crate::admin::{Command, Reply, View};
use crate::config::Role;
use crate::protocol::resultset::ResultSet;
use crate::status::health;
use crate::util::time::format_time;

pub struct ShowServers;

impl Command for ShowServers {
    fn words(&self) -> &'static [&'static str] {
        &["SHOW", "SERVERS"]
    }

    fn help(&self) -> &'static str {
        "SHOW SERVERS: health, replication lag, read_only, connections, latency and where it came from (file, cache_file, zookeeper) per server"
    }

    fn run(&self, view: &View, _args: &[String]) -> Reply {
        let mut rs = ResultSet::new(&[
            "id",
            "cluster",
            "address",
            "role",
            "weight",
            "state",
            "lag_s",
            "read_only",
            "checked",
            "connections",
            "idle",
            "statements",
            "p99_us",
            "source",
            "max_connections",
            "reason",
            "p50_us",
            "p90_us",
            "p99_9_us",
            "statements_per_s",
            "errors",
        ]);
        let zk_source = crate::status::zookeeper::source::name(view.status.header().zookeeper.source.load(Relaxed));
        let tables: Vec<_> = (0..view.status.shards()).filter_map(|k| view.status.tables(k).read()).collect();
        for cluster in &view.config.clusters {
            let fed = view.config.file.cluster.iter().any(|c| c.name == cluster.name && c.zk_path.is_some());
            let source = if fed { zk_source } else { "file" };
            for s in &cluster.servers {
                let (state, lag, ro, checked) = match view.status.server_health(s.id) {
                    Some(h) => (
                        h.state.load(Relaxed),
                        h.lag_s.load(Relaxed),
                        h.read_only.load(Relaxed) == 1,
                        h.checked_unix_ms.load(Relaxed),
                    ),
                    None => (health::UNKNOWN, u64::MAX, false, 0),
                };
                let state = match state {
                    health::UP => "up",
                    health::DOWN => "down",
                    health::LAGGING => "lagging",
                    _ => "unknown",
                };
                let pools = tables.iter().flat_map(|t| &t.pools).filter(|p| p.server as usize == s.id);
                let (open, idle) = pools.fold((0u64, 0u64), |(o, i), p| (o + u64::from(p.open), i + u64::from(p.idle)));
                let lat = view.status.merged_server_latency(s.id);
                rs.rows.push(vec![
                    Some(s.id.to_string()),
                    Some(cluster.name.clone()),
                    Some(s.address.clone()),
                    Some(if s.role == Role::Primary { "primary" } else { "replica" }.into()),
                    Some(s.weight.to_string()),
                    Some(state.into()),
                    (lag != u64::MAX).then(|| lag.to_string()),
                    Some(if ro { "ON" } else { "OFF" }.into()),
                    (checked != 0).then(|| format_time(checked)),
                    Some(open.to_string()),
                    Some(idle.to_string()),
                    Some(lat.count().to_string()),
                    Some(lat.quantile(0.99).to_string()),
                    Some(source.into()),
                    Some(s.max_connections.to_string()),
                    reason(state, lag, cluster.max_replication_lag_s),
                    Some(lat.quantile(0.5).to_string()),
                    Some(lat.quantile(0.9).to_string()),
                    Some(lat.quantile(0.999).to_string()),
                    Some(per_shard(view, |slot| slot.server_statements_per_s.get(s.id)).to_string()),
                    Some(per_shard(view, |slot| slot.server_errors.get(s.id)).to_string()),
                ]);
            }
        }
        Reply::Rows(rs)
    }
}

/// A per-server counter of the slots, summed over the shards.
fn per_shard(view: &View, counter: impl Fn(&crate::status::Slot) -> Option<&std::sync::atomic::AtomicU64>) -> u64 {
    (0..view.status.shards()).filter_map(|k| counter(view.status.slot(k))).map(|c| c.load(Relaxed)).sum()
}

/// Why a server gets no statements (None: it does).
fn reason(state: &str, lag: u64, max_lag: u64) -> Option<String> {
    match state {
        "down" => Some("the health check failed (connect or query; the log says why)".into()),
        "lagging" if lag == u64::MAX => Some("replication stopped, or its lag unknown".into()),
        "lagging" => Some(format!("lag {lag} s over max_replication_lag_s ({max_lag})")),
        "unknown" => Some("not checked yet".into()),
        _ => None,
    }
}
