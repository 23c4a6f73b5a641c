//! The `corelay` command's entry point, in the library so that a program embedding
//! corelay with its own routing hook ([`crate::router::hook`]) runs exactly what the
//! `corelay` binary runs: parse flags, then run a tool command or load the configuration
//! and run the master.

use std::process::ExitCode;

use clap::Parser;

use super::{Cli, Command};
use crate::config::{Config, EXIT_CONFIG};

/// Runs corelay as the `corelay` binary does (flags from the process's arguments).
pub fn main() -> ExitCode {
    run_from(std::env::args_os())
}

/// Runs corelay with these arguments (the first is the program's name), as the `corelay`
/// binary would with them. Returns when corelay stops.
pub fn run_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    match run(cli) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("corelay: {e}");
            ExitCode::from(EXIT_CONFIG as u8)
        }
    }
}

fn run(cli: Cli) -> Result<i32, String> {
    match &cli.command {
        Some(Command::CheckConfig { file }) => return Ok(crate::cli::check_config::run(file, &cli.overrides)),
        Some(Command::Report { admin, user, password, class, out, digests }) => {
            let config =
                Config::load(cli.config.as_ref(), &cli.overrides).map_err(|e| format!("invalid configuration: {e}"))?;
            let args = crate::cli::report::Args {
                admin: admin.as_deref(),
                user: user.as_deref(),
                password: password.as_deref(),
                class,
                out,
                digests: *digests,
            };
            crate::cli::report::run(&config, &args).map_err(|e| e.to_string())?;
            return Ok(0);
        }
        Some(Command::ImportDbproxy { file }) => {
            let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let out =
                crate::cli::import_dbproxy::import(&text, &file.display().to_string()).map_err(|e| e.to_string())?;
            for note in &out.not_carried {
                eprintln!("not carried over: {note}");
            }
            print!("{}", out.toml);
            return Ok(0);
        }
        Some(Command::ZkWatch) => return Ok(crate::cluster::zookeeper::watcher::run()),
        Some(Command::ZkPublish) => {
            if cli.config.is_none() {
                return Err("zk-publish needs --config FILE (a file with a [zookeeper] section)".into());
            }
            let config =
                Config::load(cli.config.as_ref(), &cli.overrides).map_err(|e| format!("invalid configuration: {e}"))?;
            for line in crate::cluster::zookeeper::publish::publish(&config).map_err(|e| e.to_string())? {
                println!("{line}");
            }
            return Ok(0);
        }
        Some(Command::HashPassword) => {
            let out = crate::cli::hash_password::run(&mut std::io::stdin().lock()).map_err(|e| e.to_string())?;
            print!("{out}");
            return Ok(0);
        }
        None => {}
    }
    let config =
        Config::load(cli.config.as_ref(), &cli.overrides).map_err(|e| format!("invalid configuration: {e}"))?;
    init_logging(&config);
    // (Said again now that there is a log to say it in.)
    if let Some(warning) = cli.config.as_deref().and_then(crate::config::exposure) {
        tracing::warn!("{warning}");
    }
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let source = crate::master::Source { path: cli.config.clone(), overrides: cli.overrides.clone() };
    match crate::master::run(config, source) {
        Ok(code) => Ok(code),
        Err(e) => {
            tracing::error!("{e}");
            Ok(e.exit_code())
        }
    }
}

/// Console logging (stderr, `log_level` or `CORELAY_LOG`), plus the query log when
/// `log_dir` is set. Statement and connection events only go to the query log.
fn init_logging(config: &Config) {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let quiet = |f: tracing_subscriber::EnvFilter| {
        let f = f.add_directive(format!("{}=off", crate::log::QUERY).parse().expect("a valid directive"));
        f.add_directive(format!("{}=off", crate::log::CONN).parse().expect("a valid directive"))
    };
    let console = tracing_subscriber::EnvFilter::try_from_env("CORELAY_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.proxy.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_filter(quiet(console));
    let p = &config.proxy;
    let query_log = (!p.log_dir.trim().is_empty()).then(|| {
        let settings = crate::log::Settings {
            dir: p.log_dir.trim().into(),
            json: p.log_format == "json",
            max_bytes: p.log_max_bytes,
            keep_files: p.log_keep_files,
        };
        let targets = Targets::new()
            .with_target(crate::log::QUERY, LevelFilter::INFO)
            .with_target(crate::log::CONN, LevelFilter::INFO)
            .with_default(LevelFilter::WARN);
        crate::log::QueryLog::new(settings).with_filter(targets)
    });
    // A process that set up its own logging keeps it.
    let _ = tracing_subscriber::registry().with(fmt).with(query_log).try_init();
}
