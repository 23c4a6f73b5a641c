//! `GET /status` and `/status.json`: the page in a real browser (headless Chromium) with a
//! primary and a replica under load, a lagging replica shown as lagging; the JSON equal to
//! the admin port's answers; names from the configuration and SQL shown as text, never run.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use mysql::prelude::Queryable;

fn pair() -> &'static (MariaDb, MariaDb) {
    static PAIR: OnceLock<(MariaDb, MariaDb)> = OnceLock::new();
    PAIR.get_or_init(replicated_pair)
}

const EVIL: &str = "<script>alert(1)</script>";

fn start() -> Corelay {
    let (primary, replica) = pair();
    let evil = TestUser { name: EVIL, password: "evil_pw", ..TestUser::default() };
    let cfg = config_for(primary.addr(), &[TestUser::default(), evil], "").replace(
        "[[db_user]]",
        &format!("[[cluster.server]]\naddress = \"{}\"\nrole = \"replica\"\n\n[[db_user]]", replica.addr()),
    );
    let cfg = cfg.replace(
        "name = \"main\"",
        "name = \"main\"\nhealth_interval_ms = 200\nwrite_time_interval_ms = 0\nmax_replication_lag_s = 5",
    );
    let cfg = cfg.replace("[proxy]\n", "[proxy]\nstatus_interval_ms = 200\n");
    Corelay::start(&cfg, "thread", 2)
}

fn status_json(c: &Corelay) -> serde_json::Value {
    serde_json::from_str(&http_get(c.metrics_port, "/status.json")).expect("/status.json is JSON")
}

fn server_state(c: &Corelay, address: &str) -> String {
    let v = status_json(c);
    let servers = v["servers"].as_array().cloned().unwrap_or_default();
    let s = servers.iter().find(|s| s["address"] == address).cloned().unwrap_or_default();
    s["state"].as_str().unwrap_or_default().to_string()
}

/// Runs Chromium headless with `args` and the page's URL; returns (stdout, stderr).
fn chromium(args: &[&str], url: &str) -> (String, String) {
    let mut child = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--enable-logging=stderr"])
        .args(["--v=0", "--no-first-run", "--hide-scrollbars"])
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium (Debian's chromium package; .ci/run installs it)");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The rows of the page's table `id` (the header row left out).
fn table_rows(dom: &str, id: &str) -> Vec<String> {
    let start = dom.find(&format!("<table id=\"{id}\">")).unwrap_or_else(|| panic!("no table {id}"));
    let end = start + dom[start..].find("</table>").expect("a closed table");
    dom[start..end].split("<tr").skip(2).map(String::from).collect()
}

#[test]
fn the_page_in_a_real_browser_shows_a_lagging_replica() {
    let c = start();
    let (primary, replica) = pair();
    let (p_addr, r_addr) = (primary.addr().to_string(), replica.addr().to_string());
    let mut setup = c.connect("app", "app_pw").unwrap();
    setup.query_drop("CREATE TABLE IF NOT EXISTS page_w (id INT AUTO_INCREMENT PRIMARY KEY, v INT)").unwrap();
    wait_for(Duration::from_secs(30), "the replica up", || server_state(&c, &r_addr) == "up");

    // Load: reads and writes from four sessions for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|k| {
            let (stop, mut conn) = (stop.clone(), c.connect("app", "app_pw").unwrap());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _: Option<i64> = conn.query_first("SELECT COUNT(*) FROM page_w").unwrap();
                    if k == 0 {
                        conn.query_drop("INSERT INTO page_w (v) VALUES (1)").unwrap();
                    }
                }
            })
        })
        .collect();

    // The replica stops applying, the primary moves on: the replica lags.
    replica.root().unwrap().query_drop("STOP SLAVE SQL_THREAD").unwrap();
    setup.query_drop("INSERT INTO page_w (v) VALUES (2)").unwrap();
    wait_for(Duration::from_secs(30), "the replica shown lagging", || server_state(&c, &r_addr) == "lagging");

    wait_for(Duration::from_secs(30), "statements per second on the primary", || {
        let v = status_json(&c);
        let servers = v["servers"].as_array().cloned().unwrap_or_default();
        servers.iter().any(|s| s["address"] == p_addr.as_str() && s["statements_per_s"].as_u64() > Some(0))
    });
    let url = format!("http://127.0.0.1:{}/status", c.metrics_port);
    let (dom, log) = chromium(&["--dump-dom"], &url);
    let shards = table_rows(&dom, "shards");
    assert_eq!(shards.len(), 2, "a row per shard");
    let servers = table_rows(&dom, "servers");
    assert_eq!(servers.len(), 2, "both servers");
    let row_of = |addr: &str| servers.iter().find(|r| r.contains(addr)).cloned().unwrap_or_default();
    assert!(row_of(&r_addr).starts_with(" class=\"lagging\""), "{}", row_of(&r_addr));
    assert!(row_of(&r_addr).contains("replication stopped"), "the reason: {}", row_of(&r_addr));
    assert!(row_of(&p_addr).starts_with(" class=\"up\""), "{}", row_of(&p_addr));
    assert!(dom.contains("<svg"), "the latency plot");
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");

    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("status.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&[&format!("--screenshot={}", shot.display()), "--window-size=2000,2200"], &url);
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{} bytes", png.len());

    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    replica.root().unwrap().query_drop("START SLAVE SQL_THREAD").unwrap();
}

