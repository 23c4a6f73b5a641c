//! The configuration file as written. Field names are a contract: keys may be added,
//! never renamed or dropped.

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub proxy: Proxy,
    #[serde(default)]
    pub cluster: Vec<ClusterFile>,
    #[serde(default)]
    pub db_user: Vec<DbUserFile>,
    #[serde(default)]
    pub user: Vec<UserFile>,
    #[serde(default)]
    pub admin_user: Vec<AdminUserFile>,
    /// Where clusters with a `zk_path` take their servers from (None: no ZooKeeper).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zookeeper: Option<ZooKeeperFile>,
    /// Routing rules, in order (see [`super::rules`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rule: Vec<super::rules::RuleFile>,
}

impl FileConfig {
    /// Parses a config file's text. An error says where (line, column, key) and what, but
    /// never quotes the value: it may be a password.
    pub fn parse(text: &str, file: &str) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e: toml::de::Error| {
            let at = e.span().map(|s| s.start.min(text.len())).unwrap_or(0);
            let before = text.get(..at).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            // The key of that line, not its value.
            let key = text.lines().nth(line - 1).and_then(|l| l.split_once('=')).map(|(k, _)| k.trim());
            let at_key = key.filter(|k| !k.is_empty()).map(|k| format!(" (`{k}`)")).unwrap_or_default();
            let message = format!("line {line}, column {column}{at_key}: {}", e.message().trim_end());
            ConfigError::Parse { file: file.to_string(), message }
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WorkerMode {
    #[default]
    Thread,
    Fork,
}

impl std::str::FromStr for WorkerMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "thread" => Ok(WorkerMode::Thread),
            "fork" => Ok(WorkerMode::Fork),
            other => Err(format!("unknown worker mode {other:?}: use \"thread\" or \"fork\"")),
        }
    }
}

/// How new clients are spread over the shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AcceptBalance {
    /// A reuseport eBPF program gives each new client to the shard with fewer sessions
    /// (needs CAP_BPF; falls back to `hash` without it).
    #[default]
    Sessions,
    /// The kernel's SO_REUSEPORT hash of the client address.
    Hash,
}

/// The Linux scheduling policy of the shard threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SchedPolicy {
    /// `SCHED_BATCH`: a shard woken by a packet does not preempt the task running on its
    /// CPU; it runs when that task sleeps or its slice ends, and handles every session
    /// that became ready meanwhile in one loop turn.
    #[default]
    Batch,
    /// `SCHED_OTHER`: the kernel's default, with wake-up preemption.
    Normal,
}

impl std::str::FromStr for SchedPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "batch" => Ok(SchedPolicy::Batch),
            "normal" => Ok(SchedPolicy::Normal),
            other => Err(format!("unknown scheduling policy {other:?}: use \"batch\" or \"normal\"")),
        }
    }
}

