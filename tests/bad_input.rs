//! Bad input gets a clear error for that one session, and every other session carries on.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use mysql::prelude::Queryable;

fn start(extra: &str) -> Corelay {
    Corelay::start(&config_for(shared_mariadb().addr(), &[TestUser::default()], extra), "thread", 2)
}

/// Reads until the peer closes; true if it closed within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 256];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn garbage_instead_of_a_login() {
    let c = start("");
    let mut other = c.connect("app", "app_pw").unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    read_raw_packet(&mut s).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (_, p) = read_raw_packet(&mut s).unwrap();
    let (code, msg) = parse_err(&p);
    assert_eq!(code, 1043, "{msg}");
    assert!(closed_within(&mut s, Duration::from_secs(5)));
    assert_alive(&mut other);
}

#[test]
fn truncated_and_malformed_login_packets() {
    let c = start("");
    let mut other = c.connect("app", "app_pw").unwrap();
    // A login packet that is too short to hold its fields.
    let mut s = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    read_raw_packet(&mut s).unwrap();
    s.write_all(&[6, 0, 0, 1, 0x0f, 0xa2, 0, 0, 0, 0]).unwrap();
    let (seq, p) = read_raw_packet(&mut s).unwrap();
    assert_eq!(seq, 2);
    assert_eq!(parse_err(&p).0, 1043);
    // A header promising 100 bytes, then the client hangs up.
    let mut s = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    read_raw_packet(&mut s).unwrap();
    s.write_all(&[100, 0, 0, 1, 1, 2, 3]).unwrap();
    drop(s);
    // A client that sends random bytes after logging in: an empty packet, then a lie.
    let mut s = raw_login(c.port, "app", "app_pw");
    s.write_all(&[0, 0, 0, 0]).unwrap();
    let (_, p) = read_raw_packet(&mut s).unwrap();
    assert_eq!(parse_err(&p).0, 1158);
    assert_alive(&mut other);
    let mut fresh = c.connect("app", "app_pw").unwrap();
    assert_alive(&mut fresh);
}

#[test]
fn unknown_and_refused_commands() {
    let c = start("");
    let mut other = c.connect("app", "app_pw").unwrap();
    let mut s = raw_login(c.port, "app", "app_pw");
    send_command(&mut s, &[0x7a, 1, 2, 3]);
    let (seq, p) = read_raw_packet(&mut s).unwrap();
    assert_eq!(seq, 1);
    let (code, msg) = parse_err(&p);
    assert_eq!(code, 1047, "{msg}");
    assert!(msg.contains("0x7a"), "{msg}");
    send_command(&mut s, &[0x0c, 1, 0, 0, 0]); // COM_PROCESS_KILL
    let (_, p) = read_raw_packet(&mut s).unwrap();
    assert_eq!(parse_err(&p).0, 1227);
    send_command(&mut s, &[0x08, 0]); // COM_SHUTDOWN
    let (_, p) = read_raw_packet(&mut s).unwrap();
    assert_eq!(parse_err(&p).0, 1227);
    // The same session still works after all that.
    send_command(&mut s, b"\x03SELECT 1");
    let (_, p) = read_raw_packet(&mut s).unwrap();
    assert_eq!(p, [1], "one column");
    assert_alive(&mut other);
}

#[test]
fn oversized_packet_gets_1153_and_close() {
    let c = start("max_packet_bytes = 1048576");
    let mut other = c.connect("app", "app_pw").unwrap();
    let mut conn = c.connect("app", "app_pw").unwrap();
    let big = format!("SELECT '{}'", "x".repeat(2 << 20));
    let e = conn.query_drop(&big).unwrap_err();
    assert_eq!(err_code(&e), Some(1153), "{e}");
    assert!(e.to_string().contains("max_packet_bytes"), "{e}");
    // Raw: a header announcing more than the limit is refused before the body arrives.
    let mut s = raw_login(c.port, "app", "app_pw");
    s.write_all(&[0, 0, 0x20, 0, 3]).unwrap();
    let (_, p) = read_raw_packet(&mut s).unwrap();
    assert_eq!(parse_err(&p).0, 1153);
    assert!(closed_within(&mut s, Duration::from_secs(5)));
    // Under the limit is fine.
    let ok: Option<i64> = other.query_first(format!("SELECT LENGTH('{}')", "y".repeat(500_000))).unwrap();
    assert_eq!(ok, Some(500_000));
}

