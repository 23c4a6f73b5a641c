//! sysbench's OLTP read/write workload (prepared statements, transactions) through corelay
//! in both worker modes finishes without a fatal error.

mod common;

use std::process::Command;

use common::*;
use mysql::prelude::Queryable;

fn sysbench(port: u16, user: &str, password: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("sysbench")
        .arg("oltp_read_write")
        .args(["--db-driver=mysql", "--mysql-host=127.0.0.1", &format!("--mysql-port={port}")])
        .args([&format!("--mysql-user={user}"), &format!("--mysql-password={password}"), "--mysql-db=sbtest"])
        .args(["--tables=2", "--table-size=2000"])
        .args(args)
        .output()
        .expect("sysbench is installed");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn transactions(report: &str) -> u64 {
    report
        .lines()
        .find(|l| l.trim_start().starts_with("transactions:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn oltp_read_write_in_both_modes() {
    let db = shared_mariadb();
    db.root().unwrap().query_drop("CREATE DATABASE IF NOT EXISTS sbtest").unwrap();
    let (ok, out) = sysbench(db.port, DB_USER, DB_PASSWORD, &["--threads=2", "prepare"]);
    assert!(ok, "prepare: {out}");
    for mode in ["thread", "fork"] {
        let c = Corelay::start(&config_for(db.addr(), &[TestUser::default()], ""), mode, 2);
        let (ok, out) = sysbench(c.port, "app", "app_pw", &["--threads=8", "--time=5", "run"]);
        assert!(ok, "{mode}: {out}\n{}", c.log());
        assert!(!out.contains("FATAL"), "{mode}: {out}");
        assert!(transactions(&out) > 50, "{mode}: {out}");
    }
    // Four times more client threads than backend connections.
    let capped = config_for(db.addr(), &[TestUser::default()], "pool_wait_timeout_ms = 30000")
        .replace("connect_timeout_ms = 1000", "connect_timeout_ms = 1000\nmax_connections = 4");
    let c = Corelay::start(&capped, "thread", 2);
    let (ok, out) = sysbench(c.port, "app", "app_pw", &["--threads=16", "--time=5", "run"]);
    assert!(ok, "capped: {out}\n{}", c.log());
    assert!(!out.contains("FATAL"), "capped: {out}");
    assert!(transactions(&out) > 50, "capped: {out}");
}
