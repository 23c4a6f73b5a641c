//! A storm of client connections: 10,000 arrive at once, all are greeted and logged in,
//! other clients are still served meanwhile, and everything is cleaned up when they go.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use mysql::prelude::Queryable;

fn clients_open(c: &Corelay) -> u64 {
    let (ok, out, err) = mariadb_cli(c.admin_port, "admin", "admin_pw", "SHOW STATS\n");
    assert!(ok, "{err}");
    out.lines().find_map(|l| l.strip_prefix("client_connections\t")).unwrap().parse().unwrap()
}

#[test]
fn ten_thousand_connections_at_once() {
    const N: usize = 10_000;
    let user = TestUser { max_connections: 20_000, ..TestUser::default() };
    // One address opens them all at once: a legitimate storm, so the per-address cap on
    // unfinished logins is off here (tests/security.rs checks the cap).
    let cfg = config_for(
        shared_mariadb().addr(),
        &[user],
        "auth_timeout_ms = 120000\nstatus_interval_ms = 100\nmax_unauthenticated_per_ip = 0",
    );
    let c = Corelay::start(&cfg, "thread", 2);
    let started = Instant::now();
    // The storm: every TCP connection first, as fast as the kernel takes them.
    let socks: Vec<TcpStream> = (0..N)
        .map(|i| TcpStream::connect(("127.0.0.1", c.port)).unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect();
    let connected = started.elapsed();
    // Every one is greeted and logs in.
    let socks: Vec<TcpStream> = socks.into_iter().map(|s| raw_login_on(s, "app", "app_pw")).collect();
    let logged_in = started.elapsed();
    // An ordinary client is served as usual among them.
    let mut conn = c.connect("app", "app_pw").unwrap();
    for i in 0..10 {
        let v: Option<i64> = conn.query_first(format!("SELECT {i}")).unwrap();
        assert_eq!(v, Some(i));
    }
    assert_eq!(clients_open(&c), N as u64 + 1);
    eprintln!("{N} connections in {connected:?}, logged in after {logged_in:?}");
    drop(socks);
    drop(conn);
    let deadline = Instant::now() + Duration::from_secs(30);
    while clients_open(&c) != 0 {
        assert!(Instant::now() < deadline, "{} sessions left after the storm", clients_open(&c));
        std::thread::sleep(Duration::from_millis(100));
    }
    // And new clients get in as before.
    let mut conn = c.connect("app", "app_pw").unwrap();
    assert_alive(&mut conn);
}
