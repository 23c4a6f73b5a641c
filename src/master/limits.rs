//! Process limits the shards need, checked (and raised where allowed) before any shard
//! starts: locked memory for io_uring, open files for connections.

use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
use tracing::warn;

use super::MasterError;
use crate::config::Config;

/// Locked memory the shards need: `io_memory` is registered three times per shard, plus
/// the rings themselves. io_uring charges it to the user, so forked shards add up like
/// threads do; glommio itself refuses to start below 512 KiB.
fn memlock_needed(config: &Config, shards: usize) -> u64 {
    let per = 3 * config.proxy.io_memory_kib as u64 * 1024 + 128 * 1024;
    (per * shards as u64).max(512 * 1024)
}

/// Checks RLIMIT_MEMLOCK (raising the soft limit where the hard one allows) so a shard
/// does not die on start with an obscure io_uring error.
pub(super) fn check_memlock(config: &Config, shards: usize) -> Result<(), MasterError> {
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
pub(super) fn raise_nofile(config: &Config) {
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
