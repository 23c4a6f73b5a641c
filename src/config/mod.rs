//! Configuration: the TOML file schema, its validation into one [`Config`], and the
//! embedded default.
//!
//! The file is read into [`FileConfig`] (serde, unknown keys rejected), command-line
//! overrides are merged into it explicitly ([`Overrides::apply`]), and [`Config::new`]
//! validates the result. Every validation error names the file and the key, so an operator
//! can fix it without reading code. Keys may be added over time but never renamed.

mod layout;
mod overrides;
pub mod rules;
mod schema;
mod tls;
mod validate;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use thiserror::Error;

pub use layout::{Changes, Layout, Published};
pub use overrides::Overrides;
pub use schema::*;
pub use tls::ServerTls;

/// The configuration corelay runs when no `--config` is given (also `tuning/default.toml`).
pub const EMBEDDED_DEFAULT: &str = include_str!("../../tuning/default.toml");

/// Exit code for a configuration error; the master never respawns a shard that exits so.
pub const EXIT_CONFIG: i32 = 78;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: {key}: {message}")]
    Invalid { file: String, key: String, message: String },
}

/// A product user's authentication plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthPlugin {
    Native,
    CachingSha2,
}

impl AuthPlugin {
    pub fn name(self) -> &'static str {
        match self {
            AuthPlugin::Native => crate::protocol::auth::NATIVE,
            AuthPlugin::CachingSha2 => crate::protocol::auth::CACHING_SHA2,
        }
    }
}

/// A backend server, resolved.
#[derive(Debug, Clone)]
pub struct Server {
    /// Its index in the [`Layout`] (the pool's, the health table's): stable across reloads.
    pub id: usize,
    /// The cluster's index.
    pub cluster: usize,
    /// Gone from the file since: nothing new is sent to it (a tombstone).
    pub removed: bool,
    pub address: String,
    pub addr: SocketAddr,
    pub role: Role,
    pub weight: u32,
    pub max_connections: u32,
    pub min_connections: u32,
    pub reserved_primary_connections: u32,
    pub connect_timeout_ms: u64,
    pub reconnect_interval_s: u64,
    /// TLS to this server (None: `tls = "disabled"`).
    pub tls: Option<ServerTls>,
}

#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub write_time_interval_ms: u64,
    pub max_replication_lag_s: u64,
    pub lag_when_primary_lost_s: Option<u64>,
    pub health_interval_ms: u64,
    pub read_only_transactions_on_replicas: bool,
    /// Credentials of the health checks (None: the cluster's first db user).
    pub monitor: Option<(String, String)>,
    /// Its servers (a live cluster: the live ones, in file order; a removed one: its last).
    pub servers: Vec<Server>,
    pub removed: bool,
}

impl Cluster {
    /// The cluster's primary (validation guarantees exactly one in a live cluster, and
    /// every cluster has at least one server).
    pub fn primary(&self) -> &Server {
        self.servers.iter().find(|s| s.role == Role::Primary).unwrap_or(&self.servers[0])
    }
}

#[derive(Debug, Clone)]
pub struct DbUser {
    pub name: String,
    pub password: String,
    pub cluster: usize,
    pub default_db: Option<String>,
    pub charset: String,
    pub removed: bool,
}

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    /// The password's hashes (the plaintext, when configured, is not kept).
    pub credential: crate::protocol::credential::Credential,
    pub db_user: usize,
    pub auth: AuthPlugin,
    pub max_connections: u32,
    pub allow: Vec<IpNet>,
    /// false: each session keeps one backend connection of its own for its whole life.
    pub multiplex: bool,
    /// May KILL any session of this corelay, not only its own user's.
    pub admin: bool,
    /// Must log in over TLS.
    pub require_tls: bool,
    /// May run `checkproxystatus`.
    pub status_queries: bool,
    /// Gone from the file: nobody logs in as it any more; its sessions go on.
    pub removed: bool,
}

impl User {
    /// Whether a client at `ip` may log in as this user.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.allow.iter().any(|net| net.contains(&ip))
    }
}

