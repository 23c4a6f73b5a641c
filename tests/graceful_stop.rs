//! Stopping without losing anything: SIGTERM (and admin SHUTDOWN) stop accepting, idle
//! clients are told 1053 and closed, open transactions and running statements finish within
//! `drain_timeout_s`, the rest are told when it is over; a second signal stops at once.
//! Statements past `query_timeout_ms` are interrupted with 1969 and the session goes on.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mysql::prelude::Queryable;

fn start(extra: &str) -> Corelay {
    let db = shared_mariadb();
    Corelay::start(&config_for(db.addr(), &[TestUser::default()], extra), "thread", 1)
}

fn signal(c: &Corelay, sig: i32) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(c.pid() as i32, sig) };
}

fn wait_exit(c: &mut Corelay, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(st)) = c.child.try_wait() {
            return st.code();
        }
        assert!(Instant::now() < deadline, "corelay still running after {within:?}: {}", c.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn table(name: &str) {
    let mut root = shared_mariadb().root().unwrap();
    root.query_drop(format!("CREATE TABLE IF NOT EXISTS {DB_NAME}.{name} (id INT PRIMARY KEY)")).unwrap();
    root.query_drop(format!("DELETE FROM {DB_NAME}.{name}")).unwrap();
}

fn count(name: &str) -> i64 {
    shared_mariadb().root().unwrap().query_first(format!("SELECT COUNT(*) FROM {DB_NAME}.{name}")).unwrap().unwrap()
}

#[test]
fn sigterm_lets_transactions_finish_and_tells_idle_clients() {
    table("drain_commit");
    let mut c = start("drain_timeout_s = 20");
    let mut idle = c.connect("app", "app_pw").unwrap();
    idle.query_drop("SELECT 1").unwrap();
    let mut tx = c.connect("app", "app_pw").unwrap();
    tx.query_drop("BEGIN").unwrap();
    tx.query_drop("INSERT INTO drain_commit VALUES (1)").unwrap();
    let mut running = c.connect("app", "app_pw").unwrap();
    let slow = std::thread::spawn(move || {
        let r: Option<i64> = running.query_first("SELECT SLEEP(1) + 7").unwrap();
        (r, running.query_drop("SELECT 1").map_err(|e| err_code(&e)))
    });
    std::thread::sleep(Duration::from_millis(200));
    let stop = Instant::now();
    signal(&c, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));

    // Nobody new gets in.
    assert!(c.connect("app", "app_pw").is_err(), "a draining corelay accepts no new client");
    // The idle client was told.
    let e = idle.query_drop("SELECT 1").unwrap_err();
    assert_eq!(err_code(&e), Some(1053), "{e}");
    // The transaction goes on and commits.
    tx.query_drop("INSERT INTO drain_commit VALUES (2)").unwrap();
    tx.query_drop("COMMIT").unwrap();
    assert_eq!(count("drain_commit"), 2, "both rows committed");
    // The running statement got its result; the session was closed after it.
    let (r, next) = slow.join().unwrap();
    assert_eq!(r, Some(7));
    assert!(next.is_err(), "closed after its statement: {next:?}");
    // Once the last session is done, corelay exits well before the drain time.
    drop(tx);
    assert_eq!(wait_exit(&mut c, Duration::from_secs(10)), Some(0));
    assert!(stop.elapsed() < Duration::from_secs(10), "took {:?}", stop.elapsed());
}

#[test]
fn drain_time_over_tells_the_rest_and_rolls_back() {
    table("drain_rollback");
    let mut c = start("drain_timeout_s = 1");
    let mut tx = c.connect("app", "app_pw").unwrap();
    tx.query_drop("BEGIN").unwrap();
    tx.query_drop("INSERT INTO drain_rollback VALUES (1)").unwrap();
    signal(&c, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(1800));
    let e = tx.query_drop("COMMIT").unwrap_err();
    assert_eq!(err_code(&e), Some(1053), "{e}");
    assert!(e.to_string().contains("drain_timeout_s") && e.to_string().contains("rolled back"), "{e}");
    assert_eq!(wait_exit(&mut c, Duration::from_secs(10)), Some(0));
    assert_eq!(count("drain_rollback"), 0, "the uncommitted row is gone");
}

