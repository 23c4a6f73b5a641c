//! `[[rule]]`s against real servers: a statement shape routed to the primary, a pattern
//! refused with a clear error, a time cap that kills a SLEEP on the server, a rule added by
//! a reload under open sessions, and bad rules refused with their index.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use mysql::prelude::Queryable;
use mysql::Conn;

/// One primary and one replica for the whole binary (each test uses its own tables).
fn pair() -> &'static (MariaDb, MariaDb) {
    static PAIR: OnceLock<(MariaDb, MariaDb)> = OnceLock::new();
    PAIR.get_or_init(replicated_pair)
}

/// A config for the pair (reads to the replica, no read-your-writes window) with `rules`.
fn config(rules: &str) -> String {
    let (primary, replica) = pair();
    let cfg = config_for(primary.addr(), &[TestUser::default()], "").replace(
        "[[db_user]]",
        &format!(
            "[[cluster.server]]\naddress = \"{}\"\nrole = \"replica\"\nconnect_timeout_ms = 1000\n\n[[db_user]]",
            replica.addr()
        ),
    );
    let cfg = cfg.replace("name = \"main\"", "name = \"main\"\nwrite_time_interval_ms = 0");
    format!("{cfg}\n{rules}")
}

/// The first column of the statement's first row.
fn server_id(conn: &mut Conn, sql: &str) -> i64 {
    let row: mysql::Row = conn.query_first(sql).unwrap().unwrap();
    row.get(0).unwrap()
}

/// The rules' hit counts from SHOW RULES, in rule order.
fn hits(c: &Corelay) -> Vec<u64> {
    admin_table(c.admin_port, "SHOW RULES").iter().map(|r| r["hits"].parse().unwrap()).collect()
}

