//! `corelay import-dbproxy FILE.ini`: the original MySQL Proxy Layer's INI configuration as
//! corelay's TOML. Every key is mapped, or named on stderr with why it is not carried over;
//! the result is validated before it is printed.
//!
//! The INI's shape: `[MySQL_Proxy_Layer]` with the global keys, then numbered sections
//! `[Cluster_N]`, `[Master_Host_N]`, `[Slave_Host_N]`, `[DB_User_N]`, `[Product_User_N]`
//! (with `authip_<label> = ip` lines) and `[Auth_IP_<label>]` (`ip = ...`). `#` starts a
//! comment; spaces and tabs around `=` and at line ends are ignored.

use crate::config::{ClusterFile, Config, DbUserFile, FileConfig, Role, ServerFile, UserFile};

/// One `key = value` line, with where it was.
struct Line {
    section: String,
    key: String,
    value: String,
    line: usize,
}

/// Reads the INI text into its lines (sections kept with each line).
fn parse(text: &str) -> Result<Vec<Line>, String> {
    let mut section = String::new();
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.split('#').next().unwrap_or_default().trim();
        if l.is_empty() {
            continue;
        }
        if let Some(name) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = name.trim().to_string();
            continue;
        }
        let Some((k, v)) = l.split_once('=') else {
            return Err(format!("line {}: neither a [section] nor key = value", i + 1));
        };
        out.push(Line {
            section: section.clone(),
            key: k.trim().to_string(),
            value: v.trim().to_string(),
            line: i + 1,
        });
    }
    Ok(out)
}

/// What the import made, and what it could not carry over.
pub struct Imported {
    pub toml: String,
    pub not_carried: Vec<String>,
}

fn number<T: std::str::FromStr>(l: &Line) -> Result<T, String> {
    l.value.parse().map_err(|_| format!("line {}: {} = {:?} is not a number", l.line, l.key, l.value))
}

/// The section kind of a numbered section name (`Master_Host_3` → `Master_Host`).
fn kind(section: &str) -> &str {
    for k in ["MySQL_Proxy_Layer", "Cluster", "Master_Host", "Slave_Host", "DB_User", "Product_User", "Auth_IP"] {
        if section == k || section.starts_with(&format!("{k}_")) {
            return k;
        }
    }
    ""
}

