//! The master: checks limits, creates the status region and the shards' listeners, spawns
//! the shards (threads or forked processes), and supervises them.
//!
//! Signals are blocked before any shard exists and read through a signalfd, so every
//! thread inherits the mask and only the master ever sees TERM/INT/HUP/CHLD. In fork mode
//! the master forks before it creates any thread, and a dead shard is re-forked into the
//! same slot (so it keeps its status slot and its listener) with back-off — unless it exited
//! with the configuration-error code, which no restart can fix.

mod hgrm;
mod spawn;

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use thiserror::Error;
use tracing::{error, info, warn};

use crate::config::{Config, EXIT_CONFIG};
use crate::net::listen::{self, ListenError};
use crate::shard::{self, ShardError};
use crate::status::{StatusError, StatusRegion};
use spawn::Worker;

#[derive(Debug, Error)]
pub enum MasterError {
    #[error("{0}")]
    Memlock(String),
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("signal set-up failed: {0}")]
    Signals(#[source] nix::Error),
    #[error("cannot start shard {shard}: {source}")]
    Spawn { shard: usize, source: std::io::Error },
}

impl MasterError {
    /// Process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            MasterError::Memlock(_) | MasterError::Shard(_) | MasterError::Listen(_) => EXIT_CONFIG,
            _ => 1,
        }
    }
}

/// Locked memory the shards need: `io_memory` is registered three times per shard, plus
/// the rings themselves. io_uring charges it to the user, so forked shards add up like
/// threads do; glommio itself refuses to start below 512 KiB.
fn memlock_needed(config: &Config, shards: usize) -> u64 {
    let per = 3 * config.proxy.io_memory_kib as u64 * 1024 + 128 * 1024;
    (per * shards as u64).max(512 * 1024)
}

/// Checks RLIMIT_MEMLOCK (raising the soft limit where the hard one allows) so a shard
/// does not die on start with an obscure io_uring error.
fn check_memlock(config: &Config, shards: usize) -> Result<(), MasterError> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
    if nix::unistd::geteuid().is_root() {
        return Ok(()); // CAP_IPC_LOCK: the limit does not apply.
    }
    let need = memlock_needed(config, shards);
    let (soft, hard) = getrlimit(Resource::RLIMIT_MEMLOCK).map_err(|e| MasterError::Memlock(e.to_string()))?;
    if soft == RLIM_INFINITY || soft >= need {
        return Ok(());
    }
    if (hard == RLIM_INFINITY || hard >= need) && setrlimit(Resource::RLIMIT_MEMLOCK, need, hard).is_ok() {
        return Ok(());
    }
    Err(MasterError::Memlock(format!(
        "RLIMIT_MEMLOCK is {} KiB (hard {} KiB) but {shards} shard(s) with io_memory_kib = {} need {} KiB of locked memory. \
Raise it (ulimit -l {}, LimitMEMLOCK= in a systemd unit, or memlock in /etc/security/limits.conf), \
or run fewer shards (--workers) or a smaller --io-memory-kib.",
        soft / 1024,
        if hard == RLIM_INFINITY { u64::MAX / 1024 } else { hard / 1024 },
        config.proxy.io_memory_kib,
        need / 1024,
        need.div_ceil(1024),
    )))
}

/// Raises the soft open-files limit to the hard one: every client and backend connection is
/// a descriptor. Warns when even the hard limit is below what the configuration allows.
fn raise_nofile(config: &Config) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err() {
        warn!("cannot raise the open-files limit from {soft} to {hard}");
    }
    let backends: u64 = config.servers().map(|s| u64::from(s.max_connections)).sum();
    let want = config.proxy.max_client_connections.saturating_add(backends).saturating_add(64);
    if hard < want {
        warn!(
            "the open-files limit ({hard}) is below max_client_connections + backend max_connections ({want}): \
clients beyond it are refused at accept; raise it (ulimit -n, LimitNOFILE= in a systemd unit)"
        );
    }
}

