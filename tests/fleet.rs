//! Fleets: topology from a real ZooKeeper (one per test binary, and one of its own for
//! the outage test) followed by several corelay processes, and the original system's INI
//! configuration imported (`corelay import-dbproxy`), published (`corelay zk-publish`),
//! started, and logged in to as every product user it defines.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::zookeeper::{shared_zookeeper, ZooKeeper};
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
    for key in ["zk_interval", "log_level", "server_timeout_short", "max_query_num", "Auth_IP"] {
        assert!(notes.contains(key), "{key} not reported: {notes}");
    }
    // The zk_* keys become [zookeeper], each cluster a path under zk_conf_dir.
    assert!(toml.contains("hosts = \"zk1:2181,zk2:2181\"") && toml.contains("root = \"/dbproxy/zk\""), "{toml}");
    let zk = shared_zookeeper();
    // Both clusters' primaries become the shared test server, their replicas the second.
    let (primary, second) = (db.addr().to_string(), replica.addr().to_string());
    let config = toml
        .replace("127.0.0.1:3306", &primary)
        .replace("127.0.0.1:3307", &primary)
        .replace("127.0.0.2:3306", &second)
        .replace("127.0.0.2:3307", &second)
        .replace("log_dir = \"/var/log/dbproxy\"", "log_dir = \"\"")
        .replace("admin_user = []\n", "")
        .replace("zk1:2181,zk2:2181", &zk.hosts())
        + "\n[[admin_user]]\nname = \"admin\"\npassword = \"admin_pw\"\n";
    // Seed ZooKeeper from the imported file, then start on it.
    let dir = scratch_dir("import");
    let file = dir.join("imported.toml");
    std::fs::write(&file, &config).unwrap();
    let out = Command::new(corelay_binary()).arg("zk-publish").arg("--config").arg(&file).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("cluster orders: 2 server(s) written to /dbproxy/zk/orders"), "{said}");
    let mut children = zk.client().children("/dbproxy/zk/orders");
    children.sort();
    let mut servers = vec![primary.clone(), second.clone()];
    servers.sort();
    assert_eq!(children, servers, "one child per server, named by address");
    let c = Corelay::start(&config, "thread", 2);
    wait_for(Duration::from_secs(20), "the imported clusters follow ZooKeeper", || {
        let row = zookeeper_row(&c);
        row["source"] == "zookeeper" && row["state"] == "connected" && row["outdated_clusters"] == "0"
    });
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

/// A configuration whose cluster `main` takes its servers from ZooKeeper `path` (the
/// file seeds it with `seed`); health checks every 100 ms.
fn zk_config(seed: SocketAddr, zk: &str, path: &str, cluster_extra: &str) -> String {
    config_for(seed, &[TestUser::default()], "").replace(
        "name = \"main\"\n",
        &format!("name = \"main\"\nzk_path = \"{path}\"\nhealth_interval_ms = 100\n{cluster_extra}\n"),
    ) + zk
}

fn zookeeper_row(c: &Corelay) -> HashMap<String, String> {
    admin_table(c.admin_port, "SHOW ZOOKEEPER").pop().expect("a SHOW ZOOKEEPER row")
}

/// The addresses of `servers`, sorted (as [`server_addresses`] gives them).
fn addresses(servers: &[&MariaDb]) -> Vec<String> {
    let mut all: Vec<String> = servers.iter().map(|s| s.addr().to_string()).collect();
    all.sort();
    all
}

/// The servers SHOW SERVERS lists, sorted.
fn server_addresses(c: &Corelay) -> Vec<String> {
    let mut all: Vec<String> =
        admin_table(c.admin_port, "SHOW SERVERS").into_iter().map(|r| r["address"].clone()).collect();
    all.sort();
    all
}

fn server_id(conn: &mut mysql::Conn) -> u32 {
    conn.query_first("SELECT @@server_id").unwrap().unwrap()
}

