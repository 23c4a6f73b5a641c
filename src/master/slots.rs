//! The shards as the master tracks them: one slot per shard, holding the master's copies
//! of its listening sockets (so connections queued on a shard that dies wait for its
//! successor), the running worker, and what decides whether and when it is restarted.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::spawn::{self, Worker};
use super::MasterError;
use crate::config::{AcceptBalance, Config, EXIT_CONFIG};
use crate::net::listen;
use crate::shard::balance::Balancer;
use crate::shard::Listeners;
use crate::status::StatusRegion;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A shard that ran this long before dying is restarted without delay.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// Backlog of the admin and `/metrics` sockets.
const SIDE_BACKLOG: u32 = 128;

/// A shard slot as the master tracks it.
pub(super) struct ShardSlot {
    /// The master's copy of the shard's client listener (None once stopping: new clients
    /// are refused instead of queueing where nobody accepts).
    pub listener: Option<OwnedFd>,
    /// The shard's admin and `/metrics` listeners (when those ports are on).
    pub admin: Option<OwnedFd>,
    pub metrics: Option<OwnedFd>,
    pub worker: Option<Worker>,
    started: Instant,
    restart_at: Option<Instant>,
    backoff: Duration,
    /// Exited with the configuration-error code, or crash-looped: never restarted.
    pub failed: bool,
    /// When it died lately (for crash-loop detection).
    deaths: VecDeque<Instant>,
}

/// Every shard's slot, and the accept balancer over their listeners.
pub(super) struct Slots {
    pub list: Vec<ShardSlot>,
    pub balancer: Option<Arc<Balancer>>,
}

impl Slots {
    /// Binds `n` shards' sockets after checking that nobody else listens on corelay's
    /// addresses, then attaches the accept balancer.
    pub fn bind(config: &Config, n: usize) -> Result<Slots, MasterError> {
        for addr in [Some(config.listen), config.admin_addr, config.metrics_addr].into_iter().flatten() {
            listen::check_free(addr)?;
        }
        let side = |addr: Option<SocketAddr>| addr.map(|a| listen::bind_listener(a, SIDE_BACKLOG)).transpose();
        let mut list = Vec::with_capacity(n);
        for _ in 0..n {
            list.push(ShardSlot {
                listener: Some(listen::bind_listener(config.listen, config.proxy.backlog)?),
                admin: side(config.admin_addr)?,
                metrics: side(config.metrics_addr)?,
                worker: None,
                started: Instant::now(),
                restart_at: Some(Instant::now()),
                backoff: BACKOFF_MIN,
                failed: false,
                deaths: VecDeque::new(),
            });
        }
        type Socket = fn(&ShardSlot) -> Option<&OwnedFd>;
        let sockets: [(Option<SocketAddr>, Socket); 3] = [
            (Some(config.listen), |s| s.listener.as_ref()),
            (config.admin_addr, |s| s.admin.as_ref()),
            (config.metrics_addr, |s| s.metrics.as_ref()),
        ];
        for (addr, socket) in sockets {
            if let Some(addr) = addr {
                listen::check_alone(addr, &list.iter().filter_map(socket).collect::<Vec<_>>())?;
            }
        }
        let balancer = balance_accepts(config, &list);
        Ok(Slots { list, balancer })
    }

    /// Starts (or restarts) the shards that are due.
    pub fn start_due(&mut self, config: &Arc<Config>, status: &Arc<StatusRegion>) -> Result<(), MasterError> {
        let fds = self.fds();
        for (k, slot) in self.list.iter_mut().enumerate() {
            if slot.restart_at.is_none_or(|t| Instant::now() < t) {
                continue;
            }
            slot.restart_at = None;
            let err = |source| MasterError::Spawn { shard: k, source };
            let listeners = Listeners {
                proxy: match &slot.listener {
                    Some(l) => l.try_clone().map_err(err)?,
                    None => continue,
                },
                admin: slot.admin.as_ref().map(OwnedFd::try_clone).transpose().map_err(err)?,
                metrics: slot.metrics.as_ref().map(OwnedFd::try_clone).transpose().map_err(err)?,
            };
            let mode = config.proxy.worker_mode;
            let worker =
                spawn::start(mode, k, config.cpu_for_shard(k), listeners, config, status, &fds, &self.balancer)
                    .map_err(err)?;
            slot.worker = Some(worker);
            slot.started = Instant::now();
        }
        Ok(())
    }

