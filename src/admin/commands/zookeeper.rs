//! `SHOW ZOOKEEPER`: where the ZooKeeper-fed clusters' servers come from, the session's
//! state, the version (zxid) and time of the last read, and what was skipped or kept.

use std::sync::atomic::Ordering::Relaxed;

use crate::admin::{Command, Reply, View};
use crate::protocol::resultset::ResultSet;
use crate::status::zookeeper::{source, state};
use crate::util::time::format_time;

pub struct ShowZooKeeper;

impl Command for ShowZooKeeper {
    fn words(&self) -> &'static [&'static str] {
        &["SHOW", "ZOOKEEPER"]
    }

    fn help(&self) -> &'static str {
        "SHOW ZOOKEEPER: hosts, session state, topology source, zxid and time of the last read, sessions, changes applied and refused, invalid children skipped, outdated clusters, watcher restarts, cache file, and each ZooKeeper-fed cluster's path"
    }

    fn run(&self, view: &View, _args: &[String]) -> Reply {
        let mut rs = ResultSet::new(&[
            "hosts",
            "root",
            "state",
            "source",
            "zxid",
            "last_sync",
            "sessions",
            "changes",
            "refused",
            "invalid_children",
            "outdated_clusters",
            "watcher_restarts",
            "cache_file",
            "clusters",
        ]);
        let Some(zk) = &view.config.file.zookeeper else {
            return Reply::Rows(rs);
        };
        let z = &view.status.header().zookeeper;
        let clusters: Vec<String> = view
            .config
            .file
            .cluster
            .iter()
            .filter_map(|c| {
                let path = zk.absolute(c.zk_path.as_deref()?);
                Some(format!("{}={path} ({} servers)", c.name, c.server.len()))
            })
            .collect();
        let synced = z.synced_unix_ms.load(Relaxed);
        rs.rows.push(vec![
            Some(zk.hosts.clone()),
            Some(zk.root.clone()),
            Some(state::name(z.state.load(Relaxed)).into()),
            Some(source::name(z.source.load(Relaxed)).into()),
            Some(z.zxid.load(Relaxed).to_string()),
            (synced != 0).then(|| format_time(synced)),
            Some(z.sessions.load(Relaxed).to_string()),
            Some(z.changes.load(Relaxed).to_string()),
            Some(z.refused.load(Relaxed).to_string()),
            Some(z.invalid_children.load(Relaxed).to_string()),
            Some(z.outdated_clusters.load(Relaxed).to_string()),
            Some(z.watcher_restarts.load(Relaxed).to_string()),
            (!zk.cache_file.is_empty()).then(|| zk.cache_file.clone()),
            Some(clusters.join(", ")),
        ]);
        Reply::Rows(rs)
    }
}
