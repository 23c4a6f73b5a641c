//! Validation of a file configuration, in named steps: the proxy's addresses, its limits,
//! its CPUs, then clusters and their servers, db users and users, each checked against
//! what it refers to. Every error names the file and the key.
//!
//! Entries take the index the [`Layout`] gives them; entries of the layout the file lacks
//! become tombstones (see [`super::tombstone`]), so indexes stay stable across reloads.

use std::collections::HashMap;
use std::net::SocketAddr;

use ipnet::IpNet;

use crate::protocol::credential::Credential;

use super::{
    parse_addr, parse_cidr, tombstone, AdminUser, AuthPlugin, Cluster, Config, ConfigError, DbUser, FileConfig, Layout,
    Proxy, Role, Server, User,
};

/// Turns a key and a message into the error for the file being validated.
pub(super) struct Check<'a> {
    pub source: &'a str,
}

impl Check<'_> {
    /// The status region has room for `max` entries of a kind over corelay's lifetime.
    fn lifetime_limit(&self, key: &str, what: &str, count: usize, max: usize) -> Result<(), ConfigError> {
        if count <= max {
            return Ok(());
        }
        let message =
            format!("at most {max} {what} over corelay's lifetime (removed ones keep their place until a restart)");
        Err(self.bad(key, message))
    }

    pub(super) fn bad(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { file: self.source.to_string(), key: key.into(), message: message.into() }
    }
}

/// Where corelay listens and who may use the admin port.
pub(super) struct Addresses {
    pub listen: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    pub admin_allow: Vec<IpNet>,
    pub metrics_allow: Vec<IpNet>,
}

/// Clusters, and every server by id (removed ones included).
pub(super) struct Topology {
    /// Live clusters by name, as the file lists them (for the db users' references).
    pub by_name: HashMap<String, usize>,
    pub clusters: Vec<Cluster>,
    pub server_table: Vec<Server>,
}

