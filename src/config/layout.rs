//! Stable ids across reloads, and what a reload may change.
//!
//! Pools, status slots, health entries and sessions refer to clusters, servers, db users
//! and users by index. A [`Layout`] fixes those indexes for the life of the process: an
//! entry keeps its index for as long as corelay runs, a new one is appended, and one that
//! leaves the file stays as a tombstone (flagged `removed`), so no index ever shifts and a
//! session still holding a removed entry can finish with it. An entry that comes back
//! gets its old index again.
//!
//! [`Published`] is what the master hands the shards on a reload: the new file, its
//! layout and its version, as TOML in the status region.

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, FileConfig};
use crate::status::seal::Sealer;

/// Which entry every index stands for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Cluster names.
    pub clusters: Vec<String>,
    /// (cluster name, server address as written).
    pub servers: Vec<(String, String)>,
    pub db_users: Vec<String>,
    pub users: Vec<String>,
}

impl Layout {
    /// Appends what `file` has and the layout does not yet know.
    pub fn extend(&mut self, file: &FileConfig) {
        fn add(list: &mut Vec<String>, name: &str) {
            if !list.iter().any(|n| n == name) {
                list.push(name.to_string());
            }
        }
        for c in &file.cluster {
            add(&mut self.clusters, &c.name);
            for s in &c.server {
                if self.server(&c.name, &s.address).is_none() {
                    self.servers.push((c.name.clone(), s.address.clone()));
                }
            }
        }
        for d in &file.db_user {
            add(&mut self.db_users, &d.name);
        }
        for u in &file.user {
            add(&mut self.users, &u.name);
        }
    }

    pub fn cluster(&self, name: &str) -> Option<usize> {
        self.clusters.iter().position(|n| n == name)
    }

    pub fn server(&self, cluster: &str, address: &str) -> Option<usize> {
        self.servers.iter().position(|(c, a)| c == cluster && a == address)
    }

    pub fn db_user(&self, name: &str) -> Option<usize> {
        self.db_users.iter().position(|n| n == name)
    }

    pub fn user(&self, name: &str) -> Option<usize> {
        self.users.iter().position(|n| n == name)
    }

    /// Whether `self` keeps every index of `old` (a later layout of the same process).
    pub fn continues(&self, old: &Layout) -> bool {
        self.clusters.starts_with(&old.clusters)
            && self.servers.starts_with(&old.servers)
            && self.db_users.starts_with(&old.db_users)
            && self.users.starts_with(&old.users)
    }
}

/// A validated configuration as the master publishes it to the shards.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Published {
    pub version: u64,
    pub source: String,
    pub layout: Layout,
    pub config: FileConfig,
    /// The passwords, sealed; `config` holds none.
    #[serde(default)]
    pub secrets: String,
}

impl Published {
    /// `config` for the status region: its passwords sealed with `sealer`'s key (see
    /// [`crate::status::seal`]), the rest as it is.
    pub fn of(config: &Config, sealer: &Sealer) -> Published {
        let mut file = config.file.clone();
        let secrets = Secrets::take(&mut file);
        let sealed = toml::to_string(&secrets).map(|t| sealer.seal(&t)).unwrap_or_default();
        Published {
            version: config.version,
            source: config.source.clone(),
            layout: config.layout.clone(),
            config: file,
            secrets: sealed,
        }
    }

    pub fn to_text(&self) -> Result<String, String> {
        toml::to_string(self).map_err(|e| e.to_string())
    }

    /// Reads what [`Published::of`] wrote, its passwords opened with `sealer`.
    pub fn parse(text: &str, sealer: &Sealer) -> Result<Published, String> {
        let mut p: Published = toml::from_str(text).map_err(|e| e.to_string())?;
        let secrets: Secrets = toml::from_str(&sealer.open(&p.secrets)?).map_err(|e| e.to_string())?;
        secrets.put(&mut p.config)?;
        p.secrets.clear();
        Ok(p)
    }
}

/// Every password of a file configuration, in file order.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Secrets {
    db_user: Vec<String>,
    user: Vec<String>,
    admin_user: Vec<String>,
    monitor: Vec<String>,
    #[serde(default)]
    zookeeper: String,
}