#[test]
fn a_second_signal_stops_at_once() {
    let mut c = start("drain_timeout_s = 60");
    let mut tx = c.connect("app", "app_pw").unwrap();
    tx.query_drop("BEGIN").unwrap();
    signal(&c, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    let second = Instant::now();
    signal(&c, libc::SIGINT);
    assert_eq!(wait_exit(&mut c, Duration::from_secs(5)), Some(0));
    assert!(second.elapsed() < Duration::from_secs(5), "the drain would have waited 60 s");
}

#[test]
fn statements_past_query_timeout_are_interrupted() {
    let c = start("query_timeout_ms = 300");
    let mut conn = c.connect("app", "app_pw").unwrap();
    let t = Instant::now();
    let e = conn.query_drop("SELECT SLEEP(5)").unwrap_err();
    assert_eq!(err_code(&e), Some(1969), "{e}");
    assert!(e.to_string().contains("query_timeout_ms"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(4), "interrupted after {:?} (SLEEP(5))", t.elapsed());
    // The session goes on, on another connection; a prepared statement too.
    assert_alive(&mut conn);
    let e = conn.exec_drop("SELECT SLEEP(?)", (5,)).unwrap_err();
    assert_eq!(err_code(&e), Some(1969), "{e}");
    let n: Option<i64> = conn.exec_first("SELECT ? + 1", (41,)).unwrap();
    assert_eq!(n, Some(42));
}

#[test]
fn sigterm_under_load_loses_no_acknowledged_commit() {
    table("drain_ledger");
    let mut c = start("drain_timeout_s = 10");
    let acked = tempfile::NamedTempFile::new().unwrap();
    // Eight PyMySQL clients commit small transactions as fast as they can; each records the
    // ids whose COMMIT returned OK, and stops at its first error (the drain's 1053).
    let script = format!(
        r#"
import pymysql, threading, time
acked = []
lock = threading.Lock()
def work(t):
    conn = pymysql.connect(host="127.0.0.1", port={port}, user="app", password="app_pw", database="{db}", autocommit=True)
    cur = conn.cursor()
    i = 0
    try:
        while True:
            i += 1
            key = t * 1000000 + i
            cur.execute("BEGIN")
            cur.execute("INSERT INTO drain_ledger VALUES (%s)", (key,))
            cur.execute("SELECT COUNT(*) FROM drain_ledger WHERE id > %s", (key,))
            cur.fetchall()
            cur.execute("COMMIT")
            with lock:
                acked.append(key)
    except Exception:
        pass
threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
for th in threads: th.start()
for th in threads: th.join(30)
open("{out}", "w").write("\n".join(map(str, acked)))
print(len(acked))
"#,
        port = c.port,
        db = DB_NAME,
        out = acked.path().display()
    );
    let clients = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with PyMySQL is installed");
    std::thread::sleep(Duration::from_secs(2));
    signal(&c, libc::SIGTERM);
    assert_eq!(wait_exit(&mut c, Duration::from_secs(15)), Some(0), "{}", c.log());
    let out = clients.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ids: Vec<i64> =
        std::fs::read_to_string(acked.path()).unwrap().lines().filter_map(|l| l.trim().parse().ok()).collect();
    // Enough to matter, and reachable on a loaded 2-CPU machine.
    assert!(ids.len() > 20, "only {} transactions committed before the stop", ids.len());
    let mut root = shared_mariadb().root().unwrap();
    let on_primary: std::collections::HashSet<i64> =
        root.query(format!("SELECT id FROM {DB_NAME}.drain_ledger")).unwrap().into_iter().collect();
    let lost: Vec<&i64> = ids.iter().filter(|id| !on_primary.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged commits are not on the server: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
}