/// A shard slot as the master tracks it.
struct ShardSlot {
    /// The master's copy of the shard's client listener (None once stopping: new clients
    /// are refused instead of queueing where nobody accepts).
    listener: Option<OwnedFd>,
    /// The shard's admin and `/metrics` listeners (when those ports are on).
    admin: Option<OwnedFd>,
    metrics: Option<OwnedFd>,
    worker: Option<Worker>,
    started: Instant,
    restart_at: Option<Instant>,
    backoff: Duration,
    /// Exited with the configuration-error code, or crash-looped: never restarted.
    failed: bool,
    /// When it died lately (for crash-loop detection).
    deaths: std::collections::VecDeque<Instant>,
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A shard that ran this long before dying is restarted without delay.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// Where the configuration came from, to read it again on a reload.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The file (None: the embedded default, which never changes).
    pub path: Option<std::path::PathBuf>,
    /// The command line's overrides, which win over every version of the file.
    pub overrides: crate::config::Overrides,
}

/// Reloads: re-reads the file, validates it against the running configuration and
/// publishes it to the shards. Returns the new configuration and what to tell the
/// operator; on any error the running configuration stays.
fn reload(current: &Config, from: &Source, status: &StatusRegion) -> Result<(Arc<Config>, String), String> {
    let Some(path) = &from.path else {
        return Err("corelay runs its embedded default configuration (no --config): there is no file to reload".into());
    };
    let mut file = Config::read_file(path).map_err(|e| e.to_string())?;
    from.overrides.apply(&mut file);
    let (next, changes) = current.reload(file, path.display().to_string()).map_err(|e| e.to_string())?;
    for note in &changes.kept {
        warn!("{note}");
    }
    let text = crate::config::Published::of(&next).to_text().map_err(|e| format!("cannot publish it: {e}"))?;
    status.publish_config(next.version, &text).map_err(|e| format!("{}: {e}", path.display()))?;
    let kept = match changes.kept.len() {
        0 => String::new(),
        n => format!("; {n} start-only key(s) kept their running value (see the log)"),
    };
    let message = format!("configuration version {} loaded from {}: {changes}{kept}", next.version, path.display());
    Ok((Arc::new(next), message))
}

