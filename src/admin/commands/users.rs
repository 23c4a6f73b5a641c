//! `SHOW USERS`: client connections per product user and client address, summed over
//! shards, with the backend connections their sessions hold.

use std::collections::BTreeMap;

use crate::admin::{Command, Reply, View};
use crate::protocol::resultset::ResultSet;

pub struct ShowUsers;

impl Command for ShowUsers {
    fn words(&self) -> &'static [&'static str] {
        &["SHOW", "USERS"]
    }

    fn help(&self) -> &'static str {
        "SHOW USERS: client connections per user and client address, their backend connections, and the user's limit"
    }

    fn run(&self, view: &View, _args: &[String]) -> Reply {
        let mut per: BTreeMap<(u32, std::net::IpAddr), (u64, u64)> = BTreeMap::new();
        for k in 0..view.status.shards() {
            let Some(t) = view.status.tables(k).read() else { continue };
            for (u, ip, n) in &t.clients {
                per.entry((*u, *ip)).or_default().0 += u64::from(*n);
            }
            for (_, _, u, ip, n) in &t.backends {
                per.entry((*u, *ip)).or_default().1 += u64::from(*n);
            }
        }
        let mut rs = ResultSet::new(&["user", "client_ip", "connections", "backend_connections", "max_connections"]);
        for ((u, ip), (clients, backends)) in per {
            let Some(user) = view.config.users.get(u as usize) else { continue };
            rs.push([
                user.name.clone(),
                ip.to_string(),
                clients.to_string(),
                backends.to_string(),
                user.max_connections.to_string(),
            ]);
        }
        Reply::Rows(rs)
    }
}
