//! What a shard publishes about itself in its status tables: who is connected, which
//! servers their sessions hold connections to, the pool per (db user, server), and the
//! process figures. Built from the shard's own sessions and pool every
//! `status_interval_ms`, so the query path never touches the tables.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::config::Role;
use crate::net::Connector;
use crate::session::ShardState;
use crate::status::tables::{PoolRow, Snapshot};

/// Rebuilds the status tables of `shard`.
pub fn publish<N: Connector>(shard: &ShardState<N>) {
    let config = shard.config();
    let mut clients: HashMap<(u32, IpAddr), u32> = HashMap::new();
    let mut backends: HashMap<(u32, u32, IpAddr), u32> = HashMap::new();
    let mut busy: HashMap<(usize, usize), u32> = HashMap::new();
    shard.each_session(|p| {
        let Some(user) = p.user.get() else { return };
        *clients.entry((user as u32, p.ip)).or_default() += 1;
        if let Some((server, _)) = p.backend.get() {
            *backends.entry((server as u32, user as u32, p.ip)).or_default() += 1;
            if let Some(u) = config.users.get(user) {
                *busy.entry((u.db_user, server)).or_default() += 1;
            }
        }
    });
    let replica = |server: u32| config.server(server as usize).is_some_and(|s| s.role == Role::Replica);
    let mut snap = Snapshot {
        clients: clients.into_iter().map(|((u, ip), n)| (u, ip, n)).collect(),
        backends: backends.into_iter().map(|((s, u, ip), n)| (replica(s), s, u, ip, n)).collect(),
        spare_buffers: shard.spare_buffers() as u64,
        updated_unix_ms: crate::util::time::unix_ms(),
        ..Snapshot::default()
    };
    snap.clients.sort_unstable_by_key(|c| (c.0, c.1));
    snap.backends.sort_unstable_by_key(|b| (b.0, b.1, b.2, b.3));
    // Removed servers too, while connections to them finish.
    let servers = (0..config.server_ids()).filter_map(|id| config.server(id));
    for server in servers.filter(|s| !s.removed || shard.pool.stats(s.id).0 > 0) {
        let (_, _, waiting) = shard.pool.stats(server.id);
        let mut per: HashMap<usize, (u32, u32)> = HashMap::new();
        for (db_user, idle) in shard.pool.idle_by_db_user(server.id) {
            per.entry(db_user).or_default().1 += idle as u32;
        }
        for ((db_user, s), n) in &busy {
            if *s == server.id {
                per.entry(*db_user).or_default().0 += n;
            }
        }
        let mut rows: Vec<PoolRow> = per
            .into_iter()
            .map(|(db_user, (busy, idle))| PoolRow {
                db_user: db_user as u32,
                server: server.id as u32,
                replica: server.role == Role::Replica,
                open: busy + idle,
                idle,
                waiting: waiting as u32,
            })
            .collect();
        rows.sort_unstable_by_key(|r| r.db_user);
        snap.pools.extend(rows);
    }
    if let Some((vsize, rss)) = crate::util::host::process_memory() {
        snap.vsize_kib = vsize;
        snap.rss_kib = rss;
    }
    shard.status.tables(shard.index).publish(&snap);
}
