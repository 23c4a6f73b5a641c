//! What ZooKeeper says the clusters' servers are: a child node's JSON, the sets read from
//! each cluster's path, the rules that keep a bad write from emptying a cluster, and the
//! cache file corelay starts from when ZooKeeper is down.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{FileConfig, Role, ServerFile};

/// One server as a child node describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub address: String,
    pub role: Role,
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
}

fn one() -> u32 {
    1
}

/// The original system's form: `{"ip", "port", "weight", "hostname"}`, a replica unless it
/// says `"role"`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OriginalNode {
    ip: String,
    port: u16,
    #[serde(default = "one")]
    weight: u32,
    #[serde(default)]
    #[allow(dead_code)]
    hostname: String,
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    max_connections: Option<u32>,
}

impl Node {
    /// Reads a child's data: corelay's form or the original's. The error says what is
    /// wrong without quoting more than a short prefix of the data.
    pub fn parse(data: &[u8]) -> Result<Node, String> {
        let text = std::str::from_utf8(data).map_err(|_| "not UTF-8".to_string())?;
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
        let node = if value.get("ip").is_some() {
            let o: OriginalNode = serde_json::from_value(value).map_err(|e| e.to_string())?;
            let ip = o.ip.trim_matches(|c| c == '[' || c == ']');
            let address = if ip.contains(':') { format!("[{ip}]:{}", o.port) } else { format!("{ip}:{}", o.port) };
            Node {
                address,
                role: o.role.unwrap_or(Role::Replica),
                weight: o.weight,
                max_connections: o.max_connections,
            }
        } else {
            serde_json::from_value(value).map_err(|e| e.to_string())?
        };
        node.check()?;
        Ok(node)
    }

    fn check(&self) -> Result<(), String> {
        let Some((host, port)) = self.address.rsplit_once(':') else {
            return Err(format!("address {:?} is not host:port", self.address));
        };
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("address {:?} is not host:port", self.address));
        }
        if self.weight == 0 {
            return Err("weight must be at least 1".into());
        }
        if self.max_connections == Some(0) {
            return Err("max_connections must be at least 1".into());
        }
        Ok(())
    }

    /// The configuration entry for this node: the file's entry for the same address, or
    /// else the cluster's first, lends what ZooKeeper does not say (timeouts, TLS).
    pub fn server_file(&self, seeds: &[ServerFile]) -> ServerFile {
        let template = seeds.iter().find(|s| s.address == self.address).or(seeds.first());
        let mut s = match template {
            Some(t) => t.clone(),
            None => crate::config::Config::embedded().cluster[0].server[0].clone(),
        };
        s.address = self.address.clone();
        s.role = self.role;
        s.weight = self.weight;
        if let Some(m) = self.max_connections {
            s.max_connections = m;
        }
        if template.is_none_or(|t| t.address != self.address) {
            s.min_connections = 0;
            s.reserved_primary_connections = 0;
        }
        s
    }

    /// A file entry as a node (to seed a cluster, and for `zk-publish`).
    pub fn of(s: &ServerFile) -> Node {
        Node { address: s.address.clone(), role: s.role, weight: s.weight, max_connections: Some(s.max_connections) }
    }
}

/// What a cluster's path held the last time it was read, after the rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterSet {
    pub path: String,
    pub servers: Vec<Node>,
    /// ZooKeeper had no usable server for it: these are the last ones it had.
    #[serde(default)]
    pub outdated: bool,
}

/// Every ZooKeeper-fed cluster's servers, by cluster name, and the newest change seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    /// The highest zxid of the paths and children read (ZooKeeper's version of it).
    pub zxid: i64,
    /// When it was read (milliseconds since the epoch).
    pub read_unix_ms: u64,
    #[serde(default)]
    pub cluster: BTreeMap<String, ClusterSet>,
}

/// How a cluster's freshly read set was judged.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Taken as read.
    Taken,
    /// No primary among the children: the current primary stays, beside the replicas read.
    PrimaryKept,
    /// Nothing usable: the last set stays, marked outdated.
    KeptLast(String),
}

impl ClusterSet {
    /// The rules for a set read from ZooKeeper, given the set running now (`last`):
    /// an empty set or one with two primaries keeps `last` (outdated); a set without a
    /// primary keeps `last`'s primary.
    pub fn judge(path: &str, read: Vec<Node>, last: &ClusterSet) -> (ClusterSet, Verdict) {
        let primaries = read.iter().filter(|n| n.role == Role::Primary).count();
        let keep = |why: String| {
            let kept = ClusterSet { path: path.to_string(), servers: last.servers.clone(), outdated: true };
            (kept, Verdict::KeptLast(why))
        };
        if read.is_empty() {
            return keep("no server is left under the path".into());
        }
        if primaries > 1 {
            return keep(format!("{primaries} children say role = primary; a cluster has one"));
        }
        if primaries == 0 {
            let Some(primary) = last.servers.iter().find(|n| n.role == Role::Primary) else {
                return keep("no child is the primary, and no primary was known".into());
            };
            let mut servers = vec![primary.clone()];
            servers.extend(read.into_iter().filter(|n| n.address != primary.address));
            return (ClusterSet { path: path.to_string(), servers, outdated: false }, Verdict::PrimaryKept);
        }
        (ClusterSet { path: path.to_string(), servers: read, outdated: false }, Verdict::Taken)
    }
}

