//! `SHOW POOLS`: each shard's backend connections per (db user, server).

use crate::admin::{Command, Reply, View};
use crate::protocol::resultset::ResultSet;

pub struct ShowPools;

impl Command for ShowPools {
    fn words(&self) -> &'static [&'static str] {
        &["SHOW", "POOLS"]
    }

    fn help(&self) -> &'static str {
        "SHOW POOLS: open, idle and waiting per shard, db user and server (write side = primary, read side = replicas)"
    }

    fn run(&self, view: &View, _args: &[String]) -> Reply {
        let mut rs = ResultSet::new(&["shard", "db_user", "server", "side", "open", "idle", "busy", "waiting"]);
        for k in 0..view.status.shards() {
            let Some(t) = view.status.tables(k).read() else { continue };
            for p in &t.pools {
                let db_user = view.config.db_users.get(p.db_user as usize).map_or("?", |d| d.name.as_str());
                let server = view.config.server(p.server as usize).map_or("?", |s| s.address.as_str());
                rs.push([
                    k.to_string(),
                    db_user.to_string(),
                    server.to_string(),
                    if p.replica { "read" } else { "write" }.to_string(),
                    p.open.to_string(),
                    p.idle.to_string(),
                    (p.open - p.idle.min(p.open)).to_string(),
                    p.waiting.to_string(),
                ]);
            }
        }
        Reply::Rows(rs)
    }
}
