//! Many client sessions over few backend connections, without losing any session's state.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mysql::prelude::Queryable;
use mysql::Conn;

/// corelay in front of the shared server, with `max` backend connections for the whole
/// proxy (two shards: `max / 2` each), logging in to the server as `db_user` (a user of
/// this test alone, so its connections can be counted).
fn start(db_user: &str, max: u32, extra: &str) -> Corelay {
    let cfg = config_as_db_user(db_user, extra)
        .replace("connect_timeout_ms = 1000", &format!("connect_timeout_ms = 1000\nmax_connections = {max}"));
    Corelay::start(&cfg, "thread", 2)
}

/// Backend connections `db_user` has open on the server right now.
fn backend_connections(db_user: &str) -> usize {
    let mut root = shared_mariadb().root().unwrap();
    let n: Option<i64> = root
        .query_first(format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{db_user}'"))
        .unwrap();
    n.unwrap_or(0) as usize
}

#[test]
fn many_clients_share_few_backend_connections() {
    let c = start("pool_many", 4, "pool_wait_timeout_ms = 20000");
    let port = c.port;
    let errors = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let clients = 60;
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let (errors, done) = (errors.clone(), done.clone());
            std::thread::spawn(move || {
                let mut conn = Conn::new(client_opts(port, "app", "app_pw", Some(DB_NAME))).unwrap();
                for j in 0..30 {
                    match conn.query_first::<i64, _>(format!("SELECT {i} * 1000 + {j}")) {
                        Ok(Some(v)) if v == i * 1000 + j => {}
                        other => {
                            eprintln!("client {i}: {other:?}");
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
                conn
            })
        })
        .collect();
    let mut peak = 0;
    while done.load(Ordering::Relaxed) < clients as usize {
        peak = peak.max(backend_connections("pool_many"));
        std::thread::sleep(Duration::from_millis(20));
    }
    let conns: Vec<Conn> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(errors.load(Ordering::Relaxed), 0);
    assert!(peak <= 4, "{peak} backend connections for max_connections = 4");
    assert!(peak >= 1);
    // All 60 sessions are still open and served by at most 4 connections.
    assert_eq!(conns.len(), 60);
    assert!(backend_connections("pool_many") <= 4);
}

/// Variables each session sets to its own value and must keep reading back.
fn matrix(i: usize) -> Vec<(&'static str, String, String)> {
    // (variable, value to SET, what SELECT @@variable returns)
    let zones = ["+00:00", "+01:00", "-05:00", "+09:30"];
    let modes = ["ANSI_QUOTES", "STRICT_ALL_TABLES", "NO_ZERO_DATE", "PIPES_AS_CONCAT"];
    let iso = ["READ-UNCOMMITTED", "READ-COMMITTED", "REPEATABLE-READ", "SERIALIZABLE"];
    let on_off = |b: bool| if b { "1" } else { "0" };
    let k = i % 4;
    vec![
        ("time_zone", format!("'{}'", zones[k]), zones[k].to_string()),
        ("sql_mode", format!("'{}'", modes[k]), modes[k].to_string()),
        ("tx_isolation", format!("'{}'", iso[k]), iso[k].to_string()),
        ("sql_select_limit", format!("{}", 1000 + i), format!("{}", 1000 + i)),
        ("max_statement_time", format!("{}", 10 + i), format!("{:.6}", (10 + i) as f64)),
        ("foreign_key_checks", on_off(i.is_multiple_of(2)).into(), on_off(i.is_multiple_of(2)).into()),
        ("unique_checks", on_off(i.is_multiple_of(3)).into(), on_off(i.is_multiple_of(3)).into()),
        ("group_concat_max_len", format!("{}", 2048 + i), format!("{}", 2048 + i)),
        ("sql_safe_updates", on_off(i % 2 == 1).into(), on_off(i % 2 == 1).into()),
        ("wait_timeout", format!("{}", 3000 + i), format!("{}", 3000 + i)),
        ("interactive_timeout", format!("{}", 4000 + i), format!("{}", 4000 + i)),
        ("net_read_timeout", format!("{}", 40 + i), format!("{}", 40 + i)),
        ("net_write_timeout", format!("{}", 70 + i), format!("{}", 70 + i)),
        ("tx_read_only", on_off(i.is_multiple_of(5)).into(), on_off(i.is_multiple_of(5)).into()),
        ("div_precision_increment", format!("{}", i % 10), format!("{}", i % 10)),
        ("lock_wait_timeout", format!("{}", 100 + i), format!("{}", 100 + i)),
        ("innodb_lock_wait_timeout", format!("{}", 20 + i), format!("{}", 20 + i)),
        ("max_join_size", format!("{}", 1_000_000 + i), format!("{}", 1_000_000 + i)),
        ("sort_buffer_size", format!("{}", 262144 + 8192 * i), format!("{}", 262144 + 8192 * i)),
        ("optimizer_search_depth", format!("{}", i % 60), format!("{}", i % 60)),
        ("max_sort_length", format!("{}", 1024 + i), format!("{}", 1024 + i)),
        (
            "lc_time_names",
            ["'en_US'", "'de_DE'", "'fr_FR'", "'ja_JP'"][k].into(),
            ["en_US", "de_DE", "fr_FR", "ja_JP"][k].into(),
        ),
        ("sql_big_selects", on_off(i.is_multiple_of(2)).into(), on_off(i.is_multiple_of(2)).into()),
        ("sql_auto_is_null", on_off(i % 2 == 1).into(), on_off(i % 2 == 1).into()),
        (
            "default_storage_engine",
            ["InnoDB", "MyISAM", "Aria", "MEMORY"][k].into(),
            ["InnoDB", "MyISAM", "Aria", "MEMORY"][k].into(),
        ),
        ("max_error_count", format!("{}", 10 + i), format!("{}", 10 + i)),
        ("completion_type", "0".into(), "NO_CHAIN".into()),
    ]
}

#[test]
fn session_state_follows_every_session() {
    let c = start("pool_state", 4, "pool_wait_timeout_ms = 20000");
    let port = c.port;
    let sessions = 12;
    let handles: Vec<_> = (0..sessions)
        .map(|i| {
            std::thread::spawn(move || {
                let mut conn = Conn::new(client_opts(port, "app", "app_pw", Some(DB_NAME))).unwrap();
                let vars = matrix(i);
                let sets: Vec<String> = vars.iter().map(|(n, v, _)| format!("{n} = {v}")).collect();
                // Several assignments in one SET, spelled in different ways.
                conn.query_drop(format!("SET {}", sets[..10].join(", "))).unwrap();
                for s in &sets[10..] {
                    conn.query_drop(format!("SET SESSION {s}")).unwrap();
                }
                let charset = ["latin1", "utf8mb4", "utf8mb3", "ascii"][i % 4];
                conn.query_drop(format!("SET NAMES {charset}")).unwrap();
                let schema = if i.is_multiple_of(2) { "mysql" } else { DB_NAME };
                conn.query_drop(format!("USE {schema}")).unwrap();
                let select = format!(
                    "SELECT {}, @@character_set_client, DATABASE()",
                    vars.iter().map(|(n, _, _)| format!("@@{n}")).collect::<Vec<_>>().join(", ")
                );
                for round in 0..200 {
                    let row: mysql::Row = conn.query_first(&select).unwrap().unwrap();
                    for (k, (name, _, want)) in vars.iter().enumerate() {
                        let got: Option<String> = row.get(k);
                        assert_eq!(got.as_deref(), Some(want.as_str()), "session {i} round {round}: @@{name}");
                    }
                    let got: Option<String> = row.get(vars.len());
                    assert_eq!(got.as_deref(), Some(charset), "session {i}: @@character_set_client");
                    let got: Option<String> = row.get(vars.len() + 1);
                    assert_eq!(got.as_deref(), Some(schema), "session {i}: DATABASE()");
                }
                vars.len()
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap() >= 25);
    }
    assert!(backend_connections("pool_state") <= 4);
}

#[test]
fn connection_bound_state_pins_the_session() {
    let c = start("pool_pins", 6, "pool_wait_timeout_ms = 20000");
    let mut a = c.connect("app", "app_pw").unwrap();
    let mut noise: Vec<Conn> = (0..4).map(|_| c.connect("app", "app_pw").unwrap()).collect();
    let churn = |noise: &mut Vec<Conn>| {
        for n in noise.iter_mut() {
            n.query_drop("SELECT 1").unwrap();
        }
    };
    // A temporary table survives.
    a.query_drop("CREATE TEMPORARY TABLE pin_tmp (id INT)").unwrap();
    a.query_drop("INSERT INTO pin_tmp VALUES (1), (2)").unwrap();
    churn(&mut noise);
    let n: Option<i64> = a.query_first("SELECT COUNT(*) FROM pin_tmp").unwrap();
    assert_eq!(n, Some(2));
    // A user variable survives.
    a.query_drop("SET @pin_var = 'kept'").unwrap();
    churn(&mut noise);
    let v: Option<String> = a.query_first("SELECT @pin_var").unwrap();
    assert_eq!(v.as_deref(), Some("kept"));
    drop(a);

    // GET_LOCK is held until released.
    let mut b = c.connect("app", "app_pw").unwrap();
    let got: Option<i64> = b.query_first("SELECT GET_LOCK('corelay_pin', 5)").unwrap();
    assert_eq!(got, Some(1));
    churn(&mut noise);
    let mut root = shared_mariadb().root().unwrap();
    let free: Option<i64> = root.query_first("SELECT IS_FREE_LOCK('corelay_pin')").unwrap();
    assert_eq!(free, Some(0), "the lock is still held");
    let mine: Option<i64> = b.query_first("SELECT IS_USED_LOCK('corelay_pin') = CONNECTION_ID()").unwrap();
    assert_eq!(mine, Some(1), "by this session's connection");
    let rel: Option<i64> = b.query_first("SELECT RELEASE_LOCK('corelay_pin')").unwrap();
    assert_eq!(rel, Some(1));
    drop(b);

    // An explicit transaction sees its own uncommitted rows (and others do not).
    let mut t = c.connect("app", "app_pw").unwrap();
    t.query_drop("CREATE TABLE IF NOT EXISTS pin_tx (id INT PRIMARY KEY) ENGINE=InnoDB").unwrap();
    t.query_drop("DELETE FROM pin_tx").unwrap();
    t.query_drop("START TRANSACTION").unwrap();
    t.query_drop("INSERT INTO pin_tx VALUES (7)").unwrap();
    churn(&mut noise);
    let mine: Option<i64> = t.query_first("SELECT COUNT(*) FROM pin_tx").unwrap();
    assert_eq!(mine, Some(1));
    let theirs: Option<i64> = noise[0].query_first("SELECT COUNT(*) FROM pin_tx").unwrap();
    assert_eq!(theirs, Some(0));
    t.query_drop("ROLLBACK").unwrap();
    let after: Option<i64> = t.query_first("SELECT COUNT(*) FROM pin_tx").unwrap();
    assert_eq!(after, Some(0));

    // FOUND_ROWS() after SQL_CALC_FOUND_ROWS.
    t.query_drop("INSERT INTO pin_tx VALUES (1), (2), (3), (4), (5)").unwrap();
    let _: Vec<i64> = t.query("SELECT SQL_CALC_FOUND_ROWS id FROM pin_tx ORDER BY id LIMIT 2").unwrap();
    churn(&mut noise);
    let found: Option<i64> = t.query_first("SELECT FOUND_ROWS()").unwrap();
    assert_eq!(found, Some(5));

    // A SET the tracker does not understand keeps its effect.
    t.query_drop("SET sql_mode = CONCAT(@@sql_mode, ',PIPES_AS_CONCAT')").unwrap();
    churn(&mut noise);
    let concat: Option<String> = t.query_first("SELECT 'a' || 'b'").unwrap();
    assert_eq!(concat.as_deref(), Some("ab"));
    drop(t);

    // Sessions that pinned and left: their connections were reset before reuse.
    for n in noise.iter_mut() {
        let v: Option<Option<String>> = n.query_first("SELECT @pin_var").unwrap();
        assert_eq!(v, Some(None), "a user variable leaked into another session");
        let m: Option<String> = n.query_first("SELECT @@sql_mode").unwrap();
        assert!(!m.unwrap_or_default().contains("PIPES_AS_CONCAT"), "a SET leaked into another session");
    }
}

#[test]
fn killed_pooled_connection_is_replaced() {
    let c = start("pool_kill", 2, "");
    let mut a = c.connect("app", "app_pw").unwrap();
    let mut b = c.connect("app", "app_pw").unwrap();
    a.query_drop("SELECT 1").unwrap();
    b.query_drop("SELECT 1").unwrap();
    // Kill every pooled connection from the server side.
    let mut root = shared_mariadb().root().unwrap();
    let ids: Vec<u64> = root.query("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'pool_kill'").unwrap();
    assert!(!ids.is_empty());
    for id in ids {
        let _ = root.query_drop(format!("KILL {id}"));
    }
    std::thread::sleep(Duration::from_millis(200));
    for conn in [&mut a, &mut b] {
        let v: Option<i64> = conn.query_first("SELECT 2").expect("the next statement succeeds");
        assert_eq!(v, Some(2));
    }
    let mut fresh = c.connect("app", "app_pw").unwrap();
    assert_alive(&mut fresh);
}

/// Kills, from the server side, the connection running `statement_prefix` once it runs.
fn kill_when_running(db_user: &'static str, statement_prefix: &'static str) -> std::thread::JoinHandle<bool> {
    std::thread::spawn(move || {
        let mut root = shared_mariadb().root().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let ids: Vec<u64> = root
                .query(format!(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{db_user}' AND INFO LIKE '{statement_prefix}%'"
                ))
                .unwrap();
            if let Some(id) = ids.first() {
                root.query_drop(format!("KILL {id}")).unwrap();
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    })
}

#[test]
fn a_read_is_retried_when_its_connection_dies_before_replying() {
    let c = start("pool_retry", 4, "");
    let mut conn = c.connect("app", "app_pw").unwrap();
    let killer = kill_when_running("pool_retry", "SELECT SLEEP(1.5)");
    let started = Instant::now();
    // SLEEP returns 0 when it ran to the end, 1 when interrupted: the retry ran to the end.
    let v: Option<i64> = conn.query_first("SELECT SLEEP(1.5)").expect("the read is retried on another connection");
    assert!(killer.join().unwrap(), "the statement was never seen running");
    assert_eq!(v, Some(0));
    assert!(started.elapsed() >= Duration::from_millis(1500));
    // A write is not sent twice: the client gets 1927 and the session carries on.
    let killer = kill_when_running("pool_retry", "DO SLEEP(1.5)");
    let e = conn.query_drop("DO SLEEP(1.5)").unwrap_err();
    assert!(killer.join().unwrap());
    assert_eq!(err_code(&e), Some(1927), "{e}");
    assert_alive(&mut conn);
}

#[test]
fn idle_backend_connections_are_closed() {
    let c = start("pool_idle", 4, "server_idle_timeout_s = 1");
    let mut conns: Vec<Conn> = (0..4).map(|_| c.connect("app", "app_pw").unwrap()).collect();
    for conn in &mut conns {
        assert_alive(conn);
    }
    assert!(backend_connections("pool_idle") >= 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while backend_connections("pool_idle") > 0 {
        assert!(Instant::now() < deadline, "idle backend connections were not closed");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The clients are still there and get new connections.
    for conn in &mut conns {
        assert_alive(conn);
    }
}

#[test]
fn pool_wait_timeout_gives_a_clear_error() {
    let c = start("pool_wait", 2, "pool_wait_timeout_ms = 300");
    // Sessions pin both connections (one per shard) with open transactions; keep opening
    // sessions until one lands on a full shard (at login, which checks the backend, or at
    // its first statement).
    let mut holders = Vec::new();
    let started = Instant::now();
    let err = loop {
        let mut s = match c.connect("app", "app_pw") {
            Ok(s) => s,
            Err(e) => break e,
        };
        match s.query_drop("START TRANSACTION") {
            Ok(()) => holders.push(s),
            Err(e) => break e,
        }
        assert!(started.elapsed() < Duration::from_secs(20), "never hit the limit");
    };
    assert_eq!(err_code(&err), Some(1040), "{err}");
    assert!(err.to_string().contains("pool_wait_timeout_ms"), "{err}");
    for h in &mut holders {
        h.query_drop("COMMIT").unwrap();
    }
    let mut again = c.connect("app", "app_pw").unwrap();
    assert_alive(&mut again);
}

#[test]
fn min_connections_are_kept_open() {
    let cfg = config_as_db_user("pool_min", "server_idle_timeout_s = 1")
        .replace("connect_timeout_ms = 1000", "connect_timeout_ms = 1000\nmax_connections = 10\nmin_connections = 3");
    // One shard: its share is all three.
    let c = Corelay::start(&cfg, "thread", 1);
    let mut conn = c.connect("app", "app_pw").unwrap();
    assert_alive(&mut conn);
    // The first session showed the shard which connections to open; it warms up to three
    // and keeps them although they sit idle past server_idle_timeout_s.
    let deadline = Instant::now() + Duration::from_secs(10);
    while backend_connections("pool_min") < 3 {
        assert!(Instant::now() < deadline, "pool not warmed: {}", backend_connections("pool_min"));
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(backend_connections("pool_min"), 3);
    assert_alive(&mut conn);
}

#[test]
fn last_insert_id_is_right_whichever_connection_ran_the_insert() {
    let c = start("pool_lid", 4, "pool_wait_timeout_ms = 20000");
    let mut setup = c.connect("app", "app_pw").unwrap();
    setup.query_drop("CREATE TABLE IF NOT EXISTS lid (id BIGINT AUTO_INCREMENT PRIMARY KEY, who VARCHAR(20))").unwrap();
    setup.query_drop("CREATE TABLE IF NOT EXISTS lid_child (parent BIGINT, who VARCHAR(20))").unwrap();
    setup.query_drop("DELETE FROM lid_child").unwrap();
    let port = c.port;
    let handles: Vec<_> = (0..20)
        .map(|t| {
            std::thread::spawn(move || {
                // 50 sessions per thread, 1,000 in all, over 4 backend connections.
                for s in 0..50 {
                    let mut conn = Conn::new(client_opts(port, "app", "app_pw", Some(DB_NAME))).unwrap();
                    let who = format!("{t}-{s}");
                    conn.exec_drop("INSERT INTO lid (who) VALUES (?)", (&who,)).unwrap();
                    let from_ok = conn.last_insert_id();
                    let text: Option<u64> = conn.query_first("SELECT LAST_INSERT_ID()").unwrap();
                    let prepared: Option<u64> = conn.exec_first("SELECT LAST_INSERT_ID()", ()).unwrap();
                    assert_eq!(text, Some(from_ok), "session {who}");
                    assert_eq!(prepared, Some(from_ok), "session {who}");
                    let owner: Option<String> =
                        conn.exec_first("SELECT who FROM lid WHERE id = ?", (from_ok,)).unwrap();
                    assert_eq!(owner.as_deref(), Some(who.as_str()));
                    // LAST_INSERT_ID() inside statements the server runs: the connection
                    // lent for them last served another session, whose id it holds.
                    let sum: Option<u64> = conn.query_first("SELECT LAST_INSERT_ID() + 0").unwrap();
                    assert_eq!(sum, Some(from_ok), "session {who}, text");
                    conn.query_drop(format!("INSERT INTO lid_child VALUES (LAST_INSERT_ID(), '{who}')")).unwrap();
                    conn.exec_drop("INSERT INTO lid_child VALUES (LAST_INSERT_ID(), ?)", (&who,)).unwrap();
                    // In a transaction begun on a connection that did not run the insert.
                    conn.query_drop("BEGIN").unwrap();
                    conn.query_drop(format!("INSERT INTO lid_child VALUES (LAST_INSERT_ID(), '{who}')")).unwrap();
                    let set: Option<u64> = conn.query_first("SELECT LAST_INSERT_ID(77)").unwrap();
                    let after: Option<u64> = conn.query_first("SELECT LAST_INSERT_ID() + 0").unwrap();
                    assert_eq!((set, after), (Some(77), Some(77)), "session {who}: LAST_INSERT_ID(expr) sets it");
                    conn.query_drop("COMMIT").unwrap();
                    let parents: Vec<u64> = conn.exec("SELECT parent FROM lid_child WHERE who = ?", (&who,)).unwrap();
                    assert_eq!(parents, [from_ok; 3], "session {who}");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(backend_connections("pool_lid") <= 4);
}

/// ROW_COUNT() after each of a fixed sequence of statements on `conn` (text and prepared).
fn row_counts(conn: &mut Conn, tag: &str) -> Vec<i64> {
    let mut out = Vec::new();
    let mut count = |conn: &mut Conn, prepared: bool| {
        let v: Option<i64> = if prepared {
            conn.exec_first("SELECT ROW_COUNT()", ()).unwrap()
        } else {
            conn.query_first("SELECT ROW_COUNT()").unwrap()
        };
        out.push(v.unwrap_or(i64::MIN));
    };
    conn.query_drop(format!("INSERT INTO rc (who) VALUES ('{tag}'), ('{tag}'), ('{tag}')")).unwrap();
    count(conn, false);
    // The SELECT ROW_COUNT() just run is the last statement now.
    count(conn, true);
    conn.exec_drop("UPDATE rc SET n = n + 1 WHERE who = ?", (tag,)).unwrap();
    count(conn, true);
    let _: Vec<i64> = conn.query("SELECT n FROM rc WHERE who = 'nobody'").unwrap();
    count(conn, false);
    conn.exec_drop("DELETE FROM rc WHERE who = ?", (tag,)).unwrap();
    count(conn, false);
    assert!(conn.query_drop("SELECT * FROM no_such_table").is_err());
    count(conn, false);
    conn.query_drop("CREATE TABLE IF NOT EXISTS rc_other (a INT)").unwrap();
    count(conn, true);
    out
}

#[test]
fn row_count_is_the_sessions_own_whichever_connection_ran_the_statement() {
    let c = start("pool_rc", 2, "pool_wait_timeout_ms = 20000");
    let mut setup = c.connect("app", "app_pw").unwrap();
    setup.query_drop("CREATE TABLE IF NOT EXISTS rc (who VARCHAR(20), n INT NOT NULL DEFAULT 0)").unwrap();
    // What MariaDB itself answers, on a connection of its own.
    let mut direct = shared_mariadb().root().unwrap();
    direct.query_drop(format!("USE {DB_NAME}")).unwrap();
    let truth = row_counts(&mut direct, "direct");
    assert_eq!(truth, [3, -1, 3, -1, 3, -1, 0], "MariaDB's own rules");
    let port = c.port;
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let truth = truth.clone();
            std::thread::spawn(move || {
                // 20 sessions per thread, 160 in all, over 2 backend connections.
                for s in 0..20 {
                    let mut conn = Conn::new(client_opts(port, "app", "app_pw", Some(DB_NAME))).unwrap();
                    let tag = format!("{t}-{s}");
                    assert_eq!(row_counts(&mut conn, &tag), truth, "session {tag}");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn kill_acts_on_the_session_corelay_named() {
    let db = shared_mariadb();
    // One shard: KILL reaches sessions of the same shard.
    let c = Corelay::start(&config_for(db.addr(), &[TestUser::default()], ""), "thread", 1);
    let mut a = c.connect("app", "app_pw").unwrap();
    let mut b = c.connect("app", "app_pw").unwrap();
    let a_id: u64 = a.query_first("SELECT CONNECTION_ID()").unwrap().unwrap();
    let sleeper = std::thread::spawn(move || {
        let started = Instant::now();
        let v = a.query_first::<i64, _>("SELECT SLEEP(5)");
        (a, v, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    b.query_drop(format!("KILL QUERY {a_id}")).unwrap();
    let (mut a, v, took) = sleeper.join().unwrap();
    // MariaDB reports the interrupted statement with 1317 (MySQL returns 1 from SLEEP).
    match v {
        Ok(v) => assert_eq!(v, Some(1), "SLEEP was interrupted"),
        Err(e) => assert_eq!(err_code(&e), Some(1317), "{e}"),
    }
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_alive(&mut a);
    // KILL CONNECTION ends the session at its next command.
    b.query_drop(format!("KILL {a_id}")).unwrap();
    let e = a.query_drop("SELECT 1").unwrap_err();
    assert_eq!(err_code(&e), Some(1927), "{e}");
    // An id nobody has.
    let e = b.query_drop("KILL 4242").unwrap_err();
    assert_eq!(err_code(&e), Some(1094), "{e}");
    assert_alive(&mut b);
}

/// What an executed (binary-protocol) statement leaves on its connection stays with its
/// session, as a text statement's does: a user variable, a named lock and a temporary table
/// set by EXECUTE keep the connection until the session ends, and the next session of the
/// same db user, served by that same connection, finds none of them.
#[test]
fn state_left_by_an_executed_statement_never_reaches_the_next_session() {
    let cfg = config_as_db_user("pool_ps", "pool_wait_timeout_ms = 20000")
        .replace("connect_timeout_ms = 1000", "connect_timeout_ms = 1000\nmax_connections = 1");
    // One shard and one backend connection: every session is served by the same one.
    let c = Corelay::start(&cfg, "thread", 1);
    let mut a = c.connect("app", "app_pw").unwrap();
    a.exec_drop("SET @v = ?", (5,)).unwrap();
    let locked: Option<i64> = a.exec_first("SELECT GET_LOCK(?, 0)", ("corelay_ps_lock",)).unwrap();
    assert_eq!(locked, Some(1));
    a.exec_drop("CREATE TEMPORARY TABLE ps_tmp (a INT)", ()).unwrap();
    let seen: Option<i64> = a.query_first("SELECT @v").unwrap();
    assert_eq!(seen, Some(5), "the session sees its own variable");
    drop(a);
    let mut b = c.connect("app", "app_pw").unwrap();
    let v: Option<Option<i64>> = b.query_first("SELECT @v").unwrap();
    assert_eq!(v, Some(None), "another session's user variable leaked");
    let free: Option<i64> = b.query_first("SELECT IS_FREE_LOCK('corelay_ps_lock')").unwrap();
    assert_eq!(free, Some(1), "another session's named lock is still held");
    let e = b.query_drop("SELECT * FROM ps_tmp").unwrap_err();
    assert_eq!(err_code(&e), Some(1146), "another session's temporary table is visible: {e}");
    assert_eq!(backend_connections("pool_ps"), 1, "all of it went through one backend connection");
}