#[test]
fn client_that_never_finishes_login_is_timed_out() {
    let c = start("auth_timeout_ms = 500");
    let mut other = c.connect("app", "app_pw").unwrap();
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    read_raw_packet(&mut s).unwrap();
    // Half a login packet, then silence (a slowloris client).
    s.write_all(&[60, 0, 0, 1, 0x0f]).unwrap();
    let (_, p) = read_raw_packet(&mut s).unwrap();
    assert_eq!(parse_err(&p).0, 1159);
    assert!(started.elapsed() < Duration::from_secs(5), "timed out after {:?}", started.elapsed());
    assert!(closed_within(&mut s, Duration::from_secs(5)));
    assert_alive(&mut other);
}

#[test]
fn idle_client_is_disconnected() {
    let c = start("client_idle_timeout_s = 1");
    let port = c.port;
    // A busy session keeps working throughout.
    let busy = std::thread::spawn(move || {
        let mut conn = mysql::Conn::new(client_opts(port, "app", "app_pw", None)).unwrap();
        let end = Instant::now() + Duration::from_millis(2500);
        while Instant::now() < end {
            assert_alive(&mut conn);
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let mut s = raw_login(c.port, "app", "app_pw");
    let started = Instant::now();
    let (_, p) = read_raw_packet(&mut s).unwrap();
    let (code, msg) = parse_err(&p);
    assert_eq!(code, 4031, "{msg}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(closed_within(&mut s, Duration::from_secs(5)));
    busy.join().unwrap();
}

#[test]
fn backend_down_names_the_backend() {
    let dead = ([127, 0, 0, 1], free_port()).into();
    // One shard: the back-off is per shard.
    let c = Corelay::start(&two_cluster_config(shared_mariadb().addr(), dead, ""), "thread", 1);
    let mut other = c.connect("app", "app_pw").unwrap();
    let started = Instant::now();
    let e = c.connect("b_app", "app_pw").unwrap_err();
    assert_eq!(err_code(&e), Some(1429), "{e}");
    assert!(e.to_string().contains(&dead.to_string()), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // After three failed attempts the server is skipped for reconnect_interval_s.
    let e = c.connect("b_app", "app_pw").unwrap_err();
    assert_eq!(err_code(&e), Some(1429), "{e}");
    assert!(e.to_string().contains("skipped for another"), "{e}");
    // MariaDB's client library shows the message (an ERR with a client code such as 2003
    // would reach it as 2027, "malformed packet").
    let (ok, _, err) = mariadb_cli(c.port, "b_app", "app_pw", "SELECT 1\n");
    assert!(!ok && err.contains("ERROR 1429") && err.contains(&dead.to_string()), "{err}");
    assert_alive(&mut other);
}

#[test]
fn backend_dying_mid_result() {
    let mut doomed = MariaDb::start();
    let c = Corelay::start(&two_cluster_config(shared_mariadb().addr(), doomed.addr(), ""), "thread", 2);
    let mut other = c.connect("app", "app_pw").unwrap();
    let mut victim = c.connect("b_app", "app_pw").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut rows = 0;
        let result = victim.query_iter("SELECT seq, REPEAT('x', 2000), SLEEP(0.002) FROM seq_1_to_5000");
        let outcome = match result {
            Err(e) => Err(e),
            Ok(mut r) => {
                let mut out = Ok(());
                for row in r.by_ref() {
                    match row {
                        Ok(_) => {
                            rows += 1;
                            if rows == 50 {
                                tx.send(()).unwrap();
                            }
                        }
                        Err(e) => {
                            out = Err(e);
                            break;
                        }
                    }
                }
                out
            }
        };
        (rows, outcome)
    });
    rx.recv_timeout(Duration::from_secs(20)).expect("rows start flowing");
    doomed.kill();
    let started = Instant::now();
    let (rows, outcome) = reader.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "the client must not hang");
    assert!((50..5000).contains(&rows), "{rows} rows");
    let e = outcome.expect_err("the client sees an error");
    assert!(
        e.to_string().contains("1927")
            || e.to_string().to_lowercase().contains("lost connection")
            || matches!(e, mysql::Error::IoError(_) | mysql::Error::DriverError(_) | mysql::Error::CodecError(_)),
        "{e:?}"
    );
    assert_alive(&mut other);
    let mut fresh = c.connect("app", "app_pw").unwrap();
    assert_alive(&mut fresh);
}

#[test]
fn backend_dying_mid_query_gets_1927() {
    let mut doomed = MariaDb::start();
    let c = Corelay::start(&two_cluster_config(shared_mariadb().addr(), doomed.addr(), ""), "thread", 2);
    let mut other = c.connect("app", "app_pw").unwrap();
    let mut s = raw_login(c.port, "b_app", "app_pw");
    // A write: never sent twice, so the client learns the connection died.
    send_command(&mut s, b"\x03DO SLEEP(30)");
    std::thread::sleep(Duration::from_millis(500));
    doomed.kill();
    let (seq, p) = read_raw_packet(&mut s).unwrap();
    assert_eq!(seq, 1);
    let (code, msg) = parse_err(&p);
    assert_eq!(code, 1927, "{msg}");
    assert!(msg.contains(&doomed.addr().to_string()), "{msg}");
    // The session held nothing on that connection: it stays usable, and the next
    // statement gets a clear error while the server is down.
    send_command(&mut s, b"\x03SELECT 1");
    let (seq, p) = read_raw_packet(&mut s).unwrap();
    assert_eq!(seq, 1);
    let (code, msg) = parse_err(&p);
    assert_eq!(code, 1429, "{msg}");
    assert_alive(&mut other);
}

#[test]
fn transaction_on_a_dying_server_gets_an_error_and_the_session_goes_on() {
    let mut doomed = MariaDb::start();
    let c = Corelay::start(&two_cluster_config(shared_mariadb().addr(), doomed.addr(), ""), "thread", 2);
    let mut other = c.connect("app", "app_pw").unwrap();
    let mut conn = c.connect("b_app", "app_pw").unwrap();
    conn.query_drop("CREATE TABLE IF NOT EXISTS tx_dies (id INT)").unwrap();
    conn.query_drop("START TRANSACTION").unwrap();
    conn.query_drop("INSERT INTO tx_dies VALUES (1)").unwrap();
    doomed.kill();
    let e = conn.query_drop("INSERT INTO tx_dies VALUES (2)").unwrap_err();
    assert_eq!(err_code(&e), Some(1927), "{e}");
    assert!(e.to_string().contains("rolled back"), "{e}");
    // Still connected: the next statement gets its own clear error while the server is down.
    let e = conn.query_drop("SELECT 1").unwrap_err();
    assert_eq!(err_code(&e), Some(1429), "{e}");
    assert_alive(&mut other);
}

#[test]
fn client_vanishing_mid_result_leaves_no_dirty_connection() {
    // One backend connection per shard and one shard: a dirty connection would be the next
    // session's, and its leftover rows would be read as that session's reply.
    let cfg = config_for(shared_mariadb().addr(), &[TestUser::default()], "")
        .replace("connect_timeout_ms = 1000", "connect_timeout_ms = 1000\nmax_connections = 1");
    let c = Corelay::start(&cfg, "thread", 1);
    for round in 0..3 {
        let mut s = raw_login(c.port, "app", "app_pw");
        let mut q = vec![3u8];
        q.extend_from_slice(b"SELECT REPEAT('x', 100000) FROM seq_1_to_2000");
        send_command(&mut s, &q);
        let mut some = [0u8; 4096];
        s.read_exact(&mut some).unwrap();
        // Gone with about 200 MB still to come.
        drop(s);
        let mut conn = c.connect("app", "app_pw").unwrap();
        for i in 0..20 {
            let v: Option<i64> = conn.query_first(format!("SELECT {i} + {round}")).unwrap();
            assert_eq!(v, Some(i + round), "a clean reply on the only backend connection");
        }
    }
    // The server side of the abandoned statements ended too.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut root = shared_mariadb().root().unwrap();
    loop {
        let busy: Option<i64> = root
            .query_first("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT REPEAT(%'")
            .unwrap();
        if busy == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "abandoned statements still run on the server");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A fake server that logs anyone in, answers every command with OK, except statements
/// that mention `never_answer`, which it never answers. Counts the connections closed on it.
fn silent_backend() -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use corelay::protocol::{auth, caps, handshake::Greeting, ok::write_ok, status};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let closed = std::sync::Arc::new(AtomicUsize::new(0));
    let closed2 = closed.clone();
    std::thread::spawn(move || {
        for (id, stream) in listener.incoming().enumerate() {
            let Ok(mut s) = stream else { continue };
            let closed = closed2.clone();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                Greeting {
                    server_version: "5.5.5-10.11.0-MariaDB-silent".into(),
                    connection_id: id as u32 + 1,
                    scramble: auth::new_scramble().to_vec(),
                    capabilities: caps::PROXY_SERVER,
                    mariadb_capabilities: 0,
                    charset: 45,
                    status: status::AUTOCOMMIT,
                    auth_plugin: auth::NATIVE.into(),
                }
                .write(&mut out);
                if s.write_all(&out).is_err() || read_raw_packet(&mut s).is_err() {
                    return;
                }
                out.clear();
                write_ok(&mut out, 2, 0, 0, status::AUTOCOMMIT);
                let _ = s.write_all(&out);
                while let Ok((_, p)) = read_raw_packet(&mut s) {
                    if p.first() == Some(&1) {
                        break; // COM_QUIT
                    }
                    if String::from_utf8_lossy(&p).contains("never_answer") {
                        continue;
                    }
                    out.clear();
                    write_ok(&mut out, 1, 0, 0, status::AUTOCOMMIT);
                    if s.write_all(&out).is_err() {
                        break;
                    }
                }
                closed.fetch_add(1, Ordering::Relaxed);
            });
        }
    });
    (addr, closed)
}

