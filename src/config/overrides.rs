//! Command-line overrides: every tuning flag mirrors a `[proxy]` key and, when given,
//! wins over the file (at start and at every reload). The rest of the command line is
//! [`crate::cli`]'s.

use clap::Args;

use super::{AcceptBalance, FileConfig, SchedPolicy, WorkerMode};

/// Flags that override `[proxy]` keys of the configuration.
#[derive(Debug, Args, Default, Clone)]
pub struct Overrides {
    /// Client listen address (proxy.listen).
    #[arg(long, global = true, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Number of shards; 0 = one per online CPU (proxy.workers).
    #[arg(long, global = true, value_name = "N")]
    pub workers: Option<usize>,
    /// How shards run: threads of one process, or forked processes (proxy.worker_mode).
    #[arg(long, global = true, value_name = "fork|thread")]
    pub worker_mode: Option<WorkerMode>,
    /// CPUs to pin shards to, comma separated, e.g. 2,3,4,5 (proxy.cpus).
    #[arg(long, global = true, value_name = "LIST", value_delimiter = ',')]
    pub cpus: Option<Vec<usize>>,
    /// Listen backlog of each shard's socket (proxy.backlog).
    #[arg(long, global = true, value_name = "N")]
    pub backlog: Option<u32>,
    /// How new clients are spread over the shards: fewest sessions (eBPF) or the kernel's
    /// address hash (proxy.accept_balance).
    #[arg(long, global = true, value_name = "sessions|hash")]
    pub accept_balance: Option<AcceptBalance>,
    /// Scheduling policy of the shard threads: SCHED_BATCH (no wake-up preemption) or
    /// SCHED_OTHER (proxy.sched_policy).
    #[arg(long, global = true, value_name = "batch|normal")]
    pub sched_policy: Option<SchedPolicy>,
    /// Admin port address (proxy.admin_listen).
    #[arg(long, global = true, value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// Prometheus /metrics address (proxy.metrics_listen).
    #[arg(long, global = true, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Log level or tracing filter, e.g. info, debug, corelay=trace (proxy.log_level).
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Close clients idle this long, seconds (proxy.client_idle_timeout_s).
    #[arg(long, global = true, value_name = "S")]
    pub client_idle_timeout_s: Option<u64>,
    /// Client connections accepted in total (proxy.max_client_connections).
    #[arg(long, global = true, value_name = "N")]
    pub max_client_connections: Option<u64>,
    /// Largest packet a client may send, bytes (proxy.max_packet_bytes).
    #[arg(long, global = true, value_name = "BYTES")]
    pub max_packet_bytes: Option<u64>,
    /// How often shards refresh status, milliseconds (proxy.status_interval_ms).
    #[arg(long, global = true, value_name = "MS")]
    pub status_interval_ms: Option<u64>,
    /// Entries per keyed status table per shard (proxy.status_table_capacity).
    #[arg(long, global = true, value_name = "N")]
    pub status_table_capacity: Option<usize>,
    /// Offer clients MariaDB's metadata cache: true or false (proxy.cache_metadata).
    #[arg(long, global = true, value_name = "BOOL")]
    pub cache_metadata: Option<bool>,
    /// Record command latencies in histograms: true or false (proxy.latency_histograms).
    #[arg(long, global = true, value_name = "BOOL")]
    pub latency_histograms: Option<bool>,
    /// Count statements by fingerprint (SHOW DIGESTS): true or false (proxy.digests).
    #[arg(long, global = true, value_name = "BOOL")]
    pub digests: Option<bool>,
    /// Entries of each shard's digest table (proxy.digest_table_capacity).
    #[arg(long, global = true, value_name = "N")]
    pub digest_table_capacity: Option<usize>,
    /// Directory for periodic .hgrm latency files; empty = none (proxy.histogram_dir).
    #[arg(long, global = true, value_name = "DIR")]
    pub histogram_dir: Option<String>,
    /// Seconds between .hgrm files (proxy.histogram_interval_s).
    #[arg(long, global = true, value_name = "S")]
    pub histogram_interval_s: Option<u64>,
    /// Stop restarting a shard that died this often within crash_loop_window_s; 0 = never
    /// stop (proxy.crash_loop_limit).
    #[arg(long, global = true, value_name = "N")]
    pub crash_loop_limit: Option<u32>,
    /// Interrupt statements running longer, milliseconds; 0 = never (proxy.query_timeout_ms).
    #[arg(long, global = true, value_name = "MS")]
    pub query_timeout_ms: Option<u64>,
    /// Query log directory; empty = off (proxy.log_dir).
    #[arg(long, global = true, value_name = "DIR")]
    pub log_dir: Option<String>,
    /// Query log line format: text or json (proxy.log_format).
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Log statements at least this slow, microseconds (proxy.log_query_min_time_us).
    #[arg(long, global = true, value_name = "US")]
    pub log_query_min_time_us: Option<u64>,
    /// Rotate log files at this size, bytes (proxy.log_max_bytes).
    #[arg(long, global = true, value_name = "BYTES")]
    pub log_max_bytes: Option<u64>,
    /// Time a client has to finish logging in, milliseconds (proxy.auth_timeout_ms).
    #[arg(long, global = true, value_name = "MS")]
    pub auth_timeout_ms: Option<u64>,
    /// Time to finish in-flight sessions on shutdown, seconds (proxy.drain_timeout_s).
    #[arg(long, global = true, value_name = "S")]
    pub drain_timeout_s: Option<u64>,
    /// Longest wait for a free backend connection, milliseconds (proxy.pool_wait_timeout_ms).
    #[arg(long, global = true, value_name = "MS")]
    pub pool_wait_timeout_ms: Option<u64>,
    /// Close idle backend connections after this long, seconds (proxy.server_idle_timeout_s).
    #[arg(long, global = true, value_name = "S")]
    pub server_idle_timeout_s: Option<u64>,
    /// Recycle a backend connection after this many borrows (proxy.backend_max_uses).
    #[arg(long, global = true, value_name = "N")]
    pub backend_max_uses: Option<u64>,
    /// Ping a pooled connection idle longer than this before lending it, ms (proxy.ping_after_idle_ms).
    #[arg(long, global = true, value_name = "MS")]
    pub ping_after_idle_ms: Option<u64>,
    /// Statements kept prepared per backend connection (proxy.max_prepared_per_connection).
    #[arg(long, global = true, value_name = "N")]
    pub max_prepared_per_connection: Option<usize>,
    /// Stateless reads in flight per pipelined backend connection; 0 = no pipelining
    /// (proxy.pipeline_depth).
    #[arg(long, global = true, value_name = "N")]
    pub pipeline_depth: Option<usize>,
    /// Pipelined connections per shard, server and connection state (proxy.pipeline_connections).
    #[arg(long, global = true, value_name = "N")]
    pub pipeline_connections: Option<usize>,
    /// A pipelined connection busy this long with one statement takes no new ones, ms
    /// (proxy.pipeline_stall_ms).
    #[arg(long, global = true, value_name = "MS")]
    pub pipeline_stall_ms: Option<u64>,
    /// glommio io_memory per shard, KiB (proxy.io_memory_kib).
    #[arg(long, global = true, value_name = "KIB")]
    pub io_memory_kib: Option<usize>,
    /// glommio ring depth per shard (proxy.ring_depth).
    #[arg(long, global = true, value_name = "N")]
    pub ring_depth: Option<usize>,
    /// glommio spin before park, microseconds (proxy.spin_before_park_us).
    #[arg(long, global = true, value_name = "US")]
    pub spin_before_park_us: Option<u64>,
    /// glommio preemption timer, milliseconds (proxy.preempt_timer_ms).
    #[arg(long, global = true, value_name = "MS")]
    pub preempt_timer_ms: Option<u64>,
    /// Reload the configuration file when it changes (proxy.watch_config).
    #[arg(long, global = true, value_name = "BOOL")]
    pub watch_config: Option<bool>,
    /// How often the file is checked, milliseconds (proxy.watch_interval_ms).
    #[arg(long, global = true, value_name = "MS")]
    pub watch_interval_ms: Option<u64>,
}

