//! Reads go to replicas, writes to the primary, with read-your-writes, hints and
//! transactions, over real replication.

mod common;

use std::time::Duration;

use common::*;
use mysql::prelude::Queryable;
use mysql::Conn;

fn server_id(conn: &mut Conn, sql: &str) -> i64 {
    conn.query_first::<i64, _>(sql).unwrap().unwrap()
}

#[test]
fn reads_and_writes_are_split() {
    let (primary, mut replica) = replicated_pair();
    let cfg = config_for(primary.addr(), &[TestUser::default()], "").replace(
        "[[db_user]]",
        &format!(
            "[[cluster.server]]\naddress = \"{}\"\nrole = \"replica\"\nconnect_timeout_ms = 1000\nreconnect_interval_s = 60\n\n[[db_user]]",
            replica.addr()
        ),
    );
    let cfg = cfg.replace("name = \"main\"", "name = \"main\"\nwrite_time_interval_ms = 400");
    let c = Corelay::start(&cfg, "thread", 2);
    let mut conn = c.connect("app", "app_pw").unwrap();
    let sid = "SELECT @@server_id";
    assert_eq!(server_id(&mut conn, sid), 2, "a read goes to the replica");

    conn.query_drop("CREATE TABLE IF NOT EXISTS rw (id INT PRIMARY KEY, v INT)").unwrap();
    conn.query_drop("REPLACE INTO rw VALUES (1, 10)").unwrap();
    assert_eq!(server_id(&mut conn, sid), 1, "a read right after a write goes to the primary");
    let v: Option<i64> = conn.query_first("SELECT v FROM rw WHERE id = 1").unwrap();
    assert_eq!(v, Some(10), "and sees the write");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(server_id(&mut conn, sid), 2, "after the window reads go back to the replica");

    // Hints.
    assert_eq!(server_id(&mut conn, "/* corelay:primary */ SELECT @@server_id"), 1);
    conn.query_drop("UPDATE rw SET v = 11 WHERE id = 1").unwrap();
    assert_eq!(server_id(&mut conn, "/* corelay:replica */ SELECT @@server_id"), 2);
    std::thread::sleep(Duration::from_millis(600));

    // CONNECTION_ID() is corelay's id for the session, the same whichever server answers.
    let id: Option<u64> = conn.query_first("SELECT CONNECTION_ID()").unwrap();
    let again: Option<u64> = conn.exec_first("SELECT CONNECTION_ID()", ()).unwrap();
    assert_eq!(id, again);
    assert_eq!(id, Some(u64::from(conn.connection_id())), "the id in the greeting");

    // Locking reads and transactions stay on the primary.
    assert_eq!(server_id(&mut conn, "SELECT @@server_id FROM rw WHERE id = 1 FOR UPDATE"), 1);
    conn.query_drop("START TRANSACTION").unwrap();
    assert_eq!(server_id(&mut conn, sid), 1, "inside a transaction");
    conn.query_drop("COMMIT").unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(server_id(&mut conn, sid), 2);

    // dbconnect pins the session to a server until released.
    conn.query_drop("dbconnect master").unwrap();
    for _ in 0..3 {
        assert_eq!(server_id(&mut conn, sid), 1, "pinned to the primary");
    }
    conn.query_drop("dbconnect release").unwrap();
    assert_eq!(server_id(&mut conn, sid), 2);
    conn.query_drop(format!("dbconnect {}", replica.addr())).unwrap();
    let e = conn.query_drop("dbconnect 127.0.0.1:1").unwrap_err();
    assert!(e.to_string().contains("no server 127.0.0.1:1"), "{e}");
    conn.query_drop("dbconnect release").unwrap();

    // Prepared statements are routed by what they do.
    let read: Option<i64> = conn.exec_first("SELECT @@server_id + ?", (0,)).unwrap();
    assert_eq!(read, Some(2));
    conn.exec_drop("UPDATE rw SET v = ? WHERE id = 1", (12,)).unwrap();
    let after: Option<i64> = conn.exec_first("SELECT v FROM rw WHERE id = ?", (1,)).unwrap();
    assert_eq!(after, Some(12), "read-your-writes for prepared statements");

    // Replication carries the writes to the replica.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v: Option<i64> = conn.query_first("/* corelay:replica */ SELECT v FROM rw WHERE id = 1").unwrap();
        if v == Some(12) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "replica never caught up: {v:?}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // With the replica gone, reads fall back to the primary without errors.
    replica.kill();
    std::thread::sleep(Duration::from_millis(600));
    for _ in 0..5 {
        assert_eq!(server_id(&mut conn, sid), 1);
    }
    let mut fresh = c.connect("app", "app_pw").unwrap();
    assert_eq!(server_id(&mut fresh, sid), 1);
}