    /// Stopping: the master's copies of the client listeners are closed, so the kernel
    /// refuses new clients instead of queueing them where nobody accepts.
    pub fn stop_listening(&mut self) {
        for slot in &mut self.list {
            slot.listener = None;
        }
    }

    /// Kills every shard at once (a second stop signal, or a drain that overran).
    pub fn kill_all(&mut self) {
        for slot in &mut self.list {
            if let Some(w) = slot.worker.take() {
                w.kill();
            }
        }
    }

    pub fn all_stopped(&self) -> bool {
        self.list.iter().all(|s| s.worker.is_none())
    }

    pub fn all_failed(&self) -> bool {
        self.list.iter().all(|s| s.failed)
    }

    /// Reaps the shards that ended and decides, for each, whether and when it restarts
    /// (never while `stopping`, never after a configuration error, never in a crash loop).
    pub fn reap(&mut self, config: &Config, status: &StatusRegion, stopping: bool) {
        for (k, slot) in self.list.iter_mut().enumerate() {
            let Some(exit) = slot.worker.as_mut().and_then(Worker::try_exit) else {
                continue;
            };
            slot.worker = None;
            // What the dead shard published is gone with it.
            status.slot(k).reset_gauges();
            status.tables(k).clear();
            if let Some(b) = &self.balancer {
                // Its clients reconnect now: to its successor as much as to the others.
                b.forget(k);
            }
            if stopping {
                continue;
            }
            if exit == Some(EXIT_CONFIG) {
                error!(shard = k, "shard exited with a configuration error; not restarting it");
                slot.failed = true;
                continue;
            }
            if slot.crash_looped(config) {
                error!(
                    shard = k,
                    "shard died {} times within {} s: a crash loop; not restarting it (crash_loop_limit, crash_loop_window_s). \
The other shards go on; restart corelay once the cause is fixed",
                    slot.deaths.len(),
                    config.proxy.crash_loop_window_s
                );
                slot.give_up();
                status.slot(k).given_up.store(1, Relaxed);
                continue;
            }
            let stable = slot.started.elapsed() > STABLE_AFTER;
            slot.backoff = if stable { BACKOFF_MIN } else { (slot.backoff * 2).min(BACKOFF_MAX) };
            let delay = if stable { Duration::ZERO } else { slot.backoff / 2 };
            warn!(shard = k, exit = ?exit, "shard died; restarting in {:?}", delay);
            slot.restart_at = Some(Instant::now() + delay);
        }
    }

    /// Every listening socket the master holds (a forked shard closes those not its own).
    fn fds(&self) -> Vec<i32> {
        self.list
            .iter()
            .flat_map(|s| [s.listener.as_ref(), s.admin.as_ref(), s.metrics.as_ref()])
            .flatten()
            .map(|fd| fd.as_raw_fd())
            .collect()
    }
}

impl ShardSlot {
    /// Counts a death; whether the shard died `crash_loop_limit` times within
    /// `crash_loop_window_s`.
    fn crash_looped(&mut self, config: &Config) -> bool {
        let limit = config.proxy.crash_loop_limit as usize;
        let window = Duration::from_secs(config.proxy.crash_loop_window_s);
        self.deaths.push_back(Instant::now());
        while self.deaths.front().is_some_and(|t| t.elapsed() > window) {
            self.deaths.pop_front();
        }
        limit > 0 && self.deaths.len() >= limit
    }

    /// Never restarted; its sockets go too: the kernel must not queue clients where nobody
    /// accepts.
    fn give_up(&mut self) {
        self.failed = true;
        self.listener = None;
        self.admin = None;
        self.metrics = None;
    }
}

/// With `accept_balance = "sessions"` and more than one shard: attaches the program that
/// gives each new client to the shard with fewer sessions. Where the kernel refuses it
/// (no CAP_BPF), says why and leaves the kernel's address hash in charge.
fn balance_accepts(config: &Config, slots: &[ShardSlot]) -> Option<Arc<Balancer>> {
    if slots.len() < 2 || config.proxy.accept_balance != AcceptBalance::Sessions {
        return None;
    }
    let fds: Vec<i32> = slots.iter().filter_map(|s| s.listener.as_ref().map(|l| l.as_raw_fd())).collect();
    match Balancer::attach(&fds) {
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
