//! Fleets: the original system's INI configuration imported (`corelay import-dbproxy`),
//! started, and logged in to as every product user it defines.

mod common;

use std::process::Command;

use common::*;
use mysql::prelude::Queryable;

#[test]
fn the_original_ini_imports_starts_and_lets_every_product_user_in() {
    let db = shared_mariadb();
    // The replicas' stand-in: a second server with the same users (no replication needed
    // to log in).
    let replica = MariaDb::start();
    for server in [db, &replica] {
        let mut root = server.root().unwrap();
        for (user, pw) in
            [("orders_rw", "orders_rw_pw"), ("orders_batch", "orders_batch_pw"), ("reports_ro", "reports_ro_pw")]
        {
            root.query_drop(format!(
                "CREATE USER IF NOT EXISTS {user}@'%' IDENTIFIED BY '{pw}'; GRANT ALL ON *.* TO {user}@'%'"
            ))
            .unwrap();
        }
    }
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dbproxy.ini");
    let out = Command::new(corelay_binary()).arg("import-dbproxy").arg(fixture).output().unwrap();
    let (toml, notes) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{notes}");
    // What is not carried over is said, with why.
    for key in ["zk_host", "log_level", "server_timeout_short", "max_query_num", "Auth_IP"] {
        assert!(notes.contains(key), "{key} not reported: {notes}");
    }
    assert!(!toml.contains("zk1:2181"), "{toml}");
    // Both clusters' primaries become the shared test server, their replicas the second.
    let (primary, second) = (db.addr().to_string(), replica.addr().to_string());
    let config = toml
        .replace("127.0.0.1:3306", &primary)
        .replace("127.0.0.1:3307", &primary)
        .replace("127.0.0.2:3306", &second)
        .replace("127.0.0.2:3307", &second)
        .replace("log_dir = \"/var/log/dbproxy\"", "log_dir = \"\"")
        .replace("admin_user = []\n", "")
        + "\n[[admin_user]]\nname = \"admin\"\npassword = \"admin_pw\"\n";
    let c = Corelay::start(&config, "thread", 2);
    for (user, pw, db_user) in [
        ("shop", "shop_pw", "orders_rw"),
        ("billing", "billing_pw", "orders_rw"),
        ("nightly", "nightly_pw", "orders_batch"),
        ("analyst", "analyst_pw", "reports_ro"),
    ] {
        let mut conn = c.connect(user, pw).unwrap_or_else(|e| panic!("{user}: {e}"));
        let who: Option<String> = conn.query_first("SELECT CURRENT_USER()").unwrap();
        assert!(who.unwrap_or_default().starts_with(db_user), "{user} runs as {db_user}");
        assert_eq!(err_code(&c.connect(user, "wrong").unwrap_err()), Some(1045));
    }
}