impl std::str::FromStr for AcceptBalance {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sessions" => Ok(AcceptBalance::Sessions),
            "hash" => Ok(AcceptBalance::Hash),
            other => Err(format!("unknown accept balance {other:?}: use \"sessions\" or \"hash\"")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Replica,
}

/// `[proxy]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Proxy {
    pub listen: String,
    /// Shards to run; 0 = one per online CPU.
    pub workers: usize,
    pub worker_mode: WorkerMode,
    /// CPUs to pin shards to, in shard order; empty = 0..workers.
    pub cpus: Vec<usize>,
    pub backlog: u32,
    /// How new clients are spread over the shards: `sessions` (fewest sessions, by a
    /// reuseport eBPF program) or `hash` (the kernel's address hash).
    pub accept_balance: AcceptBalance,
    /// Scheduling policy of the shard threads: `batch` or `normal`.
    pub sched_policy: SchedPolicy,
    /// Admin port address; empty = no admin port.
    pub admin_listen: String,
    /// Client addresses (CIDR) allowed on the admin port.
    pub admin_allow: Vec<String>,
    /// Prometheus `/metrics` address; empty = none.
    pub metrics_listen: String,
    /// Entries per keyed status table per shard (user#ip, server#user#ip, pools).
    pub status_table_capacity: usize,
    /// Record every command's latency in the shards' histograms (two clock reads per
    /// command); off leaves SHOW LATENCY, the latency metrics and reports empty.
    pub latency_histograms: bool,
    /// Directory for periodic HdrHistogram percentile files (`.hgrm`); empty = none.
    pub histogram_dir: String,
    /// Interval of those files, seconds.
    pub histogram_interval_s: u64,
    pub client_idle_timeout_s: u64,
    pub max_client_connections: u64,
    pub max_packet_bytes: u64,
    pub status_interval_ms: u64,
    pub status_queries: bool,
    /// Time a client has to complete the login exchange.
    pub auth_timeout_ms: u64,
    /// Time shards get to finish in-flight sessions on shutdown.
    pub drain_timeout_s: u64,
    /// A shard that dies this many times within `crash_loop_window_s` is not restarted
    /// again (fork and thread mode); 0 = always restart.
    pub crash_loop_limit: u32,
    pub crash_loop_window_s: u64,
    /// A statement whose reply has not ended after this long is interrupted (1969) and its
    /// connection closed; 0 = never.
    pub query_timeout_ms: u64,
    /// How long a session waits for a free backend connection before it gets an error.
    pub pool_wait_timeout_ms: u64,
    /// Idle pooled backend connections are closed after this long.
    pub server_idle_timeout_s: u64,
    /// A backend connection is closed after serving this many borrows.
    pub backend_max_uses: u64,
    /// A pooled connection idle longer than this is pinged before it is lent.
    pub ping_after_idle_ms: u64,
    /// Statements kept prepared per backend connection (least recently used closed first).
    pub max_prepared_per_connection: usize,
    /// Prepared statements one session may hold at once; one more gets 1461, as the
    /// server's `max_prepared_stmt_count` gives it.
    pub max_prepared_per_session: usize,
    /// Stateless reads of different sessions share a backend connection, sent back to back
    /// without waiting for each reply, up to this many in flight per connection; 0 = off
    /// (every statement has a connection to itself).
    pub pipeline_depth: usize,
    /// Pipelined connections per shard, server, db user and connection state.
    pub pipeline_connections: usize,
    /// A pipelined connection whose current statement has run this long takes no new ones
    /// (they go to another connection) until it finishes, milliseconds.
    pub pipeline_stall_ms: u64,
    /// A pipelined connection whose oldest reply's client has not read it for this long
    /// (with 256 KiB waiting) is left to that client: the reads queued behind it go to
    /// other connections, milliseconds.
    pub pipeline_slow_reader_ms: u64,
    /// Offer clients MariaDB's metadata cache (`MARIADB_CLIENT_CACHE_METADATA`): an
    /// EXECUTE reply leaves out column definitions the client already holds, as a MariaDB
    /// server's does. Applies to sessions that log in after a change.
    pub cache_metadata: bool,
    /// Server version string announced to clients.
    pub server_version: String,
    /// glommio `io_memory` per shard, KiB (registered with the kernel, counts against
    /// RLIMIT_MEMLOCK three times per shard).
    pub io_memory_kib: usize,
    /// glommio `ring_depth` per shard.
    pub ring_depth: usize,
    /// glommio `spin_before_park`, microseconds (0 = park at once).
    pub spin_before_park_us: u64,
    /// glommio preemption timer, milliseconds.
    pub preempt_timer_ms: u64,
    pub log_level: String,
    /// Directory of the query log and the warning/error log (`.wf`); empty = off.
    pub log_dir: String,
    /// `text` or `json` lines.
    pub log_format: String,
    /// Statements taking at least this long are logged (0 = every statement).
    pub log_query_min_time_us: u64,
    /// SQL is cut to this many characters in the log.
    pub log_sql_max_chars: usize,
    /// Log connects and quits too.
    pub log_connections: bool,
    /// A log file is rotated when it would grow past this.
    pub log_max_bytes: u64,
    /// Rotated files kept (`.1` newest).
    pub log_keep_files: usize,
    /// The master checks the configuration file every `watch_interval_ms` and reloads it
    /// when it changed (as SIGHUP does).
    pub watch_config: bool,
    pub watch_interval_ms: u64,
    /// Client-side TLS (and the admin port's): PEM certificate chain and private key.
    /// Both empty: no TLS. Read again on every reload; a file that does not load keeps
    /// the running certificate.
    pub tls_cert: String,
    pub tls_key: String,
    /// Lowest TLS version offered to clients: "1.2" or "1.3".
    pub tls_min_version: String,
    /// RSA private key (PKCS#8 PEM) for caching_sha2_password's public-key exchange with
    /// clients that do not use TLS; empty: each process makes one when first asked.
    pub tls_rsa_key: String,
    /// Connections from one client address that have not yet proven who they are
    /// (greeting, TLS, password check), across all shards; more are refused (1040) until
    /// some finish; 0 = no limit.
    pub max_unauthenticated_per_ip: u32,
    /// Failed logins from one address (proxy and admin port) before each further attempt
    /// from it is delayed; the delay doubles with every failure, up to
    /// `login_delay_max_ms`.
    pub login_failures_before_delay: u32,
    pub login_delay_max_ms: u64,
    /// Failed logins from one address after which it is refused outright (1129) for
    /// `login_block_s`; 0 = never. A success clears the address's count.
    pub login_failures_before_block: u32,
    pub login_block_s: u64,
    /// Client addresses (CIDR) allowed on `/metrics`.
    pub metrics_allow: Vec<String>,
    /// Count every statement by fingerprint, user, schema and server side (SHOW DIGESTS).
    pub digests: bool,
    /// Entries of each shard's digest table (the least recently seen makes room).
    pub digest_table_capacity: usize,
    /// Characters of a fingerprint's text kept (at most 256).
    pub digest_text_max_chars: usize,
    /// `/metrics` shows this many digests, those with the most total time.
    pub digest_metrics_top: usize,
}

