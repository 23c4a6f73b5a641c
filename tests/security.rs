//! Security: TLS on both sides with real clients (the `mariadb` CLI, PyMySQL) and a real
//! MariaDB that requires secure transport; hashed credentials; and each hole a review
//! found, shown closed: slow logins, piles of unauthenticated sockets, password guessing,
//! user enumeration, secrets in the status memfd, admin roles, the per-user limit under
//! concurrent logins, `/metrics` exposure.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use mysql::prelude::Queryable;

/// A CA and a certificate it signed for 127.0.0.1 / localhost, made with openssl.
struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl is installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Makes `<name>-ca.pem`, `<name>-cert.pem`, `<name>-key.pem` in `dir` (readable by a
/// server running as another user).
fn make_certs(dir: &Path, name: &str) -> Certs {
    let (ca, ca_key) = (format!("{name}-ca.pem"), format!("{name}-ca-key.pem"));
    let (cert, key, csr, ext) =
        (format!("{name}-cert.pem"), format!("{name}-key.pem"), format!("{name}.csr"), format!("{name}.ext"));
    let subject = format!("/CN=corelay test CA {name}");
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", &subject, "-keyout", &ca_key,
            "-out", &ca,
        ],
    );
    openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", &key, "-out", &csr]);
    std::fs::write(dir.join(&ext), "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ],
    );
    for f in [&ca, &cert, &key] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    Certs { ca: dir.join(ca), cert: dir.join(cert), key: dir.join(key) }
}

fn tls_keys(c: &Certs) -> String {
    format!("tls_cert = \"{}\"\ntls_key = \"{}\"", c.cert.display(), c.key.display())
}

/// The `password = ...` lines `corelay hash-password` prints for `password`: the native
/// form, then the caching_sha2 one.
fn hash_forms(password: &str) -> (String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_corelay"))
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let forms: Vec<String> = text.lines().filter(|l| l.starts_with("password")).map(str::to_string).collect();
    (forms[0].clone(), forms[1].clone())
}

/// A PyMySQL login over TLS verifying corelay against `ca` with Python's default context
/// (hostname and chain checked); prints the cipher, or the error's class.
fn pymysql_tls(port: u16, user: &str, password: &str, ca: &Path) -> String {
    python(&format!(
        "import pymysql, ssl\n\
         ctx = ssl.create_default_context(cafile='{}')\n\
         try:\n    c = pymysql.connect(host='127.0.0.1', port={port}, user='{user}', password='{password}', ssl=ctx)\n\
         except Exception as e:\n    print('failed', type(e).__name__, e); raise SystemExit(0)\n\
         cur = c.cursor(); cur.execute(\"SHOW STATUS LIKE 'Ssl_cipher'\"); print(cur.fetchone()[1])\n\
         cur.execute('SELECT 6 * 7'); print(cur.fetchone()[0])\n",
        ca.display()
    ))
}

fn stats(c: &Corelay) -> String {
    let (ok, out, err) = mariadb_cli(c.admin_port, "admin", "admin_pw", "SHOW STATS\n");
    assert!(ok, "{err}");
    out
}

