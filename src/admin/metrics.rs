//! `GET /metrics`: the status region in Prometheus' text exposition format (0.0.4), served
//! by a tiny HTTP/1.x responder (one request per connection).
//!
//! Counters and gauges per shard; statement latency histograms per shard and class, and
//! per server (summed over shards), with cumulative `_bucket{le=...}` series (seconds),
//! `_sum` and `_count`. A bucket's count is that of the fine buckets whose highest value is
//! at most `le`, so it is exact to within the fine buckets' 1.6 %.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::commands::stats::{counters, gauges, pin_name};
use super::View;
use crate::config::Role;
use crate::net::Transport;
use crate::status::latency::Merged;
use crate::status::{health, Class, COMMAND_KINDS, PIN_KINDS};

/// Histogram bucket bounds, seconds.
const LE: [f64; 17] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn histogram(out: &mut String, name: &str, labels: &str, m: &Merged) {
    for le in LE {
        let n = m.count_at_or_below((le * 1e6) as u64);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", m.count());
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", m.sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", m.count());
}

/// The whole exposition.
pub fn render(view: &View) -> String {
    let mut out = String::with_capacity(64 * 1024);
    slot_counters(&mut out, view.status);
    by_kind(&mut out, view.status);
    servers(&mut out, view);
    latencies(&mut out, view);
    zookeeper(&mut out, view);
    digests(&mut out, view);
    rules(&mut out, view);
    out
}

/// Statements each `[[rule]]` matched.
fn rules(out: &mut String, view: &View) {
    if view.config.rules.is_empty() {
        return;
    }
    header(out, "corelay_rule_hits_total", "counter", "Statements the [[rule]] matched");
    for ((i, rule), hits) in view.config.rules.iter().enumerate().zip(super::commands::rules::hits(view)) {
        let _ = writeln!(out, "corelay_rule_hits_total{{rule=\"{i}\",name=\"{}\"}} {hits}", escape(&rule.name));
    }
}

/// The top `digest_metrics_top` digests by total time (no more: each is a series).
fn digests(out: &mut String, view: &View) {
    use super::commands::digests::{top, user_name, Order};
    let n = view.config.proxy.digest_metrics_top;
    if !view.config.proxy.digests || n == 0 {
        return;
    }
    let rows = top(view, Order::TotalTime, n);
    type Value = fn(&crate::status::digests::Row) -> f64;
    let series: [(&str, &str, Value); 3] = [
        ("corelay_digest_statements_total", "Statements of the digest (the top by total time)", |r| r.count as f64),
        ("corelay_digest_seconds_total", "Time spent in statements of the digest", |r| r.sum_us as f64 / 1e6),
        ("corelay_digest_errors_total", "Statements of the digest that failed", |r| r.errors as f64),
    ];
    for (name, help, f) in series {
        header(out, name, "counter", help);
        for r in &rows {
            let labels = format!(
                "digest=\"{:016x}\",user=\"{}\",schema=\"{}\",side=\"{}\"",
                r.hash,
                escape(&user_name(view, r)),
                escape(&r.schema),
                crate::status::digests::Side::name(r.side)
            );
            let _ = writeln!(out, "{name}{{{labels}}} {}", f(r));
        }
    }
    header(out, "corelay_digest_evictions_total", "counter", "Digest entries that made room for new ones");
    for k in 0..view.status.shards() {
        let _ = writeln!(out, "corelay_digest_evictions_total{{shard=\"{k}\"}} {}", view.status.digests(k).evictions());
    }
}