/// IPv4 clients reaching an IPv6 socket appear as `::ffff:a.b.c.d`: the IPv4 address, as
/// allow-lists, logs and status tables show it.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[derive(Debug, Clone)]
pub struct AdminUser {
    pub name: String,
    /// As configured (`corelay report` logs in with it when it is not a hash form).
    pub password: String,
    pub credential: crate::protocol::credential::Credential,
    pub role: AdminRole,
}

/// The validated configuration every part of corelay reads.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from: a file path, or `<embedded default>`.
    pub source: String,
    pub proxy: Proxy,
    pub listen: SocketAddr,
    /// The admin port (None: off).
    pub admin_addr: Option<SocketAddr>,
    /// The `/metrics` port (None: off).
    pub metrics_addr: Option<SocketAddr>,
    pub admin_allow: Vec<IpNet>,
    /// Who may read `/metrics`.
    pub metrics_allow: Vec<IpNet>,
    /// Client-side TLS (None: no `tls_cert`).
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// `tls_rsa_key`, loaded (None: unset, a key made on first use serves).
    pub rsa: Option<std::sync::Arc<crate::protocol::rsa::RsaKey>>,
    /// By cluster index; every list here is indexed as the [`Layout`] says and keeps
    /// removed entries as tombstones.
    pub clusters: Vec<Cluster>,
    pub db_users: Vec<DbUser>,
    pub users: Vec<User>,
    pub admin_users: Vec<AdminUser>,
    /// `[[rule]]`, in order.
    pub rules: Vec<rules::Rule>,
    /// Live users only.
    users_by_name: HashMap<String, usize>,
    /// Every server by id, removed ones included.
    server_table: Vec<Server>,
    pub layout: Layout,
    /// 0 at start, one more with every reload.
    pub version: u64,
    /// The file form, after overrides, for `check-config` to print.
    pub file: FileConfig,
}

