//! A shard's periodic tasks, beside its sessions: pool upkeep, the statement-timeout sweep,
//! following configuration versions, publishing its status tables, and settling its count
//! in the accept balancer. Each is one timer per shard, none per session.

use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, info};

use super::{balance, report, State};

/// Once a second: when neither the shard's accepts nor its count in the balancer moved
/// for a whole second, nothing waits in its accept queue, and the count is not its number
/// of sessions, writes that number there (if the count still has the value looked at).
/// This undoes connections that were given to the shard but never arrived (a handshake
/// that did not complete) without racing one on its way in: a connection counted but not
/// yet accepted is in the queue, or changes the count or the accepts within the second.
pub(super) async fn settle_balance(
    shard: Rc<State>,
    share: balance::Share,
    queue: OwnedFd,
    accepted: Rc<std::cell::Cell<u64>>,
) {
    let mut last = None;
    while !shard.status.shutdown_requested() {
        glommio::timer::sleep(Duration::from_secs(1)).await;
        let seen = (accepted.get(), share.count());
        let open = shard.slot().client_connections.load(std::sync::atomic::Ordering::Relaxed);
        if seen.1 != open && last == Some(seen) && balance::accept_queue(&queue) == Some(0) {
            share.settle(seen.1, open);
        }
        last = Some(seen);
    }
}

/// Once a second: closes pooled connections idle longer than `server_idle_timeout_s` and
/// those a reload retired, retires idle pipelined connections and forgets closed ones,
/// leaves pipes held up by a slow reader to it, and opens connections up to each server's
/// `min_connections` share.
pub(super) async fn maintain_pool(shard: Rc<State>) {
    while !shard.status.shutdown_requested() {
        glommio::timer::sleep(Duration::from_secs(1)).await;
        let p = &shard.config().proxy;
        let (max_idle, slow) =
            (Duration::from_secs(p.server_idle_timeout_s), Duration::from_millis(p.pipeline_slow_reader_ms.max(1)));
        close_retired(&shard).await;
        let evicted = shard.pipes.evict_slow_readers(slow);
        crate::status::Slot::add(&shard.slot().pipes_evicted, evicted as u64);
        shard.pipes.reap(max_idle);
        let expired = shard.pool.take_expired(Instant::now(), max_idle);
        for mut b in expired {
            b.quit().await;
            shard.pool.forget(b.key.server);
        }
        for key in shard.pool.reserve_warm() {
            crate::session::prewarm(&shard, key).await;
        }
        shard.publish_pool();
    }
}

/// Closes (COM_QUIT) the connections the pool retired and frees their slots.
pub(super) async fn close_retired(shard: &State) {
    for mut b in shard.pool.take_retired() {
        b.quit().await;
        shard.pool.forget(b.key.server);
    }
    shard.publish_pool();
}

/// Answers requests about this shard's sessions (KILL) that other shards leave in its
/// mailbox, woken by a byte on its doorbell.
pub(super) async fn answer_mailbox(shard: Rc<State>) {
    use futures_lite::AsyncReadExt;
    use std::os::fd::FromRawFd;
    let fd = match shard.status.doorbell(shard.index).listener() {
        Ok(fd) => fd,
        Err(e) => {
            error!(shard = shard.index, "cannot wait on the KILL mailbox: {e}; KILL from other shards will time out");
            return;
        }
    };
    // SAFETY: a fresh duplicate of a connected Unix socket, owned by the stream from here.
    let mut bell = unsafe { glommio::net::UnixStream::from_raw_fd(fd) };
    let mut rung = [0u8; 64];
    // Requests left while the shard was (re)starting.
    shard.answer_mailbox();
    while !shard.status.shutdown_requested() {
        match bell.read(&mut rung).await {
            Ok(n) if n > 0 => shard.answer_mailbox(),
            _ => return,
        }
    }
}

/// Interrupts statements that run past `query_timeout_ms`, checking ten times per timeout
/// (at most every second, at least every 10 ms): one timer for the shard, none per session.
pub(super) async fn sweep_statements(shard: Rc<State>) {
    while !shard.status.shutdown_requested() {
        let limit = Duration::from_millis(shard.config().proxy.query_timeout_ms);
        let every = (limit / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
        glommio::timer::sleep(every).await;
        if !limit.is_zero() {
            shard.sweep_timeouts(limit);
        }
    }
}

/// How often a shard looks for a new configuration version (one atomic load).
const CONFIG_POLL: Duration = Duration::from_millis(50);

/// Takes every configuration version the master publishes: parses it, builds it on the
/// shard's current one (whose removed entries become tombstones) and switches to it. One
/// that cannot be built is logged and the shard keeps what it runs.
pub(super) async fn follow_config(shard: Rc<State>) {
    let slot = shard.slot();
    let mut failed = 0;
    while !shard.status.shutdown_requested() {
        glommio::timer::sleep(CONFIG_POLL).await;
        let version = shard.status.config_version();
        if version == shard.config_version() || version == failed {
            continue;
        }
        let Some(text) = shard.status.published_config() else { continue };
        let next = crate::config::Published::parse(&text, shard.status.sealer())
            .and_then(|p| shard.config().adopt(p).map_err(|e| e.to_string()));
        match next {
            Ok(next) if next.version == version => {
                shard.apply(Arc::new(next));
                slot.config_version.store(version, std::sync::atomic::Ordering::Relaxed);
                close_retired(&shard).await;
                info!(shard = shard.index, version, "configuration version {version} applied");
            }
            // Read while the master wrote the next one: look again.
            Ok(_) => {}
            Err(e) => {
                error!(
                    shard = shard.index,
                    version,
                    "cannot apply configuration version {version}: {e}; keeping version {}",
                    shard.config_version()
                );
                failed = version;
            }
        }
    }
}

/// Every `status_interval_ms`: rebuilds this shard's status tables and flushes its query
/// log.
pub(super) async fn publish_status(shard: Rc<State>) {
    let slot = shard.slot();
    let mut last = (slot.commands.load(Relaxed), Instant::now());
    let mut last_servers: Vec<u64> = slot.server_statements.iter().map(|n| n.load(Relaxed)).collect();
    while !shard.status.shutdown_requested() {
        report::publish(&shard);
        // Per second over the last interval, for the status page: commands, and
        // statements per server.
        let now = (slot.commands.load(Relaxed), Instant::now());
        let secs = now.1.duration_since(last.1).as_secs_f64();
        if secs > 0.0 {
            let rate = |new: u64, old: u64| (new.saturating_sub(old) as f64 / secs).round() as u64;
            slot.commands_per_s.store(rate(now.0, last.0), Relaxed);
            let servers = slot.server_statements.iter().zip(&slot.server_statements_per_s);
            for ((n, per_s), old) in servers.zip(last_servers.iter_mut()) {
                let new = n.load(Relaxed);
                per_s.store(rate(new, *old), Relaxed);
                *old = new;
            }
        }
        last = now;
        crate::log::flush();
        let every = Duration::from_millis(shard.config().proxy.status_interval_ms.max(10));
        glommio::timer::sleep(every).await;
    }
}
