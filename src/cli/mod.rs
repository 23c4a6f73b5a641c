//! The `corelay` command line: running the proxy (the master, [`crate::master`]) and the
//! tool commands that talk to a configuration or a running corelay ([`check_config`],
//! [`report`], [`hash_password`], [`import_dbproxy`]). Every tuning flag is a [`crate::config::Overrides`] field.

pub mod check_config;
mod entry;
pub mod hash_password;
pub mod import_dbproxy;
pub mod report;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Overrides;

pub use entry::{main, run_from};

#[derive(Debug, Parser)]
#[command(
    name = "corelay",
    version,
    about = "Thread-per-core, shared-nothing MySQL-protocol proxy",
    long_about = "corelay accepts MySQL-protocol clients, authenticates them itself, and forwards \
their statements to MariaDB/MySQL backends from pinned per-core shards.\n\n\
With no --config it runs an embedded default: listen 127.0.0.1:6033, one cluster whose \
primary is 127.0.0.1:3306, user root with an empty password passed through to the backend."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Configuration file (TOML). Without it, the embedded default runs.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: Overrides,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a configuration file, print the effective configuration, exit 0 (valid) or 1.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Convert the original MySQL Proxy Layer's INI configuration to corelay's TOML (printed
    /// on stdout; keys not carried over are listed on stderr, with why).
    ImportDbproxy {
        /// The INI file.
        file: PathBuf,
    },
    /// Write the configuration's clusters into ZooKeeper (`[zookeeper]`): each under its
    /// `zk_path` (or ROOT/clusters/NAME), one child per server; children the file does not
    /// list are deleted.
    ZkPublish,
    /// The ZooKeeper watcher the master runs as its child (reads its spec on standard
    /// input, reports on standard output); not for use by hand.
    #[command(hide = true)]
    ZkWatch,
    /// Print a password's hash forms for the config's `password` keys (read from standard
    /// input): `*<40 hex>` for mysql_native_password, `$A$005$...` for caching_sha2_password.
    HashPassword,
    /// Fetch the latency histogram of a running corelay (admin port) and write an
    /// HdrHistogram percentile file (.hgrm) and an SVG plot of it.
    Report {
        /// Admin port to ask; default: proxy.admin_listen of the configuration.
        #[arg(long, value_name = "ADDR")]
        admin: Option<String>,
        /// Admin user; default: the configuration's first [[admin_user]].
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// Admin password; default: that user's password in the configuration.
        #[arg(long, value_name = "PASSWORD", env = "CORELAY_ADMIN_PASSWORD")]
        password: Option<String>,
        /// Statement class: read, write, other or all.
        #[arg(long, default_value = "all")]
        class: String,
        /// Directory to write corelay-latency-<class>.hgrm and .svg into.
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
        /// Print the top N statement digests by total time (SHOW DIGESTS) instead.
        #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "20")]
        digests: Option<usize>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, WorkerMode};

    #[test]
    fn flags_override_file_values() {
        let cli = Cli::try_parse_from([
            "corelay",
            "--listen",
            "127.0.0.1:7000",
            "--workers",
            "3",
            "--worker-mode",
            "fork",
            "--cpus",
            "0,0,0",
            "--backlog",
            "77",
        ])
        .unwrap();
        let c = Config::load(None, &cli.overrides).unwrap();
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(c.shard_count(), 3);
        assert_eq!(c.proxy.worker_mode, WorkerMode::Fork);
        assert_eq!(c.proxy.backlog, 77);
        assert_eq!(c.cpu_for_shard(2), 0);
    }

    #[test]
    fn check_config_subcommand() {
        let cli = Cli::try_parse_from(["corelay", "check-config", "x.toml"]).unwrap();
        assert!(matches!(cli.command, Some(Command::CheckConfig { .. })));
        assert!(Cli::try_parse_from(["corelay", "--worker-mode", "process"]).is_err());
    }
}
