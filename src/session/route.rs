//! Where the session's next connection comes from: the router's pick for a statement, or
//! the session's current side for commands that are not statements.

use std::time::Duration;

use super::Session;
use crate::net::{Connector, Transport};
use crate::router::classify::{Class, Hint};

impl<C: Transport, N: Connector> Session<'_, C, N> {
    /// Chooses the server for a statement of `class` (see [`crate::router::pick`]); a
    /// session holding a connection stays on it.
    pub(super) fn route_statement(&mut self, class: Class, hint: Option<Hint>) {
        self.cmd.class = match class {
            Class::Read => crate::status::Class::Read,
            Class::Write => crate::status::Class::Write,
        };
        if self.held.conn.is_some() {
            return;
        }
        let (Some(key), Some(user)) = (self.key, self.user) else { return };
        let cluster = self.config.cluster_of(user);
        let recent_write = self.recorded.wrote_within(Duration::from_millis(cluster.write_time_interval_ms));
        let (pool, status) = (&self.shard.pool, &self.shard.status);
        let pick = crate::router::pick(cluster, class, hint, recent_write, |id| pool.picks(id), |id| status.usable(id));
        pool.picked(pick.server);
        self.held.route = (pick.server != key.server).then_some(pick.server);
        self.held.fallback_read = pick.fallback;
    }

    /// Commands that are not statements stay on the session's current side.
    pub(super) fn route_to_side(&mut self) {
        self.held.fallback_read = false;
        if self.held.conn.is_none() {
            self.held.route = self.held.side.filter(|s| Some(*s) != self.key.map(|k| k.server));
        }
    }

    /// Whether the session's cluster lets read-only transactions run on replicas.
    pub(super) fn read_only_transactions_allowed(&self) -> bool {
        self.user.is_some_and(|u| self.config.cluster_of(u).read_only_transactions_on_replicas)
    }
}
