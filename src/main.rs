//! The `corelay` command: parse flags, load the configuration, run the master.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use corelay::config::cli::{Cli, Command};
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
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return Ok(match Config::load(Some(file), &cli.overrides) {
            Ok(c) => {
                print!("{}", c.to_toml());
                eprintln!(
                    "{}: configuration is valid ({} shard(s), {} user(s), {} cluster(s))",
                    c.source,
                    c.shard_count(),
                    c.users.len(),
                    c.clusters.len()
                );
                0
            }
            Err(e) => {
                eprintln!("corelay: {e}");
                1
            }
        });
    }
    let config = Config::load(cli.config.as_ref(), &cli.overrides).context("invalid configuration")?;
    init_logging(&config.proxy.log_level);
    match corelay::master::run(config) {
        Ok(code) => Ok(code),
        Err(e) => {
            tracing::error!("{e}");
            Ok(e.exit_code())
        }
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CORELAY_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