#[test]
fn three_corelays_follow_replicas_added_to_and_removed_from_zookeeper() {
    let zk = shared_zookeeper();
    let z = zk.client();
    let (primary, replica) = replicated_pair();
    let path = "/corelay-test/follow/main";
    z.put_server(&format!("{path}/primary"), primary.addr(), "primary");
    let cfg = zk_config(primary.addr(), &zk.section(""), path, "");
    let fleet = [Corelay::start(&cfg, "thread", 2), Corelay::start(&cfg, "fork", 2), Corelay::start(&cfg, "thread", 1)];
    for c in &fleet {
        wait_for(Duration::from_secs(20), "connected to ZooKeeper", || {
            let row = zookeeper_row(c);
            row["state"] == "connected" && row["source"] == "zookeeper"
        });
    }
    let mut conns: Vec<_> = fleet.iter().map(|c| c.connect("app", "app_pw").unwrap()).collect();
    let mut times = Vec::new();
    let node = format!("{path}/replica");
    let replica_addr = replica.addr().to_string();
    for change in 0..20 {
        let adding = change % 2 == 0;
        let start = Instant::now();
        if adding {
            z.put_server(&node, replica.addr(), "replica");
        } else {
            z.delete(&node);
        }
        let (want_id, listed) = if adding { (2, true) } else { (1, false) };
        for (c, conn) in fleet.iter().zip(conns.iter_mut()) {
            wait_for(Duration::from_secs(10), "every corelay lists the change", || {
                server_addresses(c).contains(&replica_addr) == listed
            });
            wait_for(Duration::from_secs(10), "reads follow the change", || server_id(conn) == want_id);
        }
        times.push(start.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "ZooKeeper change seen by all three corelays and reads moved: p50 {:.0} ms, p99 {:.0} ms (20 changes)",
        ms(times[times.len() / 2]),
        ms(times[times.len() * 99 / 100])
    );
    for c in &fleet {
        let row = zookeeper_row(c);
        assert!(row["changes"].parse::<u64>().unwrap() >= 20, "{row:?}");
        assert_eq!(row["refused"], "0", "{row:?}");
    }
    let metrics = http_get(fleet[1].metrics_port, "/metrics");
    assert!(metrics.contains("corelay_zookeeper_state{state=\"connected\"} 1"), "{metrics}");
    assert!(metrics.contains("corelay_zookeeper_changes_total"), "{metrics}");
}

#[test]
fn a_node_removed_from_zookeeper_drains_its_open_transaction_and_gets_nothing_new() {
    let zk = shared_zookeeper();
    let z = zk.client();
    let (primary, replica) = replicated_pair();
    let path = "/corelay-test/drain/main";
    z.put_server(&format!("{path}/primary"), primary.addr(), "primary");
    z.put_server(&format!("{path}/replica"), replica.addr(), "replica");
    let cfg = zk_config(primary.addr(), &zk.section(""), path, "read_only_transactions_on_replicas = true");
    let c = Corelay::start(&cfg, "fork", 2);
    let replica_addr = replica.addr().to_string();
    wait_for(Duration::from_secs(20), "the replica from ZooKeeper", || server_addresses(&c).contains(&replica_addr));
    let mut open = c.connect("app", "app_pw").unwrap();
    wait_for(Duration::from_secs(10), "reads on the replica", || server_id(&mut open) == 2);
    open.query_drop("START TRANSACTION READ ONLY").unwrap();
    assert_eq!(server_id(&mut open), 2, "the read-only transaction runs on the replica");

    z.delete(&format!("{path}/replica"));
    wait_for(Duration::from_secs(10), "the replica removed", || !server_addresses(&c).contains(&replica_addr));
    // The open transaction finishes where it started.
    assert_eq!(server_id(&mut open), 2);
    open.query_drop("COMMIT").unwrap();
    // Nothing new goes to the removed server.
    let mut fresh = c.connect("app", "app_pw").unwrap();
    for _ in 0..20 {
        assert_eq!(server_id(&mut fresh), 1);
        assert_eq!(server_id(&mut open), 1);
    }
    assert!(c.log().contains("ZooKeeper changed the topology"), "{}", c.log());
}

#[test]
fn a_bad_child_is_skipped_and_counted_and_an_emptied_path_keeps_the_last_servers() {
    let zk = shared_zookeeper();
    let z = zk.client();
    let db = shared_mariadb();
    let second = MariaDb::start();
    let path = "/corelay-test/bad/main";
    z.put_server(&format!("{path}/primary"), db.addr(), "primary");
    z.put(&format!("{path}/broken"), "{\"address\": \"10.0.0.9:3306\", \"role\": ");
    z.put(
        &format!("{path}/original"),
        &format!(r#"{{"ip":"127.0.0.1","port":{},"weight":2,"hostname":"db2"}}"#, second.port),
    );
    let cfg = zk_config(db.addr(), &zk.section(""), path, "");
    let c = Corelay::start(&cfg, "thread", 2);
    let both = addresses(&[db, &second]);
    wait_for(Duration::from_secs(20), "both servers from ZooKeeper", || server_addresses(&c) == both);
    let row = zookeeper_row(&c);
    assert_eq!(row["invalid_children"], "1", "{row:?}");
    assert!(c.log().contains(&format!("{path}/broken is not a server")), "{}", c.log());
    let servers = admin_table(c.admin_port, "SHOW SERVERS");
    let original = servers.iter().find(|s| s["address"] == second.addr().to_string()).unwrap();
    assert_eq!((original["role"].as_str(), original["weight"].as_str()), ("replica", "2"), "the original's form");
    assert!(servers.iter().all(|s| s["source"] == "zookeeper"), "{servers:?}");

    // The watcher process killed: the master starts another, which reads everything again.
    let watcher = Command::new("pgrep").args(["-P", &c.pid().to_string(), "-f", "zk-watch"]).output().unwrap();
    let pid: i32 = String::from_utf8_lossy(&watcher.stdout).trim().parse().expect("a zk-watch child of the master");
    // SAFETY: signalling a child of our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_for(Duration::from_secs(20), "the watcher restarted", || {
        let row = zookeeper_row(&c);
        row["watcher_restarts"] == "1" && row["state"] == "connected"
    });
    assert_eq!(server_addresses(&c), both);

    // Every child deleted: the last servers stay, marked outdated, and the log says so.
    for child in z.children(path) {
        z.delete(&format!("{path}/{child}"));
    }
    wait_for(Duration::from_secs(10), "the cluster marked outdated", || zookeeper_row(&c)["outdated_clusters"] == "1");
    assert_eq!(server_addresses(&c), both);
    assert!(c.log().contains("keeping its last 2 server(s), marked outdated"), "{}", c.log());
    c.connect("app", "app_pw").unwrap().query_drop("SELECT 1").unwrap();

    // An operator writes servers again.
    z.put_server(&format!("{path}/primary"), db.addr(), "primary");
    wait_for(Duration::from_secs(10), "back from outdated", || {
        zookeeper_row(&c)["outdated_clusters"] == "0" && server_addresses(&c) == [db.addr().to_string()]
    });
}

