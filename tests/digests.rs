//! Statement digests against MariaDB's own: sysbench's OLTP read/write workload through
//! corelay, then SHOW DIGESTS compared with `performance_schema`'s
//! `events_statements_summary_by_digest` on a server started with it on.

mod common;

use std::collections::HashMap;

use common::*;
use mysql::prelude::Queryable;

/// A statement shape in a form both sides reduce to: no backquotes, no spaces, upper
/// case, a VALUES list as `(...)` (MariaDB's digest collapses those too), and DISTINCT
/// for MariaDB's DISTINCTROW.
fn shape(text: &str) -> String {
    let s: String = text.chars().filter(|c| !c.is_whitespace() && *c != '`').collect::<String>().to_uppercase();
    let s = s.replace("DISTINCTROW", "DISTINCT");
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some(i) = rest.find("VALUES(") {
        out.push_str(&rest[..i]);
        out.push_str("VALUES(...)");
        rest = rest[i..].split_once(')').map_or("", |(_, r)| r);
    }
    out.push_str(rest);
    out
}

fn number(row: &HashMap<String, String>, col: &str) -> u64 {
    row[col].parse().unwrap_or_else(|_| panic!("{col} in {row:?}"))
}

/// One sysbench run in `mode` (--db-ps-mode) with `threads` clients through `c`, checked
/// against what it sent, the server's Com_select, the server's own digests (with one
/// client) and the latency histograms; returns the count by shape.
fn compare(c: &Corelay, root: &mut mysql::Conn, mode: &str, threads: usize) -> HashMap<String, u64> {
    let (ok, _, err) = mariadb_cli(c.admin_port, "admin", "admin_pw", "RESET DIGESTS");
    assert!(ok, "{err}");
    root.query_drop("TRUNCATE performance_schema.events_statements_summary_by_digest").unwrap();
    let com_select = |root: &mut mysql::Conn| -> u64 {
        let r: Option<(String, u64)> = root.query_first("SHOW GLOBAL STATUS LIKE 'Com_select'").unwrap();
        r.unwrap().1
    };
    let selects_before = com_select(root);

    let (ok, out) = sysbench(
        "oltp_read_write",
        c.port,
        "app",
        "app_pw",
        &[&format!("--threads={threads}"), "--events=560", "--time=0", &format!("--db-ps-mode={mode}"), "run"],
    );
    assert!(ok, "{mode}: {out}\n{}", c.log());
    // A transaction that hit a deadlock is retried: its failed statement was sent too.
    let sent = sysbench_figure(&out, "total:") + sysbench_figure(&out, "ignored errors:");
    assert!(sent >= 10_000, "{out}");

    let ours = admin_table(c.admin_port, "SHOW DIGESTS ORDER BY count");
    let ours: Vec<_> = ours.into_iter().filter(|r| r["user"] == "app").collect();
    let counted: u64 = ours.iter().map(|r| number(r, "count")).sum();
    assert_eq!(counted, sent, "every statement sysbench sent is counted once: {ours:#?}");

    let theirs: Vec<(String, u64)> = root
        .query_map(
            "SELECT DIGEST_TEXT, COUNT_STAR FROM performance_schema.events_statements_summary_by_digest \
             WHERE DIGEST_TEXT IS NOT NULL OR COUNT_STAR > 0",
            |(t, n): (Option<String>, u64)| (shape(&t.unwrap_or_else(|| "NULL".into())), n),
        )
        .unwrap();
    let mut by_shape: HashMap<String, u64> = HashMap::new();
    for r in &ours {
        *by_shape.entry(shape(&r["digest_text"])).or_default() += number(r, "count");
    }
    assert!(by_shape.len() >= 9, "sysbench's shapes: {by_shape:#?}");
    let selects = com_select(root) - selects_before;
    let ours_selects: u64 = by_shape.iter().filter(|(k, _)| k.starts_with("SELECT")).map(|(_, n)| n).sum();
    // The server ran every SELECT counted (and a few health checks of corelay's own).
    assert!(
        selects >= ours_selects && selects < ours_selects + 100,
        "{mode}: Com_select {selects}, corelay {ours_selects}"
    );
    let lost: Vec<(String, String)> =
        root.query("SHOW GLOBAL STATUS WHERE Variable_name LIKE 'Performance_schema%lost' AND Value > 0").unwrap();
    for (s, n) in by_shape.iter().filter(|_| threads == 1) {
        let server: u64 = theirs.iter().filter(|(t, _)| t == s).map(|(_, n)| n).sum();
        assert_eq!(
            *n, server,
            "{s}: corelay counted {n}, MariaDB {server}; lost: {lost:?}\n{theirs:#?}\n{by_shape:#?}"
        );
    }

    // Time: the digests' total is the latency histograms' (every statement is in both).
    let total = admin_table(c.admin_port, "SHOW LATENCY").into_iter().find(|r| r["class"] == "total").unwrap();
    let histogram_us = number(&total, "count") as f64 * total["mean_us"].parse::<f64>().unwrap();
    let digest_us: u64 = ours.iter().map(|r| number(r, "sum_time_us")).sum();
    let ratio = digest_us as f64 / histogram_us;
    eprintln!(
        "{mode}: {sent} statements, {} shapes; digests {digest_us} µs = {ratio:.4} of the histograms'",
        by_shape.len()
    );
    // (The histograms also time what is not a statement: prepares, pings, quits.)
    assert!((0.95..=1.01).contains(&ratio), "digests {digest_us} µs, histograms {histogram_us} µs");
    let max = ours.iter().map(|r| number(r, "max_time_us")).max().unwrap();
    assert!(max as f64 <= number(&total, "max_us") as f64 * 1.02, "{max} vs {total:?}");
    let rows: u64 = ours.iter().map(|r| number(r, "rows_sent")).sum();
    assert!(rows > 0);
    by_shape
}

#[test]
fn sysbench_statement_shapes_are_counted_as_mariadb_counts_them() {
    let db = MariaDb::start_with(&["--skip-log-bin", "--performance-schema=ON"]);
    let mut root = db.root().unwrap();
    root.query_drop("CREATE DATABASE IF NOT EXISTS sbtest").unwrap();
    let (ok, out) = sysbench("oltp_read_write", db.port, DB_USER, DB_PASSWORD, &["--threads=2", "prepare"]);
    assert!(ok, "prepare: {out}");
    // Compared shape by shape with one client: MariaDB's digest table loses an update now
    // and then when statements of one shape end at once on several threads (its Com_select
    // counts them all).
    let config = config_for(db.addr(), &[TestUser::default()], "");
    let c = Corelay::start(&config, "thread", 2);
    let text = compare(&c, &mut root, "disable", 1);
    // Four clients, prepared statements: counted under their prepared text, the same
    // shapes; in fork mode.
    let prepared = compare(&Corelay::start(&config, "fork", 2), &mut root, "auto", 4);
    let shapes = |m: &HashMap<String, u64>| {
        let mut k: Vec<String> = m.keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(shapes(&prepared), shapes(&text));

    // RESET DIGESTS empties every shard's table.
    let (ok, _, err) = mariadb_cli(c.admin_port, "admin", "admin_pw", "RESET DIGESTS");
    assert!(ok, "{err}");
    assert!(admin_table(c.admin_port, "SHOW DIGESTS").iter().all(|r| r["user"] != "app"));
    let metrics = http_get(c.metrics_port, "/metrics");
    assert!(metrics.contains("corelay_digest_evictions_total{shard=\"0\"} 0"), "{metrics}");
}