impl Proxy {
    /// What failed logins cost an address.
    pub fn login_policy(&self) -> crate::status::guard::Policy {
        crate::status::guard::Policy {
            failures_before_delay: self.login_failures_before_delay,
            delay_max_ms: self.login_delay_max_ms,
            failures_before_block: self.login_failures_before_block,
            block_s: self.login_block_s,
        }
    }

    /// How long corelay waits for a reply it reads itself (pings, state replay,
    /// re-prepares, resets): no longer than a statement may run (`query_timeout_ms`; None
    /// when that is off).
    pub fn query_timeout(&self) -> Option<std::time::Duration> {
        match self.query_timeout_ms {
            0 => None,
            ms => Some(std::time::Duration::from_millis(ms)),
        }
    }
}

impl Default for Proxy {
    fn default() -> Self {
        Proxy {
            listen: "0.0.0.0:6033".into(),
            workers: 0,
            worker_mode: WorkerMode::Thread,
            cpus: Vec::new(),
            backlog: 1024,
            accept_balance: AcceptBalance::Sessions,
            sched_policy: SchedPolicy::Batch,
            admin_listen: "127.0.0.1:6032".into(),
            admin_allow: vec!["127.0.0.1/32".into(), "::1/128".into()],
            metrics_listen: "127.0.0.1:9033".into(),
            status_table_capacity: crate::status::DEFAULT_TABLE_CAPACITY,
            latency_histograms: true,
            histogram_dir: String::new(),
            histogram_interval_s: 60,
            client_idle_timeout_s: 1800,
            max_client_connections: 100_000,
            max_packet_bytes: 64 << 20,
            status_interval_ms: 1000,
            status_queries: true,
            auth_timeout_ms: 10_000,
            drain_timeout_s: 10,
            query_timeout_ms: 36_000_000,
            crash_loop_limit: 10,
            crash_loop_window_s: 60,
            pool_wait_timeout_ms: 5000,
            server_idle_timeout_s: 600,
            backend_max_uses: 100_000,
            ping_after_idle_ms: 30_000,
            max_prepared_per_connection: 256,
            max_prepared_per_session: 1024,
            pipeline_depth: 64,
            pipeline_connections: 2,
            pipeline_stall_ms: 10,
            pipeline_slow_reader_ms: 1000,
            cache_metadata: true,
            server_version: "5.5.5-10.11.99-MariaDB-corelay".into(),
            io_memory_kib: 64,
            ring_depth: 128,
            spin_before_park_us: 50,
            preempt_timer_ms: 100,
            log_level: "info".into(),
            log_dir: String::new(),
            log_format: "text".into(),
            log_query_min_time_us: 100_000,
            log_sql_max_chars: 512,
            log_connections: true,
            log_max_bytes: 100 << 20,
            log_keep_files: 5,
            watch_config: false,
            watch_interval_ms: 1000,
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_min_version: "1.2".into(),
            tls_rsa_key: String::new(),
            max_unauthenticated_per_ip: 4096,
            login_failures_before_delay: 5,
            login_delay_max_ms: 5000,
            login_failures_before_block: 30,
            login_block_s: 300,
            metrics_allow: vec!["127.0.0.1/32".into(), "::1/128".into()],
            digests: true,
            digest_table_capacity: crate::status::DEFAULT_DIGEST_CAPACITY,
            digest_text_max_chars: 256,
            digest_metrics_top: 20,
        }
    }
}

