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
use crate::session::{self, Context};
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
    // SAFETY: the descriptor is a bound, listening TCP socket that we own.
    let listener = unsafe { TcpListener::from_raw_fd(listener.into_raw_fd()) };
    let write_timeout = Some(Duration::from_secs(config.proxy.client_idle_timeout_s.clamp(1, 600)));
    let ctx = Rc::new(Context::new(config, status.clone(), index, GlommioConnector { write_timeout }));
    info!(shard = index, cpu, "shard accepting");
    if let Some(fd) = admin {
        glommio::spawn_local(serve_side(ctx.clone(), fd, Side::Admin, balance.clone())).detach();
    }
    if let Some(fd) = metrics {
        glommio::spawn_local(serve_side(ctx.clone(), fd, Side::Metrics, None)).detach();
    }
    glommio::spawn_local(maintain_pool(ctx.clone())).detach();
    glommio::spawn_local(publish_status(ctx.clone())).detach();
    glommio::spawn_local(sweep_statements(ctx.clone())).detach();
    glommio::spawn_local(follow_config(ctx.clone())).detach();
    let accepted = Rc::new(std::cell::Cell::new(0u64));
    if let (Some(share), Some(queue)) = (&balance, queue) {
        glommio::spawn_local(settle_balance(ctx.clone(), share.clone(), queue, accepted.clone())).detach();
    }
    let balance = Rc::new(balance);
    loop {
        while status.paused() && !status.shutdown_requested() {
            // PAUSE (admin port): new clients wait in the listen backlog.
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
        let stream = match accept(&listener, &status, true).await {
            Accepted::Stop => break,
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
        let ctx = ctx.clone();
        let balance = balance.clone();
        glommio::spawn_local(async move {
            let conn = Conn::new(stream, ctx_write_timeout(&ctx));
            if let Err(why) = contained(session::serve(&ctx, conn, peer)).await {
                error!(shard = index, peer = %peer, "session panicked ({why}); it was closed and the shard goes on");
                crate::status::Slot::add(&ctx.slot().session_panics, 1);
            }
            if let Some(share) = balance.as_ref() {
                share.closed();
            }
        })
        .detach();
    }
    // The drain: no new clients; idle sessions are told (1053) and closed now, sessions in
    // a transaction or a statement finish it first, for up to drain_timeout_s.
    drop(listener);
    let started = Instant::now();
    let drain = Duration::from_secs(ctx.config().proxy.drain_timeout_s);
    let slot = status.slot(index);
    let open = || slot.client_connections.load(std::sync::atomic::Ordering::Relaxed);
    ctx.start_drain();
    info!(shard = index, sessions = open(), "draining for up to {} s", drain.as_secs());
    while open() > 0 && started.elapsed() < drain {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    if open() > 0 {
        warn!(shard = index, sessions = open(), "drain time over; telling the remaining sessions and closing them");
        ctx.stop_sessions();
        let told = Instant::now();
        while open() > 0 && told.elapsed() < Duration::from_secs(2) {
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
    }
    // Pooled and pipelined connections are closed politely (COM_QUIT).
    for mut b in ctx.pool.take_all_idle() {
        b.quit().await;
    }
    ctx.pipes.retire_where(|_| true);
    let retiring = Instant::now();
    while !ctx.pipes.all_closed() && retiring.elapsed() < Duration::from_secs(1) {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    info!(shard = index, "shard stopped");
    crate::log::flush();
}

/// Once a second: when neither the shard's accepts nor its count in the balancer moved
/// for a whole second, nothing waits in its accept queue, and the count is not its number
/// of sessions, writes that number there (if the count still has the value looked at).
/// This undoes connections that were given to the shard but never arrived (a handshake
/// that did not complete) without racing one on its way in: a connection counted but not
/// yet accepted is in the queue, or changes the count or the accepts within the second.
async fn settle_balance(
    ctx: Rc<Context<GlommioConnector>>,
    share: balance::Share,
    queue: OwnedFd,
    accepted: Rc<std::cell::Cell<u64>>,
) {
    let mut last = None;
    while !ctx.status.shutdown_requested() {
        glommio::timer::sleep(Duration::from_secs(1)).await;
        let seen = (accepted.get(), share.count());
        let open = ctx.slot().client_connections.load(std::sync::atomic::Ordering::Relaxed);
        if seen.1 != open && last == Some(seen) && balance::accept_queue(&queue) == Some(0) {
            share.settle(seen.1, open);
        }
        last = Some(seen);
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

enum Accepted {
    Stream(glommio::net::TcpStream),
    Error(String),
    Stop,
    Paused,
}

/// Waits for a connection, or for shutdown (or, when `pausable`, PAUSE) to be asked for;
/// the pending accept is dropped then, so nobody is accepted while paused.
async fn accept(listener: &TcpListener, status: &StatusRegion, pausable: bool) -> Accepted {
    let wanted = async {
        match listener.accept().await {
            Ok(s) => Accepted::Stream(s),
            Err(e) => Accepted::Error(e.to_string()),
        }
    };
    let stop = async {
        loop {
            if status.shutdown_requested() {
                return Accepted::Stop;
            }
            if pausable && status.paused() {
                return Accepted::Paused;
            }
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
    };
    futures_lite::future::or(wanted, stop).await
}

/// The admin port or `/metrics`.
#[derive(Clone, Copy)]
enum Side {
    Admin,
    Metrics,
}

/// Accepts on this shard's admin or `/metrics` socket until shutdown; every connection
/// gets a task of its own and is answered from the status region.
async fn serve_side(ctx: Rc<Context<GlommioConnector>>, fd: OwnedFd, side: Side, balance: Option<balance::Share>) {
    // SAFETY: the descriptor is a bound, listening TCP socket that we own.
    let listener = unsafe { TcpListener::from_raw_fd(fd.into_raw_fd()) };
    let mut next_id = 0u32;
    loop {
        let stream = match accept(&listener, &ctx.status, false).await {
            Accepted::Stop => return,
            Accepted::Paused => continue,
            Accepted::Stream(s) => s,
            Accepted::Error(e) => {
                warn!(shard = ctx.shard, "admin accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        set_cloexec(&stream);
        let Ok(peer) = stream.peer_addr() else { continue };
        next_id = next_id.wrapping_add(1);
        let id = ((ctx.shard as u32 & 0xFF) << 24) | (next_id & 0x00FF_FFFF);
        let ctx = ctx.clone();
        let balance = balance.clone();
        glommio::spawn_local(async move {
            let conn = Conn::new(stream, Some(Duration::from_secs(10)));
            match side {
                Side::Admin => {
                    let host = AdminHost(&ctx, balance.as_ref());
                    crate::admin::session::serve(&host, conn, peer, id).await
                }
                Side::Metrics => {
                    let config = ctx.config();
                    let view = crate::admin::View { config: &config, status: &ctx.status, balance: None };
                    crate::admin::metrics::serve(&view, conn).await
                }
            }
        })
        .detach();
    }
}

/// What the admin port's sessions get from the shard: its current configuration and the
/// status region, its timer, and its view of the accept balancer.
struct AdminHost<'a>(&'a Context<GlommioConnector>, Option<&'a balance::Share>);

impl crate::admin::Host for AdminHost<'_> {
    fn config(&self) -> Arc<Config> {
        self.0.config()
    }

    fn status(&self) -> &crate::status::StatusRegion {
        &self.0.status
    }

    async fn sleep(&self, d: Duration) {
        glommio::timer::sleep(d).await;
    }

    fn balance_counts(&self) -> Option<Vec<u64>> {
        self.1.map(balance::Share::all)
    }
}

/// Once a second: closes pooled connections idle longer than `server_idle_timeout_s` and
/// those a reload retired, retires idle pipelined connections and forgets closed ones, and
/// opens connections up to each server's `min_connections` share.
async fn maintain_pool(ctx: Rc<Context<GlommioConnector>>) {
    while !ctx.status.shutdown_requested() {
        glommio::timer::sleep(Duration::from_secs(1)).await;
        let max_idle = Duration::from_secs(ctx.config().proxy.server_idle_timeout_s);
        close_retired(&ctx).await;
        ctx.pipes.reap(max_idle);
        let expired = ctx.pool.take_expired(Instant::now(), max_idle);
        for mut b in expired {
            b.quit().await;
            ctx.pool.forget(b.key.server);
        }
        for key in ctx.pool.reserve_warm() {
            session::prewarm(&ctx, key).await;
        }
        ctx.publish_pool();
    }
}

/// Closes (COM_QUIT) the connections the pool retired and frees their slots.
async fn close_retired(ctx: &Context<GlommioConnector>) {
    for mut b in ctx.pool.take_retired() {
        b.quit().await;
        ctx.pool.forget(b.key.server);
    }
    ctx.publish_pool();
}

/// Interrupts statements that run past `query_timeout_ms`, checking ten times per timeout
/// (at most every second, at least every 10 ms): one timer for the shard, none per session.
async fn sweep_statements(ctx: Rc<Context<GlommioConnector>>) {
    while !ctx.status.shutdown_requested() {
        let limit = Duration::from_millis(ctx.config().proxy.query_timeout_ms);
        let every = (limit / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
        glommio::timer::sleep(every).await;
        if !limit.is_zero() {
            ctx.sweep_timeouts(limit);
        }
    }
}

/// How often a shard looks for a new configuration version (one atomic load).
const CONFIG_POLL: Duration = Duration::from_millis(50);

/// Takes every configuration version the master publishes: parses it, builds it on the
/// shard's current one (whose removed entries become tombstones) and switches to it. One
/// that cannot be built is logged and the shard keeps what it runs.
async fn follow_config(ctx: Rc<Context<GlommioConnector>>) {
    let slot = ctx.slot();
    let mut failed = 0;
    while !ctx.status.shutdown_requested() {
        glommio::timer::sleep(CONFIG_POLL).await;
        let version = ctx.status.config_version();
        if version == ctx.config_version() || version == failed {
            continue;
        }
        let Some(text) = ctx.status.published_config() else { continue };
        let next = crate::config::Published::parse(&text)
            .map_err(|e| e.to_string())
            .and_then(|p| ctx.config().adopt(p).map_err(|e| e.to_string()));
        match next {
            Ok(next) if next.version == version => {
                ctx.apply(Arc::new(next));
                slot.config_version.store(version, std::sync::atomic::Ordering::Relaxed);
                close_retired(&ctx).await;
                info!(shard = ctx.shard, version, "configuration version {version} applied");
            }
            // Read while the master wrote the next one: look again.
            Ok(_) => {}
            Err(e) => {
                error!(
                    shard = ctx.shard,
                    version,
                    "cannot apply configuration version {version}: {e}; keeping version {}",
                    ctx.config_version()
                );
                failed = version;
            }
        }
    }
}

/// Every `status_interval_ms`: rebuilds this shard's status tables and flushes its query
/// log.
async fn publish_status(ctx: Rc<Context<GlommioConnector>>) {
    while !ctx.status.shutdown_requested() {
        ctx.publish_status();
        crate::log::flush();
        let every = Duration::from_millis(ctx.config().proxy.status_interval_ms.max(10));
        glommio::timer::sleep(every).await;
    }
}

fn ctx_write_timeout(ctx: &Context<GlommioConnector>) -> Option<Duration> {
    ctx.connector.write_timeout
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
