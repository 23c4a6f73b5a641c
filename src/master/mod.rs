//! The master: checks limits, creates the status region and the shards' listeners, spawns
//! the shards (threads or forked processes), and supervises them.
//!
//! Signals are blocked before any shard exists and read through a signalfd, so every
//! thread inherits the mask and only the master ever sees TERM/INT/HUP/CHLD. In fork mode
//! the master forks before it creates any thread, and a dead shard is re-forked into the
//! same slot (so it keeps its status slot and its listener) with back-off — unless it exited
//! with the configuration-error code, which no restart can fix.

mod hgrm;
mod limits;
mod reload;
mod slots;
mod spawn;

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use thiserror::Error;
use tracing::{error, info, warn};

use crate::cluster::zookeeper::{self, Follower};
use crate::cluster::Checker;
use crate::config::{Config, EXIT_CONFIG};
use crate::net::listen::ListenError;
use crate::shard::{self, ShardError};
use crate::status::{StatusError, StatusRegion};
use slots::Slots;

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

/// Where the configuration came from, to read it again on a reload.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The file (None: the embedded default, which never changes).
    pub path: Option<std::path::PathBuf>,
    /// The command line's overrides, which win over every version of the file.
    pub overrides: crate::config::Overrides,
}

/// How often the master wakes up when no signal comes: it checks servers, reloads and
/// shards between waits.
const TICK: Duration = Duration::from_millis(100);

/// The master's state while it runs.
struct Master {
    config: Arc<Config>,
    source: Source,
    status: Arc<StatusRegion>,
    slots: Slots,
    signals: SignalFd,
    /// When the stop began.
    stopping: Option<Instant>,
    checker: Checker,
    latency_files: hgrm::Writer,
    watch: reload::Watch,
    /// The ZooKeeper watcher (None: no cluster takes its servers from ZooKeeper).
    zk: Option<Follower>,
}

/// Runs corelay until it is told to stop. Returns the process exit code.
pub fn run(config: Config, source: Source) -> Result<i32, MasterError> {
    let mut master = Master::start(config, source)?;
    loop {
        if let Some(code) = master.tick()? {
            return Ok(code);
        }
    }
}

impl Master {
    /// Checks limits, creates the status region, takes the signals, binds the shards'
    /// sockets. The shards start at the first tick.
    fn start(config: Config, source: Source) -> Result<Master, MasterError> {
        let n = config.shard_count();
        limits::check_memlock(&config, n)?;
        limits::raise_nofile(&config);
        let status =
            StatusRegion::create_sized(n, config.proxy.status_table_capacity, config.proxy.digest_table_capacity)?;
        let (config, topology) = zookeeper::start_config(config, &status.header().zookeeper);
        let config = Arc::new(config);
        let signals = take_signals()?;
        let slots = Slots::bind(&config, n)?;
        info!(
            listen = %config.listen,
            shards = n,
            mode = ?config.proxy.worker_mode,
            config = %config.source,
            "corelay {} starting",
            env!("CARGO_PKG_VERSION")
        );
        let zk = Follower::start(&config, topology);
        Ok(Master {
            zk,
            checker: Checker::default(),
            latency_files: hgrm::Writer::new(&config, &status),
            watch: reload::Watch::new(&source),
            config,
            source,
            status,
            slots,
            signals,
            stopping: None,
        })
    }

