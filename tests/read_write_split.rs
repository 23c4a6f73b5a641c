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

    // Locking reads and transactions stay on the primary.
    assert_eq!(server_id(&mut conn, "SELECT @@server_id FROM rw WHERE id = 1 FOR UPDATE"), 1);
    conn.query_drop("START TRANSACTION").unwrap();
    assert_eq!(server_id(&mut conn, sid), 1, "inside a transaction");
    conn.query_drop("COMMIT").unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(server_id(&mut conn, sid), 2);

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