/// `[[cluster]]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    pub name: String,
    #[serde(default = "default_write_time_interval_ms")]
    pub write_time_interval_ms: u64,
    /// A replica lagging more than this (or whose lag is unknown) gets no reads.
    #[serde(default = "default_max_replication_lag_s")]
    pub max_replication_lag_s: u64,
    /// A replica that lost its primary (its I/O thread is not running) but has applied
    /// everything it received does not know its lag: it counts as lagging this many
    /// seconds, so with a value up to `max_replication_lag_s` it keeps serving reads while
    /// the primary is down. Unset: such a replica gets no reads. A replica whose SQL
    /// thread is stopped, or that still has events to apply, gets none either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_when_primary_lost_s: Option<u64>,
    /// How often the master checks every server of the cluster.
    #[serde(default = "default_health_interval_ms")]
    pub health_interval_ms: u64,
    /// `START TRANSACTION READ ONLY` may run on a replica.
    #[serde(default)]
    pub read_only_transactions_on_replicas: bool,
    /// Who the master's health checks log in as (one kept-open connection per server);
    /// unset = the cluster's first db user. Needs REPLICATION CLIENT (SLAVE MONITOR) to
    /// read replication lag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_user: Option<String>,
    #[serde(default)]
    pub monitor_password: String,
    /// The ZooKeeper path whose children are this cluster's servers (`[zookeeper]`
    /// must be set); the `[[cluster.server]]` entries only seed it. A relative path is
    /// under `zookeeper.root`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zk_path: Option<String>,
    #[serde(default)]
    pub server: Vec<ServerFile>,
}

fn default_write_time_interval_ms() -> u64 {
    200
}
fn default_max_replication_lag_s() -> u64 {
    30
}
fn default_health_interval_ms() -> u64 {
    1000
}

/// `[[cluster.server]]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    pub address: String,
    pub role: Role,
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default = "default_server_max_connections")]
    pub max_connections: u32,
    #[serde(default)]
    pub min_connections: u32,
    #[serde(default)]
    pub reserved_primary_connections: u32,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_reconnect_interval_s")]
    pub reconnect_interval_s: u64,
    /// TLS to this server: disabled, preferred, required or verify.
    #[serde(default)]
    pub tls: crate::net::tls::BackendTls,
    /// CA certificates (PEM) the server's certificate must chain to (`tls = "verify"`).
    #[serde(default)]
    pub tls_ca: String,
    /// A client certificate and key (PEM) corelay presents, for servers that ask.
    #[serde(default)]
    pub tls_cert: String,
    #[serde(default)]
    pub tls_key: String,
}