#[test]
fn reads_split_by_weight_across_replicas() {
    let (primary, replicas) = replication(2);
    let mut cfg = config_for(primary.addr(), &[TestUser::default()], "");
    for (r, weight) in replicas.iter().zip([1, 3]) {
        cfg = cfg.replace(
            "[[db_user]]",
            &format!(
                "[[cluster.server]]\naddress = \"{}\"\nrole = \"replica\"\nweight = {weight}\n\n[[db_user]]",
                r.addr()
            ),
        );
    }
    // One shard, so the 1,000 statements below share one balancer.
    let c = Corelay::start(&cfg, "thread", 1);
    let mut conn = c.connect("app", "app_pw").unwrap();
    let mut seen = std::collections::HashMap::new();
    for _ in 0..1000 {
        *seen.entry(server_id(&mut conn, "SELECT @@server_id")).or_insert(0) += 1;
    }
    assert_eq!(seen.get(&1), None, "no read went to the primary: {seen:?}");
    // Replica 2 has weight 1 and replica 3 weight 3: 250 and 750, within 20 %.
    let (two, three) = (seen[&2] as f64, seen[&3] as f64);
    assert!((two - 250.0).abs() <= 50.0 && (three - 750.0).abs() <= 150.0, "{seen:?}");
    // Writes go to the primary.
    conn.query_drop("CREATE TABLE IF NOT EXISTS wsplit (id INT)").unwrap();
    conn.query_drop("INSERT INTO wsplit VALUES (1)").unwrap();
    let mut root = primary.root().unwrap();
    let n: Option<i64> = root.query_first("SELECT COUNT(*) FROM app.wsplit").unwrap();
    assert_eq!(n, Some(1));
}