impl Topology {
    /// Replaces the servers of every cluster this topology knows in `file` (the file's
    /// own entries lend their settings to the servers of the same address).
    pub fn apply(&self, file: &mut FileConfig) {
        for c in &mut file.cluster {
            if c.zk_path.is_none() {
                continue;
            }
            if let Some(set) = self.cluster.get(&c.name).filter(|s| !s.servers.is_empty()) {
                c.server = set.servers.iter().map(|n| n.server_file(&c.server)).collect();
            }
        }
    }

    /// Clusters kept at their last servers.
    pub fn outdated(&self) -> usize {
        self.cluster.values().filter(|c| c.outdated).count()
    }

    /// Reads the cache file.
    pub fn read(path: &Path) -> Result<Topology, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))
    }

    /// Writes the cache file atomically: a temporary file beside it, synced, then renamed
    /// over it, so a reader sees the old topology or the new, never half of one.
    pub fn write(&self, path: &Path) -> Result<(), String> {
        use std::io::Write;
        let text = toml::to_string(self).map_err(|e| e.to_string())?;
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let fail = |e: std::io::Error| format!("{}: {e}", tmp.display());
        let mut f = std::fs::File::create(&tmp).map_err(fail)?;
        f.write_all(b"# The last good topology corelay read from ZooKeeper; written by corelay, do not edit.\n")
            .and_then(|()| f.write_all(text.as_bytes()))
            .and_then(|()| f.sync_all())
            .map_err(fail)?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("{}: {e}", path.display())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(address: &str, role: Role) -> Node {
        Node { address: address.into(), role, weight: 1, max_connections: None }
    }

    #[test]
    fn both_forms_of_a_child_are_read() {
        let n =
            Node::parse(br#"{"address":"10.0.0.5:3306","role":"primary","weight":2,"max_connections":50}"#).unwrap();
        assert_eq!(
            n,
            Node { address: "10.0.0.5:3306".into(), role: Role::Primary, weight: 2, max_connections: Some(50) }
        );
        let o = Node::parse(br#"{"ip":"10.0.0.6","port":3307,"weight":3,"hostname":"db6"}"#).unwrap();
        assert_eq!(o, Node { address: "10.0.0.6:3307".into(), role: Role::Replica, weight: 3, max_connections: None });
        let v6 = Node::parse(br#"{"ip":"::1","port":3306}"#).unwrap();
        assert_eq!(v6.address, "[::1]:3306");
    }

    #[test]
    fn bad_children_are_refused_with_a_reason() {
        for (data, why) in [
            (&b"{not json"[..], "not JSON"),
            (br#"{"address":"10.0.0.5","role":"primary"}"#, "host:port"),
            (br#"{"address":"10.0.0.5:3306","role":"leader"}"#, "unknown variant"),
            (br#"{"address":"10.0.0.5:3306","role":"replica","weight":0}"#, "weight"),
            (br#"{"address":"10.0.0.5:3306","role":"replica","colour":1}"#, "unknown field"),
            (b"\xff\xfe", "UTF-8"),
        ] {
            let e = Node::parse(data).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn an_empty_or_doubly_primaried_set_keeps_the_last_one() {
        let last = ClusterSet { path: "/p".into(), servers: vec![node("a:1", Role::Primary)], outdated: false };
        let (set, v) = ClusterSet::judge("/p", vec![], &last);
        assert!(matches!(v, Verdict::KeptLast(_)));
        assert!(set.outdated);
        assert_eq!(set.servers, last.servers);
        let (set, v) = ClusterSet::judge("/p", vec![node("b:1", Role::Primary), node("c:1", Role::Primary)], &last);
        assert!(matches!(v, Verdict::KeptLast(_)));
        assert_eq!(set.servers, last.servers);
        let (set, v) = ClusterSet::judge("/p", vec![node("r:1", Role::Replica)], &last);
        assert_eq!(v, Verdict::PrimaryKept);
        assert_eq!(set.servers, vec![node("a:1", Role::Primary), node("r:1", Role::Replica)]);
        assert!(!set.outdated);
    }

    #[test]
    fn the_cache_file_is_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("corelay-topology-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("topology.toml");
        let mut t = Topology { zxid: 42, read_unix_ms: 7, ..Topology::default() };
        t.cluster.insert(
            "main".into(),
            ClusterSet { path: "/corelay/main".into(), servers: vec![node("a:1", Role::Primary)], outdated: false },
        );
        t.write(&path).unwrap();
        assert_eq!(Topology::read(&path).unwrap(), t);
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 1, "no temporary file left: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
