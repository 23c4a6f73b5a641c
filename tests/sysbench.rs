//! sysbench's OLTP read/write workload (prepared statements, transactions) through corelay
//! in both worker modes finishes without a fatal error.

mod common;

use common::*;
use mysql::prelude::Queryable;

#[test]
fn oltp_read_write_in_both_modes() {
    let db = shared_mariadb();
    db.root().unwrap().query_drop("CREATE DATABASE IF NOT EXISTS sbtest").unwrap();
    let (ok, out) = sysbench("oltp_read_write", db.port, DB_USER, DB_PASSWORD, &["--threads=2", "prepare"]);
    assert!(ok, "prepare: {out}");
    for mode in ["thread", "fork"] {
        let c = Corelay::start(&config_for(db.addr(), &[TestUser::default()], ""), mode, 2);
        let (ok, out) = sysbench("oltp_read_write", c.port, "app", "app_pw", &["--threads=8", "--time=5", "run"]);
        assert!(ok, "{mode}: {out}\n{}", c.log());
        assert!(!out.contains("FATAL"), "{mode}: {out}");
        assert!(transactions(&out) > 50, "{mode}: {out}");
    }
    // Four times more client threads than backend connections.
    let capped = config_for(db.addr(), &[TestUser::default()], "pool_wait_timeout_ms = 30000")
        .replace("connect_timeout_ms = 1000", "connect_timeout_ms = 1000\nmax_connections = 4");
    let c = Corelay::start(&capped, "thread", 2);
    let (ok, out) = sysbench("oltp_read_write", c.port, "app", "app_pw", &["--threads=16", "--time=5", "run"]);
    assert!(ok, "capped: {out}\n{}", c.log());
    assert!(!out.contains("FATAL"), "capped: {out}");
    assert!(transactions(&out) > 50, "capped: {out}");
}
