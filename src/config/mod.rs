//! Configuration: the TOML file schema, its validation into one [`Config`], and the
//! embedded default.
//!
//! The file is read into [`FileConfig`] (serde, unknown keys rejected), command-line
//! overrides are merged into it explicitly ([`cli::Overrides::apply`]), and [`Config::new`]
//! validates the result. Every validation error names the file and the key, so an operator
//! can fix it without reading code. Keys may be added over time but never renamed.

pub mod cli;
mod schema;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use thiserror::Error;

pub use schema::*;

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
    /// Position among all servers of all clusters (the pool's index).
    pub id: usize,
    pub address: String,
    pub addr: SocketAddr,
    pub role: Role,
    pub weight: u32,
    pub max_connections: u32,
    pub min_connections: u32,
    pub reserved_primary_connections: u32,
    pub connect_timeout_ms: u64,
    pub reconnect_interval_s: u64,
}

#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub write_time_interval_ms: u64,
    pub max_replication_lag_s: u64,
    pub health_interval_ms: u64,
    pub read_only_transactions_on_replicas: bool,
    /// Credentials of the health checks (None: the cluster's first db user).
    pub monitor: Option<(String, String)>,
    pub servers: Vec<Server>,
}

impl Cluster {
    /// The cluster's primary (validation guarantees exactly one).
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
}

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: String,
    pub db_user: usize,
    pub auth: AuthPlugin,
    pub max_connections: u32,
    pub allow: Vec<IpNet>,
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
    pub password: String,
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
    pub clusters: Vec<Cluster>,
    pub db_users: Vec<DbUser>,
    pub users: Vec<User>,
    pub admin_users: Vec<AdminUser>,
    users_by_name: HashMap<String, usize>,
    /// The file form, after overrides, for `check-config` to print.
    pub file: FileConfig,
}