#[test]
fn corelay_started_while_zookeeper_is_down_runs_from_the_cache_file_and_catches_up() {
    let db = shared_mariadb();
    let second = MariaDb::start();
    let port = free_port();
    let dir = scratch_dir(&format!("cache-{port}"));
    let cache = dir.join("topology.toml");
    let path = "/corelay-test/cache/main";
    std::fs::write(
        &cache,
        format!(
            "zxid = 77\nread_unix_ms = 1796600000000\n\n[cluster.main]\npath = \"{path}\"\n\n\
             [[cluster.main.servers]]\naddress = \"{}\"\nrole = \"primary\"\n\n\
             [[cluster.main.servers]]\naddress = \"{}\"\nrole = \"replica\"\nweight = 3\n",
            db.addr(),
            second.addr()
        ),
    )
    .unwrap();
    let section = format!(
        "\n[zookeeper]\nhosts = \"127.0.0.1:{port}\"\nsession_timeout_ms = 4000\ncache_file = \"{}\"\n",
        cache.display()
    );
    let c = Corelay::start(&zk_config(db.addr(), &section, path, ""), "fork", 2);
    let both = addresses(&[db, &second]);
    assert_eq!(server_addresses(&c), both);
    let row = zookeeper_row(&c);
    assert_eq!((row["source"].as_str(), row["zxid"].as_str()), ("cache_file", "77"), "{row:?}");
    assert_ne!(row["state"], "connected", "{row:?}");
    assert!(c.log().contains("start from") && c.log().contains("topology.toml"), "{}", c.log());
    c.connect("app", "app_pw").unwrap().query_drop("SELECT 1").unwrap();

    // ZooKeeper comes up (on the configured port) with one server: corelay catches up and
    // rewrites the cache.
    let zk = ZooKeeper::start_on(port);
    zk.client().put_server(&format!("{path}/primary"), db.addr(), "primary");
    wait_for(Duration::from_secs(30), "caught up with ZooKeeper", || {
        server_addresses(&c) == [db.addr().to_string()] && zookeeper_row(&c)["source"] == "zookeeper"
    });
    let cached = std::fs::read_to_string(&cache).unwrap();
    assert!(!cached.contains(&second.addr().to_string()) && cached.contains(&db.addr().to_string()), "{cached}");
}

