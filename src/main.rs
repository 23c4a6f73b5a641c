//! The `corelay` command: parse flags, then run a tool command or load the configuration
//! and run the master.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use corelay::cli::{Cli, Command};
use corelay::config::{Config, EXIT_CONFIG};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("corelay: {e:#}");
            ExitCode::from(EXIT_CONFIG as u8)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    match &cli.command {
        Some(Command::CheckConfig { file }) => return Ok(corelay::cli::check_config::run(file, &cli.overrides)),
        Some(Command::Report { admin, user, password, class, out, digests }) => {
            let config = Config::load(cli.config.as_ref(), &cli.overrides).context("invalid configuration")?;
            let args = corelay::cli::report::Args {
                admin: admin.as_deref(),
                user: user.as_deref(),
                password: password.as_deref(),
                class,
                out,
                digests: *digests,
            };
            corelay::cli::report::run(&config, &args).map_err(anyhow::Error::msg)?;
            return Ok(0);
        }
        Some(Command::ImportDbproxy { file }) => {
            let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
            let out =
                corelay::cli::import_dbproxy::import(&text, &file.display().to_string()).map_err(anyhow::Error::msg)?;
            for note in &out.not_carried {
                eprintln!("not carried over: {note}");
            }
            print!("{}", out.toml);
            return Ok(0);
        }
        Some(Command::ZkWatch) => return Ok(corelay::cluster::zookeeper::watcher::run()),
        Some(Command::ZkPublish) => {
            if cli.config.is_none() {
                anyhow::bail!("zk-publish needs --config FILE (a file with a [zookeeper] section)");
            }
            let config = Config::load(cli.config.as_ref(), &cli.overrides).context("invalid configuration")?;
            for line in corelay::cluster::zookeeper::publish::publish(&config).map_err(anyhow::Error::msg)? {
                println!("{line}");
            }
            return Ok(0);
        }
        Some(Command::HashPassword) => {
            let out = corelay::cli::hash_password::run(&mut std::io::stdin().lock()).map_err(anyhow::Error::msg)?;
            print!("{out}");
            return Ok(0);
        }
        None => {}
    }
    let config = Config::load(cli.config.as_ref(), &cli.overrides).context("invalid configuration")?;
    init_logging(&config);
    // (Said again now that there is a log to say it in.)
    if let Some(warning) = cli.config.as_deref().and_then(corelay::config::exposure) {
        tracing::warn!("{warning}");
    }
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let source = corelay::master::Source { path: cli.config.clone(), overrides: cli.overrides.clone() };
    match corelay::master::run(config, source) {
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
        let f = f.add_directive(format!("{}=off", corelay::log::QUERY).parse().expect("a valid directive"));
        f.add_directive(format!("{}=off", corelay::log::CONN).parse().expect("a valid directive"))
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
        let settings = corelay::log::Settings {
            dir: p.log_dir.trim().into(),
            json: p.log_format == "json",
            max_bytes: p.log_max_bytes,
            keep_files: p.log_keep_files,
        };
        let targets = Targets::new()
            .with_target(corelay::log::QUERY, LevelFilter::INFO)
            .with_target(corelay::log::CONN, LevelFilter::INFO)
            .with_default(LevelFilter::WARN);
        corelay::log::QueryLog::new(settings).with_filter(targets)
    });
    tracing_subscriber::registry().with(fmt).with(query_log).init();
}
