//! Server health, checked by the master and published in the status region, so that every
//! shard routes by the same view without each one polling every server.
//!
//! The master stays single-threaded (fork mode needs that), so checks are plain blocking
//! socket calls with short timeouts, run between signal polls: per server, a kept-open
//! login as the cluster's `monitor_user` (or its first db user), `SHOW VARIABLES LIKE 'read_only'` and, on
//! replicas, `SHOW SLAVE STATUS` for the lag (neither counts as a `Com_select`).
//! A replica that cannot be reached, or lags more than `max_replication_lag_s` (or does
//! not know its lag because replication is stopped), gets no reads until it is healthy;
//! one that lost its primary but applied all it received may keep serving reads
//! (`lag_when_primary_lost_s`).
//! A primary's state (reachable, read-only) is published for the admin surfaces and logged
//! when it changes; writes go to it whatever it is, so clients see the server's own error.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::backend::blocking::{login, query, BlockingError, Link};
use crate::config::{Config, Role, Server};
use crate::protocol::code;
use crate::status::{health, StatusRegion};

/// Checks every server of every cluster at the cluster's `health_interval_ms`.
#[derive(Default)]
pub struct Checker {
    conns: HashMap<usize, Box<dyn Link>>,
    due: HashMap<usize, Instant>,
    warned: std::collections::HashSet<usize>,
}

impl Checker {
    /// Runs the checks that are due.
    pub fn run_due(&mut self, config: &Config, status: &StatusRegion) {
        let now = Instant::now();
        for (ci, cluster) in config.clusters.iter().enumerate() {
            if cluster.removed || self.due.get(&ci).is_some_and(|t| now < *t) {
                continue;
            }
            self.due.insert(ci, now + Duration::from_millis(cluster.health_interval_ms));
            let first = config
                .db_users
                .iter()
                .find(|d| d.cluster == ci && !d.removed)
                .map(|d| (d.name.clone(), d.password.clone()));
            let Some((user, password)) = cluster.monitor.clone().or(first) else { continue };
            for server in &cluster.servers {
                let result = self.check(server, &user, &password, cluster.lag_when_primary_lost_s);
                let Some(h) = status.server_health(server.id) else { continue };
                let (state, lag) = match result {
                    Err(e) => {
                        if h.state.load(Relaxed) != health::DOWN {
                            tracing::warn!(server = %server.address, "health check failed: {e}");
                        }
                        self.conns.remove(&server.id);
                        (health::DOWN, u64::MAX)
                    }
                    Ok((lag, read_only)) => {
                        let was = h.read_only.swap(u32::from(read_only), Relaxed);
                        if server.role == Role::Primary && read_only && was == 0 {
                            tracing::warn!(server = %server.address, "the primary is read_only: writes will fail until it is writable");
                        }
                        let late = lag.is_none_or(|l| l > cluster.max_replication_lag_s);
                        if server.role == Role::Replica && late {
                            if h.state.load(Relaxed) != health::LAGGING {
                                tracing::warn!(server = %server.address, lag = ?lag, "replica lags; no reads until it catches up");
                            }
                            (health::LAGGING, lag.unwrap_or(u64::MAX))
                        } else {
                            (health::UP, lag.unwrap_or(0))
                        }
                    }
                };
                h.state.store(state, Relaxed);
                h.lag_s.store(lag, Relaxed);
                h.checked_unix_ms.store(crate::util::time::unix_ms(), Relaxed);
            }
        }
    }

    /// After a reload: closes the connections to removed servers and forgets their health;
    /// checks run again at once with the new settings.
    pub fn follow(&mut self, config: &Config, status: &StatusRegion) {
        self.due.clear();
        for id in 0..config.server_ids() {
            if config.server(id).is_some_and(|s| s.removed) {
                self.conns.remove(&id);
                if let Some(h) = status.server_health(id) {
                    h.state.store(health::UNKNOWN, Relaxed);
                }
            }
        }
    }

    /// One server: its replication lag in seconds (Some(0) for a primary or a server that
    /// does not replicate; None when replication is stopped or the lag is unknown, except
    /// `when_primary_lost` for a replica that lost its primary having applied all it
    /// received), and whether it is read_only.
    fn check(
        &mut self,
        server: &Server,
        user: &str,
        password: &str,
        when_primary_lost: Option<u64>,
    ) -> Result<(Option<u64>, bool), BlockingError> {
        let s = match self.conns.entry(server.id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(login(
                server.addr,
                Duration::from_millis(server.connect_timeout_ms),
                user,
                password,
                server.tls.as_ref(),
            )?),
        };
        let (_, rows) = query(s, "SHOW VARIABLES LIKE 'read_only'")?;
        let read_only = rows.first().and_then(|r| r.get(1).cloned().flatten()).is_some_and(|v| v == "ON");
        if server.role == Role::Primary {
            return Ok((Some(0), read_only));
        }
        let (names, rows) = match query(s, "SHOW SLAVE STATUS") {
            // Without REPLICATION CLIENT / SLAVE MONITOR the lag cannot be read: the replica
            // is judged by reachability alone.
            Err(e) if e.server_code() == Some(code::SPECIFIC_ACCESS_DENIED.number) => {
                if self.warned.insert(server.id) {
                    tracing::warn!(server = %server.address, "health check cannot read the replication lag ({e}); grant the db user REPLICATION CLIENT (SLAVE MONITOR)");
                }
                return Ok((Some(0), read_only));
            }
            other => other?,
        };
        let Some(row) = rows.first() else { return Ok((Some(0), read_only)) };
        let field = |name: &str| {
            names.iter().position(|n| n == name).and_then(|i| row.get(i).cloned().flatten()).unwrap_or_default()
        };
        if !names.iter().any(|n| n == "Seconds_Behind_Master") {
            return Err(BlockingError::Unexpected("no Seconds_Behind_Master column"));
        }
        let lag = field("Seconds_Behind_Master").parse().ok();
        let lost_primary_caught_up = field("Slave_IO_Running") != "Yes"
            && field("Slave_SQL_Running") == "Yes"
            && field("Master_Log_File") == field("Relay_Master_Log_File")
            && field("Read_Master_Log_Pos") == field("Exec_Master_Log_Pos");
        Ok((lag.or(when_primary_lost.filter(|_| lost_primary_caught_up)), read_only))
    }
}