impl Overrides {
    /// Writes every given flag into the file configuration.
    pub fn apply(&self, f: &mut FileConfig) {
        let p = &mut f.proxy;
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = &self.$field { p.$field = v.clone(); } )* };
        }
        set!(
            listen,
            workers,
            worker_mode,
            cpus,
            backlog,
            accept_balance,
            sched_policy,
            admin_listen,
            metrics_listen,
            log_level,
            client_idle_timeout_s,
            max_client_connections,
            max_packet_bytes,
            status_interval_ms,
            status_table_capacity,
            latency_histograms,
            digests,
            digest_table_capacity,
            histogram_dir,
            histogram_interval_s,
            query_timeout_ms,
            crash_loop_limit,
            log_dir,
            log_format,
            log_query_min_time_us,
            log_max_bytes,
            auth_timeout_ms,
            drain_timeout_s,
            pool_wait_timeout_ms,
            server_idle_timeout_s,
            backend_max_uses,
            ping_after_idle_ms,
            max_prepared_per_connection,
            pipeline_depth,
            pipeline_connections,
            pipeline_stall_ms,
            cache_metadata,
            watch_config,
            watch_interval_ms,
            io_memory_kib,
            ring_depth,
            spin_before_park_us,
            preempt_timer_ms
        );
    }
}