impl Config {
    /// Reads and parses a file (without validating it). Warns when others than its owner
    /// may read it: it holds passwords.
    pub fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
        if let Some(warning) = exposure(path) {
            tracing::warn!("{warning}");
        }
        FileConfig::parse(&text, &file)
    }

    /// The embedded default in file form.
    pub fn embedded() -> FileConfig {
        // The embedded default is checked by a unit test; failing here is a build defect.
        FileConfig::parse(EMBEDDED_DEFAULT, "<embedded default>").expect("embedded default config parses")
    }

    /// Loads `path` (or the embedded default), applies overrides, validates.
    pub fn load(path: Option<&PathBuf>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let (mut file, source) = match path {
            Some(p) => (Self::read_file(p)?, p.display().to_string()),
            None => (Self::embedded(), "<embedded default>".to_string()),
        };
        overrides.apply(&mut file);
        Config::new(file, source)
    }

    /// Validates a file configuration (the first of a process: indexes in file order).
    pub fn new(file: FileConfig, source: String) -> Result<Config, ConfigError> {
        let mut layout = Layout::default();
        layout.extend(&file);
        Config::build(file, source, layout, None, 0)
    }

    /// Validates `file`, giving every entry the index `layout` has for it (`layout` knows
    /// every entry of `file`); entries of `layout` the file lacks become tombstones, made
    /// from `old` where it has them.
    fn build(
        file: FileConfig,
        source: String,
        layout: Layout,
        old: Option<&Config>,
        version: u64,
    ) -> Result<Config, ConfigError> {
        let check = validate::Check { source: &source };
        let addresses = check.addresses(&file.proxy)?;
        check.limits(&file.proxy)?;
        check.cpus(&file.proxy)?;
        check.zookeeper(&file)?;
        let topology = check.clusters(&file, &layout, old)?;
        let (db_by_name, db_users) = check.db_users(&file, &layout, old, &topology.by_name)?;
        let (users_by_name, users) = check.users(&file, &layout, old, &db_by_name)?;
        let admin_users = validate::admin_users(&file);
        let db_cluster = |u: usize| db_users[users[u].db_user].cluster;
        let rules = check.rules(&file.rule, &users_by_name, db_cluster, &topology.server_table)?;
        let tls = check.client_tls(&file.proxy, old)?;
        let rsa = check.rsa_key(&file.proxy, old)?;
        Ok(Config {
            tls,
            rsa,
            metrics_allow: addresses.metrics_allow,
            proxy: file.proxy.clone(),
            listen: addresses.listen,
            admin_addr: addresses.admin_addr,
            metrics_addr: addresses.metrics_addr,
            admin_allow: addresses.admin_allow,
            clusters: topology.clusters,
            db_users,
            users,
            admin_users,
            rules,
            users_by_name,
            server_table: topology.server_table,
            layout,
            version,
            file,
            source,
        })
    }

    /// The server with this id (removed ones included).
    pub fn server(&self, id: usize) -> Option<&Server> {
        self.server_table.get(id)
    }

    /// Every server in the configuration, in id order (removed ones left out).
    pub fn servers(&self) -> impl Iterator<Item = &Server> {
        self.server_table.iter().filter(|s| !s.removed)
    }

    /// Every server id there is, removed ones included.
    pub fn server_ids(&self) -> usize {
        self.server_table.len()
    }

    /// The cluster product user `user`'s sessions are served by.
    pub fn cluster_of(&self, user: usize) -> &Cluster {
        &self.clusters[self.db_users[self.users[user].db_user].cluster]
    }

    /// Looks a product user up by login name; returns its index and entry.
    pub fn user(&self, name: &str) -> Option<(usize, &User)> {
        self.users_by_name.get(name).map(|&i| (i, &self.users[i]))
    }

    /// Number of shards to run: `workers`, or one per online CPU when 0.
    pub fn shard_count(&self) -> usize {
        match self.proxy.workers {
            0 if !self.proxy.cpus.is_empty() => self.proxy.cpus.len(),
            0 => crate::util::host::online_cpus(),
            n => n,
        }
    }

    /// The CPU shard `k` is pinned to.
    pub fn cpu_for_shard(&self, k: usize) -> usize {
        match self.proxy.cpus.get(k) {
            Some(&cpu) => cpu,
            None => k % crate::util::host::online_cpus().max(1),
        }
    }

    /// What is allowed but likely a mistake: users any address may log in as (`allow`
    /// left to its default). Logged at start and at every reload.
    pub fn warnings(&self) -> Vec<String> {
        let everything = |u: &User| u.allow.iter().any(|n| n.prefix_len() == 0);
        self.users
            .iter()
            .filter(|u| !u.removed && everything(u))
            .map(|u| {
                format!(
                    "user {:?} may log in from any address (user.allow is everything): list its application hosts' networks",
                    u.name
                )
            })
            .collect()
    }

    /// The effective configuration as TOML, passwords masked.
    pub fn to_toml(&self) -> String {
        let mut f = self.file.clone();
        for d in &mut f.db_user {
            mask(&mut d.password);
        }
        for u in &mut f.user {
            mask(&mut u.password);
        }
        for a in &mut f.admin_user {
            mask(&mut a.password);
        }
        for c in &mut f.cluster {
            mask(&mut c.monitor_password);
        }
        if let Some(z) = f.zookeeper.as_mut() {
            mask(&mut z.auth_password);
        }
        toml::to_string_pretty(&f).unwrap_or_else(|e| format!("# cannot print configuration: {e}\n"))
    }
}

/// Entries the file no longer has: the last known ones, flagged removed.
mod tombstone {
    use super::*;

    pub fn server(layout: &Layout, old: Option<&Config>, id: usize) -> Server {
        if let Some(s) = old.and_then(|o| o.server_table.get(id)) {
            return Server { removed: true, ..s.clone() };
        }
        // Never seen by this process (added and removed by reloads it skipped).
        let (cluster, address) = layout.servers.get(id).cloned().unwrap_or_default();
        Server {
            id,
            cluster: layout.cluster(&cluster).unwrap_or(0),
            removed: true,
            addr: address.parse().unwrap_or_else(|_| ([0, 0, 0, 0], 0).into()),
            address,
            role: Role::Replica,
            weight: 0,
            max_connections: 1,
            min_connections: 0,
            reserved_primary_connections: 0,
            connect_timeout_ms: 1000,
            reconnect_interval_s: 30,
            tls: None,
        }
    }