impl Secrets {
    /// Moves the passwords out of `f`.
    fn take(f: &mut FileConfig) -> Secrets {
        Secrets {
            db_user: f.db_user.iter_mut().map(|d| std::mem::take(&mut d.password)).collect(),
            user: f.user.iter_mut().map(|u| std::mem::take(&mut u.password)).collect(),
            admin_user: f.admin_user.iter_mut().map(|a| std::mem::take(&mut a.password)).collect(),
            monitor: f.cluster.iter_mut().map(|c| std::mem::take(&mut c.monitor_password)).collect(),
            zookeeper: f.zookeeper.as_mut().map(|z| std::mem::take(&mut z.auth_password)).unwrap_or_default(),
        }
    }

    /// Puts them back.
    fn put(self, f: &mut FileConfig) -> Result<(), String> {
        if self.db_user.len() != f.db_user.len()
            || self.user.len() != f.user.len()
            || self.admin_user.len() != f.admin_user.len()
            || self.monitor.len() != f.cluster.len()
        {
            return Err("sealed secrets do not match the published configuration".into());
        }
        f.db_user.iter_mut().zip(self.db_user).for_each(|(d, p)| d.password = p);
        f.user.iter_mut().zip(self.user).for_each(|(u, p)| u.password = p);
        f.admin_user.iter_mut().zip(self.admin_user).for_each(|(a, p)| a.password = p);
        f.cluster.iter_mut().zip(self.monitor).for_each(|(c, p)| c.monitor_password = p);
        if let Some(z) = f.zookeeper.as_mut() {
            z.auth_password = self.zookeeper;
        }
        Ok(())
    }
}

/// `[proxy]` keys that only take effect at start: the sockets, the shards and their
/// executors, the status region's size and the log files. A reload that changes one keeps
/// the running value and says so.
macro_rules! restart_only {
    ($old:expr, $new:expr, $notes:expr, $($key:ident),* $(,)?) => {
        $(
            if $old.$key != $new.$key {
                $notes.push(format!(
                    "proxy.{} changed from {:?} to {:?}: it takes effect when corelay is restarted; the running value is kept",
                    stringify!($key), $old.$key, $new.$key
                ));
                $new.$key = $old.$key.clone();
            }
        )*
    };
}

/// Keeps the running values of start-only keys in `new`; returns a note for each change.
fn keep_start_only(old: &FileConfig, new: &mut FileConfig) -> Vec<String> {
    let mut notes = Vec::new();
    let (o, n) = (&old.proxy, &mut new.proxy);
    restart_only!(
        o,
        n,
        notes,
        listen,
        workers,
        worker_mode,
        cpus,
        backlog,
        accept_balance,
        sched_policy,
        admin_listen,
        metrics_listen,
        status_table_capacity,
        digest_table_capacity,
        latency_histograms,
        histogram_dir,
        histogram_interval_s,
        io_memory_kib,
        ring_depth,
        spin_before_park_us,
        preempt_timer_ms,
        log_level,
        log_dir,
        log_format,
        log_max_bytes,
        log_keep_files,
    );
    notes
}

/// What a reload changed, for the log and the admin reply.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Start-only keys that changed in the file and were kept.
    pub kept: Vec<String>,
}

impl std::fmt::Display for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[String]| if v.is_empty() { "none".to_string() } else { v.join(", ") };
        write!(f, "added: {}; removed: {}", list(&self.added), list(&self.removed))
    }
}

impl Config {
    /// The configuration a reload of `file` gives, validated, with every index this one
    /// has kept, and its version one higher.
    pub fn reload(&self, mut file: FileConfig, source: String) -> Result<(Config, Changes), ConfigError> {
        let kept = keep_start_only(&self.file, &mut file);
        let mut layout = self.layout.clone();
        layout.extend(&file);
        let next = Config::build(file, source, layout, Some(self), self.version + 1)?;
        let mut changes = self.changes_to(&next);
        changes.kept = kept;
        Ok((next, changes))
    }

    /// Builds what the master published, from this shard's configuration (whose removed
    /// entries become tombstones).
    pub fn adopt(&self, p: Published) -> Result<Config, ConfigError> {
        if !p.layout.continues(&self.layout) {
            return Err(ConfigError::Parse {
                file: p.source,
                message: format!(
                    "published layout of version {} does not continue version {}",
                    p.version, self.version
                ),
            });
        }
        Config::build(p.config, p.source, p.layout, Some(self), p.version)
    }