fn one() -> u32 {
    1
}
fn default_server_max_connections() -> u32 {
    200
}
fn default_connect_timeout_ms() -> u64 {
    1000
}
fn default_reconnect_interval_s() -> u64 {
    30
}

/// `[[db_user]]`: credentials corelay uses on the backends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbUserFile {
    pub name: String,
    #[serde(default)]
    pub password: String,
    pub cluster: String,
    #[serde(default)]
    pub default_db: String,
    #[serde(default = "default_charset")]
    pub charset: String,
}

fn default_charset() -> String {
    "utf8mb4".into()
}

/// `[[user]]`: what clients log in with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserFile {
    pub name: String,
    #[serde(default)]
    pub password: String,
    pub db_user: String,
    #[serde(default = "default_auth")]
    pub auth: String,
    #[serde(default = "default_user_max_connections")]
    pub max_connections: u32,
    #[serde(default = "default_allow")]
    pub allow: Vec<String>,
    /// false: the session keeps one backend connection of its own for its whole life.
    #[serde(default = "default_true")]
    pub multiplex: bool,
    /// true: an operator's account, which may KILL any session of this corelay (others may
    /// kill only their own user's sessions). Its db user needs the server's privilege to
    /// kill other users' threads when the target's db user is another.
    #[serde(default)]
    pub admin: bool,
    /// The client must log in over TLS.
    #[serde(default)]
    pub require_tls: bool,
    /// An empty `password` is refused at load unless this is true.
    #[serde(default)]
    pub allow_empty_password: bool,
    /// May run `checkproxystatus` (it shows every user, client address and server).
    #[serde(default)]
    pub status_queries: bool,
}

fn default_true() -> bool {
    true
}
fn default_auth() -> String {
    "mysql_native_password".into()
}
fn default_user_max_connections() -> u32 {
    1000
}
fn default_allow() -> Vec<String> {
    vec!["0.0.0.0/0".into(), "::/0".into()]
}

/// `[[admin_user]]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminUserFile {
    pub name: String,
    #[serde(default)]
    pub password: String,
    /// `full` (the default) or `read`: a read-only admin sees everything and changes
    /// nothing (no RELOAD, PAUSE, RESUME, SHUTDOWN).
    #[serde(default)]
    pub role: AdminRole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AdminRole {
    Read,
    #[default]
    Full,
}

/// `[zookeeper]`: the coordination service a fleet of corelay hosts takes its topology from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZooKeeperFile {
    /// `host:port` of each ZooKeeper server, comma separated.
    pub hosts: String,
    /// Where `corelay zk-publish` writes clusters that have no `zk_path`, and what relative
    /// `zk_path`s are under.
    pub root: String,
    pub session_timeout_ms: u64,
    /// Connecting to the ensemble times out after this long; then corelay retries with
    /// back-off.
    pub connect_timeout_ms: u64,
    /// Where the last good topology is kept (TOML, written atomically); corelay starts
    /// from it when ZooKeeper is down. Empty: not kept.
    pub cache_file: String,
    /// Digest authentication (`addauth digest user:password`); empty: none.
    pub auth_user: String,
    pub auth_password: String,
}

impl Default for ZooKeeperFile {
    fn default() -> Self {
        ZooKeeperFile {
            hosts: String::new(),
            root: "/corelay".into(),
            session_timeout_ms: 10_000,
            connect_timeout_ms: 2_000,
            cache_file: String::new(),
            auth_user: String::new(),
            auth_password: String::new(),
        }
    }
}

impl ZooKeeperFile {
    /// The absolute ZooKeeper path of `zk_path` (relative ones are under `root`).
    pub fn absolute(&self, zk_path: &str) -> String {
        if zk_path.starts_with('/') {
            return zk_path.trim_end_matches('/').to_string();
        }
        format!("{}/{}", self.root.trim_end_matches('/'), zk_path.trim_matches('/'))
    }
}