    /// `servers`: every server by id (the cluster's own are those naming it).
    pub fn cluster(layout: &Layout, old: Option<&Config>, servers: &[Server], cid: usize) -> Cluster {
        let mine: Vec<Server> = servers.iter().filter(|s| s.cluster == cid).cloned().collect();
        if let Some(c) = old.and_then(|o| o.clusters.get(cid)) {
            return Cluster { removed: true, servers: mine, ..c.clone() };
        }
        Cluster {
            name: layout.clusters.get(cid).cloned().unwrap_or_default(),
            write_time_interval_ms: 0,
            max_replication_lag_s: 0,
            lag_when_primary_lost_s: None,
            health_interval_ms: 1000,
            read_only_transactions_on_replicas: false,
            monitor: None,
            servers: mine,
            removed: true,
        }
    }

    pub fn db_user(layout: &Layout, old: Option<&Config>, i: usize) -> DbUser {
        if let Some(d) = old.and_then(|o| o.db_users.get(i)) {
            return DbUser { removed: true, ..d.clone() };
        }
        DbUser {
            name: layout.db_users.get(i).cloned().unwrap_or_default(),
            password: String::new(),
            cluster: 0,
            default_db: None,
            charset: "utf8mb4".into(),
            removed: true,
        }
    }

    pub fn user(layout: &Layout, old: Option<&Config>, i: usize) -> User {
        if let Some(u) = old.and_then(|o| o.users.get(i)) {
            return User { removed: true, ..u.clone() };
        }
        User {
            name: layout.users.get(i).cloned().unwrap_or_default(),
            credential: Default::default(),
            db_user: 0,
            auth: AuthPlugin::Native,
            max_connections: 1,
            allow: Vec::new(),
            multiplex: true,
            admin: false,
            require_tls: false,
            status_queries: false,
            removed: true,
        }
    }
}

/// What to say when a config file may be read by others than its owner.
pub fn exposure(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "config file {} is readable by others than its owner (mode {mode:03o}) and holds passwords: chmod 600 it",
            path.display()
        )
    })
}

fn mask(s: &mut String) {
    if !s.is_empty() {
        *s = "********".into();
    }
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    match s.to_socket_addrs() {
        Ok(mut it) => it.next().ok_or_else(|| format!("{s:?} resolves to no address")),
        Err(e) => Err(format!("{s:?} is not an address of the form host:port ({e})")),
    }
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    match s.parse::<IpAddr>() {
        Ok(ip) => Ok(IpNet::from(ip)),
        Err(_) => Err(format!("{s:?} is not an IP address or CIDR range (e.g. \"10.0.0.0/8\", \"::1/128\")")),
    }
}

/// Configurations for unit tests elsewhere in the crate.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Config, FileConfig};

    /// One cluster `c` with one primary, db user `d`, product user `u` with an empty
    /// password (the `[[user]]` table is last: keys appended go to it).
    pub const ONE_PRIMARY: &str = r#"