fn stat(c: &Corelay, name: &str) -> u64 {
    stats(c).lines().find_map(|l| l.strip_prefix(&format!("{name}\t"))).and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[test]
fn tls_clients_verify_corelay_and_are_told_their_own_cipher() {
    let dir = scratch_dir("tls-clients");
    let certs = make_certs(&dir, "a");
    let (_, sha_form) = hash_forms("sha_pw");
    let users = [
        TestUser::default(),
        TestUser { name: "sec", password: "sec_pw", extra: "require_tls = true", ..TestUser::default() },
        TestUser { name: "sha", password: "x", auth: "caching_sha2_password", ..TestUser::default() },
    ];
    let cfg = config_for(shared_mariadb().addr(), &users, &tls_keys(&certs))
        .replace("name = \"sha\"\npassword = \"x\"", &format!("name = \"sha\"\n{sha_form}"));
    // One shard: the caching_sha2 hash a full authentication yields is cached per shard.
    let c = Corelay::start(&cfg, "thread", 1);

    let (ok, out, err) =
        mariadb_cli_tls(c.port, "app", "app_pw", &certs.ca, "SHOW STATUS LIKE 'Ssl_cipher'; SELECT 'over tls';");
    assert!(ok, "{err}");
    let cipher = out.lines().find_map(|l| l.strip_prefix("Ssl_cipher\t")).unwrap_or_default();
    assert!(!cipher.is_empty(), "the client's own cipher: {out}");
    assert!(out.contains("over tls"));
    // Without TLS the same question gets an empty value, as from a server.
    let (ok, out, _) = mariadb_cli(c.port, "app", "app_pw", "SHOW STATUS LIKE 'Ssl_cipher';");
    assert!(ok && out.lines().any(|l| l == "Ssl_cipher\t"), "{out}");

    // Python's default context verifies the chain and the host name, as MariaDB 11.4
    // clients do by default.
    let out = pymysql_tls(c.port, "app", "app_pw", &certs.ca);
    assert_eq!(lines(&out).len(), 2, "{out}");
    assert!(!out.starts_with("failed") && lines(&out)[1] == "42", "{out}");
    let other = make_certs(&dir, "other");
    let out = pymysql_tls(c.port, "app", "app_pw", &other.ca);
    assert!(out.starts_with("failed"), "a certificate from another CA is refused: {out}");

    // require_tls.
    let (ok, _, err) = mariadb_cli(c.port, "sec", "sec_pw", "SELECT 1;");
    assert!(!ok && err.contains("ERROR 1045") && err.contains("require_tls"), "{err}");
    let (ok, out, err) = mariadb_cli_tls(c.port, "sec", "sec_pw", &certs.ca, "SELECT 'sec in';");
    assert!(ok && out.contains("sec in"), "{err}");

    // A caching_sha2 user known only by MySQL's stored hash: the first login sends the
    // password (full authentication, over TLS here); later ones use the fast path.
    let out = pymysql_tls(c.port, "sha", "sha_pw", &certs.ca);
    assert!(!out.starts_with("failed"), "full authentication over TLS: {out}");
    let (ok, _, err) = mariadb_cli_tls(c.port, "sha", "wrong", &certs.ca, "SELECT 1;");
    assert!(!ok && err.contains("ERROR 1045"), "{err}");
    let (ok, out, err) = mariadb_cli(c.port, "sha", "sha_pw", "SELECT 'fast path';");
    assert!(ok && out.contains("fast path"), "{err}");

    // The admin port speaks TLS with the same certificate.
    let (ok, out, err) = mariadb_cli_tls(c.admin_port, "admin", "admin_pw", &certs.ca, "SHOW SHARDS;");
    assert!(ok && out.contains("shard"), "{err}");
    assert!(stat(&c, "tls_handshakes") >= 5, "{}", stats(&c));
}

/// Full authentication without TLS: the client asks for corelay's RSA public key and sends
/// the password encrypted with it, from the `mariadb` CLI, PyMySQL, and another corelay
/// whose backend this corelay is (corelay's own client side of the exchange).
#[test]
fn caching_sha2_full_authentication_over_rsa_on_both_sides() {
    let (_, sha_form) = hash_forms("sha_pw");
    let users = [
        TestUser::default(),
        TestUser { name: "sha", password: "x", auth: "caching_sha2_password", ..TestUser::default() },
        TestUser { name: "sha2", password: "x", auth: "caching_sha2_password", ..TestUser::default() },
    ];
    let cfg = config_for(shared_mariadb().addr(), &users, "")
        .replace("name = \"sha\"\npassword = \"x\"", &format!("name = \"sha\"\n{sha_form}"))
        .replace("name = \"sha2\"\npassword = \"x\"", &format!("name = \"sha2\"\n{sha_form}"));
    let inner = Corelay::start(&cfg, "thread", 1);
    let (ok, out, err) = mariadb_cli(inner.port, "sha", "sha_pw", "SELECT 'rsa exchange';");
    assert!(ok && out.contains("rsa exchange"), "{err}");
    let (ok, _, err) = mariadb_cli(inner.port, "sha2", "not_it", "SELECT 1;");
    assert!(!ok && err.contains("ERROR 1045"), "{err}");
    let out = python(&format!(
        "import pymysql\n\
         c = pymysql.connect(host='127.0.0.1', port={}, user='sha2', password='sha_pw')\n\
         cur = c.cursor(); cur.execute('SELECT 6 * 7'); print(cur.fetchone()[0])\n",
        inner.port
    ));
    assert_eq!(out.trim(), "42");

    // An outer corelay logs in to the inner one as a db user whose password the inner one
    // has only as a hash: its first connection does the exchange as a client.
    let inner_addr: std::net::SocketAddr = ([127, 0, 0, 1], inner.port).into();
    let outer_cfg = config_for(inner_addr, &[TestUser::default()], "")
        .replace(
            &format!("name = \"{DB_USER}\"\npassword = \"{DB_PASSWORD}\""),
            "name = \"sha\"\npassword = \"sha_pw\"",
        )
        .replace(&format!("db_user = \"{DB_USER}\""), "db_user = \"sha\"")
        .replace("monitor_user = \"root\"\n", "");
    let outer = Corelay::start(&outer_cfg, "thread", 1);
    let mut conn = outer.connect("app", "app_pw").expect("through two corelays");
    let v: Option<i64> = conn.query_first("SELECT 6 * 7").unwrap();
    assert_eq!(v, Some(42));
    // The master's health checks log in the same way (its own blocking client).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (ok, out, err) = mariadb_cli(outer.admin_port, "admin", "admin_pw", "SHOW SERVERS;");
        assert!(ok, "{err}");
        if out.lines().nth(1).is_some_and(|row| row.split('\t').nth(5) == Some("up")) {
            break;
        }
        assert!(Instant::now() < deadline, "the health check never got in: {out}\n{}", outer.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn certificates_reload_without_a_restart_and_a_bad_file_keeps_the_old_one() {
    let dir = scratch_dir("tls-reload");
    let first = make_certs(&dir, "first");
    let second = make_certs(&dir, "second");
    let live = Certs { ca: first.ca.clone(), cert: dir.join("live-cert.pem"), key: dir.join("live-key.pem") };
    std::fs::copy(&first.cert, &live.cert).unwrap();
    std::fs::copy(&first.key, &live.key).unwrap();
    let c = Corelay::start(&config_for(shared_mariadb().addr(), &[TestUser::default()], &tls_keys(&live)), "thread", 2);
    assert!(!pymysql_tls(c.port, "app", "app_pw", &first.ca).starts_with("failed"));

    std::fs::copy(&second.cert, &live.cert).unwrap();
    std::fs::copy(&second.key, &live.key).unwrap();
    let (ok, _, err) = mariadb_cli(c.admin_port, "admin", "admin_pw", "RELOAD;");
    assert!(ok, "{err}");
    let out = pymysql_tls(c.port, "app", "app_pw", &second.ca);
    assert!(!out.starts_with("failed"), "new handshakes use the new certificate: {out}");
    assert!(pymysql_tls(c.port, "app", "app_pw", &first.ca).starts_with("failed"));

    std::fs::write(&live.cert, "not a certificate").unwrap();
    let (ok, _, err) = mariadb_cli(c.admin_port, "admin", "admin_pw", "RELOAD;");
    assert!(ok, "the rest of the file still reloads: {err}");
    let out = pymysql_tls(c.port, "app", "app_pw", &second.ca);
    assert!(!out.starts_with("failed"), "a bad file keeps the running certificate: {out}");
    assert!(c.log().contains("keep the running certificate"), "{}", c.log());
}

#[test]
fn backends_that_require_tls_are_reached_over_verified_tls() {
    let dir = scratch_dir("tls-backend");
    let certs = make_certs(&dir, "db");
    let flags = [
        "--skip-log-bin".to_string(),
        format!("--ssl-cert={}", certs.cert.display()),
        format!("--ssl-key={}", certs.key.display()),
        format!("--ssl-ca={}", certs.ca.display()),
    ];
    let db = MariaDb::start_with(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    db.root().unwrap().query_drop("SET GLOBAL require_secure_transport = ON").unwrap();
    let server_keys = |tls: &str| {
        config_for(db.addr(), &[TestUser::default()], "")
            .replace("connect_timeout_ms = 1000\n", &format!("connect_timeout_ms = 1000\n{tls}\n"))
    };

    let verify = format!("tls = \"verify\"\ntls_ca = \"{}\"", certs.ca.display());
    let c = Corelay::start(&server_keys(&verify), "thread", 2);
    let mut conn = c.connect("app", "app_pw").expect("through corelay over verified TLS");
    let cipher: Option<String> = conn
        .query_first("SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_cipher'")
        .unwrap();
    assert!(cipher.is_some_and(|c| !c.is_empty()), "corelay's connection to the server is encrypted");
    // The schema the client asked for is the backend session's (it travels in the
    // response after the SSLRequest, whose flags must announce it).
    let schema: Option<String> = conn.query_first("SELECT DATABASE()").unwrap();
    assert_eq!(schema.as_deref(), Some(DB_NAME));
    conn.query_drop("CREATE TABLE IF NOT EXISTS over_tls (a INT)").unwrap();
    // Pooled connections keep their TLS session: statements run on them as usual.
    for i in 0..20 {
        let v: Option<i64> = conn.query_first(format!("SELECT {i}")).unwrap();
        assert_eq!(v, Some(i));
    }

    let c = Corelay::start(&server_keys(""), "thread", 1);
    let e = c.connect("app", "app_pw").unwrap_err().to_string();
    assert!(e.contains("tls = \"disabled\"") && e.contains("require"), "the error names the key: {e}");

    let other = make_certs(&dir, "other");
    let wrong_ca = format!("tls = \"verify\"\ntls_ca = \"{}\"", other.ca.display());
    let c = Corelay::start(&server_keys(&wrong_ca), "thread", 1);
    let e = c.connect("app", "app_pw").unwrap_err().to_string();
    assert!(e.contains("TLS handshake failed"), "{e}");
}

/// Sends a byte every 200 ms (after the greeting and a packet header announcing 200 bytes,
/// on a MySQL port); returns how long until the peer closed (None: still open after 10 s).
fn drip_until_closed(port: u16, greeting: bool) -> Option<Duration> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    if greeting {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        read_raw_packet(&mut s).unwrap();
        s.write_all(&[200, 0, 0, 1]).unwrap();
    }
    let started = Instant::now();
    let mut buf = [0u8; 512];
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    while started.elapsed() < Duration::from_secs(10) {
        if s.write_all(b"G").is_err() {
            return Some(started.elapsed());
        }
        match s.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            // An error packet first: read on until the close.
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

#[test]
fn a_login_sent_a_byte_at_a_time_ends_at_the_deadline_on_every_port() {
    let c = Corelay::start(
        &config_for(shared_mariadb().addr(), &[TestUser::default()], "auth_timeout_ms = 1000"),
        "thread",
        2,
    );
    for (port, what, greeting) in
        [(c.port, "proxy", true), (c.admin_port, "admin", true), (c.metrics_port, "metrics", false)]
    {
        let closed = drip_until_closed(port, greeting);
        assert!(closed.is_some(), "{what} port: a byte every 200 ms kept the login open for 10 s");
        assert!(closed.unwrap() >= Duration::from_millis(500), "{what}: closed too early: {closed:?}");
    }
    let mut conn = c.connect("app", "app_pw").unwrap();
    assert_alive(&mut conn);
}

/// Logs in as app from 127.0.0.1 as soon as corelay stops refusing it with `code` (within
/// 20 s; any other error fails the test).
fn logs_in_once_refusals_end(c: &Corelay, code: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match c.connect("app", "app_pw") {
            Ok(mut conn) => break assert_alive(&mut conn),
            Err(e) if Instant::now() < deadline => {
                assert_eq!(err_code(&e), Some(code), "{e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

#[test]
fn unauthenticated_sockets_from_one_address_are_capped() {
    let users = [TestUser { allow: "\"127.0.0.0/8\"", ..TestUser::default() }];
    let cfg = config_for(shared_mariadb().addr(), &users, "max_unauthenticated_per_ip = 20");
    let c = Corelay::start(&cfg, "thread", 2);
    let socks: Vec<TcpStream> = (0..1000).map(|_| TcpStream::connect(("127.0.0.1", c.port)).unwrap()).collect();
    let (mut greeted, mut refused, mut message) = (0, 0, String::new());
    for s in socks.iter() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        match read_raw_packet(&mut s.try_clone().unwrap()) {
            Ok((_, p)) if p.first() == Some(&10) => greeted += 1,
            Ok((_, p)) if p.first() == Some(&0xFF) => {
                refused += 1;
                message = String::from_utf8_lossy(&p[9..]).into_owned();
                assert_eq!(u16::from_le_bytes([p[1], p[2]]), 1040);
            }
            other => panic!("neither a greeting nor an error: {other:?}"),
        }
    }
    assert!(greeted <= 20 && greeted > 0, "{greeted} greeted");
    assert_eq!(greeted + refused, 1000);
    assert!(message.contains("max_unauthenticated_per_ip"), "{message}");
    // Another address is not held up by them.
    let from = client_opts(c.port, "app", "app_pw", Some(DB_NAME)).bind_address(Some(([127, 0, 0, 2], 0)));
    let mut other = mysql::Conn::new(from).expect("a client at another address logs in");
    assert_alive(&mut other);
    drop(socks);
    logs_in_once_refusals_end(&c, 1040, "the address stays refused after its sockets closed");
    assert!(stat(&c, "unauthenticated_refused") >= 980);
}

#[test]
fn failed_logins_are_delayed_then_refused_on_both_ports() {
    let users = [TestUser { allow: "\"127.0.0.0/8\"", ..TestUser::default() }];
    let keys =
        "login_failures_before_delay = 2\nlogin_delay_max_ms = 200\nlogin_failures_before_block = 4\nlogin_block_s = 3";
    let c = Corelay::start(&config_for(shared_mariadb().addr(), &users, keys), "thread", 2);
    for _ in 0..4 {
        assert_eq!(err_code(&c.connect("app", "guess").unwrap_err()), Some(1045));
    }
    let e = c.connect("app", "app_pw").unwrap_err();
    assert_eq!(err_code(&e), Some(1129), "blocked, even with the right password: {e}");
    assert!(e.to_string().contains("login_failures_before_block"), "{e}");
    let from = client_opts(c.port, "app", "app_pw", Some(DB_NAME)).bind_address(Some(([127, 0, 0, 2], 0)));
    assert_alive(&mut mysql::Conn::new(from).expect("another address is not blocked"));
    logs_in_once_refusals_end(&c, 1129, "the block did not end");
    // The admin port's failures count against the same address.
    for _ in 0..4 {
        let (ok, _, err) = mariadb_cli(c.admin_port, "admin", "guess", "SHOW STATS;");
        assert!(!ok && (err.contains("1045") || err.contains("1129")), "{err}");
    }
    assert_eq!(err_code(&c.connect("app", "app_pw").unwrap_err()), Some(1129));
    let blocked = stat_via(&c, "logins_blocked");
    let delayed = stat_via(&c, "logins_delayed");
    assert!(blocked >= 2 && delayed >= 1, "blocked {blocked}, delayed {delayed}");
}

/// A counter read from `/metrics` (the admin port may be blocked for this address).
fn stat_via(c: &Corelay, name: &str) -> u64 {
    let mut s = TcpStream::connect(("127.0.0.1", c.metrics_port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let prefix = format!("corelay_{name}_total{{");
    body.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.split_whitespace().last().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

#[test]
fn hashed_passwords_log_in_and_no_password_reaches_the_status_memfd() {
    let (native, sha) = hash_forms("app_pw");
    let users = [
        TestUser { password: "placeholder-native", ..TestUser::default() },
        TestUser { name: "sha", password: "placeholder-sha", auth: "caching_sha2_password", ..TestUser::default() },
    ];
    let (admin_native, _) = hash_forms("admin_pw");
    let cfg = config_for(shared_mariadb().addr(), &users, "")
        .replace("password = \"placeholder-native\"", &native)
        .replace("password = \"placeholder-sha\"", &sha)
        .replace("password = \"admin_pw\"", &admin_native);
    assert!(!cfg.contains("\"app_pw\"") && !cfg.contains("\"admin_pw\""), "{cfg}");
    let c = Corelay::start(&cfg, "fork", 2);
    let mut conn = c.connect("app", "app_pw").expect("a native user from its * hash");
    assert_alive(&mut conn);
    assert_eq!(err_code(&c.connect("app", "app_pw2").unwrap_err()), Some(1045));
    // A reload publishes the configuration to the shards through the status region.
    let (ok, _, err) = mariadb_cli(c.admin_port, "admin", "admin_pw", "RELOAD;");
    assert!(ok, "the admin user from its hash: {err}");

    let memfd = std::fs::read_dir(format!("/proc/{}/fd", c.pid()))
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("memfd:corelay-status")))
        .expect("the status region's memfd");
    let bytes = std::fs::read(memfd.path()).unwrap();
    let has = |s: &str| bytes.windows(s.len()).any(|w| w == s.as_bytes());
    assert!(has(DB_USER), "the published configuration is there");
    for secret in [DB_PASSWORD, "admin_pw", "app_pw"] {
        assert!(!has(secret), "{secret:?} is in the status memfd");
    }
    // check-config masks every password.
    let path = c.dir.join("corelay.toml");
    let out = Command::new(corelay_binary()).arg("check-config").arg(&path).output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    let hash = native.trim_start_matches("password = \"").trim_end_matches('"');
    assert!(out.status.success() && !printed.contains(DB_PASSWORD) && !printed.contains(hash), "{printed}");
}

#[test]
fn an_empty_password_needs_allow_empty_password() {
    let dir = scratch_dir("empty-password");
    let cfg = config_for(shared_mariadb().addr(), &[TestUser { password: "", ..TestUser::default() }], "");
    let path = dir.join("c.toml");
    std::fs::write(&path, cfg).unwrap();
    let out = Command::new(corelay_binary()).arg("check-config").arg(&path).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success() && said.contains("allow_empty_password"), "{said}");
}

#[test]
fn a_read_only_admin_sees_everything_and_changes_nothing() {
    let cfg = config_for(shared_mariadb().addr(), &[TestUser::default()], "")
        + "\n[[admin_user]]\nname = \"viewer\"\npassword = \"viewer_pw\"\nrole = \"read\"\n";
    let c = Corelay::start(&cfg, "thread", 2);
    let (ok, out, err) = mariadb_cli(c.admin_port, "viewer", "viewer_pw", "SHOW STATS;");
    assert!(ok && out.contains("client_connections"), "{err}");
    for cmd in ["SHUTDOWN", "PAUSE", "RELOAD", "RESUME"] {
        let (ok, _, err) = mariadb_cli(c.admin_port, "viewer", "viewer_pw", &format!("{cmd};"));
        assert!(!ok && err.contains("ERROR 1227") && err.contains("role"), "{cmd}: {err}");
    }
    let mut conn = c.connect("app", "app_pw").expect("still serving after the refused SHUTDOWN");
    assert_alive(&mut conn);
    let (ok, _, err) = mariadb_cli(c.admin_port, "admin", "admin_pw", "RELOAD;");
    assert!(ok, "{err}");
    let log = c.log();
    assert!(
        log.lines().any(|l| l.contains("admin command SHUTDOWN: refused") && l.contains("admin_user=viewer")),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("admin command RELOAD: accepted")
            && l.contains("admin_user=admin")
            && l.contains("127.0.0.1")),
        "{log}"
    );
}

#[test]
fn concurrent_logins_never_exceed_a_users_limit() {
    let users = [TestUser { max_connections: 3, ..TestUser::default() }];
    let c = Corelay::start(&config_for(shared_mariadb().addr(), &users, ""), "thread", 2);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(30));
    let port = c.port;
    let threads: Vec<_> = (0..30)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                mysql::Conn::new(client_opts(port, "app", "app_pw", Some(DB_NAME))).ok()
            })
        })
        .collect();
    let mut held: Vec<mysql::Conn> = threads.into_iter().filter_map(|t| t.join().unwrap()).collect();
    assert!(!held.is_empty() && held.len() <= 3, "{} sessions for a limit of 3", held.len());
    for conn in &mut held {
        assert_alive(conn);
    }
}

#[test]
fn metrics_answer_only_their_allow_list() {
    let c = Corelay::start(
        &config_for(shared_mariadb().addr(), &[TestUser::default()], "metrics_allow = [\"10.0.0.0/8\"]"),
        "thread",
        1,
    );
    let mut s = TcpStream::connect(("127.0.0.1", c.metrics_port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 403") && body.contains("metrics_allow"), "{body}");
}