#[test]
fn zookeeper_stopped_for_30_s_under_sysbench_costs_no_statement() {
    let db = shared_mariadb();
    let second = MariaDb::start();
    db.root().unwrap().query_drop("CREATE DATABASE IF NOT EXISTS sbtest").unwrap();
    second.root().unwrap().query_drop("CREATE DATABASE IF NOT EXISTS sbtest").unwrap();
    for server in [db.port, second.port] {
        let (ok, out) = sysbench("oltp_read_only", server, DB_USER, DB_PASSWORD, &["--threads=2", "prepare"]);
        assert!(ok || out.contains("already exists"), "prepare: {out}");
    }
    let mut zk = ZooKeeper::start();
    let z = zk.client();
    let path = "/corelay-test/outage/main";
    z.put_server(&format!("{path}/primary"), db.addr(), "primary");
    z.put_server(&format!("{path}/replica"), second.addr(), "replica");
    drop(z);
    let cfg =
        zk_config(db.addr(), &zk.section(""), path, "max_replication_lag_s = 1000000\nlag_when_primary_lost_s = 0");
    let c = Corelay::start(&cfg, "fork", 2);
    let both = addresses(&[db, &second]);
    wait_for(Duration::from_secs(20), "both servers from ZooKeeper", || server_addresses(&c) == both);

    let port = c.port;
    let load = std::thread::spawn(move || {
        sysbench("oltp_read_only", port, "app", "app_pw", &["--threads=4", "--time=45", "--report-interval=0", "run"])
    });
    std::thread::sleep(Duration::from_secs(5));
    zk.kill();
    wait_for(Duration::from_secs(20), "the outage noticed", || zookeeper_row(&c)["state"] != "connected");
    // The outage itself: 30 s without ZooKeeper, the topology unchanged throughout.
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(30) {
        assert_eq!(server_addresses(&c), both);
        std::thread::sleep(Duration::from_secs(1));
    }
    zk.restart();
    wait_for(Duration::from_secs(30), "reconnected", || zookeeper_row(&c)["state"] == "connected");
    let (ok, out) = load.join().unwrap();
    assert!(ok, "{out}\n{}", c.log());
    assert!(transactions(&out) > 100, "{out}");
    assert_eq!(sysbench_figure(&out, "ignored errors:"), 0, "{out}");
    assert!(!out.contains("FATAL"), "{out}");

    // A change made after ZooKeeper is back is picked up.
    zk.client()
        .put(&format!("{path}/replica"), &format!(r#"{{"address":"{}","role":"replica","weight":5}}"#, second.addr()));
    wait_for(Duration::from_secs(10), "the change after the outage", || {
        admin_table(c.admin_port, "SHOW SERVERS")
            .iter()
            .any(|s| s["address"] == second.addr().to_string() && s["weight"] == "5")
    });
}

#[test]
fn digest_authentication_reads_what_zk_publish_wrote_and_a_wrong_password_is_said() {
    let zk = shared_zookeeper();
    let db = shared_mariadb();
    let path = "/corelay-test/auth/main";
    let section = zk.section("auth_user = \"fleet\"\nauth_password = \"fleet_pw\"");
    let cfg = zk_config(db.addr(), &section, path, "");
    let dir = scratch_dir("auth");
    let file = dir.join("corelay.toml");
    std::fs::write(&file, &cfg).unwrap();
    let out = Command::new(corelay_binary()).arg("zk-publish").arg("--config").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The nodes belong to the fleet's identity: an anonymous session may not read them.
    let anonymous = zk.client().try_children(path);
    assert!(anonymous.as_ref().is_err_and(|e| e.contains("NoAuth")), "{anonymous:?}");

    let c = Corelay::start(&cfg, "thread", 1);
    wait_for(Duration::from_secs(20), "read with the fleet's credentials", || {
        let row = zookeeper_row(&c);
        row["state"] == "connected" && row["source"] == "zookeeper"
    });
    let wrong = Corelay::start(&cfg.replace("fleet_pw", "wrong_pw"), "thread", 1);
    wait_for(Duration::from_secs(20), "a wrong password said", || zookeeper_row(&wrong)["state"] == "auth_failed");
    assert!(wrong.log().contains("check zookeeper.auth_user and auth_password"), "{}", wrong.log());
    wrong.connect("app", "app_pw").unwrap().query_drop("SELECT 1").unwrap();
}

#[test]
fn a_change_refused_while_the_file_is_broken_is_applied_by_the_next_good_reload() {
    let zk = shared_zookeeper();
    let z = zk.client();
    let db = shared_mariadb();
    let second = MariaDb::start();
    let path = "/corelay-test/refused/main";
    z.put_server(&format!("{path}/primary"), db.addr(), "primary");
    let cfg = zk_config(db.addr(), &zk.section(""), path, "");
    let c = Corelay::start(&cfg, "thread", 1);
    wait_for(Duration::from_secs(20), "following ZooKeeper", || zookeeper_row(&c)["source"] == "zookeeper");
    // The file is broken while ZooKeeper gets a replica: the change cannot load.
    let file = c.dir.join("corelay.toml");
    std::fs::write(&file, format!("{cfg}\n[[nonsense]]\n")).unwrap();
    z.put_server(&format!("{path}/replica"), second.addr(), "replica");
    wait_for(Duration::from_secs(10), "the change refused", || zookeeper_row(&c)["refused"] == "1");
    assert_eq!(server_addresses(&c), [db.addr().to_string()]);
    // Fixed and reloaded: ZooKeeper's latest servers come with it.
    std::fs::write(&file, &cfg).unwrap();
    let (ok, _, err) = mariadb_cli(c.admin_port, "admin", "admin_pw", "RELOAD");
    assert!(ok, "{err}");
    let both = addresses(&[db, &second]);
    assert_eq!(server_addresses(&c), both);
}
