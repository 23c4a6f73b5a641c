//! The differential conformance suite (tests/conformance/): the same session scripts run
//! on a direct connection and through corelay, in the text and the binary protocol, with
//! two sessions taking turns on one backend connection and a leak check after each script.
//! Everything a client sees must be the same: with multiplexing (apart from the
//! differences the README documents) and, for a user with `multiplex = false`, without
//! exception.

mod common;

use std::process::Command;

use common::*;
use mysql::prelude::Queryable;

const DB_USER_HERE: &str = "conformance";
const PASSWORD: &str = "conformance_pw";

/// Runs tests/conformance/run.py against corelay as `user` in schema `db`; returns its
/// output, and whether every script ran the same.
fn run_suite(port: u16, user: &str, password: &str, db: &str, strict: bool) -> (bool, String) {
    let server = shared_mariadb().addr().port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance/run.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .args(["--direct", &format!("127.0.0.1:{server}:{DB_USER_HERE}:{PASSWORD}")])
        .args(["--proxy", &format!("127.0.0.1:{port}:{user}:{password}")])
        .args(["--root", &format!("127.0.0.1:{server}:root:")])
        .args(["--db", db]);
    if strict {
        cmd.arg("--strict");
    }
    let out = cmd.output().expect("python3 runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn sessions_see_through_corelay_what_they_see_direct() {
    let db = shared_mariadb();
    db.root()
        .unwrap()
        .query_drop(format!(
            "CREATE USER IF NOT EXISTS {DB_USER_HERE}@'%' IDENTIFIED BY '{PASSWORD}'; \
             GRANT ALL ON *.* TO {DB_USER_HERE}@'%' WITH GRANT OPTION"
        ))
        .unwrap();
    // One shard and three backend connections: two sessions that hold nothing take turns
    // on one connection; a third (the leak check) finds one free while both hold theirs.
    let config = format!(
        "[proxy]\npool_wait_timeout_ms = 10000\n\n[[cluster]]\nname = \"main\"\n{MONITOR}\n[[cluster.server]]\n\
         address = \"{}\"\nrole = \"primary\"\nmax_connections = 6\n\n[[db_user]]\nname = \"{DB_USER_HERE}\"\n\
         password = \"{PASSWORD}\"\ncluster = \"main\"\n\n[[user]]\nname = \"app\"\npassword = \"app_pw\"\n\
         db_user = \"{DB_USER_HERE}\"\n\n[[user]]\nname = \"solo\"\npassword = \"solo_pw\"\n\
         db_user = \"{DB_USER_HERE}\"\nmultiplex = false\n\n[[admin_user]]\nname = \"admin\"\npassword = \"admin_pw\"\n",
        db.addr()
    );
    let c = Corelay::start(&config, "thread", 1);
    let port = c.port;
    // The two users' runs go side by side, each in its own schemas.
    let solo = std::thread::spawn(move || run_suite(port, "solo", "solo_pw", "conformance_solo", true));
    let (same, out) = run_suite(port, "app", "app_pw", "conformance_app", false);
    let (solo_same, solo_out) = solo.join().unwrap();
    eprintln!("multiplexed:\n{out}\nmultiplex = false:\n{solo_out}");
    assert!(same, "through corelay (multiplexed) a session saw something else:\n{out}");
    assert!(solo_same, "through corelay (multiplex = false) a session saw something else:\n{solo_out}");
    let count = |o: &str| o.lines().last().unwrap_or_default().to_string();
    assert!(count(&out).contains(" 0 differ"), "{out}");
    assert!(count(&solo_out).contains(" 0 skipped"), "{solo_out}");
}