/// The ZooKeeper watcher's state (nothing without `[zookeeper]`).
fn zookeeper(out: &mut String, view: &View) {
    use crate::status::zookeeper::state;
    if view.config.file.zookeeper.is_none() {
        return;
    }
    let z = &view.status.header().zookeeper;
    let now = z.state.load(Relaxed);
    header(out, "corelay_zookeeper_state", "gauge", "1 for the ZooKeeper session's current state");
    for s in state::OFF..=state::WATCHER_DOWN {
        let _ = writeln!(out, "corelay_zookeeper_state{{state=\"{}\"}} {}", state::name(s), u8::from(s == now));
    }
    let source = crate::status::zookeeper::source::name(z.source.load(Relaxed));
    header(out, "corelay_zookeeper_source", "gauge", "Where the ZooKeeper-fed clusters' servers came from");
    let _ = writeln!(out, "corelay_zookeeper_source{{source=\"{source}\"}} 1");
    let gauges: [(&str, &str, u64); 3] = [
        ("zxid", "The highest zxid read", z.zxid.load(Relaxed)),
        ("last_sync_timestamp_seconds", "When ZooKeeper was last read", z.synced_unix_ms.load(Relaxed) / 1000),
        ("outdated_clusters", "Clusters kept at their last servers", z.outdated_clusters.load(Relaxed)),
    ];
    for (name, help, v) in gauges {
        header(out, &format!("corelay_zookeeper_{name}"), "gauge", help);
        let _ = writeln!(out, "corelay_zookeeper_{name} {v}");
    }
    let counters: [(&str, &str, u64); 5] = [
        ("sessions", "ZooKeeper sessions established", z.sessions.load(Relaxed)),
        ("changes", "Topology changes applied", z.changes.load(Relaxed)),
        ("refused", "Topology changes the configuration refused", z.refused.load(Relaxed)),
        ("invalid_children", "Children skipped for data that is not a server", z.invalid_children.load(Relaxed)),
        ("watcher_restarts", "Times the watcher process was started again", z.watcher_restarts.load(Relaxed)),
    ];
    for (name, help, v) in counters {
        header(out, &format!("corelay_zookeeper_{name}_total"), "counter", help);
        let _ = writeln!(out, "corelay_zookeeper_{name}_total {v}");
    }
}

/// Every shard's gauges and counters.
fn slot_counters(out: &mut String, status: &crate::status::StatusRegion) {
    let shards = status.shards();
    for (gauge, help, f) in gauges() {
        let name = format!("corelay_{gauge}");
        header(out, &name, "gauge", help);
        for k in 0..shards {
            let _ = writeln!(out, "{name}{{shard=\"{k}\"}} {}", f(status.slot(k)).load(Relaxed));
        }
    }
    for (c, f) in counters() {
        let name = format!("corelay_{c}_total");
        header(out, &name, "counter", &c.replace('_', " "));
        for k in 0..shards {
            let _ = writeln!(out, "{name}{{shard=\"{k}\"}} {}", f(status.slot(k)).load(Relaxed));
        }
    }
}

/// Statements by class, commands by command byte, pins by reason.
fn by_kind(out: &mut String, status: &crate::status::StatusRegion) {
    let shards = status.shards();
    header(out, "corelay_statements_total", "counter", "Statements and commands by class");
    for k in 0..shards {
        for c in Class::ALL {
            let n = status.slot(k).statements[c as usize].load(Relaxed);
            let _ = writeln!(out, "corelay_statements_total{{shard=\"{k}\",class=\"{}\"}} {n}", c.name());
        }
    }
    header(out, "corelay_commands_by_kind_total", "counter", "Commands by command byte");
    for k in 0..shards {
        for byte in 0..COMMAND_KINDS {
            let n = status.slot(k).commands_by_kind[byte].load(Relaxed);
            if n > 0 {
                let kind = if byte == COMMAND_KINDS - 1 { "other" } else { crate::protocol::command::name(byte as u8) };
                let _ =
                    writeln!(out, "corelay_commands_by_kind_total{{shard=\"{k}\",command=\"{}\"}} {n}", escape(kind));
            }
        }
    }
    header(out, "corelay_pins_total", "counter", "Times a session started keeping its backend connection, by reason");
    for k in 0..shards {
        for bit in 0..PIN_KINDS {
            let n = status.slot(k).pins[bit].load(Relaxed);
            if n > 0 {
                let _ = writeln!(out, "corelay_pins_total{{shard=\"{k}\",reason=\"{}\"}} {n}", pin_name(bit));
            }
        }
    }
}

