//! The gate every new connection passes before its greeting, on the proxy port and the
//! admin port: an address blocked for failed logins is refused, and so is one with too
//! many connections still logging in (`proxy.max_unauthenticated_per_ip`, counted over
//! every shard in the status region's login guard).

use std::net::IpAddr;

use crate::config::Proxy;
use crate::net::Transport;
use crate::protocol::code;
use crate::protocol::err::write_err;
use crate::status::guard::Verdict;
use crate::status::{Slot, StatusRegion};
use crate::util::time::unix_ms;

/// A connection counted as logging in from its address, until dropped.
pub struct LoginSlot<'a> {
    status: &'a StatusRegion,
    shard: usize,
    ip: IpAddr,
    counted: bool,
    forget_ms: u64,
}

impl<'a> LoginSlot<'a> {
    /// Counts a new connection from `ip` on shard `shard`, or refuses it with an error
    /// packet (and None). `login`: the connection logs in (an address blocked for failed
    /// logins is refused); `/metrics`, which has no login, is only counted.
    pub async fn take<C: Transport>(
        status: &'a StatusRegion,
        shard: usize,
        p: &Proxy,
        client: &mut C,
        ip: IpAddr,
        login: bool,
    ) -> Option<LoginSlot<'a>> {
        let ip = crate::config::canonical_ip(ip);
        let slot = status.slot(shard);
        let standing = status.login_standing(ip);
        if let (true, Verdict::Blocked(left)) = (login, standing.verdict(&p.login_policy(), unix_ms())) {
            Slot::add(&slot.logins_blocked, 1);
            refuse(client, code::HOST_IS_BLOCKED, &blocked(ip, standing.failures, left)).await;
            return None;
        }
        let counted = status.guard(shard).enter(ip);
        let mut taken = LoginSlot { status, shard, ip, counted, forget_ms: p.login_policy().forget_ms() };
        let cap = p.max_unauthenticated_per_ip;
        if cap > 0 && status.login_standing(ip).unauthenticated > cap {
            Slot::add(&slot.unauthenticated_refused, 1);
            Slot::add(&slot.clients_rejected, 1);
            taken.release();
            let msg = format!(
                "Too many connections from '{ip}' that have not finished logging in (proxy.max_unauthenticated_per_ip = {cap})"
            );
            refuse(client, code::CON_COUNT_ERROR, &msg).await;
            return None;
        }
        Some(taken)
    }

    fn release(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.status.guard(self.shard).leave(self.ip, unix_ms(), self.forget_ms);
        }
    }
}

impl Drop for LoginSlot<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// What an address blocked for `failures` failed logins is told (1129), `left` seconds
/// before the block ends.
pub fn blocked(ip: IpAddr, failures: u32, left: u64) -> String {
    format!(
        "Host '{ip}' is blocked because of {failures} failed logins (proxy.login_failures_before_block); try again in {left} s"
    )
}

/// Refuses a connection before its greeting: an error packet as the first packet.
pub async fn refuse<C: Transport>(client: &mut C, code: code::Code, msg: &str) {
    let mut out = Vec::new();
    write_err(&mut out, 0, code, msg);
    let _ = client.write_all(&out).await;
}