impl Config {
    /// Reads and parses a file (without validating it).
    pub fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
        FileConfig::parse(&text, &file)
    }

    /// The embedded default in file form.
    pub fn embedded() -> FileConfig {
        // The embedded default is checked by a unit test; failing here is a build defect.
        FileConfig::parse(EMBEDDED_DEFAULT, "<embedded default>").expect("embedded default config parses")
    }

    /// Loads `path` (or the embedded default), applies overrides, validates.
    pub fn load(path: Option<&PathBuf>, overrides: &cli::Overrides) -> Result<Config, ConfigError> {
        let (mut file, source) = match path {
            Some(p) => (Self::read_file(p)?, p.display().to_string()),
            None => (Self::embedded(), "<embedded default>".to_string()),
        };
        overrides.apply(&mut file);
        Config::new(file, source)
    }

    /// Validates a file configuration.
    pub fn new(file: FileConfig, source: String) -> Result<Config, ConfigError> {
        let bad = |key: String, message: String| ConfigError::Invalid { file: source.clone(), key, message };
        let p = &file.proxy;

        let listen = parse_addr(&p.listen).map_err(|m| bad("proxy.listen".into(), m))?;
        let optional_addr = |s: &str, key: &str| match s.trim() {
            "" => Ok(None),
            s => parse_addr(s).map(Some).map_err(|m| bad(key.into(), m)),
        };
        let admin_addr = optional_addr(&p.admin_listen, "proxy.admin_listen")?;
        let metrics_addr = optional_addr(&p.metrics_listen, "proxy.metrics_listen")?;
        let mut admin_allow = Vec::new();
        for (j, a) in p.admin_allow.iter().enumerate() {
            admin_allow.push(parse_cidr(a).map_err(|m| bad(format!("proxy.admin_allow[{j}]"), m))?);
        }
        if p.status_table_capacity == 0 || p.status_table_capacity > 1 << 20 {
            return Err(bad("proxy.status_table_capacity".into(), "must be between 1 and 1048576".into()));
        }
        if !matches!(p.log_format.as_str(), "text" | "json") {
            return Err(bad(
                "proxy.log_format".into(),
                format!("unknown format {:?}: use \"text\" or \"json\"", p.log_format),
            ));
        }
        if p.log_max_bytes < 4096 {
            return Err(bad("proxy.log_max_bytes".into(), "must be at least 4096".into()));
        }
        if p.histogram_interval_s == 0 {
            return Err(bad("proxy.histogram_interval_s".into(), "must be at least 1".into()));
        }
        if p.backlog == 0 {
            return Err(bad("proxy.backlog".into(), "must be at least 1".into()));
        }
        if p.max_packet_bytes < 1024 || p.max_packet_bytes > 1 << 30 {
            return Err(bad("proxy.max_packet_bytes".into(), "must be between 1024 and 1073741824".into()));
        }
        if p.max_client_connections == 0 {
            return Err(bad("proxy.max_client_connections".into(), "must be at least 1".into()));
        }
        if p.pool_wait_timeout_ms == 0 {
            return Err(bad("proxy.pool_wait_timeout_ms".into(), "must be at least 1".into()));
        }
        if p.max_prepared_per_connection == 0 {
            return Err(bad("proxy.max_prepared_per_connection".into(), "must be at least 1".into()));
        }
        if p.backend_max_uses == 0 {
            return Err(bad("proxy.backend_max_uses".into(), "must be at least 1".into()));
        }
        if p.io_memory_kib < 16 {
            return Err(bad("proxy.io_memory_kib".into(), "must be at least 16".into()));
        }
        let online = crate::shard::online_cpus();
        for (i, cpu) in p.cpus.iter().enumerate() {
            if *cpu >= online {
                return Err(bad(
                    format!("proxy.cpus[{i}]"),
                    format!("CPU {cpu} is not online (this host has {online})"),
                ));
            }
        }
        if !p.cpus.is_empty() && p.workers > 0 && p.cpus.len() < p.workers {
            return Err(bad(
                "proxy.cpus".into(),
                format!(
                    "lists {} CPUs but proxy.workers is {}; list one CPU per worker or leave it empty",
                    p.cpus.len(),
                    p.workers
                ),
            ));
        }

        if file.cluster.is_empty() {
            return Err(bad("cluster".into(), "at least one [[cluster]] is required".into()));
        }
        let mut clusters = Vec::new();
        let mut cluster_idx = HashMap::new();
        let mut next_server_id = 0;
        let total_servers: usize = file.cluster.iter().map(|c| c.server.len()).sum();
        if total_servers > crate::status::MAX_SERVERS {
            return Err(bad("cluster".into(), format!("at most {} servers in all", crate::status::MAX_SERVERS)));
        }
        for (ci, c) in file.cluster.iter().enumerate() {
            let key = format!("cluster[{ci}]");
            if c.name.is_empty() {
                return Err(bad(format!("{key}.name"), "must not be empty".into()));
            }
            if cluster_idx.insert(c.name.clone(), ci).is_some() {
                return Err(bad(format!("{key}.name"), format!("duplicate cluster name {:?}", c.name)));
            }
            if c.server.is_empty() {
                return Err(bad(format!("{key}.server"), "a cluster needs at least one [[cluster.server]]".into()));
            }
            let primaries = c.server.iter().filter(|s| s.role == Role::Primary).count();
            if primaries != 1 {
                return Err(bad(
                    format!("{key}.server"),
                    format!("a cluster needs exactly one server with role = \"primary\" (found {primaries})"),
                ));
            }
            let mut servers = Vec::new();
            for (si, s) in c.server.iter().enumerate() {
                let skey = format!("{key}.server[{si}]");
                let addr = parse_addr(&s.address).map_err(|m| bad(format!("{skey}.address"), m))?;
                if s.max_connections == 0 {
                    return Err(bad(format!("{skey}.max_connections"), "must be at least 1".into()));
                }
                if s.min_connections > s.max_connections {
                    return Err(bad(format!("{skey}.min_connections"), "must not exceed max_connections".into()));
                }
                if s.connect_timeout_ms == 0 {
                    return Err(bad(format!("{skey}.connect_timeout_ms"), "must be at least 1".into()));
                }
                servers.push(Server {
                    id: next_server_id,
                    address: s.address.clone(),
                    addr,
                    role: s.role,
                    weight: s.weight,
                    max_connections: s.max_connections,
                    min_connections: s.min_connections,
                    reserved_primary_connections: s.reserved_primary_connections,
                    connect_timeout_ms: s.connect_timeout_ms,
                    reconnect_interval_s: s.reconnect_interval_s,
                });
                next_server_id += 1;
            }
            clusters.push(Cluster {
                name: c.name.clone(),
                write_time_interval_ms: c.write_time_interval_ms,
                max_replication_lag_s: c.max_replication_lag_s,
                health_interval_ms: c.health_interval_ms.max(100),
                read_only_transactions_on_replicas: c.read_only_transactions_on_replicas,
                monitor: c.monitor_user.clone().map(|u| (u, c.monitor_password.clone())),
                servers,
            });
        }

        let mut db_users = Vec::new();
        let mut db_idx = HashMap::new();
        for (i, d) in file.db_user.iter().enumerate() {
            let key = format!("db_user[{i}]");
            if d.name.is_empty() {
                return Err(bad(format!("{key}.name"), "must not be empty".into()));
            }
            if db_idx.insert(d.name.clone(), i).is_some() {
                return Err(bad(format!("{key}.name"), format!("duplicate db_user name {:?}", d.name)));
            }
            let cluster = *cluster_idx
                .get(&d.cluster)
                .ok_or_else(|| bad(format!("{key}.cluster"), format!("no [[cluster]] named {:?}", d.cluster)))?;
            if crate::protocol::charset::collation_id(&d.charset).is_none() {
                return Err(bad(format!("{key}.charset"), format!("unknown character set {:?}", d.charset)));
            }
            if d.default_db.len() > 64 {
                return Err(bad(format!("{key}.default_db"), "longer than 64 characters".into()));
            }
            db_users.push(DbUser {
                name: d.name.clone(),
                password: d.password.clone(),
                cluster,
                default_db: (!d.default_db.is_empty()).then(|| d.default_db.clone()),
                charset: d.charset.clone(),
            });
        }

        if file.user.is_empty() {
            return Err(bad("user".into(), "at least one [[user]] is required, or no client can log in".into()));
        }
        let mut users = Vec::new();
        let mut users_by_name = HashMap::new();
        for (i, u) in file.user.iter().enumerate() {
            let key = format!("user[{i}]");
            if u.name.is_empty() {
                return Err(bad(format!("{key}.name"), "must not be empty".into()));
            }
            if users_by_name.insert(u.name.clone(), i).is_some() {
                return Err(bad(format!("{key}.name"), format!("duplicate user name {:?}", u.name)));
            }
            let db_user = *db_idx
                .get(&u.db_user)
                .ok_or_else(|| bad(format!("{key}.db_user"), format!("no [[db_user]] named {:?}", u.db_user)))?;
            let auth = match u.auth.as_str() {
                "mysql_native_password" => AuthPlugin::Native,
                "caching_sha2_password" => AuthPlugin::CachingSha2,
                other => {
                    return Err(bad(
                        format!("{key}.auth"),
                        format!("unknown plugin {other:?}; use \"mysql_native_password\" or \"caching_sha2_password\""),
                    ))
                }
            };
            let mut allow = Vec::new();
            for (j, a) in u.allow.iter().enumerate() {
                allow.push(parse_cidr(a).map_err(|m| bad(format!("{key}.allow[{j}]"), m))?);
            }
            if u.max_connections == 0 {
                return Err(bad(format!("{key}.max_connections"), "must be at least 1".into()));
            }
            users.push(User {
                name: u.name.clone(),
                password: u.password.clone(),
                db_user,
                auth,
                max_connections: u.max_connections,
                allow,
            });
        }
        if users.len() > crate::status::MAX_USERS {
            return Err(bad("user".into(), format!("at most {} users are supported", crate::status::MAX_USERS)));
        }
        let admin_users =
            file.admin_user.iter().map(|a| AdminUser { name: a.name.clone(), password: a.password.clone() }).collect();

        Ok(Config {
            source,
            proxy: file.proxy.clone(),
            listen,
            admin_addr,
            metrics_addr,
            admin_allow,
            clusters,
            db_users,
            users,
            admin_users,
            users_by_name,
            file,
        })
    }

    /// The server with this id.
    pub fn server(&self, id: usize) -> Option<&Server> {
        self.servers().nth(id)
    }

    /// Every server of every cluster, in id order.
    pub fn servers(&self) -> impl Iterator<Item = &Server> {
        self.clusters.iter().flat_map(|c| c.servers.iter())
    }

    /// Looks a product user up by login name; returns its index and entry.
    pub fn user(&self, name: &str) -> Option<(usize, &User)> {
        self.users_by_name.get(name).map(|&i| (i, &self.users[i]))
    }

    /// Number of shards to run: `workers`, or one per online CPU when 0.
    pub fn shard_count(&self) -> usize {
        match self.proxy.workers {
            0 if !self.proxy.cpus.is_empty() => self.proxy.cpus.len(),
            0 => crate::shard::online_cpus(),
            n => n,
        }
    }

    /// The CPU shard `k` is pinned to.
    pub fn cpu_for_shard(&self, k: usize) -> usize {
        match self.proxy.cpus.get(k) {
            Some(&cpu) => cpu,
            None => k % crate::shard::online_cpus().max(1),
        }
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
        toml::to_string_pretty(&f).unwrap_or_else(|e| format!("# cannot print configuration: {e}\n"))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(s: &str) -> Result<Config, ConfigError> {
        Config::new(FileConfig::parse(s, "t.toml")?, "t.toml".into())
    }

    const MINIMAL: &str = r#"
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
allow = ["10.1.0.0/16", "::1", "192.168.1.7"]
"#;

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::new(Config::embedded(), "<embedded default>".into()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:6033".parse().unwrap());
        assert_eq!(c.clusters[0].primary().addr, "127.0.0.1:3306".parse().unwrap());
        let (_, root) = c.user("root").unwrap();
        assert_eq!(root.password, "");
        assert_eq!(c.db_users[root.db_user].name, "root");
        assert_eq!(c.proxy.worker_mode, WorkerMode::Thread);
    }

    #[test]
    fn tuning_examples_are_valid() {
        for f in ["tuning/default.toml", "tuning/two-users.toml"] {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(f);
            let file = Config::read_file(&path).unwrap();
            Config::new(file, f.into()).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }

    #[test]
    fn minimal_file_gets_defaults_and_cidrs() {
        let c = load_str(MINIMAL).unwrap();
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
        let e = load_str(&format!("{MINIMAL}\n[proxy]\nlisten_port = 1\n")).unwrap_err().to_string();
        assert!(e.contains("listen_port"), "{e}");
        assert!(e.starts_with("t.toml"), "{e}");
    }

    #[test]
    fn validation_errors_name_the_key() {
        let cases = [
            (MINIMAL.replace("db_user = \"d\"", "db_user = \"nope\""), "user[0].db_user"),
            (MINIMAL.replace("cluster = \"c\"", "cluster = \"x\""), "db_user[0].cluster"),
            (MINIMAL.replace("\"10.1.0.0/16\"", "\"10.1.0.0/33\""), "user[0].allow[0]"),
            (MINIMAL.replace("127.0.0.1:3306", "nohost"), "cluster[0].server[0].address"),
            (MINIMAL.replace("role = \"primary\"", "role = \"replica\""), "cluster[0].server"),
            (format!("{MINIMAL}\n[proxy]\nlisten = \"x\"\n"), "proxy.listen"),
            (format!("{MINIMAL}\n[proxy]\nmax_packet_bytes = 5\n"), "proxy.max_packet_bytes"),
            (
                MINIMAL.replace("db_user = \"d\"\nallow", "db_user = \"d\"\nauth = \"sha256_password\"\nallow"),
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
        let e = load_str(&format!("{MINIMAL}\n[proxy]\nworker_mode = \"process\"\n")).unwrap_err().to_string();
        assert!(e.contains("worker_mode"), "{e}");
    }

    #[test]
    fn check_config_output_masks_passwords_and_reparses() {
        let c = load_str(&MINIMAL.replace("name = \"u\"", "name = \"u\"\npassword = \"hunter2\"")).unwrap();
        let out = c.to_toml();
        assert!(!out.contains("hunter2"));
        FileConfig::parse(&out, "printed").unwrap();
    }
}