/// A JSON value as the mariadb client prints it.
fn as_cli(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "NULL".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn json_agrees_with_the_admin_port_and_names_are_text() {
    let c = start();
    let mut evil = c.connect(EVIL, "evil_pw").unwrap();
    evil.query_drop("SELECT 1 AS `<script>alert(2)</script>`").unwrap();
    assert!(evil.query_drop("SELECT * FROM page_no_such_table").is_err());
    wait_for(Duration::from_secs(30), "the server's error counted", || {
        let servers = status_json(&c)["servers"].as_array().cloned().unwrap_or_default();
        servers.iter().map(|s| s["errors"].as_u64().unwrap_or(0)).sum::<u64>() >= 1
    });

    // The users table is rebuilt every status interval.
    wait_for(Duration::from_secs(30), "the user in /status.json", || {
        status_json(&c)["users"].as_array().is_some_and(|u| u.iter().any(|r| r["user"] == EVIL))
    });
    let page = http_get(c.metrics_port, "/status");
    assert!(!page.contains("<script"), "the page has no script at all");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "the user name as text");
    assert!(page.contains("&lt;script&gt;alert(2)&lt;/script&gt;"), "the statement's text as text");

    // The same moment (nothing runs): the JSON and the admin port say the same.
    let json = status_json(&c);
    let shards = admin_table(c.admin_port, "SHOW SHARDS");
    let servers = admin_table(c.admin_port, "SHOW SERVERS");
    let stats = admin_table(c.admin_port, "SHOW STATS");
    let j_shards = json["shards"].as_array().unwrap();
    assert_eq!(j_shards.len(), shards.len());
    for (j, s) in j_shards.iter().zip(&shards) {
        for col in ["shard", "pid", "tid", "cpu", "respawns", "config_version"] {
            assert_eq!(j[col].to_string(), s[col], "shard {col}");
        }
    }
    let j_servers = json["servers"].as_array().unwrap();
    assert_eq!(j_servers.len(), servers.len());
    for (j, s) in j_servers.iter().zip(&servers) {
        for col in ["address", "role", "state", "max_connections", "errors", "reason"] {
            assert_eq!(as_cli(&j[col]), s[col], "{col}");
        }
    }
    let j_stats = json["stats"].as_array().unwrap();
    assert_eq!(j_stats.len(), stats.len());
    for (j, s) in j_stats.iter().zip(&stats) {
        assert_eq!(j["name"], s["name"].as_str());
        let (a, b) = (j["value"].as_f64().unwrap_or(0.0), s["value"].parse::<f64>().unwrap_or(0.0));
        // The admin sessions this test opened count too.
        assert!((a - b).abs() <= 16.0, "{}: {a} vs {b}", s["name"]);
    }
    assert_eq!(json["process"]["shards"], 2);
    assert!(j_shards.iter().all(|s| s["state"] == "up" && s["commands_per_s"].is_u64()), "{j_shards:?}");
    assert_eq!(json["process"]["worker_mode"], "thread");
}
