//! `SHOW SHARDS`: one row per shard: process, CPU, uptime, sessions, connections, memory.

use std::sync::atomic::Ordering::Relaxed;

use crate::admin::{Command, Reply, View};
use crate::protocol::resultset::ResultSet;
use crate::util::time::format_time;

pub struct ShowShards;

impl Command for ShowShards {
    fn words(&self) -> &'static [&'static str] {
        &["SHOW", "SHARDS"]
    }

    fn help(&self) -> &'static str {
        "SHOW SHARDS: pid, thread, CPU, start time, respawns, clients, backend connections, commands, RSS, status-table overflow, configuration version, and the accept balancer's count (sessions it gave the shard, NULL without balancing) per shard"
    }

    fn run(&self, view: &View, _args: &[String]) -> Reply {
        let mut rs = ResultSet::new(&[
            "shard",
            "pid",
            "tid",
            "cpu",
            "started",
            "respawns",
            "clients",
            "backend_connections",
            "commands",
            "rss_kib",
            "status_updated",
            "table_overflow",
            "given_up",
            "config_version",
            "balance_count",
            "state",
            "commands_per_s",
        ]);
        for k in 0..view.status.shards() {
            let s = view.status.slot(k);
            let t = view.status.tables(k).read().unwrap_or_default();
            rs.push([
                k.to_string(),
                s.pid.load(Relaxed).to_string(),
                s.tid.load(Relaxed).to_string(),
                s.cpu.load(Relaxed).to_string(),
                format_time(s.started_unix_s.load(Relaxed) * 1000),
                s.respawns.load(Relaxed).to_string(),
                s.client_connections.load(Relaxed).to_string(),
                s.backend_connections.load(Relaxed).to_string(),
                s.commands.load(Relaxed).to_string(),
                t.rss_kib.to_string(),
                format_time(t.updated_unix_ms),
                t.overflow.to_string(),
                s.given_up.load(Relaxed).to_string(),
                s.config_version.load(Relaxed).to_string(),
            ]);
            let state = if s.given_up.load(Relaxed) != 0 {
                "given up"
            } else if s.draining.load(Relaxed) != 0 {
                "draining"
            } else {
                "up"
            };
            if let Some(row) = rs.rows.last_mut() {
                row.push(view.balance.as_ref().and_then(|b| b.get(k)).map(u64::to_string));
                row.push(Some(state.into()));
                row.push(Some(s.commands_per_s.load(Relaxed).to_string()));
            }
        }
        Reply::Rows(rs)
    }
}
