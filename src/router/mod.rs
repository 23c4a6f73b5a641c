//! Routing: which server of a user's cluster a statement goes to ([`pick`], from the
//! [`classify`] result), and what a statement does to session state ([`statement`]).

pub mod classify;
pub mod digest;
pub mod hook;
pub mod lexer;
pub mod rules;
mod set;
pub mod statement;

use crate::config::{Cluster, Config, Role, Server};
use classify::{Class, Hint};

/// The server a session of product user `user` is served by.
pub fn target(config: &Config, user: usize) -> &Server {
    config.cluster_of(user).primary()
}

/// Where [`pick`] sends a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    pub server: usize,
    /// A read that wanted a replica and got the primary: it may not use the primary's
    /// `reserved_primary_connections`.
    pub fallback: bool,
}

/// Chooses the server for one statement of a session that holds no connection.
///
/// Order: a hint wins; then writes, and reads within the cluster's read-your-writes window
/// after this session's last write (`recent_write`), go to the primary; other reads go to
/// the replica with the lowest load/weight (`load` gives a server's load on this shard: the
/// statements routed to it, so that reads split by weight; weight 0 only when every replica
/// has weight 0), or to the primary when the cluster has no replica.
pub fn pick(
    cluster: &Cluster,
    class: Class,
    hint: Option<Hint>,
    recent_write: bool,
    load: impl Fn(usize) -> u64,
    usable: impl Fn(usize) -> bool,
) -> Pick {
    let primary = cluster.primary().id;
    let replica_wanted = match hint {
        Some(Hint::Server(id)) if cluster.servers.iter().any(|s| s.id == id) && usable(id) => {
            return Pick { server: id, fallback: false }
        }
        Some(Hint::Primary) => false,
        Some(Hint::Replica) => true,
        Some(Hint::Server(_)) | None => class == Class::Read && !recent_write,
    };
    if !replica_wanted {
        return Pick { server: primary, fallback: false };
    }
    let replicas = || cluster.servers.iter().filter(|s| s.role == Role::Replica && usable(s.id));
    let all_zero = replicas().all(|s| s.weight == 0);
    let weight = |s: &Server| if all_zero { 1 } else { u64::from(s.weight) };
    replicas()
        .filter(|s| weight(s) > 0)
        .min_by_key(|s| (u128::from(load(s.id)) << 32) / u128::from(weight(s)))
        .map_or(Pick { server: primary, fallback: true }, |s| Pick { server: s.id, fallback: false })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FileConfig;

    fn cluster() -> Cluster {
        let text = r#"
[[cluster]]
name = "c"
[[cluster.server]]
address = "127.0.0.1:3306"
role = "primary"
[[cluster.server]]
address = "127.0.0.1:3307"
role = "replica"
weight = 1
[[cluster.server]]
address = "127.0.0.1:3308"
role = "replica"
weight = 3
[[db_user]]
name = "d"
cluster = "c"
[[user]]
name = "u"
db_user = "d"
allow_empty_password = true
"#;
        Config::new(FileConfig::parse(text, "t").unwrap(), "t".into()).unwrap().clusters.remove(0)
    }

    #[test]
    fn routing_order() {
        let c = cluster();
        let idle = |_| 0u64;
        assert_eq!(pick(&c, Class::Write, None, false, idle, |_| true).server, 0);
        assert_eq!(pick(&c, Class::Read, None, true, idle, |_| true).server, 0, "read-your-writes");
        assert_ne!(pick(&c, Class::Read, None, false, idle, |_| true).server, 0);
        assert_eq!(pick(&c, Class::Read, Some(Hint::Primary), false, idle, |_| true).server, 0);
        assert_ne!(pick(&c, Class::Write, Some(Hint::Replica), false, idle, |_| true).server, 0);
        assert_eq!(pick(&c, Class::Write, Some(Hint::Server(2)), false, idle, |_| true).server, 2);
        assert_eq!(pick(&c, Class::Write, Some(Hint::Server(2)), false, idle, |id| id != 2).server, 0);
        assert_eq!(pick(&c, Class::Write, Some(Hint::Server(9)), false, idle, |_| true).server, 0);
    }

    #[test]
    fn least_connections_per_weight() {
        let c = cluster();
        // 2 connections on weight 1 vs 3 on weight 3: the heavier one is less loaded.
        assert_eq!(pick(&c, Class::Read, None, false, |id| [0, 2, 3][id], |_| true).server, 2);
        // 1 vs 6: 1/1 < 6/3.
        assert_eq!(pick(&c, Class::Read, None, false, |id| [0, 1, 6][id], |_| true).server, 1);
        // Counting picks splits reads 1:3.
        let mut picks = [0u64; 3];
        for _ in 0..400 {
            let s = pick(&c, Class::Read, None, false, |id| picks[id], |_| true).server;
            picks[s] += 1;
        }
        assert_eq!(picks, [0, 100, 300]);
        // An unusable replica gets nothing; with none usable, the primary.
        assert_eq!(pick(&c, Class::Read, None, false, |_| 0, |id| id != 2).server, 1);
        assert_eq!(pick(&c, Class::Read, None, false, |_| 0, |_| false), Pick { server: 0, fallback: true });
    }
}