/// The file's modification time and size, to notice it changed (`watch_config`).
fn stamp(path: &std::path::Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// With `accept_balance = "sessions"` and more than one shard: attaches the program that
/// gives each new client to the shard with fewer sessions. Where the kernel refuses it
/// (no CAP_BPF), says why and leaves the kernel's address hash in charge.
fn balance_accepts(config: &Config, slots: &[ShardSlot]) -> Option<Arc<shard::balance::Balancer>> {
    use std::os::fd::AsRawFd;
    if slots.len() < 2 || config.proxy.accept_balance != crate::config::AcceptBalance::Sessions {
        return None;
    }
    let fds: Vec<i32> = slots.iter().filter_map(|s| s.listener.as_ref().map(|l| l.as_raw_fd())).collect();
    match shard::balance::Balancer::attach(&fds) {
        Ok(b) => {
            info!("new clients go to the shard with fewer sessions (reuseport eBPF program)");
            Some(Arc::new(b))
        }
        Err(e) => {
            warn!(
                "cannot balance new clients by sessions ({e}); the kernel's address hash spreads them instead \
                 (loading the program needs CAP_BPF; set proxy.accept_balance = \"hash\" to silence this)"
            );
            None
        }
    }
}

/// Runs corelay until it is told to stop. Returns the process exit code.
pub fn run(config: Config, source: Source) -> Result<i32, MasterError> {
    let mut config = Arc::new(config);
    let n = config.shard_count();
    let mode = config.proxy.worker_mode;
    check_memlock(&config, n)?;
    raise_nofile(&config);
    let status = StatusRegion::create_with(n, config.proxy.status_table_capacity)?;

    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGCHLD, Signal::SIGQUIT] {
        mask.add(s);
    }
    mask.thread_block().map_err(MasterError::Signals)?;
    // Shards must ignore these; in thread mode dispositions are process-wide.
    spawn::ignore_shard_signals();
    let sfd =
        SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).map_err(MasterError::Signals)?;

    for addr in [Some(config.listen), config.admin_addr, config.metrics_addr].into_iter().flatten() {
        listen::check_free(addr)?;
    }
    let mut slots = Vec::with_capacity(n);
    for _ in 0..n {
        let side = |addr: Option<std::net::SocketAddr>| addr.map(|a| listen::bind_listener(a, 128)).transpose();
        slots.push(ShardSlot {
            listener: Some(listen::bind_listener(config.listen, config.proxy.backlog)?),
            admin: side(config.admin_addr)?,
            metrics: side(config.metrics_addr)?,
            worker: None,
            started: Instant::now(),
            restart_at: Some(Instant::now()),
            backoff: BACKOFF_MIN,
            failed: false,
            deaths: Default::default(),
        });
    }
    type Socket = fn(&ShardSlot) -> Option<&OwnedFd>;
    let sockets: [(Option<std::net::SocketAddr>, Socket); 3] = [
        (Some(config.listen), |s| s.listener.as_ref()),
        (config.admin_addr, |s| s.admin.as_ref()),
        (config.metrics_addr, |s| s.metrics.as_ref()),
    ];
    for (addr, socket) in sockets {
        if let Some(addr) = addr {
            listen::check_alone(addr, &slots.iter().filter_map(socket).collect::<Vec<_>>())?;
        }
    }
    let balancer = balance_accepts(&config, &slots);
    info!(
        listen = %config.listen,
        shards = n,
        mode = ?mode,
        config = %config.source,
        "corelay {} starting",
        env!("CARGO_PKG_VERSION")
    );

    let mut stopping: Option<Instant> = None;
    let mut checker = crate::cluster::Checker::default();
    let mut latency_files = hgrm::Writer::new(&config, &status);
    let mut file_stamp = source.path.as_deref().and_then(stamp);
    let mut watched = Instant::now();
    loop {
        if stopping.is_none() {
            checker.run_due(&config, &status);
            latency_files.run_due(&status);
        }
        // Reloads: SIGHUP (below), admin RELOAD (a request in the status region), or the
        // file changing under watch_config.
        let mut reload_why: Option<&str> = None;
        let request = status.pending_reload();
        if request.is_some() {
            reload_why = Some("admin RELOAD");
        }
        if config.proxy.watch_config
            && watched.elapsed() >= Duration::from_millis(config.proxy.watch_interval_ms.max(50))
        {
            watched = Instant::now();
            let now = source.path.as_deref().and_then(stamp);
            if now.is_some() && now != file_stamp {
                reload_why = Some("the configuration file changed");
            }
        }
        // Start (or restart) shards that are due.
        if stopping.is_none() {
            let fds = slots_fds(&slots);
            for (k, slot) in slots.iter_mut().enumerate() {
                if slot.restart_at.is_some_and(|t| Instant::now() >= t) {
                    slot.restart_at = None;
                    let err = |source| MasterError::Spawn { shard: k, source };
                    let listeners = shard::Listeners {
                        proxy: match &slot.listener {
                            Some(l) => l.try_clone().map_err(err)?,
                            None => continue,
                        },
                        admin: slot.admin.as_ref().map(OwnedFd::try_clone).transpose().map_err(err)?,
                        metrics: slot.metrics.as_ref().map(OwnedFd::try_clone).transpose().map_err(err)?,
                    };
                    let worker =
                        spawn::start(mode, k, config.cpu_for_shard(k), listeners, &config, &status, &fds, &balancer)
                            .map_err(err)?;
                    slot.worker = Some(worker);
                    slot.started = Instant::now();
                }
            }
        }

        wait_readable(&sfd, Duration::from_millis(100));
        while let Ok(Some(info)) = sfd.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT) => {
                    if stopping.is_some() {
                        warn!("second stop signal: exiting now");
                        for slot in &mut slots {
                            if let Some(w) = slot.worker.take() {
                                w.kill();
                            }
                        }
                        return Ok(0);
                    }
                    info!("stop signal: draining for up to {} s", config.proxy.drain_timeout_s);
                    status.request_shutdown();
                    stopping = Some(Instant::now());
                    for slot in &mut slots {
                        slot.listener = None;
                    }
                }
                Ok(Signal::SIGHUP) => reload_why = Some("SIGHUP"),
                _ => {}
            }
        }
        if let (Some(n), Some(_)) = (request, stopping) {
            status.answer_reload(n, false, "corelay is stopping; nothing was reloaded");
        }
        if let (Some(why), None) = (reload_why, stopping) {
            file_stamp = source.path.as_deref().and_then(stamp);
            let outcome = reload(&config, &source, &status);
            match &outcome {
                Ok((next, message)) => {
                    info!("{why}: {message}");
                    config = next.clone();
                    checker.follow(&config, &status);
                }
                Err(e) => error!("{why}: configuration refused, version {} keeps running: {e}", config.version),
            }
            if let Some(n) = request {
                match outcome {
                    Ok((_, message)) => status.answer_reload(n, true, &message),
                    Err(e) => status.answer_reload(
                        n,
                        false,
                        &format!("configuration refused, version {} keeps running: {e}", config.version),
                    ),
                }
            }
        }

        // Reap shards that ended.
        for (k, slot) in slots.iter_mut().enumerate() {
            let Some(exit) = slot.worker.as_mut().and_then(Worker::try_exit) else {
                continue;
            };
            slot.worker = None;
            // What the dead shard published is gone with it.
            status.slot(k).reset_gauges();
            status.tables(k).clear();
            if let Some(b) = &balancer {
                // Its clients reconnect now: to its successor as much as to the others.
                b.forget(k);
            }
            if stopping.is_some() {
                continue;
            }
            if exit == Some(EXIT_CONFIG) {
                error!(shard = k, "shard exited with a configuration error; not restarting it");
                slot.failed = true;
                continue;
            }
            let (limit, window) =
                (config.proxy.crash_loop_limit as usize, Duration::from_secs(config.proxy.crash_loop_window_s));
            slot.deaths.push_back(Instant::now());
            while slot.deaths.front().is_some_and(|t| t.elapsed() > window) {
                slot.deaths.pop_front();
            }
            if limit > 0 && slot.deaths.len() >= limit {
                error!(
                    shard = k,
                    "shard died {} times within {} s: a crash loop; not restarting it (crash_loop_limit, crash_loop_window_s). \
The other shards go on; restart corelay once the cause is fixed",
                    slot.deaths.len(),
                    window.as_secs()
                );
                slot.failed = true;
                // Its sockets go too: the kernel must not queue clients where nobody accepts.
                slot.listener = None;
                slot.admin = None;
                slot.metrics = None;
                status.slot(k).given_up.store(1, std::sync::atomic::Ordering::Relaxed);
                continue;
            }
            slot.backoff =
                if slot.started.elapsed() > STABLE_AFTER { BACKOFF_MIN } else { (slot.backoff * 2).min(BACKOFF_MAX) };
            let delay = if slot.started.elapsed() > STABLE_AFTER { Duration::ZERO } else { slot.backoff / 2 };
            warn!(shard = k, exit = ?exit, "shard died; restarting in {:?}", delay);
            slot.restart_at = Some(Instant::now() + delay);
        }

        if slots.iter().all(|s| s.failed) {
            let looped = (0..n).any(|k| status.slot(k).given_up.load(std::sync::atomic::Ordering::Relaxed) == 1);
            error!(
                "no shard is running any more ({}); exiting",
                if looped { "crash loops" } else { "configuration errors" }
            );
            return Ok(if looped { 1 } else { EXIT_CONFIG });
        }
        if let Some(since) = stopping {
            if slots.iter().all(|s| s.worker.is_none()) {
                info!("all shards stopped; bye");
                return Ok(0);
            }
            if since.elapsed() > Duration::from_secs(config.proxy.drain_timeout_s + 5) {
                warn!("shards did not stop in time; killing them");
                for slot in &mut slots {
                    if let Some(w) = slot.worker.take() {
                        w.kill();
                    }
                }
                return Ok(0);
            }
        }
    }
}

fn slots_fds(slots: &[ShardSlot]) -> Vec<i32> {
    use std::os::fd::AsRawFd;
    slots
        .iter()
        .flat_map(|s| [s.listener.as_ref(), s.admin.as_ref(), s.metrics.as_ref()])
        .flatten()
        .map(|fd| fd.as_raw_fd())
        .collect()
}

fn wait_readable(fd: &SignalFd, timeout: Duration) {
    use std::os::fd::AsFd;
    let mut fds = [nix::poll::PollFd::new(fd.as_fd(), nix::poll::PollFlags::POLLIN)];
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
}

/// Runs a shard in the current thread or process, mapping failures to an exit code.
fn shard_main(spec: shard::ShardSpec) -> i32 {
    let k = spec.index;
    match shard::run(spec) {
        Ok(()) => 0,
        Err(e) => {
            error!(shard = k, "{e}");
            EXIT_CONFIG
        }
    }
}