impl Check<'_> {
    /// `proxy.listen`, `admin_listen`, `metrics_listen` and `admin_allow`.
    pub fn addresses(&self, p: &Proxy) -> Result<Addresses, ConfigError> {
        let bad = |key: String, message: String| self.bad(key, message);
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
        let mut metrics_allow = Vec::new();
        for (j, a) in p.metrics_allow.iter().enumerate() {
            metrics_allow.push(parse_cidr(a).map_err(|m| bad(format!("proxy.metrics_allow[{j}]"), m))?);
        }
        Ok(Addresses { listen, admin_addr, metrics_addr, admin_allow, metrics_allow })
    }

    /// `[zookeeper]` and the clusters' `zk_path`s: a path needs the section, the section
    /// needs hosts, and two clusters never share a path.
    pub fn zookeeper(&self, file: &FileConfig) -> Result<(), ConfigError> {
        let zk = file.zookeeper.as_ref();
        if let Some(zk) = zk {
            if zk.hosts.split(',').all(|h| h.trim().is_empty()) {
                return Err(self.bad("zookeeper.hosts", "give at least one host:port"));
            }
            if !zk.root.starts_with('/') {
                return Err(self.bad("zookeeper.root", "must be an absolute path (start with /)"));
            }
            if zk.session_timeout_ms < 1000 {
                return Err(self.bad("zookeeper.session_timeout_ms", "at least 1000"));
            }
            if zk.auth_user.is_empty() != zk.auth_password.is_empty() {
                return Err(self.bad("zookeeper.auth_user", "auth_user and auth_password go together"));
            }
        }
        let mut seen = HashMap::new();
        for (ci, c) in file.cluster.iter().enumerate() {
            let Some(path) = &c.zk_path else { continue };
            let key = format!("cluster[{ci}].zk_path");
            let Some(zk) = zk else {
                return Err(self.bad(key, "needs a [zookeeper] section with hosts"));
            };
            if path.trim_matches('/').is_empty() {
                return Err(self.bad(key, "must name a path below the root"));
            }
            if let Some(other) = seen.insert(zk.absolute(path), ci) {
                return Err(self.bad(key, format!("cluster[{other}] already takes its servers from this path")));
            }
        }
        Ok(())
    }

    /// The `[proxy]` numbers that have a range.
    pub fn limits(&self, p: &Proxy) -> Result<(), ConfigError> {
        let bad = |key: String, message: String| self.bad(key, message);
        if p.status_table_capacity == 0 || p.status_table_capacity > 1 << 20 {
            return Err(bad("proxy.status_table_capacity".into(), "must be between 1 and 1048576".into()));
        }
        if p.digest_table_capacity > 1 << 16 {
            return Err(bad("proxy.digest_table_capacity".into(), "must be at most 65536".into()));
        }
        if p.digest_text_max_chars == 0 || p.digest_text_max_chars > crate::status::digests::TEXT_BYTES {
            let max = crate::status::digests::TEXT_BYTES;
            return Err(bad("proxy.digest_text_max_chars".into(), format!("must be between 1 and {max}")));
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
        if p.max_prepared_per_session == 0 {
            return Err(bad("proxy.max_prepared_per_session".into(), "must be at least 1".into()));
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
        Ok(())
    }

    /// `proxy.cpus` against this host and `proxy.workers`.
    pub fn cpus(&self, p: &Proxy) -> Result<(), ConfigError> {
        let bad = |key: String, message: String| self.bad(key, message);
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

        Ok(())
    }

    /// `[[cluster]]` and `[[cluster.server]]`.
    pub fn clusters(&self, file: &FileConfig, layout: &Layout, old: Option<&Config>) -> Result<Topology, ConfigError> {
        let bad = |key: String, message: String| self.bad(key, message);
        if file.cluster.is_empty() {
            return Err(bad("cluster".into(), "at least one [[cluster]] is required".into()));
        }
        self.lifetime_limit("cluster", "servers", layout.servers.len(), crate::status::MAX_SERVERS)?;
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
            for si in 0..c.server.len() {
                let server = self.server(&key, c, si, cid, layout)?;
                live_servers[server.id] = Some(server.clone());
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
        let server_table = or_tombstones(live_servers, |id| tombstone::server(layout, old, id));
        let clusters = or_tombstones(live_clusters, |cid| tombstone::cluster(layout, old, &server_table, cid));

        Ok(Topology { by_name: seen_clusters, clusters, server_table })
    }

    /// Server `si` of cluster `c` (index `cid`, keys under `key`).
    fn server(
        &self,
        key: &str,
        c: &super::ClusterFile,
        si: usize,
        cid: usize,
        layout: &Layout,
    ) -> Result<Server, ConfigError> {
        let bad = |key: String, message: String| self.bad(key, message);
        let s = &c.server[si];
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
        let tls = self.server_tls(&skey, s)?;
        let id = layout
            .server(&c.name, &s.address)
            .ok_or_else(|| bad(format!("{skey}.address"), "not in the layout".into()))?;
        Ok(Server {
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
            tls,
        })
    }

    /// `[[db_user]]`: returns the live ones by name and every db user by index.
    pub fn db_users(
        &self,
        file: &FileConfig,
        layout: &Layout,
        old: Option<&Config>,
        clusters: &HashMap<String, usize>,
    ) -> Result<(HashMap<String, usize>, Vec<DbUser>), ConfigError> {
        let bad = |key: String, message: String| self.bad(key, message);
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
            let cluster = clusters
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
        let db_users = or_tombstones(live_db, |i| tombstone::db_user(layout, old, i));

        Ok((seen_db, db_users))
    }

    /// `[[user]]`: returns the live ones by name and every user by index.
    pub fn users(
        &self,
        file: &FileConfig,
        layout: &Layout,
        old: Option<&Config>,
        db_users: &HashMap<String, usize>,
    ) -> Result<(HashMap<String, usize>, Vec<User>), ConfigError> {
        let bad = |key: String, message: String| self.bad(key, message);
        if file.user.is_empty() {
            return Err(bad("user".into(), "at least one [[user]] is required, or no client can log in".into()));
        }
        self.lifetime_limit("user", "users", layout.users.len(), crate::status::MAX_USERS)?;
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
            let db_user = db_users
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
            let credential = Credential::parse(&u.password);
            if credential.empty && !u.allow_empty_password {
                return Err(bad(
                    format!("{key}.password"),
                    "is empty: set a password (or a hash form, see `corelay hash-password`), or say allow_empty_password = true"
                        .into(),
                ));
            }
            if auth == AuthPlugin::Native && !credential.empty && credential.native.is_none() {
                return Err(bad(
                    format!("{key}.password"),
                    "is a caching_sha2_password hash, which mysql_native_password cannot check: give the `*` hash or set auth = \"caching_sha2_password\"".into(),
                ));
            }
            if auth == AuthPlugin::CachingSha2
                && !credential.empty
                && credential.native.is_some()
                && credential.sha2.is_none()
            {
                return Err(bad(
                    format!("{key}.password"),
                    "is a mysql_native_password hash, which caching_sha2_password cannot check: give the `$A$005$` hash or set auth = \"mysql_native_password\"".into(),
                ));
            }
            live_users[id] = Some(User {
                name: u.name.clone(),
                credential,
                db_user,
                auth,
                max_connections: u.max_connections,
                allow,
                multiplex: u.multiplex,
                admin: u.admin,
                require_tls: u.require_tls,
                status_queries: u.status_queries,
                removed: false,
            });
        }
        let users = or_tombstones(live_users, |i| tombstone::user(layout, old, i));
        Ok((users_by_name, users))
    }
}

/// `[[admin_user]]` (nothing to check: an admin user may have any name and password).
pub(super) fn admin_users(file: &FileConfig) -> Vec<AdminUser> {
    file.admin_user
        .iter()
        .map(|a| AdminUser {
            name: a.name.clone(),
            password: a.password.clone(),
            credential: Credential::parse(&a.password),
            role: a.role,
        })
        .collect()
}

/// Entries by index: the live ones, and a tombstone where the file lacks one.
fn or_tombstones<T>(live: Vec<Option<T>>, tombstone: impl Fn(usize) -> T) -> Vec<T> {
    live.into_iter().enumerate().map(|(i, entry)| entry.unwrap_or_else(|| tombstone(i))).collect()
}
