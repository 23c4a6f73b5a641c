//! The admin port and `/metrics` on a shard: each shard accepts on its own copy of those
//! sockets too, and answers from the status region (any shard answers for all).

use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use super::{accept, balance, Accepted, State};
use crate::config::Config;
use crate::net::glommio::Conn;
use crate::net::listen::set_cloexec;
use crate::session::gate::LoginSlot;

/// The admin port or `/metrics`.
#[derive(Clone, Copy)]
pub(super) enum Side {
    Admin,
    Metrics,
}

/// Accepts on this shard's admin or `/metrics` socket until shutdown; every connection
/// gets a task of its own and is answered from the status region.
pub(super) async fn serve(shard: Rc<State>, fd: OwnedFd, side: Side, balance: Option<balance::Share>) {
    let listener = super::Listener::new(fd);
    loop {
        let stream = match accept(&listener, &shard.status, false).await {
            Accepted::Stop => return,
            Accepted::Paused => continue,
            Accepted::Stream(s) => s,
            Accepted::Error(e) => {
                warn!(shard = shard.index, "admin accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        set_cloexec(&stream);
        let Ok(peer) = stream.peer_addr() else { continue };
        let id = shard.next_conn_id();
        let shard = shard.clone();
        let balance = balance.clone();
        glommio::spawn_local(async move {
            let conn = Conn::new(stream, Some(Duration::from_secs(10)));
            match side {
                Side::Admin => {
                    let host = AdminHost(&shard, balance.as_ref());
                    crate::admin::session::serve(&host, conn, peer, id).await
                }
                Side::Metrics => {
                    let config = shard.config();
                    let mut conn = conn;
                    let status = &shard.status;
                    let gate = LoginSlot::take(status, shard.index, &config.proxy, &mut conn, peer.ip(), false).await;
                    if gate.is_some() {
                        let view = crate::admin::View { config: &config, status, balance: None };
                        crate::admin::metrics::serve(&view, conn, peer.ip()).await
                    }
                }
            }
        })
        .detach();
    }
}

/// What the admin port's sessions get from the shard: its current configuration and the
/// status region, its timer, and its view of the accept balancer.
struct AdminHost<'a>(&'a State, Option<&'a balance::Share>);

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

    fn shard(&self) -> usize {
        self.0.index
    }

    fn balance_counts(&self) -> Option<Vec<u64>> {
        self.1.map(balance::Share::all)
    }
}