[[cluster]]
name = "c"
[[cluster.server]]
address = "127.0.0.1:3306"
role = "primary"
[[db_user]]
name = "d"
cluster = "c"
[[user]]
name = "u"
db_user = "d"
allow_empty_password = true
"#;

    /// `text` validated.
    pub fn config(text: &str) -> Config {
        Config::new(FileConfig::parse(text, "test").unwrap(), "test".into()).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(s: &str) -> Result<Config, ConfigError> {
        Config::new(FileConfig::parse(s, "t.toml")?, "t.toml".into())
    }

    fn minimal() -> String {
        format!("{}allow = [\"10.1.0.0/16\", \"::1\", \"192.168.1.7\"]\n", testing::ONE_PRIMARY)
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::new(Config::embedded(), "<embedded default>".into()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:6033".parse().unwrap());
        assert_eq!(c.clusters[0].primary().addr, "127.0.0.1:3306".parse().unwrap());
        let (_, root) = c.user("root").unwrap();
        assert!(root.credential.empty);
        assert_eq!(c.db_users[root.db_user].name, "root");
        assert_eq!(c.proxy.worker_mode, WorkerMode::Thread);
    }

    #[test]
    fn tuning_examples_are_valid() {
        for f in [
            "tuning/default.toml",
            "tuning/two-users.toml",
            "tuning/high-core.toml",
            "tuning/low-latency.toml",
            "tuning/many-clients.toml",
            "tuning/shared-host.toml",
        ] {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(f);
            let mut file = Config::read_file(&path).unwrap();
            // A preset for a bigger host names CPUs this one may not have.
            if file.proxy.cpus.iter().any(|&c| c >= crate::util::host::online_cpus()) {
                file.proxy.cpus.clear();
            }
            Config::new(file, f.into()).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }

    #[test]
    fn a_user_open_to_every_address_is_warned_about() {
        let open = load_str(testing::ONE_PRIMARY).unwrap();
        assert!(open.warnings().iter().any(|w| w.contains("\"u\"") && w.contains("any address")));
        assert!(load_str(&minimal()).unwrap().warnings().is_empty());
    }

    #[test]
    fn minimal_file_gets_defaults_and_cidrs() {
        let c = load_str(&minimal()).unwrap();
        assert_eq!(c.proxy.listen, "0.0.0.0:6033");
        assert_eq!(c.proxy.backlog, 1024);
        let (_, u) = c.user("u").unwrap();
        assert_eq!(u.auth, AuthPlugin::Native);
        assert!(u.allows("10.1.200.3".parse().unwrap()));
        assert!(!u.allows("10.2.0.1".parse().unwrap()));
        assert!(u.allows("::1".parse().unwrap()));
        assert!(u.allows("192.168.1.7".parse().unwrap()));
        assert!(u.allows("::ffff:192.168.1.7".parse().unwrap()));
        assert!(!u.allows("192.168.1.8".parse().unwrap()));
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let e = load_str(&format!("{}\n[proxy]\nlisten_port = 1\n", minimal())).unwrap_err().to_string();
        assert!(e.contains("listen_port"), "{e}");
        assert!(e.starts_with("t.toml"), "{e}");
    }

    #[test]
    fn validation_errors_name_the_key() {
        let cases = [
            (minimal().replace("db_user = \"d\"", "db_user = \"nope\""), "user[0].db_user"),
            (minimal().replace("cluster = \"c\"", "cluster = \"x\""), "db_user[0].cluster"),
            (minimal().replace("\"10.1.0.0/16\"", "\"10.1.0.0/33\""), "user[0].allow[0]"),
            (minimal().replace("127.0.0.1:3306", "nohost"), "cluster[0].server[0].address"),
            (minimal().replace("role = \"primary\"", "role = \"replica\""), "cluster[0].server"),
            (format!("{}\n[proxy]\nlisten = \"x\"\n", minimal()), "proxy.listen"),
            (format!("{}\n[proxy]\nmax_packet_bytes = 5\n", minimal()), "proxy.max_packet_bytes"),
            (
                minimal().replace("db_user = \"d\"\nallow", "db_user = \"d\"\nauth = \"sha256_password\"\nallow"),
                "user[0].auth",
            ),
        ];
        for (text, key) in cases {
            let e = load_str(&text).unwrap_err().to_string();
            assert!(e.contains(key), "expected {key} in {e}");
        }
    }

    #[test]
    fn bad_worker_mode_is_rejected() {
        let e = load_str(&format!("{}\n[proxy]\nworker_mode = \"process\"\n", minimal())).unwrap_err().to_string();
        assert!(e.contains("worker_mode"), "{e}");
    }

    #[test]
    fn check_config_output_masks_passwords_and_reparses() {
        let c = load_str(&minimal().replace("name = \"u\"", "name = \"u\"\npassword = \"hunter2\"")).unwrap();
        let out = c.to_toml();
        assert!(!out.contains("hunter2"));
        FileConfig::parse(&out, "printed").unwrap();
    }

    #[test]
    fn secrets_stay_out_of_printed_config_and_parse_errors() {
        let mut f = Config::embedded();
        f.cluster[0].monitor_user = Some("mon".into());
        f.cluster[0].monitor_password = "mon-secret".into();
        let c = Config::new(f, "test".into()).unwrap();
        let printed = c.to_toml();
        assert!(!printed.contains("mon-secret") && printed.contains("monitor_password"), "{printed}");
        let e =
            FileConfig::parse("[[db_user]]\nname = \"x\"\npassword = \"hunter2\n", "f.toml").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("line 3") && e.contains("`password`"), "{e}");
    }

    #[test]
    fn a_config_file_others_can_read_is_reported() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(exposure(&path).is_some_and(|w| w.contains("mode 644") && w.contains("chmod 600")));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(exposure(&path), None);
    }
}