#[test]
fn backend_that_stops_answering_gets_1969_and_is_discarded() {
    let (addr, closed) = silent_backend();
    let c = Corelay::start(&config_for(addr, &[TestUser::default()], "query_timeout_ms = 300"), "thread", 1);
    let mut s = raw_login(c.port, "app", "app_pw");
    let t = Instant::now();
    send_command(&mut s, b"\x03SELECT 'never_answer'");
    let (seq, p) = read_raw_packet(&mut s).unwrap();
    let (code, msg) = parse_err(&p);
    assert_eq!((seq, code), (1, 1969), "{msg}");
    assert!(msg.contains("query_timeout_ms (300 ms)"), "{msg}");
    assert!(t.elapsed() < Duration::from_secs(5), "interrupted after {:?}", t.elapsed());
    // The session goes on, on a fresh connection; the silent one was closed.
    send_command(&mut s, b"\x03DO 1");
    let (_, p) = read_raw_packet(&mut s).unwrap();
    assert_eq!(p[0], 0, "OK after the timeout: {p:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while closed.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "the connection with the unanswered statement is still open");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A session may hold `max_prepared_per_session` prepared statements at once: one more
/// gets 1461 (as the server's `max_prepared_stmt_count` gives it) and the session goes on;
/// closing one makes room again. Before the cap, a session could prepare without end and
/// corelay kept every statement's text.
#[test]
fn prepared_statements_per_session_are_capped() {
    let c = start("max_prepared_per_session = 3");
    let mut conn = mysql::Conn::new(c.opts("app", "app_pw", None).stmt_cache_size(0)).unwrap();
    let stmts: Vec<_> = (0..3).map(|i| conn.prep(format!("SELECT {i}")).unwrap()).collect();
    let e = conn.prep("SELECT 3").unwrap_err();
    assert_eq!(err_code(&e), Some(1461), "{e}");
    assert!(e.to_string().contains("max_prepared_per_session"), "{e}");
    assert_alive(&mut conn);
    conn.close(stmts[0].clone()).unwrap();
    let s = conn.prep("SELECT 3").unwrap();
    let v: Option<i64> = conn.exec_first(&s, ()).unwrap();
    assert_eq!(v, Some(3));
}
