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
    if let Some(Command::Report { admin, user, password, class, out }) = &cli.command {
        return report(&cli, admin.as_deref(), user.as_deref(), password.as_deref(), class, out);
    }
    let config = Config::load(cli.config.as_ref(), &cli.overrides).context("invalid configuration")?;
    init_logging(&config);
    let source = corelay::master::Source { path: cli.config.clone(), overrides: cli.overrides.clone() };
    match corelay::master::run(config, source) {
        Ok(code) => Ok(code),
        Err(e) => {
            tracing::error!("{e}");
            Ok(e.exit_code())
        }
    }
}

/// `corelay report`: histogram of a running corelay to .hgrm and .svg.
fn report(
    cli: &Cli,
    admin: Option<&str>,
    user: Option<&str>,
    password: Option<&str>,
    class: &str,
    out: &std::path::Path,
) -> anyhow::Result<i32> {
    let config = Config::load(cli.config.as_ref(), &cli.overrides).context("invalid configuration")?;
    let addr: std::net::SocketAddr = match admin {
        Some(a) => a.parse().with_context(|| format!("--admin {a}: not an ip:port address"))?,
        None => config.admin_addr.context("proxy.admin_listen is off; pass --admin ADDR")?,
    };
    let first = config.admin_users.first();
    let user =
        user.or(first.map(|a| a.name.as_str())).context("no --user and no [[admin_user]] in the configuration")?;
    let password = password
        .map(str::to_string)
        .or_else(|| config.admin_users.iter().find(|a| a.name == user).map(|a| a.password.clone()))
        .unwrap_or_default();
    let class = class.to_ascii_lowercase();
    if !["read", "write", "other", "all"].contains(&class.as_str()) {
        anyhow::bail!("--class {class}: use read, write, other or all");
    }
    let merged = corelay::admin::report::fetch(addr, user, &password, &class).map_err(anyhow::Error::msg)?;
    let title = format!("corelay {addr}: {class} latency");
    let (hgrm, svg) = corelay::admin::report::write(&merged, out, &format!("corelay-latency-{class}"), &title)
        .map_err(anyhow::Error::msg)?;
    println!("{} statements; wrote {} and {}", merged.count(), hgrm.display(), svg.display());
    Ok(0)
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
