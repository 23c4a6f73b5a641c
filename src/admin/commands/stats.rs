//! `SHOW STATS`: every counter of the status slots, summed over shards.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::admin::{Command, Reply, View};
use crate::protocol::resultset::ResultSet;
use crate::status::{Class, Slot, StatusRegion, COMMAND_KINDS};

pub struct ShowStats;

/// Picks one counter of a slot.
pub type Field = fn(&Slot) -> &AtomicU64;

/// (name, help, gauge of a slot) for the values that go up and down.
pub fn gauges() -> Vec<(&'static str, &'static str, Field)> {
    vec![
        ("client_connections", "Client sessions open", |s| &s.client_connections),
        ("backend_connections", "Backend connections open", |s| &s.backend_connections),
    ]
}

/// (name, counter of a slot) for every plain counter (totals that only go up).
pub fn counters() -> Vec<(&'static str, Field)> {
    vec![
        ("clients_accepted", |s| &s.clients_accepted),
        ("clients_rejected", |s| &s.clients_rejected),
        ("auth_failures", |s| &s.auth_failures),
        ("commands", |s| &s.commands),
        ("bytes_from_clients", |s| &s.bytes_from_clients),
        ("bytes_from_backends", |s| &s.bytes_from_backends),
        ("backend_connect_errors", |s| &s.backend_connect_errors),
        ("backend_errors", |s| &s.backend_errors),
        ("client_errors", |s| &s.client_errors),
        ("error_replies", |s| &s.error_replies),
        ("retries", |s| &s.retries),
        ("statements_pipelined", |s| &s.statements_pipelined),
        ("pool_waits", |s| &s.pool_waits),
        ("pool_wait_us", |s| &s.pool_wait_us),
        ("pool_timeouts", |s| &s.pool_timeouts),
        ("respawns", |s| &s.respawns),
        ("session_panics", |s| &s.session_panics),
        ("logins_delayed", |s| &s.logins_delayed),
        ("logins_blocked", |s| &s.logins_blocked),
        ("unauthenticated_refused", |s| &s.unauthenticated_refused),
        ("pipes_evicted", |s| &s.pipes_evicted),
        ("tls_handshakes", |s| &s.tls_handshakes),
        ("tls_failures", |s| &s.tls_failures),
    ]
}

/// The sum of one counter over every shard.
pub fn total(status: &StatusRegion, f: impl Fn(&Slot) -> &AtomicU64) -> u64 {
    status.slots().map(|s| f(s).load(Relaxed)).sum()
}

impl Command for ShowStats {
    fn words(&self) -> &'static [&'static str] {
        &["SHOW", "STATS"]
    }

    fn help(&self) -> &'static str {
        "SHOW STATS: connection, statement, command, error, pool-wait and pin counters summed over shards"
    }

    fn run(&self, view: &View, _args: &[String]) -> Reply {
        let status = view.status;
        let mut rs = ResultSet::new(&["name", "value"]);
        for (name, f) in gauges().into_iter().map(|(n, _, f)| (n, f)).chain(counters()) {
            rs.push([name.to_string(), total(status, f).to_string()]);
        }
        for c in Class::ALL {
            rs.push([format!("statements_{}", c.name()), total(status, |s| &s.statements[c as usize]).to_string()]);
        }
        for byte in 0..COMMAND_KINDS {
            let n = total(status, |s| &s.commands_by_kind[byte]);
            if n > 0 {
                let name = if byte == COMMAND_KINDS - 1 { "other" } else { crate::protocol::command::name(byte as u8) };
                rs.push([format!("command_{}", name.to_ascii_lowercase()), n.to_string()]);
            }
        }
        for bit in 0..crate::status::PIN_KINDS {
            let n = total(status, |s| &s.pins[bit]);
            if n > 0 {
                rs.push([format!("pins_{}", pin_name(bit)), n.to_string()]);
            }
        }
        Reply::Rows(rs)
    }
}

/// A pin reason as a metric-friendly name (`user_variables`, `lock_tables`, ...).
pub fn pin_name(bit: usize) -> String {
    let name = crate::router::statement::pin::names(1 << bit).join("");
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    if out.is_empty() {
        format!("bit{bit}")
    } else {
        out.trim_end_matches('_').to_string()
    }
}
