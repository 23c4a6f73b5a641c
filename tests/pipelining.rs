//! Stateless reads of many sessions sharing pipelined backend connections: every session
//! gets its own reply, prepared statements keep their own parameter types, a pipe that
//! dies sends its reads again, and a slow read does not hold up reads that come later.

mod common;

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mysql::prelude::Queryable;
use mysql::Conn;

/// corelay with one shard in front of the shared server, logging in as `db_user` (a user of
/// this test alone, so its connections can be found on the server).
fn start(db_user: &str, proxy_extra: &str) -> Corelay {
    Corelay::start(&config_as_db_user(db_user, proxy_extra), "thread", 1)
}

/// One counter of the admin port's SHOW STATS.
fn stat(c: &Corelay, name: &str) -> u64 {
    let (ok, out, err) = mariadb_cli(c.admin_port, "admin", "admin_pw", "SHOW STATS\n");
    assert!(ok, "{err}");
    lines(&out)
        .iter()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {name} in {out}"))
}

#[test]
fn many_sessions_share_a_connection_and_each_gets_its_own_reply() {
    let c = start("pipe_many", "pipeline_depth = 32\npipeline_connections = 1");
    let port = c.port;
    let errors = Arc::new(AtomicUsize::new(0));
    let (clients, rounds) = (24, 150);
    let handles: Vec<_> = (0..clients)
        .map(|i: i64| {
            let errors = errors.clone();
            std::thread::spawn(move || {
                let mut conn = Conn::new(client_opts(port, "app", "app_pw", Some(DB_NAME))).unwrap();
                for j in 0..rounds {
                    let v = i * 100_000 + j;
                    // Now and then a reply larger than a pipe buffers for a session.
                    let len = if j % 50 == 7 { 300_000 } else { (i * 37 + j * 11) % 3000 };
                    let got: mysql::Result<Option<(i64, String)>> = if j % 2 == 0 {
                        conn.query_first(format!("SELECT {v}, REPEAT('x', {len})"))
                    } else {
                        conn.exec_first("SELECT ? + 0, REPEAT('y', ?)", (v, len))
                    };
                    match got {
                        Ok(Some((n, s))) if n == v && s.len() == len as usize => {}
                        other => {
                            let shown = other.map(|r| r.map(|(n, s)| (n, s.len())));
                            eprintln!("client {i} round {j}: {shown:?}");
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(errors.load(Ordering::Relaxed), 0);
    let pipelined = stat(&c, "statements_pipelined");
    let reads = (clients * rounds) as u64;
    assert!(pipelined >= reads / 2, "{pipelined} of {reads} reads went down a pipe");
}

/// A raw client's prepared `SELECT ?`: (statement id, deprecate-EOF negotiated).
fn raw_prepare(s: &mut std::net::TcpStream, sql: &str) -> u32 {
    let mut p = vec![0x16];
    p.extend_from_slice(sql.as_bytes());
    send_command(s, &p);
    let (_, ok) = read_raw_packet(s).unwrap();
    assert_eq!(ok[0], 0, "PREPARE failed: {:?}", parse_err(&ok));
    let id = u32::from_le_bytes([ok[1], ok[2], ok[3], ok[4]]);
    let cols = u16::from_le_bytes([ok[5], ok[6]]);
    let params = u16::from_le_bytes([ok[7], ok[8]]);
    // Definitions, each list without a terminator (CLIENT_DEPRECATE_EOF).
    for _ in 0..(cols + params) {
        read_raw_packet(s).unwrap();
    }
    id
}

/// EXECUTE with one parameter: `typed` says whether the types are sent (new-params-bound
/// flag) as `ty`. Returns the payload of the row.
fn raw_execute(s: &mut std::net::TcpStream, id: u32, typed: bool, ty: u8, value: &[u8]) -> Vec<u8> {
    let mut p = vec![0x17];
    p.extend_from_slice(&id.to_le_bytes());
    p.push(0);
    p.extend_from_slice(&1u32.to_le_bytes());
    p.push(0); // null bitmap
    p.push(u8::from(typed));
    if typed {
        p.extend_from_slice(&[ty, 0]);
    }
    p.extend_from_slice(value);
    send_command(s, &p);
    let (_, first) = read_raw_packet(s).unwrap();
    assert_ne!(first[0], 0xFF, "EXECUTE failed: {:?}", parse_err(&first));
    read_raw_packet(s).unwrap(); // the column definition
    let (_, row) = read_raw_packet(s).unwrap();
    let (_, end) = read_raw_packet(s).unwrap();
    assert_eq!(end[0], 0xFE, "one row, then the end");
    row
}

#[test]
fn parameter_types_follow_each_session_on_a_shared_connection() {
    // Two sessions prepare the same text; one binds an integer, the other a string, then both
    // execute again without sending types (as libmariadb does). They share one connection,
    // a pipe or the only pooled connection: each must be decoded with its own types.
    for extra in ["pipeline_depth = 8\npipeline_connections = 1", "pipeline_depth = 0"] {
        let cfg = config_for(shared_mariadb().addr(), &[TestUser::default()], extra)
            .replace("connect_timeout_ms = 1000", "connect_timeout_ms = 1000\nmax_connections = 1");
        let c = Corelay::start(&cfg, "thread", 1);
        two_sessions_two_types(&c);
    }
}

fn two_sessions_two_types(c: &Corelay) {
    const LONGLONG: u8 = 0x08;
    const VAR_STRING: u8 = 0xFD;
    let lenenc = |s: &str| {
        let mut v = vec![s.len() as u8];
        v.extend_from_slice(s.as_bytes());
        v
    };
    let mut a = raw_login(c.port, "app", "app_pw");
    let mut b = raw_login(c.port, "app", "app_pw");
    let sql = "SELECT ? AS v FROM DUAL WHERE 1 = 1";
    let ida = raw_prepare(&mut a, sql);
    let idb = raw_prepare(&mut b, sql);
    let row = raw_execute(&mut a, ida, true, LONGLONG, &4242i64.to_le_bytes());
    assert!(row.windows(8).any(|w| w == 4242i64.to_le_bytes()), "{row:?}");
    let row = raw_execute(&mut b, idb, true, VAR_STRING, &lenenc("hello-B"));
    assert!(row.windows(7).any(|w| w == b"hello-B"), "{row:?}");
    // Types left out: the connection last got B's (a string); A's value is an integer.
    let row = raw_execute(&mut a, ida, false, 0, &4243i64.to_le_bytes());
    assert!(row.windows(8).any(|w| w == 4243i64.to_le_bytes()), "A decoded with its own types: {row:?}");
    let row = raw_execute(&mut b, idb, false, 0, &lenenc("again-B"));
    assert!(row.windows(7).any(|w| w == b"again-B"), "B decoded with its own types: {row:?}");
    let mut gone = [0u8; 1];
    a.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    assert!(a.read(&mut gone).is_err(), "nothing unasked on the client connection");
}

/// A read that keeps its server connection busy for a few seconds.
const SLOW_READ: &str = "SELECT SUM(seq % 7) FROM seq_1_to_30000000";
const SLOW_SUM: i64 = 89_999_997;

/// Well past a `pipeline_stall_ms` of 10.
const STALL_PASSED: Duration = Duration::from_millis(150);

/// The ids of `db_user`'s connections running `prefix` on the server.
fn running(db_user: &str, prefix: &str) -> Vec<u64> {
    shared_mariadb()
        .root()
        .unwrap()
        .query(format!(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{db_user}' AND INFO LIKE '{prefix}%'"
        ))
        .unwrap()
}

/// A client of corelay on `port` running [`SLOW_READ`]; the flag is set when its reply came.
fn spawn_slow_read(port: u16) -> (std::thread::JoinHandle<Option<i64>>, Arc<AtomicBool>) {
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let slow = std::thread::spawn(move || {
        let mut conn = Conn::new(client_opts(port, "app", "app_pw", Some(DB_NAME))).unwrap();
        let v = conn.query_first::<i64, _>(SLOW_READ).unwrap();
        flag.store(true, Ordering::SeqCst);
        v
    });
    (slow, done)
}

/// Waits (up to 10 s) until `db_user` runs `prefix` on the server; the ids doing so.
fn wait_running(db_user: &str, prefix: &str) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ids = running(db_user, prefix);
        if !ids.is_empty() {
            return ids;
        }
        assert!(Instant::now() < deadline, "{prefix} never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_pipe_that_dies_sends_its_reads_again() {
    // Everything queues on one pipe behind the slow read; its connection is killed.
    let c = start("pipe_kill", "pipeline_depth = 64\npipeline_connections = 1\npipeline_stall_ms = 60000");
    let port = c.port;
    let slow = std::thread::spawn(move || {
        let mut conn = Conn::new(client_opts(port, "app", "app_pw", Some(DB_NAME))).unwrap();
        conn.query_first::<i64, _>(SLOW_READ)
    });
    let ids = wait_running("pipe_kill", "SELECT SUM(seq");
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..6)
        .map(|i: i64| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut conn = Conn::new(client_opts(port, "app", "app_pw", Some(DB_NAME))).unwrap();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let v: Option<i64> = if i % 2 == 0 {
                        conn.query_first(format!("SELECT {i} + {n}")).unwrap()
                    } else {
                        conn.exec_first("SELECT ? + ?", (i, n)).unwrap()
                    };
                    assert_eq!(v, Some(i + n));
                    n += 1;
                }
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut root = shared_mariadb().root().unwrap();
    for id in ids {
        root.query_drop(format!("KILL {id}")).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0, "the reader got its replies");
    }
    assert_eq!(slow.join().unwrap().unwrap(), Some(SLOW_SUM), "the slow read ran again to its end");
    assert!(stat(&c, "retries") >= 1);
}

#[test]
fn a_slow_read_does_not_hold_up_reads_that_come_later() {
    let c = start("pipe_stall", "pipeline_depth = 64\npipeline_connections = 1\npipeline_stall_ms = 10");
    let port = c.port;
    let (slow, slow_done) = spawn_slow_read(port);
    wait_running("pipe_stall", "SELECT SUM(seq");
    // Reads sent within pipeline_stall_ms of the slow one queue behind it, by design; once
    // the pipe counts as stalled, later reads take another connection.
    std::thread::sleep(STALL_PASSED);
    let mut conn = c.connect("app", "app_pw").unwrap();
    for i in 0..20i64 {
        let v: Option<i64> = conn.query_first(format!("SELECT {i} * 2")).unwrap();
        assert_eq!(v, Some(i * 2));
        let w: Option<i64> = conn.exec_first("SELECT ? * 3", (i,)).unwrap();
        assert_eq!(w, Some(i * 3));
    }
    assert!(!slow_done.load(Ordering::SeqCst), "the later reads finished while the slow one still ran");
    assert_eq!(slow.join().unwrap(), Some(SLOW_SUM));
}

#[test]
fn show_warnings_reads_the_warnings_of_the_last_statement() {
    // With pipelined reads, and with every statement on a pooled connection of its own:
    // either way another session's statement runs between the two.
    for extra in ["pipeline_depth = 16", "pipeline_depth = 0"] {
        let cfg = config_for(shared_mariadb().addr(), &[TestUser::default()], extra)
            .replace("connect_timeout_ms = 1000", "connect_timeout_ms = 1000\nmax_connections = 2");
        let c = Corelay::start(&cfg, "thread", 1);
        let mut a = c.connect("app", "app_pw").unwrap();
        let mut b = c.connect("app", "app_pw").unwrap();
        a.query_drop("SELECT 1/0").unwrap();
        b.query_drop("SELECT 2").unwrap();
        let warnings: Vec<(String, u32, String)> = a.query("SHOW WARNINGS").unwrap();
        assert_eq!(warnings.len(), 1, "{extra}: {warnings:?}");
        assert_eq!(warnings[0].1, 1365, "{extra}: division by zero");
        a.query_drop("SELECT 1/0").unwrap();
        b.query_drop("SELECT 3").unwrap();
        let count: Option<u32> = a.query_first("SELECT @@warning_count").unwrap();
        assert_eq!(count, Some(1), "{extra}");
        // (MariaDB clears the list at the next statement that uses a table.) Another
        // session's warnings are not this one's.
        a.query_drop("SELECT seq FROM seq_1_to_1").unwrap();
        b.query_drop("SELECT 1/0").unwrap();
        let none: Vec<(String, u32, String)> = a.query("SHOW WARNINGS").unwrap();
        assert!(none.is_empty(), "{extra}: {none:?}");
    }
}

#[test]
fn kill_query_stops_a_read_that_waits_on_a_pipe() {
    let c = start("pipe_killq", "pipeline_depth = 8\npipeline_connections = 1\npipeline_stall_ms = 10");
    let mut victim = c.connect("app", "app_pw").unwrap();
    let id: Option<u64> = victim.query_first("SELECT CONNECTION_ID()").unwrap();
    let id = id.unwrap();
    let port = c.port;
    let slow = std::thread::spawn(move || (victim.query_first::<i64, _>(SLOW_READ), victim));
    wait_running("pipe_killq", "SELECT SUM(seq");
    // The killer's own reads (its client library's, at login) go elsewhere then.
    std::thread::sleep(STALL_PASSED);
    let mut killer = Conn::new(client_opts(port, "app", "app_pw", Some(DB_NAME))).unwrap();
    killer.query_drop(format!("KILL QUERY {id}")).unwrap();
    let (got, mut victim) = slow.join().unwrap();
    let e = got.unwrap_err();
    assert_eq!(err_code(&e), Some(1317), "{e}");
    // The statement stopped on the server (its connection was closed), and the session
    // goes on.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !running("pipe_killq", "SELECT SUM(seq").is_empty() {
        assert!(Instant::now() < deadline, "the killed statement still runs");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_alive(&mut victim);
    let v: Option<i64> = victim.exec_first("SELECT ? + 1", (41,)).unwrap();
    assert_eq!(v, Some(42));
}

#[test]
fn kill_query_stops_an_execute_whose_statement_is_being_prepared_on_a_pipe() {
    // Everything queues on one pipe, behind a slow read: a statement the pipe's connection
    // has not prepared waits there for its PREPARE.
    let c = start("pipe_killp", "pipeline_depth = 8\npipeline_connections = 1\npipeline_stall_ms = 60000");
    let port = c.port;
    let mut killer = c.connect("app", "app_pw").unwrap();
    let mut victim = c.connect("app", "app_pw").unwrap();
    let id: Option<u64> = victim.query_first("SELECT CONNECTION_ID()").unwrap();
    let id = id.unwrap();
    let (slow, slow_done) = spawn_slow_read(port);
    wait_running("pipe_killp", "SELECT SUM(seq");
    // Prepared for the client on a connection of its own (the pipe's is busy).
    let stmt = victim.prep("SELECT ? + 1").unwrap();
    let waiting = std::thread::spawn(move || (victim.exec_first::<i64, _, _>(&stmt, (41,)), victim, stmt));
    // Long enough for the EXECUTE to be queued, well within the slow read's run.
    std::thread::sleep(Duration::from_millis(300));
    killer.query_drop(format!("KILL QUERY {id}")).unwrap();
    let (got, mut victim, stmt) = waiting.join().unwrap();
    let e = got.unwrap_err();
    assert_eq!(err_code(&e), Some(1317), "{e}");
    assert!(!slow_done.load(Ordering::SeqCst), "the EXECUTE was stopped, not left to wait for the slow read");
    // The slow read was on the same connection: it runs again elsewhere, to its end.
    assert_eq!(slow.join().unwrap(), Some(SLOW_SUM));
    let v: Option<i64> = victim.exec_first(&stmt, (41,)).unwrap();
    assert_eq!(v, Some(42));
}

/// Runs a one-row, one-column query over a raw socket logged in with CLIENT_DEPRECATE_EOF;
/// returns the row's value.
fn raw_query_value(s: &mut std::net::TcpStream, sql: &str) -> Vec<u8> {
    let mut payload = vec![0x03];
    payload.extend_from_slice(sql.as_bytes());
    send_command(s, &payload);
    let (_, count) = read_raw_packet(s).unwrap();
    assert_eq!(count, [1], "one column: {}", String::from_utf8_lossy(&count));
    read_raw_packet(s).unwrap();
    let (_, row) = read_raw_packet(s).unwrap();
    let (_, end) = read_raw_packet(s).unwrap();
    assert_eq!(end[0], 0xFE, "the terminator");
    row[1..].to_vec()
}

#[test]
fn a_client_that_stops_reading_does_not_hold_up_reads_queued_behind_it() {
    // The pipe never counts as stalled here, so reads queue behind the big one.
    let c = start(
        "pipe_slow_reader",
        "pipeline_depth = 64\npipeline_connections = 1\npipeline_stall_ms = 600000\npipeline_slow_reader_ms = 200",
    );
    let mut slow = raw_login(c.port, "app", "app_pw");
    let mut other = raw_login(c.port, "app", "app_pw");
    other.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // 64 MB that its client does not read for now.
    send_command(&mut slow, b"\x03SELECT REPEAT('x', 1000000) FROM seq_1_to_64");
    for i in 0..10 {
        assert_eq!(raw_query_value(&mut other, &format!("SELECT {i} * 7")), (i * 7).to_string().as_bytes());
    }
    assert!(stat(&c, "pipes_evicted") >= 1);
    // The slow client's reply is all there when it reads it.
    slow.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let (_, count) = read_raw_packet(&mut slow).unwrap();
    assert_eq!(count, [1]);
    read_raw_packet(&mut slow).unwrap();
    let mut rows = 0;
    loop {
        let (_, p) = read_raw_packet(&mut slow).unwrap();
        if p[0] == 0xFE && p.len() < 9 {
            break;
        }
        assert_eq!(p.len(), 4 + 1_000_000, "row {rows}");
        assert!(p[4..].iter().all(|&b| b == b'x'));
        rows += 1;
    }
    assert_eq!(rows, 64);
    assert_eq!(raw_query_value(&mut slow, "SELECT 'after'"), b"after");
}
