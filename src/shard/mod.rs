//! One shard: a glommio executor pinned to one CPU, accepting on its own SO_REUSEPORT
//! socket and serving every session it accepts to the end.
//!
//! This module and [`net`] are the only places that know glommio. A shard shares nothing
//! with other shards on the query path: it has its own listener, its own backend
//! connections, its own copy of the configuration and its own status slot.
//!
//! Why one executor per core: each executor is single-threaded and never steals work, so
//! session state needs no locks and stays in one CPU's cache; the kernel spreads new
//! connections over the shards' listeners (SO_REUSEPORT).

pub mod balance;
mod report;
mod sides;
mod tasks;

use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use thiserror::Error;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::net::glommio::{Conn, GlommioConnector};
use crate::net::listen::set_cloexec;
use crate::session::{self, ShardState};
use crate::status::StatusRegion;

#[derive(Debug, Error)]
pub enum ShardError {
    #[error("cannot start the glommio executor of shard {shard}: {message}")]
    Executor { shard: usize, message: String },
}

/// A shard's listening sockets: clients, and (when on) the admin port and `/metrics`.
pub struct Listeners {
    pub proxy: OwnedFd,
    pub admin: Option<OwnedFd>,
    pub metrics: Option<OwnedFd>,
}

impl Listeners {
    pub fn raw_fds(&self) -> Vec<i32> {
        use std::os::fd::AsRawFd;
        [Some(&self.proxy), self.admin.as_ref(), self.metrics.as_ref()]
            .into_iter()
            .flatten()
            .map(|f| f.as_raw_fd())
            .collect()
    }
}

/// Everything a shard starts from.
pub struct ShardSpec {
    pub index: usize,
    pub cpu: usize,
    pub listeners: Listeners,
    pub config: Arc<Config>,
    pub status: Arc<StatusRegion>,
    /// This shard's count in the accept balancer, when new clients are balanced by load.
    pub balance: Option<balance::Share>,
}

/// Runs shard `spec.index` on the calling thread until shutdown. Returns when drained.
pub fn run(spec: ShardSpec) -> Result<(), ShardError> {
    let index = spec.index;
    crate::log::set_shard(index);
    if !core_affinity::set_for_current(core_affinity::CoreId { id: spec.cpu }) {
        warn!(shard = index, cpu = spec.cpu, "could not pin shard to its CPU; running unpinned");
    }
    let p = &spec.config.proxy;
    if let Err(e) = set_sched_policy(p.sched_policy) {
        warn!(shard = index, policy = ?p.sched_policy, error = %e, "could not set the shard's scheduling policy; keeping the inherited one");
    }
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .name(&format!("corelay-shard-{index}"))
        .io_memory(p.io_memory_kib * 1024)
        .ring_depth(p.ring_depth.max(8))
        .spin_before_park(Duration::from_micros(p.spin_before_park_us))
        .preempt_timer(Duration::from_millis(p.preempt_timer_ms.max(1)))
        .make()
        .map_err(|e| ShardError::Executor { shard: index, message: e.to_string() })?;
    ex.run(serve(spec));
    Ok(())
}

