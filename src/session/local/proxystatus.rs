//! `checkproxystatus type1|type2|type3` on the proxy port: the original's three status
//! result sets, built from every shard's status tables (any shard answers for all).
//!
//! - type1: per product user and client address: `Pid`, `User#IP`, `Proxy_NUM` (client
//!   connections), `DB_NUM` (backend connections their sessions hold now), `Master` and
//!   `Slave` (the servers those are to), `Time`.
//! - type2: per server, user and client address: `Pid`, `DB#User#IP` (`M:`/`S:` +
//!   `server#user#client-ip`), `User_NUM` (connections), `Time`.
//! - type3: per shard: `Pid` (`pid/tid`), `Vmsize` (KiB), `Conn_Pool_Size` (per pool,
//!   `db_user@server W|R:open/idle`), `Sock_Pool_Size` (buffers kept for reuse), `Time`.
//!
//! Rows of type1 and type2 are summed over shards; `Pid` lists the shards' processes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;

use super::super::error::Step;
use super::super::Session;
use crate::config::Config;
use crate::net::{Connector, Transport};
use crate::protocol::code;
use crate::protocol::resultset::ResultSet;
use crate::status::StatusRegion;
use crate::util::time::format_time;

/// Which result set a statement asks for: `checkproxystatus type1` (any case, optional
/// trailing `;`). None if the statement is something else.
pub fn parse(sql: &[u8]) -> Option<Result<u8, String>> {
    let text = std::str::from_utf8(sql).ok()?;
    let w: Vec<String> = text.trim().trim_end_matches(';').split_whitespace().map(|w| w.to_ascii_uppercase()).collect();
    if w.first().map(String::as_str) != Some("CHECKPROXYSTATUS") {
        return None;
    }
    Some(match w.get(1).map(String::as_str) {
        Some("TYPE1") if w.len() == 2 => Ok(1),
        Some("TYPE2") if w.len() == 2 => Ok(2),
        Some("TYPE3") if w.len() == 2 => Ok(3),
        _ => {
            Err(format!("checkproxystatus: unknown form {:?}; use checkproxystatus type1, type2 or type3", text.trim()))
        }
    })
}

/// What the result sets are built from: the running configuration (for names) and the
/// status region (every shard's tables).
pub struct View<'a> {
    pub config: &'a Config,
    pub status: &'a StatusRegion,
}

/// The result set of `checkproxystatus type<kind>`.
pub fn result(view: &View, kind: u8) -> ResultSet {
    match kind {
        1 => type1(view),
        2 => type2(view),
        _ => type3(view),
    }
}

struct Row {
    pids: Vec<u64>,
    clients: u64,
    backends: u64,
    primaries: Vec<String>,
    replicas: Vec<String>,
    updated_ms: u64,
}

fn add_pid(pids: &mut Vec<u64>, pid: u64) {
    if !pids.contains(&pid) {
        pids.push(pid);
    }
}

fn add_name(list: &mut Vec<String>, name: &str) {
    if !list.iter().any(|n| n == name) {
        list.push(name.to_string());
    }
}

fn pids_text(pids: &[u64]) -> String {
    pids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

fn user_name<'a>(view: &View<'a>, u: u32) -> &'a str {
    view.config.users.get(u as usize).map_or("?", |u| u.name.as_str())
}

fn server_name<'a>(view: &View<'a>, s: u32) -> &'a str {
    view.config.server(s as usize).map_or("?", |s| s.address.as_str())
}

fn type1(view: &View) -> ResultSet {
    let mut per: BTreeMap<(u32, IpAddr), Row> = BTreeMap::new();
    let row = || Row {
        pids: Vec::new(),
        clients: 0,
        backends: 0,
        primaries: Vec::new(),
        replicas: Vec::new(),
        updated_ms: 0,
    };
    for k in 0..view.status.shards() {
        let pid = view.status.slot(k).pid.load(Relaxed);
        let Some(t) = view.status.tables(k).read() else { continue };
        for (u, ip, n) in &t.clients {
            let r = per.entry((*u, *ip)).or_insert_with(row);
            r.clients += u64::from(*n);
            add_pid(&mut r.pids, pid);
            r.updated_ms = r.updated_ms.max(t.updated_unix_ms);
        }
        for (replica, s, u, ip, n) in &t.backends {
            let r = per.entry((*u, *ip)).or_insert_with(row);
            r.backends += u64::from(*n);
            add_name(if *replica { &mut r.replicas } else { &mut r.primaries }, server_name(view, *s));
        }
    }
    let mut rs = ResultSet::new(&["Pid", "User#IP", "Proxy_NUM", "DB_NUM", "Master", "Slave", "Time"]);
    for ((u, ip), r) in per {
        rs.push([
            pids_text(&r.pids),
            format!("{}#{ip}", user_name(view, u)),
            r.clients.to_string(),
            r.backends.to_string(),
            r.primaries.join(","),
            r.replicas.join(","),
            format_time(r.updated_ms),
        ]);
    }
    rs
}

