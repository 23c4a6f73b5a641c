//! Hot reload: SIGHUP, admin RELOAD and `watch_config` change users, servers, timeouts and
//! limits while sessions run; an invalid file is refused and the old configuration stays.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mysql::prelude::Queryable;
use mysql::Conn;

fn admin(c: &Corelay, sql: &str) -> (bool, String, String) {
    mariadb_cli(c.admin_port, "admin", "admin_pw", sql)
}

/// The configuration version every shard runs, from SHOW SHARDS.
fn shard_versions(c: &Corelay) -> Vec<u64> {
    let (ok, out, err) = admin(c, "SHOW SHARDS\n");
    assert!(ok, "{err}");
    let mut lines = out.lines();
    let head: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    let col = head.iter().position(|h| *h == "config_version").expect("a config_version column");
    lines.map(|l| l.split('\t').nth(col).and_then(|v| v.parse().ok()).unwrap_or(0)).collect()
}

fn wait_for_version(c: &Corelay, version: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !shard_versions(c).iter().all(|v| *v == version) {
        assert!(
            Instant::now() < deadline,
            "shards did not reach version {version}: {:?}\n{}",
            shard_versions(c),
            c.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Com_select of a server, read on a connection kept open (a new one would count the
/// SELECT the client library sends when it connects).
fn com_select(conn: &mut Conn) -> u64 {
    let row: Option<(String, u64)> = conn.query_first("SHOW GLOBAL STATUS LIKE 'Com_select'").unwrap();
    row.map_or(0, |r| r.1)
}

fn app_connections(db: &MariaDb) -> u64 {
    let mut conn = db.root().unwrap();
    let n: Option<u64> = conn
        .query_first(format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{DB_USER}'"))
        .unwrap();
    n.unwrap_or(0)
}

fn replica_block(addr: std::net::SocketAddr) -> String {
    format!(
        "[[cluster.server]]\naddress = \"{addr}\"\nrole = \"replica\"\nconnect_timeout_ms = 1000\nreconnect_interval_s = 1\n\n"
    )
}

fn sighup(c: &Corelay) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(c.pid() as i32, libc::SIGHUP) };
}

#[test]
fn sighup_adds_a_user_and_removes_a_replica_under_load() {
    let (primary, replicas) = replication(2);
    let base = config_for(primary.addr(), &[TestUser::default()], "");
    let base = base.replace("name = \"main\"", "name = \"main\"\nhealth_interval_ms = 200\nwrite_time_interval_ms = 0");
    let with = |replicas: &[&MariaDb]| {
        let blocks: String = replicas.iter().map(|r| replica_block(r.addr())).collect();
        base.replace("[[db_user]]", &format!("{blocks}[[db_user]]"))
    };
    let c = Corelay::start(&with(&[&replicas[0], &replicas[1]]), "thread", 2);
    let mut setup = c.connect("app", "app_pw").unwrap();
    setup.query_drop("CREATE TABLE IF NOT EXISTS reload_w (id INT AUTO_INCREMENT PRIMARY KEY, k INT)").unwrap();
    drop(setup);
    assert!(c.connect("newbie", "newbie_pw").is_err(), "not a user yet");

    let stop = Arc::new(AtomicBool::new(false));
    // Readers (text and prepared), writers, and one session holding a transaction open
    // across the reload.
    let mut workers = Vec::new();
    for k in 0..6 {
        let mut conn = c.connect("app", "app_pw").unwrap();
        let stop = stop.clone();
        workers.push(std::thread::spawn(move || {
            let (mut done, mut errors, mut seen) = (0u64, Vec::new(), std::collections::BTreeSet::new());
            while !stop.load(Ordering::Relaxed) {
                let r = match k {
                    0 | 1 => conn.query_first::<i64, _>("SELECT @@server_id").map(|id| seen.extend(id)),
                    2 | 3 => conn.exec_first::<i64, _, _>("SELECT @@server_id + ?", (0,)).map(|id| seen.extend(id)),
                    _ => conn.exec_drop("INSERT INTO reload_w (k) VALUES (?)", (k,)),
                };
                match r {
                    Ok(()) => done += 1,
                    Err(e) => errors.push(e.to_string()),
                }
            }
            (k, done, errors, seen)
        }));
    }
    let mut in_txn = c.connect("app", "app_pw").unwrap();
    in_txn.query_drop("START TRANSACTION").unwrap();
    in_txn.query_drop("INSERT INTO reload_w (k) VALUES (100)").unwrap();

    let mut probes: Vec<Conn> = replicas.iter().map(|r| r.root().unwrap()).collect();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(com_select(&mut probes[1]) > 0);
    // Replica 2 (server id 3) leaves, user newbie comes.
    let next = with(&[&replicas[0]]).replace(
        "[[admin_user]]",
        &format!("[[user]]\nname = \"newbie\"\npassword = \"newbie_pw\"\ndb_user = \"{DB_USER}\"\n\n[[admin_user]]"),
    );
    std::fs::write(c.dir.join("corelay.toml"), next).unwrap();
    sighup(&c);
    wait_for_version(&c, 1);
    // What was in flight on the removed replica when the shards switched has finished now.
    std::thread::sleep(Duration::from_millis(300));
    let removed_before = com_select(&mut probes[1]);
    let kept_before = com_select(&mut probes[0]);

    let mut newbie = c.connect("newbie", "newbie_pw").expect("the new user logs in");
    assert_eq!(newbie.query_first::<i64, _>("SELECT 1").unwrap(), Some(1));
    in_txn.query_drop("INSERT INTO reload_w (k) VALUES (101)").unwrap();
    in_txn.query_drop("COMMIT").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);

    let mut inserted = 0;
    for w in workers {
        let (k, done, errors, seen) = w.join().unwrap();
        assert!(
            errors.is_empty(),
            "worker {k}: {} errors in {done}: {:?}",
            errors.len(),
            &errors[..errors.len().min(5)]
        );
        assert!(done > 20, "worker {k} did only {done}");
        if k >= 4 {
            inserted += done;
        } else {
            assert!(seen.contains(&2), "worker {k} read from {seen:?}");
        }
    }
    assert_eq!(com_select(&mut probes[1]), removed_before, "the removed replica got new statements");
    assert!(com_select(&mut probes[0]) > kept_before + 20, "reads go on to the remaining replica");
    // Its pooled connections were closed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while app_connections(&replicas[1]) > 0 {
        assert!(Instant::now() < deadline, "connections to the removed replica stay open");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut p = primary.root().unwrap();
    let rows: Option<u64> = p.query_first(format!("SELECT COUNT(*) FROM {DB_NAME}.reload_w")).unwrap();
    assert_eq!(rows, Some(inserted + 2), "every acknowledged insert is on the primary");
    let log = c.log();
    assert!(log.contains("SIGHUP: configuration version 1 loaded"), "{log}");
    assert!(log.contains("added: user newbie"), "{log}");
}

#[test]
fn an_invalid_file_is_refused_and_a_valid_one_applies_in_fork_mode() {
    let db = shared_mariadb();
    let cfg = config_for(db.addr(), &[TestUser::default()], "query_timeout_ms = 0");
    let c = Corelay::start(&cfg, "fork", 2);
    let path = c.dir.join("corelay.toml");
    let mut before = c.connect("app", "app_pw").unwrap();

    // A user naming a db user that does not exist: refused, and the log names the key.
    std::fs::write(&path, cfg.replace(&format!("db_user = \"{DB_USER}\"\nauth"), "db_user = \"nobody\"\nauth"))
        .unwrap();
    let (ok, _, err) = admin(&c, "RELOAD\n");
    assert!(!ok, "an invalid file is refused");
    assert!(err.contains("user[0].db_user") && err.contains("version 0 keeps running"), "{err}");
    assert!(c.log().contains("configuration refused, version 0 keeps running"), "{}", c.log());
    assert!(c.log().contains("user[0].db_user"));
    assert_eq!(shard_versions(&c), [0, 0]);
    assert_alive(&mut before);
    c.connect("app", "app_pw").expect("the old configuration still logs clients in");

    // A new password and a statement timeout: applied without dropping the session.
    let next = cfg
        .replace("password = \"app_pw\"", "password = \"new_pw\"")
        .replace("query_timeout_ms = 0", "query_timeout_ms = 400");
    std::fs::write(&path, &next).unwrap();
    let (ok, _, err) = admin(&c, "RELOAD\n");
    assert!(ok, "{err}\n{}", c.log());
    assert_eq!(shard_versions(&c), [1, 1], "RELOAD returns once the shards switched");
    assert_alive(&mut before);
    let e = before.query_drop("SELECT SLEEP(3)").unwrap_err();
    assert_eq!(err_code(&e), Some(1969), "{e}");
    assert_alive(&mut before);
    for _ in 0..6 {
        assert!(c.connect("app", "app_pw").is_err(), "the old password is refused");
        c.connect("app", "new_pw").expect("the new password logs in on every shard");
    }

    // A re-forked shard starts with the running version.
    let victim = c.shard_pids()[0];
    // SAFETY: a shard process of our own child.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.shard_pids().len() < 2 || c.shard_pids().contains(&victim) {
        assert!(Instant::now() < deadline, "the shard was not re-forked");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The new shard publishes its version once it runs.
    while shard_versions(&c) != [1, 1] {
        assert!(Instant::now() < deadline, "the re-forked shard runs version 1: {:?}", shard_versions(&c));
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..6 {
        c.connect("app", "new_pw").expect("every shard runs the new version");
    }
}

#[test]
fn watch_config_reloads_a_changed_file_and_removed_users_finish() {
    let db = shared_mariadb();
    let users = [TestUser::default(), TestUser { name: "leaving", password: "leaving_pw", ..TestUser::default() }];
    let cfg = config_for(db.addr(), &users, "watch_config = true\nwatch_interval_ms = 100");
    let c = Corelay::start(&cfg, "thread", 2);
    let mut leaving = c.connect("leaving", "leaving_pw").unwrap();
    leaving.query_drop("START TRANSACTION").unwrap();

    let without = cfg.replace("[[user]]\nname = \"leaving\"", "[[user]]\nname = \"arriving\"");
    let without = without.replace("password = \"leaving_pw\"", "password = \"arriving_pw\"");
    std::fs::write(c.dir.join("corelay.toml"), without).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut arriving: Option<Conn> = None;
    while arriving.is_none() {
        assert!(Instant::now() < deadline, "the changed file was not picked up: {}", c.log());
        arriving = c.connect("arriving", "arriving_pw").ok();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(c.log().contains("the configuration file changed: configuration version 1 loaded"), "{}", c.log());
    let e = c.connect("leaving", "leaving_pw").unwrap_err();
    assert_eq!(err_code(&e), Some(1045), "{e}");
    // The removed user's session finishes what it does.
    assert_eq!(leaving.query_first::<i64, _>("SELECT 1").unwrap(), Some(1));
    leaving.query_drop("COMMIT").unwrap();
    assert_alive(&mut leaving);
    // An unchanged file is not reloaded again.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(shard_versions(&c), [1, 1]);
}