fn error_of(r: mysql::Result<impl std::fmt::Debug>) -> (u16, String) {
    match r {
        Err(mysql::Error::MySqlError(e)) => (e.code, e.message),
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[test]
fn a_select_shape_is_routed_to_the_primary() {
    let by_address = format!("[[rule]]\npattern = \"by_address\"\nroute = \"{}\"\n", pair().0.addr());
    let c = Corelay::start(
        &config(&format!(
            "[[rule]]\nname = \"ids-on-primary\"\ndigest = \"SELECT @@server_id, ?\"\nroute = \"primary\"\n{by_address}"
        )),
        "thread",
        2,
    );
    let mut conn = c.connect("app", "app_pw").unwrap();
    assert_eq!(server_id(&mut conn, "SELECT @@server_id"), 2, "other reads go to the replica");
    assert_eq!(server_id(&mut conn, "SELECT @@server_id, 1"), 1);
    assert_eq!(server_id(&mut conn, "SELECT  @@server_id,   'text' -- a comment"), 1, "the same shape");
    let prepared: Option<(i64, i64)> = conn.exec_first("SELECT @@server_id, ?", (7,)).unwrap();
    assert_eq!(prepared, Some((1, 7)), "a prepared statement, by its prepared text");
    assert_eq!(server_id(&mut conn, "SELECT @@server_id + 0"), 2, "another shape");
    assert_eq!(server_id(&mut conn, "SELECT @@server_id * 1 AS by_address"), 1, "a server by its address");
    assert_eq!(hits(&c), vec![3, 1]);
    let metrics = http_get(c.metrics_port, "/metrics");
    assert!(metrics.contains("corelay_rule_hits_total{rule=\"0\",name=\"ids-on-primary\"} 3"), "{metrics}");
}

#[test]
fn a_pattern_is_refused_with_a_clear_error() {
    let rules = "[[rule]]\npattern = \"(?i)^\\\\s*DELETE\\\\s+FROM\\\\s+rules_keep\\\\b\"\n\
error = \"deleting from rules_keep is not allowed; ask the DBA\"\n\n\
[[rule]]\npattern = \"(?i)^TRUNCATE\"\nerror = \"TRUNCATE is switched off\"\nerror_code = 1142\n";
    let c = Corelay::start(&config(rules), "thread", 2);
    let mut conn = c.connect("app", "app_pw").unwrap();
    conn.query_drop("CREATE TABLE IF NOT EXISTS rules_keep (id INT PRIMARY KEY)").unwrap();
    conn.query_drop("REPLACE INTO rules_keep VALUES (1), (2), (3)").unwrap();
    let (code, message) = error_of(conn.query_drop("DELETE FROM rules_keep WHERE id > 0"));
    assert_eq!((code, message.as_str()), (1148, "deleting from rules_keep is not allowed; ask the DBA"));
    let (code, _) = error_of(conn.exec_drop("DELETE FROM rules_keep WHERE id = ?", (1,)));
    assert_eq!(code, 1148, "a prepared statement is judged by its text at each execution");
    let (code, message) = error_of(conn.query_drop("truncate table rules_keep"));
    assert_eq!((code, message.as_str()), (1142, "TRUNCATE is switched off"));
    let (ok, _, err) = mariadb_cli(c.port, "app", "app_pw", "delete from rules_keep");
    assert!(!ok && err.contains("ERROR 1148 (42000)") && err.contains("ask the DBA"), "{err}");
    // Nothing reached the server, and the session goes on.
    let mut primary = pair().0.root().unwrap();
    let n: Option<i64> = primary.query_first(format!("SELECT COUNT(*) FROM {DB_NAME}.rules_keep")).unwrap();
    assert_eq!(n, Some(3));
    assert_eq!(server_id(&mut conn, "SELECT @@server_id"), 2);
    assert_eq!(hits(&c), vec![3, 1]);
}

#[test]
fn timeout_ms_kills_a_sleep_on_the_server() {
    let c = Corelay::start(&config("[[rule]]\npattern = \"(?i)SLEEP\\\\(\"\ntimeout_ms = 300\n"), "thread", 2);
    let mut conn = c.connect("app", "app_pw").unwrap();
    let id_before: Option<u64> = conn.query_first("SELECT CONNECTION_ID()").unwrap();
    let started = Instant::now();
    let r = conn.query_first::<i64, _>("SELECT SLEEP(60) AS rules_sleep");
    let waited = started.elapsed();
    // MariaDB answers a killed SLEEP with 1317 (or, interrupted between checks, with 1).
    match r {
        Err(e) => assert_eq!(err_code(&e), Some(1317), "{e}"),
        Ok(v) => assert_eq!(v, Some(1)),
    }
    assert!(waited < Duration::from_secs(30), "the statement ran {waited:?}");
    // Gone from the server, and the session's connection still serves it.
    let mut primary = pair().0.root().unwrap();
    wait_for(Duration::from_secs(10), "the SLEEP still runs on the server", || {
        let left: Option<i64> = primary
            .query_first("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%rules_sleep%' AND INFO NOT LIKE '%PROCESSLIST%'")
            .unwrap();
        left == Some(0)
    });
    let id_after: Option<u64> = conn.query_first("SELECT CONNECTION_ID()").unwrap();
    assert_eq!(id_before, id_after, "the same session");
    let v: Option<i64> = conn.query_first("SELECT 40 + 2").unwrap();
    assert_eq!(v, Some(42));
    // Prepared, too.
    let started = Instant::now();
    let r = conn.exec_first::<i64, _, _>("SELECT SLEEP(?)", (60,));
    assert!(r.is_err() || r.as_ref().is_ok_and(|v| *v == Some(1)), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    // A statement the rule does not match is not capped.
    let v: Option<i64> = conn.query_first("SELECT BENCHMARK(1, 1) + 1").unwrap();
    assert_eq!(v, Some(1));
    assert_eq!(hits(&c), vec![2]);
}

#[test]
fn a_reload_adds_a_rule_without_dropping_sessions() {
    let c = Corelay::start(&config(""), "thread", 2);
    let mut setup = c.connect("app", "app_pw").unwrap();
    setup.query_drop("CREATE TABLE IF NOT EXISTS rules_reload (id INT PRIMARY KEY)").unwrap();
    setup.query_drop("DELETE FROM rules_reload").unwrap();
    let mut in_tx = c.connect("app", "app_pw").unwrap();
    let mut idle = c.connect("app", "app_pw").unwrap();
    let id: Option<u64> = in_tx.query_first("SELECT CONNECTION_ID()").unwrap();
    in_tx.query_drop("BEGIN").unwrap();
    in_tx.query_drop("INSERT INTO rules_reload VALUES (1)").unwrap();
    assert!(in_tx.query_drop("SELECT 'blocked' FROM rules_reload").is_ok(), "no rule yet");
    assert!(admin_table(c.admin_port, "SHOW RULES").is_empty());

    let with_rule =
        config("[[rule]]\nname = \"new\"\npattern = \"^SELECT 'blocked'\"\nerror = \"blocked by a new rule\"\n");
    std::fs::write(c.dir.join("corelay.toml"), with_rule).unwrap();
    let (ok, _, err) = mariadb_cli(c.admin_port, "admin", "admin_pw", "RELOAD");
    assert!(ok, "{err}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match in_tx.query_drop("SELECT 'blocked' FROM rules_reload") {
            Err(e) if err_code(&e) == Some(1148) => break,
            Err(e) => panic!("{e}"),
            Ok(()) => {}
        }
        assert!(Instant::now() < deadline, "the new rule never applied\n{}", c.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // The same session, its transaction intact; the idle session carries on.
    let still: Option<u64> = in_tx.query_first("SELECT CONNECTION_ID()").unwrap();
    assert_eq!(still, id);
    in_tx.query_drop("INSERT INTO rules_reload VALUES (2)").unwrap();
    in_tx.query_drop("COMMIT").unwrap();
    let mut primary = pair().0.root().unwrap();
    let n: Option<i64> = primary.query_first(format!("SELECT COUNT(*) FROM {DB_NAME}.rules_reload")).unwrap();
    assert_eq!(n, Some(2));
    assert_alive(&mut idle);
    let rows = admin_table(c.admin_port, "SHOW RULES");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["name"], "new");
    assert!(rows[0]["hits"].parse::<u64>().unwrap() >= 1);
}

#[test]
fn an_invalid_rule_is_refused_with_its_index() {
    let good = "[[rule]]\npattern = \"^SELECT 'refused'\"\nerror = \"refused\"\n";
    let bad = format!("{good}\n[[rule]]\npattern = \"(unclosed\"\nroute = \"primary\"\n");
    let dir = scratch_dir("rules-invalid");
    let path = dir.join("bad.toml");
    std::fs::write(&path, config(&bad)).unwrap();
    let out = std::process::Command::new(corelay_binary()).arg("check-config").arg(&path).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("rule[1].pattern") && said.contains("not a valid regular expression"), "{said}");

    // A reload with the bad rule is refused; the running rules stay.
    let c = Corelay::start(&config(good), "thread", 1);
    let mut conn = c.connect("app", "app_pw").unwrap();
    std::fs::write(c.dir.join("corelay.toml"), config(&bad)).unwrap();
    let (ok, _, err) = mariadb_cli(c.admin_port, "admin", "admin_pw", "RELOAD");
    assert!(!ok && err.contains("rule[1].pattern"), "{err}");
    assert_eq!(admin_table(c.admin_port, "SHOW RULES").len(), 1);
    let (code, _) = error_of(conn.query_drop("SELECT 'refused'"));
    assert_eq!(code, 1148);
    assert_alive(&mut conn);
}