    /// Entries live in `next` and not here, and the other way round.
    pub fn changes_to(&self, next: &Config) -> Changes {
        let mut c = Changes::default();
        let mut diff = |kind: &str, name: String, before: Option<bool>, after: bool| match (before, after) {
            (None | Some(true), false) => c.added.push(format!("{kind} {name}")),
            (Some(false), true) => c.removed.push(format!("{kind} {name}")),
            _ => {}
        };
        for (i, s) in next.server_table.iter().enumerate() {
            let cluster = next.clusters.get(s.cluster).map_or("?", |c| c.name.as_str());
            diff("server", format!("{cluster}/{}", s.address), self.server_table.get(i).map(|o| o.removed), s.removed);
        }
        for (i, u) in next.users.iter().enumerate() {
            diff("user", u.name.clone(), self.users.get(i).map(|o| o.removed), u.removed);
        }
        for (i, d) in next.db_users.iter().enumerate() {
            diff("db_user", d.name.clone(), self.db_users.get(i).map(|o| o.removed), d.removed);
        }
        for (i, cl) in next.clusters.iter().enumerate() {
            diff("cluster", cl.name.clone(), self.clusters.get(i).map(|o| o.removed), cl.removed);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    const BEFORE: &str = r#"
[proxy]
listen = "127.0.0.1:7000"
query_timeout_ms = 1000
[[cluster]]
name = "a"
[[cluster.server]]
address = "127.0.0.1:3306"
role = "primary"
[[cluster.server]]
address = "127.0.0.1:3307"
role = "replica"
[[cluster]]
name = "b"
[[cluster.server]]
address = "127.0.0.1:4306"
role = "primary"
[[db_user]]
name = "d"
cluster = "a"
[[db_user]]
name = "e"
cluster = "b"
[[user]]
name = "u1"
db_user = "d"
allow_empty_password = true
[[user]]
name = "u2"
db_user = "e"
allow_empty_password = true
"#;

    fn load(text: &str) -> Config {
        Config::new(FileConfig::parse(text, "t.toml").unwrap(), "t.toml".into()).unwrap()
    }

    fn file(text: &str) -> FileConfig {
        FileConfig::parse(text, "t.toml").unwrap()
    }

    #[test]
    fn a_reload_keeps_every_index_and_leaves_tombstones() {
        let v0 = load(BEFORE);
        assert_eq!(v0.server(2).unwrap().address, "127.0.0.1:4306");
        // Cluster a gains a replica (listed first) and loses 3307; user u1 goes, u3 comes.
        let after = BEFORE
            .replace(
                "[[cluster.server]]\naddress = \"127.0.0.1:3306\"",
                "[[cluster.server]]\naddress = \"127.0.0.1:3308\"\nrole = \"replica\"\n[[cluster.server]]\naddress = \"127.0.0.1:3306\"",
            )
            .replace("[[cluster.server]]\naddress = \"127.0.0.1:3307\"\nrole = \"replica\"\n", "")
            .replace("name = \"u1\"", "name = \"u3\"")
            .replace("query_timeout_ms = 1000", "query_timeout_ms = 2000")
            .replace("name = \"e\"\ncluster = \"b\"", "name = \"e\"\npassword = \"pw_of_e\"\ncluster = \"b\"");
        let (v1, changes) = v0.reload(file(&after), "t.toml".into()).unwrap();
        assert_eq!(v1.version, 1);
        assert_eq!(v1.proxy.query_timeout_ms, 2000);
        assert_eq!(v1.server(0).unwrap().address, "127.0.0.1:3306");
        assert!(!v1.server(0).unwrap().removed);
        assert!(v1.server(1).unwrap().removed, "3307 stays as a tombstone");
        assert_eq!(v1.server(2).unwrap().address, "127.0.0.1:4306");
        assert_eq!(v1.server(3).unwrap().address, "127.0.0.1:3308");
        assert_eq!(v1.servers().count(), 3);
        assert_eq!(v1.clusters[0].primary().id, 0);
        let replicas: Vec<usize> =
            v1.clusters[0].servers.iter().filter(|s| s.role == Role::Replica).map(|s| s.id).collect();
        assert_eq!(replicas, [3]);
        assert!(v1.user("u1").is_none(), "a removed user cannot log in");
        assert_eq!(v1.users[0].name, "u1");
        assert!(v1.users[0].removed);
        assert_eq!(v1.user("u2").unwrap().0, 1);
        assert_eq!(v1.user("u3").unwrap().0, 2);
        assert_eq!(changes.added, ["server a/127.0.0.1:3308", "user u3"]);
        assert_eq!(changes.removed, ["server a/127.0.0.1:3307", "user u1"]);

        // A shard builds the same from what the master publishes.
        let sealer = Sealer::new();
        let text = Published::of(&v1, &sealer).to_text().unwrap();
        assert!(!text.contains("pw_of_e"), "no password in the published text: {text}");
        let shard = v0.adopt(Published::parse(&text, &sealer).unwrap()).unwrap();
        assert_eq!(shard.db_users[1].password, "pw_of_e", "the shard has it all the same");
        assert_eq!(shard.version, 1);
        assert_eq!(shard.layout, v1.layout);
        assert_eq!(shard.user("u3").unwrap().0, 2);
        assert!(shard.server(1).unwrap().removed);

        // Coming back gets the old index.
        let (v2, _) = v1.reload(file(BEFORE), "t.toml".into()).unwrap();
        assert!(!v2.server(1).unwrap().removed);
        assert_eq!(v2.user("u1").unwrap().0, 0);
        assert_eq!(v2.server_ids(), 4);
    }

    #[test]
    fn the_zookeeper_password_is_sealed_and_masked() {
        let text = format!(
            "{BEFORE}\n[zookeeper]\nhosts = \"zk:2181\"\nauth_user = \"fleet\"\nauth_password = \"zk_secret\"\n"
        );
        let c = load(&text);
        let sealer = Sealer::new();
        let published = Published::of(&c, &sealer).to_text().unwrap();
        assert!(!published.contains("zk_secret"), "{published}");
        let back = Published::parse(&published, &sealer).unwrap();
        assert_eq!(back.config.zookeeper.unwrap().auth_password, "zk_secret");
        assert!(!c.to_toml().contains("zk_secret"));
    }

    #[test]
    fn start_only_keys_keep_their_running_value() {
        let v0 = load(BEFORE);
        let after = BEFORE.replace("127.0.0.1:7000", "127.0.0.1:7001");
        let (v1, changes) = v0.reload(file(&after), "t.toml".into()).unwrap();
        assert_eq!(v1.listen, v0.listen);
        assert_eq!(changes.kept.len(), 1);
        assert!(changes.kept[0].contains("proxy.listen"), "{:?}", changes.kept);
    }

    #[test]
    fn an_invalid_reload_names_the_key() {
        let v0 = load(BEFORE);
        let bad = BEFORE.replace("db_user = \"e\"", "db_user = \"nobody\"");
        let e = v0.reload(file(&bad), "t.toml".into()).unwrap_err().to_string();
        assert!(e.contains("user[1].db_user"), "{e}");
        let removed_cluster_still_used = BEFORE.replace("name = \"b\"", "name = \"c\"");
        let e = v0.reload(file(&removed_cluster_still_used), "t.toml".into()).unwrap_err().to_string();
        assert!(e.contains("db_user[1].cluster"), "{e}");
    }

    #[test]
    fn a_removed_cluster_keeps_its_servers_as_tombstones() {
        let v0 = load(BEFORE);
        let after = BEFORE
            .replace(
                "[[cluster]]\nname = \"b\"\n[[cluster.server]]\naddress = \"127.0.0.1:4306\"\nrole = \"primary\"\n",
                "",
            )
            .replace("[[db_user]]\nname = \"e\"\ncluster = \"b\"\n", "")
            .replace("[[user]]\nname = \"u2\"\ndb_user = \"e\"\nallow_empty_password = true\n", "");
        let (v1, changes) = v0.reload(file(&after), "t.toml".into()).unwrap();
        assert!(v1.clusters[1].removed);
        assert_eq!(v1.clusters[1].primary().address, "127.0.0.1:4306");
        assert!(v1.clusters[1].primary().removed);
        assert!(v1.db_users[1].removed);
        assert!(changes.removed.contains(&"cluster b".to_string()), "{changes}");
    }
}
