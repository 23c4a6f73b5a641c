//! Many sessions that leave state on their connections, over a small pool, for a while:
//! none sees another's state, and the pool never grows past its limit.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use mysql::prelude::Queryable;
use mysql::Conn;

/// Seconds the sessions run (CORELAY_SOAK_S overrides the 60 s default).
fn soak_time() -> Duration {
    let s = std::env::var("CORELAY_SOAK_S").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    Duration::from_secs(s)
}

/// One session: checks it starts clean (no user variable, temporary table, lock or
/// setting of an earlier session), then sets its own, uses a prepared statement, and reads
/// its own back. Returns what went wrong.
fn one_session(port: u16, i: usize, n: usize) -> Result<(), String> {
    let mut c = Conn::new(client_opts(port, "app", "app_pw", Some(DB_NAME))).map_err(|e| format!("connect: {e}"))?;
    let q = |c: &mut Conn, sql: &str| c.query_drop(sql).map_err(|e| format!("{sql}: {e}"));
    // The leak check: what a new session must find.
    let seen: Option<(Option<i64>, String, String, String)> = c
        .query_first(
            "SELECT @soak_v, @@time_zone, @@sql_mode = @@global.sql_mode, \
             @@sql_select_limit = @@global.sql_select_limit",
        )
        .map_err(|e| format!("leak check: {e}"))?;
    match seen {
        Some((None, tz, same_mode, same_limit)) if tz == "SYSTEM" && same_mode == "1" && same_limit == "1" => {}
        other => return Err(format!("session {i}-{n} started with another session's state: {other:?}")),
    }
    // A value of this session alone. (Not a time zone: MariaDB 10.11 caches offset time
    // zones so that, once '+07:23' was set on the server, SET time_zone = '+05:07' on any
    // connection reads back '+07:23'; direct too.)
    let limit = (100_000 + i * 1000 + n % 1000) as i64;
    q(&mut c, &format!("SET sql_select_limit = {limit}, sql_mode = 'ANSI_QUOTES', time_zone = '+02:00'"))?;
    let pins = !i.is_multiple_of(3);
    if pins {
        // Creating the temporary table fails if a leaked one is still there.
        q(&mut c, "CREATE TEMPORARY TABLE soak_tmp (a INT)")?;
        q(&mut c, &format!("INSERT INTO soak_tmp VALUES ({i})"))?;
        c.exec_drop("SET @soak_v = ?", (i as i64,)).map_err(|e| format!("SET @soak_v: {e}"))?;
        if i % 5 == 1 {
            c.exec_drop("DO GET_LOCK(?, 0)", ("soak_lock",)).map_err(|e| format!("GET_LOCK: {e}"))?;
        }
    }
    let stmt = c.prep("SELECT @@sql_select_limit, @soak_v, ? + 1").map_err(|e| format!("prepare: {e}"))?;
    for k in 0..3i64 {
        let row: Option<(i64, Option<i64>, i64)> = c.exec_first(&stmt, (k,)).map_err(|e| format!("execute: {e}"))?;
        let want = (limit, pins.then_some(i as i64), k + 1);
        if row.as_ref() != Some(&want) {
            return Err(format!("session {i}-{n} read {row:?}, its own state is {want:?}"));
        }
    }
    if pins {
        let mine: Option<i64> = c.query_first("SELECT a FROM soak_tmp").map_err(|e| format!("soak_tmp: {e}"))?;
        if mine != Some(i as i64) {
            return Err(format!("session {i}-{n}: its temporary table holds {mine:?}"));
        }
    }
    Ok(())
}

#[test]
fn five_hundred_sessions_with_state_over_eight_connections_leak_nothing() {
    let db_user = "soak_db";
    let cfg = config_as_db_user(db_user, "pool_wait_timeout_ms = 60000\nmax_client_connections = 2000")
        .replace("connect_timeout_ms = 1000", "connect_timeout_ms = 1000\nmax_connections = 8");
    let c = Corelay::start(&cfg, "thread", 2);
    let port = c.port;
    let stop = Arc::new(AtomicBool::new(false));
    let sessions = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let started = Instant::now();
    let run_for = soak_time();
    let clients: Vec<_> = (0..500)
        .map(|i| {
            let (stop, sessions, failures) = (stop.clone(), sessions.clone(), failures.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    if let Err(e) = one_session(port, i, n) {
                        failures.lock().unwrap().push(e);
                    }
                    sessions.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            })
        })
        .collect();
    let mut root = shared_mariadb().root().unwrap();
    let mut peak = 0i64;
    while started.elapsed() < run_for {
        let open: Option<i64> = root
            .query_first(format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{db_user}'"))
            .unwrap();
        peak = peak.max(open.unwrap_or(0));
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for t in clients {
        t.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    let done = sessions.load(Ordering::Relaxed);
    eprintln!("{done} sessions in {:?}, at most {peak} backend connections", started.elapsed());
    assert!(
        failures.is_empty(),
        "{} of {done} sessions failed; first ones: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(done >= 500, "only {done} sessions ran");
    assert!(peak <= 8, "{peak} backend connections for max_connections = 8");
}
