//! What operators read: `checkproxystatus` on the proxy port, the admin port, `/metrics`
//! and `SHOW LATENCY`, all from the shards' status slots, checked against a known workload
//! with real clients (the `mariadb` CLI, the mysql crate, Python's prometheus_client).

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use mysql::prelude::Queryable;
use mysql::Conn;

/// A cluster of `primary` and `replica`; users app_a and app_b (same db user) and ops.
fn config(primary: std::net::SocketAddr, replica: std::net::SocketAddr) -> String {
    let users = [
        TestUser { name: "app_a", ..TestUser::default() },
        TestUser { name: "app_b", ..TestUser::default() },
        TestUser { name: "ops", extra: "status_queries = true", ..TestUser::default() },
    ];
    config_for(primary, &users, "status_interval_ms = 100").replace(
        "[[db_user]]",
        &format!(
            "[[cluster.server]]\naddress = \"{replica}\"\nrole = \"replica\"\nconnect_timeout_ms = 1000\n\n[[db_user]]"
        ),
    )
}

/// The data rows of a `mariadb --batch` result whose header starts with `first_column`.
fn rows<'a>(out: &'a str, first_column: &str) -> Vec<Vec<&'a str>> {
    out.lines()
        .skip_while(|l| l.split('\t').next() != Some(first_column))
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect()
}

/// `checkproxystatus type1`, `type2` and `type3` through the mariadb CLI as user ops.
fn proxy_status(c: &Corelay) -> [Vec<Vec<String>>; 3] {
    let mut out: [Vec<Vec<String>>; 3] = Default::default();
    for (k, slot) in out.iter_mut().enumerate() {
        let (ok, text, err) = mariadb_cli(c.port, "ops", "app_pw", &format!("checkproxystatus type{}\n", k + 1));
        assert!(ok, "checkproxystatus type{} failed: {err}", k + 1);
        *slot = rows(&text, "Pid").into_iter().map(|r| r.into_iter().map(String::from).collect()).collect();
    }
    out
}

/// Sessions of app_a holding the primary (a transaction) and of app_b holding the replica
/// (`dbconnect`), and what the three outputs must say about them.
fn expect_counts(c: &Corelay, primary: &str, replica: &str, a: usize, b: usize) -> Result<(), String> {
    let [t1, t2, t3] = proxy_status(c);
    let find =
        |rows: &[Vec<String>], key: &str| rows.iter().find(|r| r.get(1).map(String::as_str) == Some(key)).cloned();
    let want1 = |name: &str, n: usize, m: &str, s: &str| -> Result<(), String> {
        let key = format!("{name}#127.0.0.1");
        match find(&t1, &key) {
            None if n == 0 => Ok(()),
            None => Err(format!("type1 has no row {key}: {t1:?}")),
            Some(r) if r[2] == n.to_string() && r[3] == n.to_string() && r[4] == m && r[5] == s => Ok(()),
            Some(r) => Err(format!("type1 {key}: {r:?}, want {n} {n} {m:?} {s:?}")),
        }
    };
    want1("app_a", a, if a > 0 { primary } else { "" }, "")?;
    want1("app_b", b, "", if b > 0 { replica } else { "" })?;
    for (key, n) in [(format!("M:{primary}#app_a#127.0.0.1"), a), (format!("S:{replica}#app_b#127.0.0.1"), b)] {
        match find(&t2, &key) {
            None if n == 0 => {}
            Some(r) if r[2] == n.to_string() => {}
            other => return Err(format!("type2 {key}: {other:?}, want {n}; all: {t2:?}")),
        }
    }
    if t3.len() != 2 {
        return Err(format!("type3 has {} rows, want one per shard: {t3:?}", t3.len()));
    }
    // Conn_Pool_Size: "app_db@server W:open/idle;...": busy = open - idle.
    let busy = |side: &str, server: &str| -> usize {
        t3.iter()
            .flat_map(|r| r[2].split(';').map(str::to_string).collect::<Vec<_>>())
            .filter(|p| p.starts_with(&format!("{DB_USER}@{server} {side}:")))
            .map(|p| {
                let v = p.rsplit(':').next().unwrap_or("0/0").to_string();
                let (o, i) = v.split_once('/').unwrap_or(("0", "0"));
                o.parse::<usize>().unwrap_or(0) - i.parse::<usize>().unwrap_or(0)
            })
            .sum()
    };
    if busy("W", primary) != a || busy("R", replica) != b {
        return Err(format!("type3 busy W {} R {}, want {a} {b}: {t3:?}", busy("W", primary), busy("R", replica)));
    }
    Ok(())
}

