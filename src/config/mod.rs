//! Configuration: the TOML file schema, its validation into one [`Config`], and the
//! embedded default.
//!
//! The file is read into [`FileConfig`] (serde, unknown keys rejected), command-line
//! overrides are merged into it explicitly ([`Overrides::apply`]), and [`Config::new`]
//! validates the result. Every validation error names the file and the key, so an operator
//! can fix it without reading code. Keys may be added over time but never renamed.

mod layout;
mod overrides;
mod schema;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use thiserror::Error;

pub use layout::{Changes, Layout, Published};
pub use overrides::Overrides;
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
    pub password: String,
    pub db_user: usize,
    pub auth: AuthPlugin,
    pub max_connections: u32,
    pub allow: Vec<IpNet>,
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
    /// By cluster index; every list here is indexed as the [`Layout`] says and keeps
    /// removed entries as tombstones.
    pub clusters: Vec<Cluster>,
    pub db_users: Vec<DbUser>,
    pub users: Vec<User>,
    pub admin_users: Vec<AdminUser>,
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
        if p.pipeline_depth > 0 && p.pipeline_connections == 0 {
            return Err(bad(
                "proxy.pipeline_connections".into(),
                "must be at least 1 when pipeline_depth is on (set pipeline_depth = 0 to turn pipelining off)".into(),
            ));
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
        let online = crate::util::host::online_cpus();
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
        if layout.servers.len() > crate::status::MAX_SERVERS {
            return Err(bad(
                "cluster".into(),
                format!(
                    "at most {} servers over corelay's lifetime (removed ones keep their place until a restart)",
                    crate::status::MAX_SERVERS
                ),
            ));
        }
        let mut seen_clusters = HashMap::new();
        let mut live_servers: Vec<Option<Server>> = vec![None; layout.servers.len()];
        let mut live_clusters: Vec<Option<Cluster>> = vec![None; layout.clusters.len()];
        for (ci, c) in file.cluster.iter().enumerate() {
            let key = format!("cluster[{ci}]");
            if c.name.is_empty() {
                return Err(bad(format!("{key}.name"), "must not be empty".into()));
            }
            if seen_clusters.insert(c.name.clone(), ci).is_some() {
                return Err(bad(format!("{key}.name"), format!("duplicate cluster name {:?}", c.name)));
            }
            let cid = layout.cluster(&c.name).ok_or_else(|| bad(format!("{key}.name"), "not in the layout".into()))?;
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
                if c.server[..si].iter().any(|o| o.address == s.address) {
                    return Err(bad(
                        format!("{skey}.address"),
                        format!("{:?} is listed twice in cluster {:?}", s.address, c.name),
                    ));
                }
                if s.max_connections == 0 {
                    return Err(bad(format!("{skey}.max_connections"), "must be at least 1".into()));
                }
                if s.min_connections > s.max_connections {
                    return Err(bad(format!("{skey}.min_connections"), "must not exceed max_connections".into()));
                }
                if s.connect_timeout_ms == 0 {
                    return Err(bad(format!("{skey}.connect_timeout_ms"), "must be at least 1".into()));
                }
                let id = layout
                    .server(&c.name, &s.address)
                    .ok_or_else(|| bad(format!("{skey}.address"), "not in the layout".into()))?;
                let server = Server {
                    id,
                    cluster: cid,
                    removed: false,
                    address: s.address.clone(),
                    addr,
                    role: s.role,
                    weight: s.weight,
                    max_connections: s.max_connections,
                    min_connections: s.min_connections,
                    reserved_primary_connections: s.reserved_primary_connections,
                    connect_timeout_ms: s.connect_timeout_ms,
                    reconnect_interval_s: s.reconnect_interval_s,
                };
                live_servers[id] = Some(server.clone());
                servers.push(server);
            }
            live_clusters[cid] = Some(Cluster {
                name: c.name.clone(),
                write_time_interval_ms: c.write_time_interval_ms,
                max_replication_lag_s: c.max_replication_lag_s,
                lag_when_primary_lost_s: c.lag_when_primary_lost_s,
                health_interval_ms: c.health_interval_ms.max(100),
                read_only_transactions_on_replicas: c.read_only_transactions_on_replicas,
                monitor: c.monitor_user.clone().map(|u| (u, c.monitor_password.clone())),
                servers,
                removed: false,
            });
        }
        let server_table: Vec<Server> = live_servers
            .into_iter()
            .enumerate()
            .map(|(id, s)| s.unwrap_or_else(|| tombstone::server(&layout, old, id)))
            .collect();
        let clusters: Vec<Cluster> = live_clusters
            .into_iter()
            .enumerate()
            .map(|(cid, c)| c.unwrap_or_else(|| tombstone::cluster(&layout, old, &server_table, cid)))
            .collect();

        let mut seen_db = HashMap::new();
        let mut live_db: Vec<Option<DbUser>> = vec![None; layout.db_users.len()];
        for (i, d) in file.db_user.iter().enumerate() {
            let key = format!("db_user[{i}]");
            if d.name.is_empty() {
                return Err(bad(format!("{key}.name"), "must not be empty".into()));
            }
            if seen_db.insert(d.name.clone(), i).is_some() {
                return Err(bad(format!("{key}.name"), format!("duplicate db_user name {:?}", d.name)));
            }
            let cluster = seen_clusters
                .contains_key(&d.cluster)
                .then(|| layout.cluster(&d.cluster))
                .flatten()
                .ok_or_else(|| bad(format!("{key}.cluster"), format!("no [[cluster]] named {:?}", d.cluster)))?;
            if crate::protocol::charset::collation_id(&d.charset).is_none() {
                return Err(bad(format!("{key}.charset"), format!("unknown character set {:?}", d.charset)));
            }
            if d.default_db.len() > 64 {
                return Err(bad(format!("{key}.default_db"), "longer than 64 characters".into()));
            }
            let id = layout.db_user(&d.name).ok_or_else(|| bad(format!("{key}.name"), "not in the layout".into()))?;
            live_db[id] = Some(DbUser {
                name: d.name.clone(),
                password: d.password.clone(),
                cluster,
                default_db: (!d.default_db.is_empty()).then(|| d.default_db.clone()),
                charset: d.charset.clone(),
                removed: false,
            });
        }
        let db_users: Vec<DbUser> = live_db
            .into_iter()
            .enumerate()
            .map(|(i, d)| d.unwrap_or_else(|| tombstone::db_user(&layout, old, i)))
            .collect();

        if file.user.is_empty() {
            return Err(bad("user".into(), "at least one [[user]] is required, or no client can log in".into()));
        }
        if layout.users.len() > crate::status::MAX_USERS {
            return Err(bad(
                "user".into(),
                format!(
                    "at most {} users over corelay's lifetime (removed ones keep their place until a restart)",
                    crate::status::MAX_USERS
                ),
            ));
        }
        let mut users_by_name = HashMap::new();
        let mut live_users: Vec<Option<User>> = vec![None; layout.users.len()];
        for (i, u) in file.user.iter().enumerate() {
            let key = format!("user[{i}]");
            if u.name.is_empty() {
                return Err(bad(format!("{key}.name"), "must not be empty".into()));
            }
            let id = layout.user(&u.name).ok_or_else(|| bad(format!("{key}.name"), "not in the layout".into()))?;
            if users_by_name.insert(u.name.clone(), id).is_some() {
                return Err(bad(format!("{key}.name"), format!("duplicate user name {:?}", u.name)));
            }
            let db_user = seen_db
                .contains_key(&u.db_user)
                .then(|| layout.db_user(&u.db_user))
                .flatten()
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
            live_users[id] = Some(User {
                name: u.name.clone(),
                password: u.password.clone(),
                db_user,
                auth,
                max_connections: u.max_connections,
                allow,
                removed: false,
            });
        }
        let users: Vec<User> = live_users
            .into_iter()
            .enumerate()
            .map(|(i, u)| u.unwrap_or_else(|| tombstone::user(&layout, old, i)))
            .collect();
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
            server_table,
            layout,
            version,
            file,
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
            password: String::new(),
            db_user: 0,
            auth: AuthPlugin::Native,
            max_connections: 1,
            allow: Vec::new(),
            removed: true,
        }
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