    /// One round of supervision: health checks and latency files, shards due to start,
    /// signals, reloads, shards that ended. Returns the exit code once corelay is done.
    fn tick(&mut self) -> Result<Option<i32>, MasterError> {
        if self.stopping.is_none() {
            self.checker.run_due(&self.config, &self.status);
            self.latency_files.run_due(&self.status);
        }
        // Reloads: SIGHUP (below), admin RELOAD (a request in the status region), or the
        // file changing under watch_config.
        let request = self.status.pending_reload();
        let mut reload_why = request.map(|_| "admin RELOAD");
        if self.watch.changed(&self.config, &self.source) {
            reload_why = Some("the configuration file changed");
        }
        if self.stopping.is_none() {
            self.slots.start_due(&self.config, &self.status)?;
        }
        wait_readable(&self.signals, self.zk.as_ref().and_then(Follower::fd), TICK);
        if self.stopping.is_none() {
            self.follow_zookeeper();
        }
        while let Ok(Some(info)) = self.signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT) => {
                    if self.stopping.is_some() {
                        warn!("second stop signal: exiting now");
                        self.slots.kill_all();
                        return Ok(Some(0));
                    }
                    self.stop();
                }
                Ok(Signal::SIGHUP) => reload_why = Some("SIGHUP"),
                _ => {}
            }
        }
        if self.stopping.is_some() {
            if let Some(n) = request {
                self.status.answer_reload(n, false, "corelay is stopping; nothing was reloaded");
            }
        } else if let Some(why) = reload_why {
            self.reload(why, request);
        }
        self.slots.reap(&self.config, &self.status, self.stopping.is_some());
        Ok(self.finished())
    }

    /// The first stop signal: the shards drain (see [`crate::shard`]).
    fn stop(&mut self) {
        info!("stop signal: draining for up to {} s", self.config.proxy.drain_timeout_s);
        self.status.request_shutdown();
        self.stopping = Some(Instant::now());
        self.slots.stop_listening();
    }

    /// Applies what the ZooKeeper watcher read, through the reload path.
    fn follow_zookeeper(&mut self) {
        let Some(zk) = &mut self.zk else { return };
        let Some(topology) = zk.poll(&self.status.header().zookeeper) else { return };
        let why = format!("ZooKeeper changed the topology (zxid {})", topology.zxid);
        let applied = self.reload_with(&why, None, Some(&topology));
        if let Some(zk) = &mut self.zk {
            zk.applied(topology, applied, &self.status.header().zookeeper);
        }
    }

    /// Reloads the configuration and answers admin request `request`, if one asked.
    fn reload(&mut self, why: &str, request: Option<u64>) {
        let topology = self.zk.as_ref().and_then(|z| z.topology().cloned());
        self.reload_with(why, request, topology.as_ref());
    }

    /// Reloads with the servers of `topology` for ZooKeeper-fed clusters; whether the new
    /// configuration runs.
    fn reload_with(
        &mut self,
        why: &str,
        request: Option<u64>,
        topology: Option<&zookeeper::topology::Topology>,
    ) -> bool {
        self.watch.reloading(&self.source);
        let outcome = reload::reload(&self.config, &self.source, &self.status, topology);
        let answer = match outcome {
            Ok((next, message)) => {
                info!("{why}: {message}");
                self.config = next;
                self.checker.follow(&self.config, &self.status);
                Follower::follow(&mut self.zk, &self.config, &self.status.header().zookeeper);
                (true, message)
            }
            Err(e) => {
                error!("{why}: configuration refused, version {} keeps running: {e}", self.config.version);
                (false, format!("configuration refused, version {} keeps running: {e}", self.config.version))
            }
        };
        if let Some(n) = request {
            self.status.answer_reload(n, answer.0, &answer.1);
        }
        answer.0
    }

    /// The exit code, once no shard runs any more: all failed, or all stopped after a stop
    /// signal (or killed when the drain overran).
    fn finished(&mut self) -> Option<i32> {
        if self.slots.all_failed() {
            let shards = self.status.shards();
            let looped =
                (0..shards).any(|k| self.status.slot(k).given_up.load(std::sync::atomic::Ordering::Relaxed) == 1);
            error!(
                "no shard is running any more ({}); exiting",
                if looped { "crash loops" } else { "configuration errors" }
            );
            return Some(if looped { 1 } else { EXIT_CONFIG });
        }
        let since = self.stopping?;
        if self.slots.all_stopped() {
            info!("all shards stopped; bye");
            return Some(0);
        }
        if since.elapsed() > Duration::from_secs(self.config.proxy.drain_timeout_s + 5) {
            warn!("shards did not stop in time; killing them");
            self.slots.kill_all();
            return Some(0);
        }
        None
    }
}

/// Blocks the signals the master handles (every thread and forked shard inherits the
/// mask) and returns the descriptor they are read from.
fn take_signals() -> Result<SignalFd, MasterError> {
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGCHLD, Signal::SIGQUIT] {
        mask.add(s);
    }
    mask.thread_block().map_err(MasterError::Signals)?;
    // Shards must ignore these; in thread mode dispositions are process-wide.
    spawn::ignore_shard_signals();
    SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).map_err(MasterError::Signals)
}

/// Waits up to `timeout` for a signal or (when `other` is given) a report of the
/// ZooKeeper watcher.
fn wait_readable(fd: &SignalFd, other: Option<std::os::fd::RawFd>, timeout: Duration) {
    use std::os::fd::{AsFd, BorrowedFd};
    let mut fds = vec![nix::poll::PollFd::new(fd.as_fd(), nix::poll::PollFlags::POLLIN)];
    // SAFETY: the descriptor is the watcher's pipe, open for as long as this call.
    let other = other.map(|o| unsafe { BorrowedFd::borrow_raw(o) });
    if let Some(o) = &other {
        fds.push(nix::poll::PollFd::new(*o, nix::poll::PollFlags::POLLIN));
    }
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