/// Converts the INI `text` (named `file` in messages).
pub fn import(text: &str, file: &str) -> Result<Imported, String> {
    let lines = parse(text).map_err(|e| format!("{file}: {e}"))?;
    let mut f = FileConfig::default();
    let mut not_carried = Vec::new();
    let mut skip =
        |l: &Line, why: &str| not_carried.push(format!("[{}] {} (line {}): {why}", l.section, l.key, l.line));
    let mut write_time_ms = None;
    let mut sections: Vec<String> = Vec::new();
    for l in &lines {
        if !sections.contains(&l.section) {
            sections.push(l.section.clone());
        }
    }
    fn in_section<'a>(lines: &'a [Line], s: &'a str) -> impl Iterator<Item = &'a Line> {
        lines.iter().filter(move |l| l.section == s)
    }
    let get = |s: &str, k: &str| in_section(&lines, s).find(|l| l.key == k).map(|l| l.value.clone());
    let mut global_allow = Vec::new();
    let mut zk = crate::config::ZooKeeperFile::default();
    let mut zk_enabled = false;
    let p = &mut f.proxy;
    for l in &lines {
        match (kind(&l.section), l.key.as_str()) {
            ("MySQL_Proxy_Layer", "port") => p.listen = format!("0.0.0.0:{}", number::<u16>(l)?),
            ("MySQL_Proxy_Layer", "backlog") => p.backlog = number(l)?,
            ("MySQL_Proxy_Layer", "max_threads") => p.workers = number(l)?,
            ("MySQL_Proxy_Layer", "client_timeout") => p.client_idle_timeout_s = number(l)?,
            ("MySQL_Proxy_Layer", "server_timeout") => p.server_idle_timeout_s = number(l)?,
            ("MySQL_Proxy_Layer", "conn_pool_socket_max_serve_client_times") => p.backend_max_uses = number(l)?,
            ("MySQL_Proxy_Layer", "write_time_interval") => {
                write_time_ms = Some((number::<u64>(l)? / 1000).max(1));
            }
            ("MySQL_Proxy_Layer", "proxy_status_interval") => p.status_interval_ms = number::<u64>(l)? * 1000,
            ("MySQL_Proxy_Layer", "max_query_size") => p.max_packet_bytes = number(l)?,
            ("MySQL_Proxy_Layer", "autoload_local_conf_enable") => p.watch_config = l.value != "0",
            ("MySQL_Proxy_Layer", "log_dir") => p.log_dir = l.value.clone(),
            ("MySQL_Proxy_Layer", "log_maxsize") => p.log_max_bytes = number::<u64>(l)? << 20,
            ("MySQL_Proxy_Layer", "log_query_min_time") => p.log_query_min_time_us = number::<u64>(l)? * 1000,
            ("MySQL_Proxy_Layer", "server_timeout_short") => {
                skip(l, "corelay pings a pooled connection idle longer than proxy.ping_after_idle_ms instead")
            }
            ("MySQL_Proxy_Layer", "timeout_check_interval") => {
                skip(l, "corelay checks every timeout as it runs out, with no sweep interval")
            }
            ("MySQL_Proxy_Layer", "max_query_num") => {
                skip(l, "no equivalent: corelay bounds a session's prepared statements (max_prepared_per_session) and its packets (max_packet_bytes)")
            }
            ("MySQL_Proxy_Layer", "log_filename") => skip(l, "corelay names its files corelay.<shard>.log in log_dir"),
            ("MySQL_Proxy_Layer", "log_level") => {
                skip(l, "a bitmask of the original's levels; set proxy.log_level to a level name (info is the default)")
            }
            ("MySQL_Proxy_Layer", "zk_enable") => zk_enabled = l.value != "0",
            ("MySQL_Proxy_Layer", "zk_host") => zk.hosts = l.value.clone(),
            ("MySQL_Proxy_Layer", "zk_conf_dir") => zk.root = format!("/{}", l.value.trim_matches('/')),
            ("MySQL_Proxy_Layer", "zk_timeout") => zk.session_timeout_ms = number::<u64>(l)?.max(1000),
            ("MySQL_Proxy_Layer", "zk_interval") => {
                skip(l, "corelay's watcher is told of every change by ZooKeeper (persistent watches); nothing polls")
            }
            ("Cluster" | "Master_Host" | "Slave_Host" | "DB_User" | "Product_User" | "Auth_IP", _) => {}
            _ => skip(l, "not a key of the original's configuration"),
        }
    }
    for s in sections.iter().filter(|s| kind(s) == "Cluster") {
        let name = get(s, "cluster_name").ok_or_else(|| format!("{file}: [{s}] has no cluster_name"))?;
        f.cluster.push(ClusterFile {
            name,
            write_time_interval_ms: write_time_ms.unwrap_or(200),
            max_replication_lag_s: 30,
            lag_when_primary_lost_s: None,
            health_interval_ms: 1000,
            read_only_transactions_on_replicas: false,
            monitor_user: None,
            monitor_password: String::new(),
            zk_path: None,
            server: Vec::new(),
        });
    }
    for s in sections.iter().filter(|s| matches!(kind(s), "Master_Host" | "Slave_Host")) {
        let cluster = get(s, "cluster_name").ok_or_else(|| format!("{file}: [{s}] has no cluster_name"))?;
        let host = get(s, "host").ok_or_else(|| format!("{file}: [{s}] has no host"))?;
        let port = get(s, "port").unwrap_or_else(|| "3306".into());
        let num = |k: &str, default: u64| -> Result<u64, String> {
            match in_section(&lines, s).find(|l| l.key == k) {
                Some(l) => number(l),
                None => Ok(default),
            }
        };
        let server = ServerFile {
            address: format!("{host}:{port}"),
            role: if kind(s) == "Master_Host" { Role::Primary } else { Role::Replica },
            weight: num("weight", 1)? as u32,
            max_connections: num("max_connections", 200)? as u32,
            min_connections: num("min_connections", 0)? as u32,
            reserved_primary_connections: num("reserved_master_connections", 0)? as u32,
            connect_timeout_ms: num("connect_timeout", 1000)?,
            reconnect_interval_s: num("time_reconnect_interval", 30)?,
            tls: Default::default(),
            tls_ca: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
        };
        for l in in_section(&lines, s) {
            let known = [
                "cluster_name",
                "host",
                "port",
                "weight",
                "max_connections",
                "min_connections",
                "reserved_master_connections",
                "connect_timeout",
                "time_reconnect_interval",
            ];
            if !known.contains(&l.key.as_str()) {
                skip(l, "not a key of the original's host sections");
            }
        }
        let c = f
            .cluster
            .iter_mut()
            .find(|c| c.name == cluster)
            .ok_or_else(|| format!("{file}: [{s}] names cluster {cluster:?}, which no [Cluster_N] has"))?;
        c.server.push(server);
    }
    for s in sections.iter().filter(|s| kind(s) == "DB_User") {
        let field = |k: &str| get(s, k).ok_or_else(|| format!("{file}: [{s}] has no {k}"));
        f.db_user.push(DbUserFile {
            name: field("db_username")?,
            password: get(s, "db_password").unwrap_or_default(),
            cluster: field("cluster_name")?,
            default_db: get(s, "default_db").unwrap_or_default(),
            charset: get(s, "default_charset").unwrap_or_else(|| "utf8mb4".into()),
        });
    }
    for s in sections.iter().filter(|s| kind(s) == "Auth_IP") {
        global_allow.extend(get(s, "ip"));
    }
    for s in sections.iter().filter(|s| kind(s) == "Product_User") {
        let field = |k: &str| get(s, k).ok_or_else(|| format!("{file}: [{s}] has no {k}"));
        let mut allow: Vec<String> =
            in_section(&lines, s).filter(|l| l.key.starts_with("authip")).map(|l| l.value.clone()).collect();
        allow.extend(global_allow.iter().cloned());
        let password = get(s, "password").unwrap_or_default();
        let name = field("username")?;
        if password.is_empty() {
            not_carried.push(format!(
                "[{s}] password: empty, kept with allow_empty_password = true for user {name:?}: give it a password"
            ));
        }
        if allow.is_empty() {
            not_carried.push(format!(
                "[{s}] authip: none, and no [Auth_IP_*]: user {name:?} may log in from any address (allow is everything)"
            ));
        }
        f.user.push(UserFile {
            name,
            allow_empty_password: password.is_empty(),
            password,
            db_user: field("db_username")?,
            auth: "mysql_native_password".into(),
            max_connections: match in_section(&lines, s).find(|l| l.key == "max_connections") {
                Some(l) => number(l)?,
                None => 1000,
            },
            allow: if allow.is_empty() { vec!["0.0.0.0/0".into(), "::/0".into()] } else { allow },
            multiplex: true,
            admin: false,
            require_tls: false,
            status_queries: false,
        });
    }
    if zk_enabled && !zk.hosts.is_empty() {
        // The original's server groups sit under zk_conf_dir, one path per cluster.
        for c in &mut f.cluster {
            c.zk_path = Some(c.name.clone());
        }
        not_carried.push(format!(
            "[MySQL_Proxy_Layer] zk_conf_dir: each cluster's servers are read from {}/<cluster_name> (zk_path); \
             check that this is where your servers' nodes are, and set zookeeper.cache_file",
            zk.root
        ));
        f.zookeeper = Some(zk);
    } else if zk_enabled || !zk.hosts.is_empty() {
        not_carried.push(
            "[MySQL_Proxy_Layer] zk_*: ZooKeeper was off (zk_enable = 0) or had no zk_host: no [zookeeper] section written"
                .into(),
        );
    }
    if !global_allow.is_empty() {
        not_carried.push(
            "[Auth_IP_*]: corelay has no global allow-list: its addresses were added to every user's allow".into(),
        );
    }
    // Validated as corelay would load it.
    Config::new(f.clone(), file.to_string()).map_err(|e| format!("the imported configuration is not valid: {e}"))?;
    let toml = toml::to_string_pretty(&f).map_err(|e| format!("cannot print the configuration: {e}"))?;
    let header = format!(
        "# Imported from {file} by corelay import-dbproxy.\n# No [[admin_user]]: add one to use the admin port.\n\n"
    );
    Ok(Imported { toml: header + &toml, not_carried })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str =
        "[MySQL_Proxy_Layer]\nport\t= 8888 \nmax_threads = 2\nwrite_time_interval = 500000\nzk_enable = 1\nzk_host = zk:2181\n\
zk_conf_dir = /dbproxy/groups\nzk_timeout = 3000\nzk_interval = 5\n\
# a comment\n[Cluster_1]\ncluster_name = main\n[Master_Host_1]\ncluster_name = main\nhost = 10.0.0.1\nport = 3306\n\
reserved_master_connections = 4\n[Slave_Host_1]\ncluster_name = main\nhost = 10.0.0.2\nport = 3306\nweight = 2\n\
[DB_User_1]\ndb_username = app_db\ndb_password = pw\ncluster_name = main\n\
[Product_User_1]\nusername = app\npassword = app_pw\ndb_username = app_db\nauthip_office = 10.1.0.0/16\n";

    #[test]
    fn maps_the_sections_and_reports_what_it_leaves() {
        let out = import(SAMPLE, "sample.ini").unwrap();
        let c = Config::new(FileConfig::parse(&out.toml, "imported").unwrap(), "imported".into()).unwrap();
        assert_eq!(c.proxy.listen, "0.0.0.0:8888");
        assert_eq!(c.proxy.workers, 2);
        assert_eq!(c.clusters[0].write_time_interval_ms, 500);
        assert_eq!(c.clusters[0].servers.len(), 2);
        assert_eq!(c.clusters[0].primary().reserved_primary_connections, 4);
        let (_, u) = c.user("app").unwrap();
        assert!(u.allows("10.1.2.3".parse().unwrap()) && !u.allows("10.2.0.1".parse().unwrap()));
        let zk = c.file.zookeeper.as_ref().unwrap();
        assert_eq!((zk.hosts.as_str(), zk.root.as_str(), zk.session_timeout_ms), ("zk:2181", "/dbproxy/groups", 3000));
        assert_eq!(zk.absolute(c.file.cluster[0].zk_path.as_deref().unwrap()), "/dbproxy/groups/main");
        assert!(out.not_carried.iter().any(|n| n.contains("zk_interval")), "{:?}", out.not_carried);
        let off = import(&SAMPLE.replace("zk_enable = 1", "zk_enable = 0"), "off.ini").unwrap();
        assert!(!off.toml.contains("zookeeper") && !off.toml.contains("zk_path"), "{}", off.toml);
        assert!(off.not_carried.iter().any(|n| n.contains("zk_enable = 0")), "{:?}", off.not_carried);
    }

    #[test]
    fn a_host_of_an_unknown_cluster_is_an_error() {
        let bad = SAMPLE.replace("[Slave_Host_1]\ncluster_name = main", "[Slave_Host_1]\ncluster_name = other");
        assert!(import(&bad, "bad.ini").err().is_some_and(|e| e.contains("other")));
    }
}