#[test]
fn lagging_replica_gets_no_reads_until_it_catches_up() {
    let (primary, replica) = replicated_pair();
    let cfg = config_for(primary.addr(), &[TestUser::default()], "")
        .replace(
            "[[db_user]]",
            &format!("[[cluster.server]]\naddress = \"{}\"\nrole = \"replica\"\n\n[[db_user]]", replica.addr()),
        )
        .replace(
            "name = \"main\"",
            "name = \"main\"\nhealth_interval_ms = 200\nmax_replication_lag_s = 1\nread_only_transactions_on_replicas = true",
        );
    let c = Corelay::start(&cfg, "thread", 2);
    let mut conn = c.connect("app", "app_pw").unwrap();
    let sid = "SELECT @@server_id";
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server_id(&mut conn, sid), 2);
    // With read_only_transactions_on_replicas, a read-only transaction runs on a replica.
    conn.query_drop("START TRANSACTION READ ONLY").unwrap();
    assert_eq!(server_id(&mut conn, sid), 2);
    assert_eq!(server_id(&mut conn, sid), 2);
    conn.query_drop("COMMIT").unwrap();
    // Replication stops applying: the replica's lag is unknown, then grows.
    replica.root().unwrap().query_drop("STOP SLAVE SQL_THREAD").unwrap();
    let mut p = primary.root().unwrap();
    p.query_drop("CREATE TABLE IF NOT EXISTS app.lagging (id INT)").unwrap();
    p.query_drop("INSERT INTO app.lagging VALUES (1)").unwrap();
    // Within two health intervals (and some slack for the check itself) no read goes there.
    std::thread::sleep(Duration::from_millis(700));
    for _ in 0..20 {
        assert_eq!(server_id(&mut conn, sid), 1, "a lagging replica gets no reads");
    }
    replica.root().unwrap().query_drop("START SLAVE SQL_THREAD").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while server_id(&mut conn, sid) != 2 {
        assert!(std::time::Instant::now() < deadline, "the replica never got reads again");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `SHOW SLAVE STATUS` field `name` of `replica`.
fn slave_status(replica: &MariaDb, name: &str) -> String {
    let row: Option<mysql::Row> = replica.root().unwrap().query_first("SHOW SLAVE STATUS").unwrap();
    let row = row.expect("the replica replicates");
    let at = row.columns_ref().iter().position(|c| c.name_str() == name).expect(name);
    row.get_opt::<Option<String>, _>(at).and_then(|v| v.ok()).flatten().unwrap_or_default()
}

/// Runs `sql` on `conn` until it fails, for up to 10 s (else panics with `still`); the error.
fn first_error(conn: &mut Conn, sql: &str, still: &str) -> mysql::Error {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match conn.query_first::<i64, _>(sql) {
            Err(e) => return e,
            Ok(_) => assert!(std::time::Instant::now() < deadline, "{still}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_replica_that_lost_its_primary_serves_reads_only_when_told_to() {
    let (mut primary, replica) = replicated_pair();
    let cfg = |extra: &str| {
        config_for(primary.addr(), &[TestUser::default()], "")
            .replace(
                "[[db_user]]",
                &format!("[[cluster.server]]\naddress = \"{}\"\nrole = \"replica\"\n\n[[db_user]]", replica.addr()),
            )
            .replace(
                "name = \"main\"",
                &format!("name = \"main\"\nhealth_interval_ms = 200\nmax_replication_lag_s = 10{extra}"),
            )
    };
    let told = Corelay::start(&cfg("\nlag_when_primary_lost_s = 5"), "thread", 1);
    let untold = Corelay::start(&cfg(""), "thread", 1);
    let mut a = told.connect("app", "app_pw").unwrap();
    let mut b = untold.connect("app", "app_pw").unwrap();
    let sid = "SELECT @@server_id";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server_id(&mut a, sid) != 2 || server_id(&mut b, sid) != 2 {
        assert!(std::time::Instant::now() < deadline, "the replica never got reads");
        std::thread::sleep(Duration::from_millis(100));
    }

    primary.kill();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while slave_status(&replica, "Slave_IO_Running") == "Yes" {
        assert!(std::time::Instant::now() < deadline, "the replica never noticed its primary died");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(slave_status(&replica, "Seconds_Behind_Master"), "", "the replica does not know its lag");
    // The told corelay's health check counts it as lagging 5 s, within the limit of 10.
    let addr = replica.addr().to_string();
    let state_and_lag = || {
        let (ok, out, err) = mariadb_cli(told.admin_port, "admin", "admin_pw", "SHOW SERVERS\n");
        assert!(ok, "{err}");
        let line = out.lines().find(|l| l.contains(&addr)).unwrap_or_else(|| panic!("{out}")).to_string();
        let f: Vec<String> = line.split('\t').map(str::to_string).collect();
        (f[5].clone(), f[6].clone())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while state_and_lag() != ("up".to_string(), "5".to_string()) {
        assert!(std::time::Instant::now() < deadline, "told: {:?}", state_and_lag());
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..20 {
        assert_eq!(server_id(&mut a, sid), 2, "told: the replica that applied all it got serves reads");
    }
    // The untold one stops reading there, and with the primary gone reads fail clearly.
    let e = first_error(&mut b, sid, "untold: the replica still gets reads");
    assert!(err_code(&e).is_some(), "untold: a MySQL error, not a dropped connection: {e}");

    // A replica that stops applying does not know how far behind it is: no reads, told or not.
    replica.root().unwrap().query_drop("STOP SLAVE SQL_THREAD").unwrap();
    let e = first_error(&mut a, sid, "told: a stopped replica still gets reads");
    assert!(err_code(&e).is_some(), "{e}");
}

/// corelay with a replica that is down and a primary with two connections, one reserved
/// for writes.
fn reserved_primary_config(proxy_extra: &str) -> String {
    let dead_replica = format!("127.0.0.1:{}", free_port());
    config_for(shared_mariadb().addr(), &[TestUser::default()], proxy_extra)
        .replace(
            "connect_timeout_ms = 1000",
            "connect_timeout_ms = 1000\nmax_connections = 2\nreserved_primary_connections = 1",
        )
        .replace(
            "[[db_user]]",
            &format!("[[cluster.server]]\naddress = \"{dead_replica}\"\nrole = \"replica\"\n\n[[db_user]]"),
        )
}

#[test]
fn fallback_reads_leave_the_reserved_primary_connections_to_writes() {
    // Every statement on a connection of its own (no pipelining), as the reservation counts.
    let cfg = reserved_primary_config("pool_wait_timeout_ms = 300\npipeline_depth = 0");
    let c = Corelay::start(&cfg, "thread", 1);
    // (The mysql crate reads a few variables when it connects: connect both first.)
    let mut reader = c.connect("app", "app_pw").unwrap();
    let mut holder = c.connect("app", "app_pw").unwrap();
    holder.query_drop("START TRANSACTION").unwrap();
    // The replica is down; the read falls back to the primary, whose last connection is
    // reserved for writes.
    let e = reader.query_drop("SELECT 1").unwrap_err();
    assert_eq!(err_code(&e), Some(1040), "{e}");
    // A write may use it.
    reader.query_drop("CREATE TABLE IF NOT EXISTS reserved_t (id INT)").unwrap();
    holder.query_drop("COMMIT").unwrap();
    let one: Option<i64> = reader.query_first("SELECT 1").unwrap();
    assert_eq!(one, Some(1));
}

#[test]
fn writes_get_the_connection_of_a_pipe_of_fallback_reads() {
    let cfg = reserved_primary_config("pool_wait_timeout_ms = 3000");
    let c = Corelay::start(&cfg, "thread", 1);
    let mut reader = c.connect("app", "app_pw").unwrap();
    let mut holder = c.connect("app", "app_pw").unwrap();
    let mut writer = c.connect("app", "app_pw").unwrap();
    // Fallback reads share one pipelined connection to the primary; a transaction holds
    // the other: both of the primary's connections are in use.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reading = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let one: Option<i64> = reader.query_first("SELECT 1").unwrap();
                assert_eq!(one, Some(1));
                n += 1;
            }
            n
        })
    };
    holder.query_drop("START TRANSACTION").unwrap();
    // A write waits for a connection: the pipe gives its connection back between two reads.
    writer.query_drop("CREATE TABLE IF NOT EXISTS pipe_give_back_t (id INT)").unwrap();
    holder.query_drop("COMMIT").unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reading.join().unwrap() > 0);
}

#[test]
fn a_flapping_replica_costs_readers_nothing() {
    let (primary, mut replicas) = replication(2);
    let mut cfg = config_for(primary.addr(), &[TestUser::default()], "");
    for r in &replicas {
        cfg = cfg.replace(
            "[[db_user]]",
            &format!(
                "[[cluster.server]]\naddress = \"{}\"\nrole = \"replica\"\nconnect_timeout_ms = 300\nreconnect_interval_s = 1\n\n[[db_user]]",
                r.addr()
            ),
        );
    }
    let cfg = cfg.replace("name = \"main\"", "name = \"main\"\nhealth_interval_ms = 200");
    let c = Corelay::start(&cfg, "thread", 2);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Half the readers use the text protocol, half prepared statements: both are sent
    // again elsewhere when their replica dies under them.
    let readers: Vec<_> = (0..6)
        .map(|i| {
            let mut conn = c.connect("app", "app_pw").unwrap();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut reads, mut errors, mut seen) = (0u64, Vec::new(), std::collections::BTreeMap::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let read = if i % 2 == 0 {
                        conn.query_first::<i64, _>("SELECT @@server_id")
                    } else {
                        conn.exec_first::<i64, _, _>("SELECT @@server_id + ?", (0,))
                    };
                    match read {
                        Ok(Some(id)) => *seen.entry(id).or_insert(0u64) += 1,
                        Ok(None) => errors.push("no row".to_string()),
                        Err(e) => errors.push(e.to_string()),
                    }
                    reads += 1;
                }
                (reads, errors, seen)
            })
        })
        .collect();
    // replica 1 (server id 2) goes down and comes back three times under load.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        replicas[0].kill();
        std::thread::sleep(Duration::from_millis(700));
        replicas[0].restart();
    }
    // Back for good: it gets reads again once its back-off and health check pass.
    let mut conn = c.connect("app", "app_pw").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while (0..20).all(|_| server_id(&mut conn, "SELECT @@server_id") != 2) {
        assert!(std::time::Instant::now() < deadline, "the restarted replica gets no reads");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        let (reads, errors, seen) = r.join().unwrap();
        assert!(errors.is_empty(), "{} errors in {reads} reads: {:?}", errors.len(), &errors[..errors.len().min(5)]);
        assert!(reads > 100 && seen.contains_key(&3), "{reads} reads: {seen:?}");
    }
}