fn type2(view: &View) -> ResultSet {
    // (replica?, server, user, ip) -> (pids, connections, updated)
    type Key = (bool, u32, u32, IpAddr);
    let mut per: BTreeMap<Key, (Vec<u64>, u64, u64)> = BTreeMap::new();
    for k in 0..view.status.shards() {
        let pid = view.status.slot(k).pid.load(Relaxed);
        let Some(t) = view.status.tables(k).read() else { continue };
        for (replica, s, u, ip, n) in &t.backends {
            let e = per.entry((*replica, *s, *u, *ip)).or_default();
            add_pid(&mut e.0, pid);
            e.1 += u64::from(*n);
            e.2 = e.2.max(t.updated_unix_ms);
        }
    }
    let mut rs = ResultSet::new(&["Pid", "DB#User#IP", "User_NUM", "Time"]);
    for ((replica, s, u, ip), (pids, n, ms)) in per {
        let role = if replica { "S" } else { "M" };
        rs.push([
            pids_text(&pids),
            format!("{role}:{}#{}#{ip}", server_name(view, s), user_name(view, u)),
            n.to_string(),
            format_time(ms),
        ]);
    }
    rs
}

fn type3(view: &View) -> ResultSet {
    let mut rs = ResultSet::new(&["Pid", "Vmsize", "Conn_Pool_Size", "Sock_Pool_Size", "Time"]);
    for k in 0..view.status.shards() {
        let slot = view.status.slot(k);
        let Some(t) = view.status.tables(k).read() else { continue };
        let pools: Vec<String> = t
            .pools
            .iter()
            .map(|p| {
                let db_user = view.config.db_users.get(p.db_user as usize).map_or("?", |d| d.name.as_str());
                let side = if p.replica { "R" } else { "W" };
                format!("{db_user}@{} {side}:{}/{}", server_name(view, p.server), p.open, p.idle)
            })
            .collect();
        rs.push([
            format!("{}/{}", slot.pid.load(Relaxed), slot.tid.load(Relaxed)),
            t.vsize_kib.to_string(),
            pools.join(";"),
            t.spare_buffers.to_string(),
            format_time(t.updated_unix_ms),
        ]);
    }
    rs
}

impl<C: Transport, N: Connector> Session<'_, C, N> {
    /// `checkproxystatus type1|type2|type3`, answered from the status region when
    /// `proxy.status_queries` is on, for users with `status_queries = true` (it shows
    /// every user, client address and server).
    pub(in crate::session) async fn proxy_status(&mut self, seq: u8, kind: Result<u8, String>) -> Step {
        if !self.config.proxy.status_queries {
            let msg = "checkproxystatus is disabled on this corelay (proxy.status_queries = false)";
            self.send_err(seq, code::SPECIFIC_ACCESS_DENIED, msg).await;
            return Ok(());
        }
        let user = self.user.map(|u| &self.config.users[u]);
        if let Some(u) = user.filter(|u| !u.status_queries) {
            let msg = format!(
                "Access denied: checkproxystatus needs status_queries = true on [[user]] '{}' (it shows every user, address and server)",
                u.name
            );
            self.send_err(seq, code::SPECIFIC_ACCESS_DENIED, &msg).await;
            return Ok(());
        }
        let kind = match kind {
            Ok(k) => k,
            Err(msg) => {
                self.send_err(seq, code::PARSE_ERROR, &msg).await;
                return Ok(());
            }
        };
        let view = View { config: &self.config, status: &self.shard.status };
        let rs = result(&view, kind);
        self.send_rows(seq, &rs).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms_only() {
        assert_eq!(parse(b"checkproxystatus type1"), Some(Ok(1)));
        assert_eq!(parse(b"  CheckProxyStatus   TYPE3 ;"), Some(Ok(3)));
        assert!(matches!(parse(b"checkproxystatus type9"), Some(Err(_))));
        assert!(matches!(parse(b"checkproxystatus"), Some(Err(_))));
        assert_eq!(parse(b"SELECT 1"), None);
        assert_eq!(parse(b"checkproxystatusx type1"), None);
    }
}