fn eventually(what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match check() {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn open_a(c: &Corelay) -> Conn {
    let mut conn = c.connect("app_a", "app_pw").unwrap();
    conn.query_drop("BEGIN").unwrap();
    conn.query_drop("SELECT 1").unwrap();
    conn
}

fn open_b(c: &Corelay, replica: &str) -> Conn {
    let mut conn = c.connect("app_b", "app_pw").unwrap();
    conn.query_drop(format!("dbconnect {replica}")).unwrap();
    conn
}

fn alive(conn: &mut Conn) -> bool {
    conn.query_drop("SELECT 1").is_ok()
}

#[test]
fn checkproxystatus_counts_a_known_workload_in_both_modes() {
    let (primary, replica) = replicated_pair();
    let (p, r) = (primary.addr().to_string(), replica.addr().to_string());
    for mode in ["thread", "fork"] {
        let c = Corelay::start(&config(primary.addr(), replica.addr()), mode, 2);
        let mut a: Vec<Conn> = (0..10).map(|_| open_a(&c)).collect();
        let mut b: Vec<Conn> = (0..5).map(|_| open_b(&c, &r)).collect();
        eventually(&format!("{mode}: 10 + 5 sessions"), || expect_counts(&c, &p, &r, 10, 5));

        if mode == "fork" {
            let before = c.shard_pids();
            assert_eq!(before.len(), 2);
            // SAFETY: killing a shard process of the corelay we started.
            unsafe { libc::kill(before[0] as i32, libc::SIGKILL) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.shard_pids().len() != 2 || c.shard_pids().contains(&before[0]) {
                assert!(Instant::now() < deadline, "shard not respawned: {}", c.log());
                std::thread::sleep(Duration::from_millis(50));
            }
            a.retain_mut(alive);
            b.retain_mut(alive);
            let (la, lb) = (a.len(), b.len());
            assert!(la + lb < 15, "the killed shard served some of the sessions");
            eventually("totals after the respawn", || expect_counts(&c, &p, &r, la, lb));
            // Sessions that died are opened again: the totals come back.
            a.extend((a.len()..10).map(|_| open_a(&c)).collect::<Vec<_>>());
            b.extend((b.len()..5).map(|_| open_b(&c, &r)).collect::<Vec<_>>());
            eventually("totals after reconnecting", || expect_counts(&c, &p, &r, 10, 5));
        }
        drop(a);
        drop(b);
        eventually(&format!("{mode}: all closed"), || expect_counts(&c, &p, &r, 0, 0));
    }
}

#[test]
fn checkproxystatus_can_be_turned_off_and_rejects_unknown_forms() {
    let db = shared_mariadb();
    let c = Corelay::start(&config_for(db.addr(), &[TestUser::default()], "status_queries = false"), "thread", 1);
    let (ok, _, err) = mariadb_cli(c.port, "app", "app_pw", "checkproxystatus type1\n");
    assert!(!ok && err.contains("ERROR 1227") && err.contains("status_queries"), "{err}");
    let users = [
        TestUser { extra: "status_queries = true", ..TestUser::default() },
        TestUser { name: "plain", password: "plain_pw", ..TestUser::default() },
    ];
    let c = Corelay::start(&config_for(db.addr(), &users, "status_interval_ms = 50"), "thread", 1);
    let (ok, _, err) = mariadb_cli(c.port, "app", "app_pw", "checkproxystatus type7\n");
    assert!(!ok && err.contains("ERROR 1064") && err.contains("type1, type2 or type3"), "{err}");
    // Only users given status_queries = true see every user, address and server.
    let (ok, _, err) = mariadb_cli(c.port, "plain", "plain_pw", "checkproxystatus type1\n");
    assert!(!ok && err.contains("ERROR 1227") && err.contains("status_queries = true"), "{err}");
    let mut conn = c.connect("app", "app_pw").unwrap();
    eventually("app sees the sessions", || {
        let rows: Vec<String> = conn
            .query_map("checkproxystatus type1", |r: mysql::Row| r.get::<String, _>(1).unwrap())
            .map_err(|e| e.to_string())?;
        match rows.iter().any(|r| r == "app#127.0.0.1") {
            true => Ok(()),
            false => Err(format!("{rows:?}")),
        }
    });
}

/// A long user name survives the length encoding (the original broke rows over 250 bytes).
#[test]
fn long_values_are_length_encoded() {
    let db = shared_mariadb();
    let long = "u".repeat(300);
    let user = TestUser { name: &long, extra: "status_queries = true", ..TestUser::default() };
    let cfg = config_for(db.addr(), &[user], "status_interval_ms = 50");
    let c = Corelay::start(&cfg, "thread", 1);
    let mut conn = c.connect(&long, "app_pw").unwrap();
    eventually("a 300-byte user name", || {
        let rows: Vec<(String, String, u64)> = conn
            .query_map("checkproxystatus type1", |r: mysql::Row| {
                (r.get::<String, _>(0).unwrap(), r.get::<String, _>(1).unwrap(), r.get::<u64, _>(2).unwrap())
            })
            .map_err(|e| e.to_string())?;
        match rows.iter().find(|r| r.1 == format!("{long}#127.0.0.1")) {
            Some(r) if r.2 == 1 => Ok(()),
            _ => Err(format!("{rows:?}")),
        }
    });
}

fn admin(c: &Corelay, sql: &str) -> (bool, String, String) {
    mariadb_cli(c.admin_port, "admin", "admin_pw", sql)
}

/// Whether a new client gets corelay's greeting within `wait`.
fn greets(port: u16, wait: Duration) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    s.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 5];
    s.read_exact(&mut b).is_ok() && b[4] == 10
}

#[test]
fn admin_port_answers_the_mariadb_cli() {
    let db = shared_mariadb();
    let mut c = Corelay::start(&config_for(db.addr(), &[TestUser::default()], "status_interval_ms = 50"), "thread", 2);
    let mut conns: Vec<Conn> = (0..3).map(|_| c.connect("app", "app_pw").unwrap()).collect();
    for conn in &mut conns {
        conn.query_drop("SELECT 1").unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));

    let (ok, out, err) = admin(&c, "SHOW SHARDS\n");
    assert!(ok, "{err}");
    let shards = rows(&out, "shard");
    assert_eq!(shards.len(), 2, "{out}");
    assert_eq!(shards.iter().map(|r| r[6].parse::<u32>().unwrap()).sum::<u32>(), 3, "clients per shard: {out}");

    let (ok, out, err) = admin(&c, "SHOW USERS\n");
    assert!(ok, "{err}");
    assert_eq!(rows(&out, "user"), vec![vec!["app", "127.0.0.1", "3", "0", "1000"]], "{out}");

    let (ok, out, _) = admin(&c, "SHOW SERVERS\n");
    let servers = rows(&out, "id");
    assert!(ok && servers.len() == 1 && servers[0][2] == db.addr().to_string(), "{out}");
    assert_eq!(servers[0][5], "up", "the master checked the primary: {out}");

    let (ok, out, _) = admin(&c, "SHOW POOLS\n");
    assert!(ok && !rows(&out, "shard").is_empty(), "{out}");

    let (ok, out, _) = admin(&c, "SHOW STATS\n");
    let stats = rows(&out, "name");
    let stat = |n: &str| stats.iter().find(|r| r[0] == n).map(|r| r[1].parse::<u64>().unwrap());
    // The harness's readiness probe is a client too.
    assert!(ok && stat("clients_accepted") >= Some(3) && stat("statements_read") >= Some(3), "{out}");

    let (ok, out, _) = admin(&c, "SHOW LATENCY\n");
    let lat = rows(&out, "class");
    assert!(ok && lat.iter().any(|r| r[0] == "read" && r[1] == "all" && r[2].parse::<u64>().unwrap() >= 3), "{out}");

    let (ok, _, err) = admin(&c, "RELOAD\n");
    assert!(ok, "an unchanged file reloads: {err}");
    assert!(c.log().contains("admin RELOAD: configuration version 1 loaded"), "{}", c.log());
    let (ok, _, err) = admin(&c, "SHOW NOTHING\n");
    assert!(!ok && err.contains("ERROR 1064") && err.contains("SHOW SHARDS"), "{err}");
    let (ok, _, err) = mariadb_cli(c.admin_port, "admin", "wrong", "SHOW SHARDS\n");
    assert!(!ok && err.contains("ERROR 1045"), "{err}");
    let (ok, _, err) = mariadb_cli(c.admin_port, "app", "app_pw", "SHOW SHARDS\n");
    assert!(!ok && err.contains("ERROR 1045"), "product users are not admin users: {err}");

    // PAUSE: new clients wait in the backlog; open sessions go on. RESUME lets them in.
    let (ok, _, err) = admin(&c, "PAUSE\n");
    assert!(ok, "{err}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!greets(c.port, Duration::from_millis(500)), "a paused corelay greets nobody");
    conns[0].query_drop("SELECT 1").unwrap();
    let (ok, _, err) = admin(&c, "RESUME\n");
    assert!(ok, "{err}");
    assert!(greets(c.port, Duration::from_secs(2)));

    drop(conns);
    let (ok, _, err) = admin(&c, "SHUTDOWN\n");
    assert!(ok, "{err}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(st)) = c.child.try_wait() {
            assert_eq!(st.code(), Some(0), "{}", c.log());
            break;
        }
        assert!(Instant::now() < deadline, "SHUTDOWN did not stop corelay: {}", c.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn admin_port_refuses_addresses_outside_its_allow_list() {
    let db = shared_mariadb();
    let c =
        Corelay::start(&config_for(db.addr(), &[TestUser::default()], "admin_allow = [\"10.0.0.0/8\"]"), "thread", 1);
    let (ok, _, err) = admin(&c, "SHOW SHARDS\n");
    assert!(!ok && err.contains("ERROR 1130") && err.contains("admin_allow"), "{err}");
}

#[test]
fn metrics_parse_and_match_the_admin_port() {
    let db = shared_mariadb();
    let c = Corelay::start(&config_for(db.addr(), &[TestUser::default()], ""), "fork", 2);
    let mut conn = c.connect("app", "app_pw").unwrap();
    for i in 0..50 {
        conn.query_drop(format!("SELECT {i}")).unwrap();
    }
    conn.query_drop("DO 1").unwrap();
    drop(conn);
    std::thread::sleep(Duration::from_millis(300));
    let script = format!(
        r#"
import json, urllib.request
from prometheus_client.parser import text_string_to_metric_families
text = urllib.request.urlopen("http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
out = {{}}
for fam in text_string_to_metric_families(text):
    for s in fam.samples:
        key = s.name + "".join("," + k + "=" + v for k, v in sorted(s.labels.items()) if k not in ("shard", "le"))
        if s.name.endswith("_bucket"):
            key += ",le=" + s.labels["le"]
        out[key] = out.get(key, 0) + s.value
print(json.dumps(out))
"#,
        port = c.metrics_port
    );
    let metrics: std::collections::HashMap<String, f64> = parse_json_numbers(&python(&script));
    let (ok, out, err) = admin(&c, "SHOW STATS\n");
    assert!(ok, "{err}");
    let stats = rows(&out, "name");
    let stat = |n: &str| stats.iter().find(|r| r[0] == n).map(|r| r[1].parse::<f64>().unwrap()).unwrap();
    let metric = |n: &str| *metrics.get(n).unwrap_or_else(|| panic!("no {n} in {metrics:?}"));
    assert_eq!(metric("corelay_commands_total"), stat("commands"));
    assert_eq!(metric("corelay_clients_accepted_total"), stat("clients_accepted"));
    assert_eq!(metric("corelay_statements_total,class=read"), stat("statements_read"));
    assert!(metric("corelay_statements_total,class=read") >= 50.0);
    assert_eq!(metric("corelay_statements_total,class=write"), stat("statements_write"));
    assert_eq!(metric("corelay_bytes_from_backends_total"), stat("bytes_from_backends"));
    // Histograms: the +Inf bucket is the count, and buckets are cumulative.
    let count = metric("corelay_statement_duration_seconds_count,class=read");
    assert_eq!(count, stat("statements_read"));
    assert_eq!(metric("corelay_statement_duration_seconds_bucket,class=read,le=+Inf"), count);
    assert!(metric("corelay_statement_duration_seconds_bucket,class=read,le=0.001") <= count);
    assert_eq!(metric(&format!("corelay_server_up,role=primary,server={}", db.addr())), 1.0);
    let served = metric(&format!("corelay_server_duration_seconds_count,server={}", db.addr()));
    let all = stat("statements_read") + stat("statements_write") + stat("statements_other");
    assert!(served >= 51.0 && served <= all, "server histogram {served}, statements {all}");
}

/// Reads a flat JSON object of numbers (what the script above prints).
fn parse_json_numbers(s: &str) -> std::collections::HashMap<String, f64> {
    let body = s.trim().trim_start_matches('{').trim_end_matches('}');
    let mut out = std::collections::HashMap::new();
    for part in body.split(", \"") {
        let part = part.trim_start_matches('"');
        if let Some((k, v)) = part.rsplit_once("\": ") {
            out.insert(k.to_string(), v.parse().unwrap_or(f64::NAN));
        }
    }
    out
}

#[test]
fn show_latency_agrees_with_the_client() {
    let db = shared_mariadb();
    let c = Corelay::start(&config_for(db.addr(), &[TestUser::default()], ""), "thread", 1);
    let mut conn = c.connect("app", "app_pw").unwrap();
    let mut client_us = Vec::new();
    let mut slept_us = Vec::new();
    for i in 0..300u64 {
        let ms = 1 + (i * 7919) % 25;
        slept_us.push(ms * 1000);
        let t = Instant::now();
        // SLEEP() is routed as a write (it must not go to a replica), so these are the
        // write class's only statements.
        conn.query_drop(format!("SELECT SLEEP({})", ms as f64 / 1000.0)).unwrap();
        client_us.push(t.elapsed().as_micros() as u64);
    }
    client_us.sort_unstable();
    slept_us.sort_unstable();
    let q = |v: &[u64], p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1] as f64;
    let (ok, out, err) = admin(&c, "SHOW LATENCY\n");
    assert!(ok, "{err}");
    let lat = rows(&out, "class");
    let read = lat.iter().find(|r| r[0] == "write" && r[1] == "all").unwrap();
    let count: u64 = read[2].parse().unwrap();
    assert_eq!(count, 300, "{out}");
    for (col, p) in [(3, 0.5), (4, 0.9), (5, 0.99)] {
        let ours: f64 = read[col].parse().unwrap();
        let theirs = q(&client_us, p);
        let slept = q(&slept_us, p);
        // corelay measures inside the client's time and around the server's: at most the
        // client's value plus the bucket error, at least what the server slept less the
        // bucket error. (A busy test host stretches the client's times, never the sleeps,
        // so the lower bound is the sleep and not the client's time less a guess.)
        assert!(ours <= theirs * 1.02 + 100.0, "p{p}: corelay {ours} µs > client {theirs} µs");
        assert!(ours >= slept * 0.98, "p{p}: corelay {ours} µs < slept {slept} µs");
    }
}

/// The `Total count` of an `.hgrm` file, after checking that its rows are ordered.
fn hgrm_total(text: &str) -> u64 {
    let mut last = (0.0f64, 0.0f64);
    let mut rows = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.contains("Percentile")) {
        let f: Vec<f64> = line.split_whitespace().map(|v| v.parse().unwrap()).collect();
        assert!(f.len() == 3 || f.len() == 4, "row {line:?}");
        assert!(f[0] >= last.0 && f[1] >= last.1, "rows go up: {line:?} after {last:?}");
        last = (f[0], f[1]);
        rows += 1;
    }
    let total = text.lines().find(|l| l.contains("Total count")).expect("a Total count line");
    let n: u64 = total.rsplit('=').next().unwrap().trim().trim_end_matches(']').trim().parse().unwrap();
    assert!(n == 0 || rows > 1, "{text}");
    n
}

#[test]
fn report_writes_an_hgrm_and_an_svg_and_intervals_go_to_files() {
    let db = shared_mariadb();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("histogram_dir = \"{}\"\nhistogram_interval_s = 1", dir.path().join("hgrm").display());
    let c = Corelay::start(&config_for(db.addr(), &[TestUser::default()], &extra), "thread", 2);
    let mut conn = c.connect("app", "app_pw").unwrap();
    for i in 0..400 {
        conn.query_drop(format!("SELECT {i}")).unwrap();
    }
    drop(conn);
    std::thread::sleep(Duration::from_millis(2500));
    let (_, out, _) = admin(&c, "SHOW STATS\n");
    let reads: u64 = rows(&out, "name").iter().find(|r| r[0] == "statements_read").unwrap()[1].parse().unwrap();

    let out_dir = dir.path().join("report");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_corelay"))
        .args([
            "report",
            "--admin",
            &format!("127.0.0.1:{}", c.admin_port),
            "--user",
            "admin",
            "--password",
            "admin_pw",
        ])
        .args(["--class", "read", "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let hgrm = std::fs::read_to_string(out_dir.join("corelay-latency-read.hgrm")).unwrap();
    assert_eq!(hgrm_total(&hgrm), reads);
    let svg = out_dir.join("corelay-latency-read.svg");
    let checked = python(&format!(
        "import xml.etree.ElementTree as E; r = E.parse('{}').getroot(); print(r.tag, len(r.findall('{{http://www.w3.org/2000/svg}}polyline')))",
        svg.display()
    ));
    assert_eq!(checked.trim(), "{http://www.w3.org/2000/svg}svg 1", "{checked}");
    let png = dir.path().join("plot.png");
    let rendered = std::process::Command::new("rsvg-convert").arg(&svg).arg("-o").arg(&png).status();
    assert!(rendered.expect("rsvg-convert is installed (librsvg2-bin)").success());
    assert_eq!(&std::fs::read(&png).unwrap()[..4], b"\x89PNG");

    // Every interval's file counts what that interval added: together at most the total.
    let files: Vec<_> = std::fs::read_dir(dir.path().join("hgrm"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("-read.hgrm"))
        .collect();
    assert!(files.len() >= 2, "{files:?}");
    let sum: u64 = files.iter().map(|p| hgrm_total(&std::fs::read_to_string(p).unwrap())).sum();
    assert!(sum >= 400 && sum <= reads, "intervals add up to {sum}, {reads} reads in all");
}