/// Each server's health and replication lag.
fn servers(out: &mut String, view: &View) {
    let status = view.status;
    header(
        out,
        "corelay_server_up",
        "gauge",
        "1 when the server's last health check passed (replicas: and it does not lag)",
    );
    let mut lag = String::new();
    for s in view.config.servers() {
        let role = if s.role == Role::Primary { "primary" } else { "replica" };
        let labels = format!("server=\"{}\",role=\"{role}\"", escape(&s.address));
        let (state, lag_s) = status
            .server_health(s.id)
            .map_or((health::UNKNOWN, u64::MAX), |h| (h.state.load(Relaxed), h.lag_s.load(Relaxed)));
        let _ = writeln!(out, "corelay_server_up{{{labels}}} {}", u8::from(state == health::UP));
        if lag_s != u64::MAX && s.role == Role::Replica {
            let _ = writeln!(lag, "corelay_server_replication_lag_seconds{{{labels}}} {lag_s}");
        }
    }
    header(out, "corelay_server_replication_lag_seconds", "gauge", "Replication lag the master last read");
    out.push_str(&lag);
}

/// Latency histograms per shard and class, and per server.
fn latencies(out: &mut String, view: &View) {
    let (status, shards) = (view.status, view.status.shards());
    header(
        out,
        "corelay_statement_duration_seconds",
        "histogram",
        "Command latency through corelay, per shard and class",
    );
    for k in 0..shards {
        for c in Class::ALL {
            let m = status.merged_latency(std::iter::once(k), Some(c));
            histogram(out, "corelay_statement_duration_seconds", &format!("shard=\"{k}\",class=\"{}\"", c.name()), &m);
        }
    }
    header(out, "corelay_server_duration_seconds", "histogram", "Command latency per backend server, all shards");
    for s in view.config.servers() {
        if status.server_latency(0, s.id).is_none() {
            continue;
        }
        let m = status.merged_server_latency(s.id);
        histogram(out, "corelay_server_duration_seconds", &format!("server=\"{}\"", escape(&s.address)), &m);
    }
}

/// Serves one HTTP connection: `GET /metrics` gets the exposition, anything else 404.
pub async fn serve<C: Transport>(view: &View<'_>, mut client: C, peer: std::net::IpAddr) {
    // The whole request within auth_timeout_ms, however it trickles in.
    let deadline = std::time::Instant::now() + Duration::from_millis(view.config.proxy.auth_timeout_ms.max(1));
    let mut req = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let Some(left) = deadline.checked_duration_since(std::time::Instant::now()).filter(|d| !d.is_zero()) else {
            return;
        };
        match client.read(&mut chunk, Some(left)).await {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&chunk[..n]),
        }
        if req.len() > 16 * 1024 {
            break;
        }
    }
    let ip = crate::config::canonical_ip(peer);
    if !view.config.metrics_allow.iter().any(|n| n.contains(&ip)) {
        let body = format!("{ip} is not in proxy.metrics_allow\n");
        let head = format!(
            "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = client.write_all(format!("{head}{body}").as_bytes()).await;
        return;
    }
    let line = req.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let mut split = path.splitn(2, |b| *b == b'?');
    let (path, query) = (split.next().unwrap_or_default(), split.next().unwrap_or_default());
    const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
    let (status_line, kind, body) = match (method, path) {
        (b"GET", b"/metrics") => ("200 OK", TEXT, render(view)),
        (b"GET", b"/status") => ("200 OK", "text/html; charset=utf-8", super::page::html(view, refresh(query))),
        (b"GET", b"/status.json") => ("200 OK", "application/json", super::page::json(view)),
        (b"GET", _) => ("404 Not Found", TEXT, "corelay serves /metrics, /status and /status.json\n".to_string()),
        _ => ("405 Method Not Allowed", TEXT, "use GET /metrics, /status or /status.json\n".to_string()),
    };
    let head = format!(
        "HTTP/1.1 {status_line}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if client.write_all(head.as_bytes()).await.is_ok() {
        let _ = client.write_all(body.as_bytes()).await;
    }
}

/// `refresh=N` of a query string (at most an hour).
fn refresh(query: &[u8]) -> Option<u32> {
    query
        .split(|b| *b == b'&')
        .find_map(|kv| kv.strip_prefix(b"refresh="))
        .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u32>().ok())
        .map(|n| n.min(3600))
}