/// Sets the calling thread's scheduling policy (priority 0; neither needs a privilege).
///
/// Why `SCHED_BATCH` by default: every packet a shard sends wakes a client or a backend
/// thread, and every packet it receives wakes the shard. Under `SCHED_OTHER` each of those
/// wake-ups may preempt whatever runs on the CPU, so a shard sharing its CPU is switched
/// out after nearly every send and back in for every receive, one session at a time. A
/// batch shard waits for the running task to sleep or use up its slice, then serves every
/// session that became ready in one loop turn: on 2 CPUs shared with MariaDB and
/// sysbench, 1.05-1.13 x the statements per second at 6-14 % less CPU per statement
/// (`benches/results/2026-12-07-ab-sched-batch.md`). On a CPU of its own it changes
/// nothing.
fn set_sched_policy(policy: crate::config::SchedPolicy) -> std::io::Result<()> {
    let policy = match policy {
        crate::config::SchedPolicy::Batch => libc::SCHED_BATCH,
        crate::config::SchedPolicy::Normal => libc::SCHED_OTHER,
    };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` lives across the call.
    if unsafe { libc::sched_setscheduler(0, policy, &param) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A shard's state, on glommio.
type State = ShardState<GlommioConnector>;

/// Serves the shard until it is stopped: its tasks beside, the accept loop, the drain.
async fn serve(spec: ShardSpec) {
    let ShardSpec { index, cpu, listeners, config, status, balance } = spec;
    let Listeners { proxy: listener, admin, metrics } = listeners;
    // A copy of its own: shards share nothing, not even a reference count.
    let config = Arc::new(Config::clone(&config));
    status.slot(index).start(std::process::id(), cpu);
    status.slot(index).config_version.store(config.version, std::sync::atomic::Ordering::Relaxed);
    status.tables(index).clear();
    // The balancer looks at the accept queue through a copy of the descriptor.
    let queue = balance.as_ref().and_then(|_| listener.try_clone().ok());
    let listener = Listener::new(listener);
    let write_timeout = Some(Duration::from_secs(config.proxy.client_idle_timeout_s.clamp(1, 600)));
    let shard = Rc::new(ShardState::new(config, status, index, GlommioConnector { write_timeout }));
    info!(shard = index, cpu, "shard accepting");
    if let Some(fd) = admin {
        glommio::spawn_local(sides::serve(shard.clone(), fd, sides::Side::Admin, balance.clone())).detach();
    }
    if let Some(fd) = metrics {
        glommio::spawn_local(sides::serve(shard.clone(), fd, sides::Side::Metrics, None)).detach();
    }
    glommio::spawn_local(tasks::maintain_pool(shard.clone())).detach();
    glommio::spawn_local(tasks::publish_status(shard.clone())).detach();
    glommio::spawn_local(tasks::sweep_statements(shard.clone())).detach();
    glommio::spawn_local(tasks::answer_mailbox(shard.clone())).detach();
    glommio::spawn_local(tasks::follow_config(shard.clone())).detach();
    let accepted = Rc::new(std::cell::Cell::new(0u64));
    if let (Some(share), Some(queue)) = (&balance, queue) {
        glommio::spawn_local(tasks::settle_balance(shard.clone(), share.clone(), queue, accepted.clone())).detach();
    }
    accept_clients(&shard, &listener, Rc::new(balance), &accepted).await;
    drop(listener);
    drain(&shard).await;
    info!(shard = index, "shard stopped");
    crate::log::flush();
}

/// Accepts clients until shutdown, each served by a task of its own; waits while PAUSEd
/// (new clients wait in the listen backlog).
async fn accept_clients(
    shard: &Rc<State>,
    listener: &Listener,
    balance: Rc<Option<balance::Share>>,
    accepted: &std::cell::Cell<u64>,
) {
    let (index, status) = (shard.index, &shard.status);
    loop {
        while status.paused() && !status.shutdown_requested() {
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
        let stream = match accept(listener, status, true).await {
            Accepted::Stop => return,
            Accepted::Paused => continue,
            Accepted::Stream(s) => s,
            Accepted::Error(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                warn!(shard = index, "accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        accepted.set(accepted.get() + 1);
        set_cloexec(&stream);
        let Ok(peer) = stream.peer_addr() else {
            if let Some(share) = balance.as_ref() {
                share.closed();
            }
            continue;
        };
        let shard = shard.clone();
        let balance = balance.clone();
        glommio::spawn_local(async move {
            let conn = Conn::new(stream, shard.connector.write_timeout);
            if let Err(why) = contained(session::serve(&shard, conn, peer)).await {
                error!(shard = index, peer = %peer, "session panicked ({why}); it was closed and the shard goes on");
                crate::status::Slot::add(&shard.slot().session_panics, 1);
            }
            if let Some(share) = balance.as_ref() {
                share.closed();
            }
        })
        .detach();
    }
}

/// The drain: no new clients; idle sessions are told (1053) and closed now, sessions in a
/// transaction or a statement finish it first, for up to `drain_timeout_s`; then pooled
/// and pipelined connections are closed politely (COM_QUIT).
async fn drain(shard: &State) {
    let index = shard.index;
    let started = Instant::now();
    let drain = Duration::from_secs(shard.config().proxy.drain_timeout_s);
    let slot = shard.slot();
    let open = || slot.client_connections.load(std::sync::atomic::Ordering::Relaxed);
    shard.start_drain();
    info!(shard = index, sessions = open(), "draining for up to {} s", drain.as_secs());
    while open() > 0 && started.elapsed() < drain {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    if open() > 0 {
        warn!(shard = index, sessions = open(), "drain time over; telling the remaining sessions and closing them");
        shard.stop_sessions();
        let told = Instant::now();
        while open() > 0 && told.elapsed() < Duration::from_secs(2) {
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
    }
    for mut b in shard.pool.take_all_idle() {
        b.quit().await;
    }
    shard.pipes.retire_where(|_| true);
    let retiring = Instant::now();
    while !shard.pipes.all_closed() && retiring.elapsed() < Duration::from_secs(1) {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs a session's future with a panic contained at the session boundary: the policy is
/// no panics by construction (no `unwrap` on what a client or server sends), and should
/// one happen anyway, it ends that session only — its socket and connection are dropped
/// while unwinding — and the shard serves the others.
pub async fn contained<F: std::future::Future<Output = ()>>(session: F) -> Result<(), String> {
    use futures_lite::FutureExt;
    std::panic::AssertUnwindSafe(session).catch_unwind().await.map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into())
    })
}

/// A shard's listening socket.
pub(crate) struct Listener {
    socket: TcpListener,
    /// Its descriptor (owned by `socket`).
    fd: std::os::fd::RawFd,
}

impl Listener {
    pub fn new(fd: OwnedFd) -> Listener {
        let fd = fd.into_raw_fd();
        // SAFETY: the descriptor is a bound, listening TCP socket that we own.
        Listener { socket: unsafe { TcpListener::from_raw_fd(fd) }, fd }
    }
}

pub(crate) enum Accepted {
    Stream(glommio::net::TcpStream),
    Error(String),
    Stop,
    Paused,
}

/// Waits for a connection, or for shutdown (or, when `pausable`, PAUSE) to be asked for;
/// the pending accept is dropped then, so nobody is accepted while paused.
pub(crate) async fn accept(listener: &Listener, status: &StatusRegion, pausable: bool) -> Accepted {
    let wanted = async {
        match listener.socket.accept().await {
            Ok(s) => Accepted::Stream(s),
            Err(e) => Accepted::Error(e.to_string()),
        }
    };
    let stop = async {
        let mut waited = 0;
        loop {
            if status.shutdown_requested() {
                return Accepted::Stop;
            }
            if pausable && status.paused() {
                return Accepted::Paused;
            }
            glommio::timer::sleep(Duration::from_millis(50)).await;
            // A client that sat in the accept queue through two checks while an accept
            // was armed was not handed to it: take it directly.
            waited = if balance::accept_queue(&listener.fd).is_some_and(|n| n > 0) { waited + 1 } else { 0 };
            if waited >= 2 {
                waited = 0;
                if let Some(stream) = accept_waiting(listener) {
                    return stream;
                }
            }
        }
    };
    futures_lite::future::or(wanted, stop).await
}

/// Accepts a queued client with the system call itself. The armed io_uring accept is
/// woken by the socket's wait queue, and a wake-up can go astray: to the ring of a shard
/// that died with an accept pending on the same socket (its successor inherits the
/// socket), which dequeues nothing, so the client would wait until the next one arrives.
/// The listener is non-blocking: an empty queue returns at once.
fn accept_waiting(listener: &Listener) -> Option<Accepted> {
    // SAFETY: accept4 on our listening socket with no address buffers.
    let fd = unsafe { libc::accept4(listener.fd, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return (e.kind() != std::io::ErrorKind::WouldBlock).then(|| Accepted::Error(e.to_string()));
    }
    tracing::debug!(fd, "a queued client was accepted directly (its wake-up went astray)");
    // SAFETY: a connected TCP socket that nothing else owns.
    Some(Accepted::Stream(unsafe { glommio::net::TcpStream::from_raw_fd(fd) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_session_leaves_the_shard_running() {
        let ex = LocalExecutorBuilder::new(Placement::Unbound).io_memory(64 << 10).make().unwrap();
        let served = ex.run(async {
            let bad = glommio::spawn_local(contained(async {
                glommio::timer::sleep(Duration::from_millis(5)).await;
                panic!("boom");
            }));
            let good = glommio::spawn_local(contained(async {
                glommio::timer::sleep(Duration::from_millis(20)).await;
            }));
            (bad.await, good.await)
        });
        assert_eq!(served.0, Err("boom".to_string()));
        assert_eq!(served.1, Ok(()));
    }
}
