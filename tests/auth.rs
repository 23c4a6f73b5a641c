//! Logging in through corelay: plugins, clients, allow-lists and connection limits.

mod common;

use common::*;
use mysql::prelude::Queryable;

fn users() -> Vec<TestUser<'static>> {
    vec![
        TestUser::default(),
        TestUser { name: "sha", password: "sha_pw", auth: "caching_sha2_password", ..TestUser::default() },
        TestUser { name: "nopw", password: "", extra: "allow_empty_password = true", ..TestUser::default() },
        TestUser { name: "far", password: "far_pw", allow: "\"10.0.0.0/8\", \"fd00::/8\"", ..TestUser::default() },
        TestUser { name: "two", password: "two_pw", max_connections: 2, ..TestUser::default() },
    ]
}

fn start(extra: &str) -> Corelay {
    Corelay::start(&config_for(shared_mariadb().addr(), &users(), extra), "thread", 2)
}

#[test]
fn caching_sha2_user_with_mysql_crate_and_pymysql() {
    let c = start("");
    let mut conn = c.connect("sha", "sha_pw").expect("caching_sha2 login with the mysql crate");
    assert_alive(&mut conn);
    let who: Option<String> = conn.query_first("SELECT CURRENT_USER()").unwrap();
    assert!(who.unwrap().starts_with(DB_USER), "the backend session runs as the db user");
    let out = python(&format!(
        "import pymysql\n\
         c = pymysql.connect(host='127.0.0.1', port={}, user='sha', password='sha_pw', database='{DB_NAME}')\n\
         cur = c.cursor(); cur.execute('SELECT 6 * 7'); print(cur.fetchone()[0])\n\
         print(c.get_server_info())\n",
        c.port
    ));
    assert_eq!(lines(&out)[0], "42");
    let e = c.connect("sha", "nope").unwrap_err();
    assert_eq!(err_code(&e), Some(1045));
    let out = python(&format!(
        "import pymysql\n\
         try:\n    pymysql.connect(host='127.0.0.1', port={}, user='sha', password='bad')\n\
         except pymysql.err.OperationalError as e:\n    print(e.args[0])\n",
        c.port
    ));
    assert_eq!(out.trim(), "1045");
}

#[test]
fn native_user_with_mariadb_cli_and_pymysql() {
    let c = start("");
    let (ok, out, err) = mariadb_cli(c.port, "app", "app_pw", "SELECT 'native ok';");
    assert!(ok, "{err}");
    assert!(out.contains("native ok"));
    let out = python(&format!(
        "import pymysql\n\
         c = pymysql.connect(host='127.0.0.1', port={}, user='app', password='app_pw')\n\
         cur = c.cursor(); cur.execute('SELECT DATABASE()'); print(cur.fetchone()[0])\n",
        c.port
    ));
    assert_eq!(out.trim(), DB_NAME, "the db user's default database becomes the session schema");
    let (ok, _, err) = mariadb_cli(c.port, "app", "wrong", "SELECT 1;");
    assert!(!ok);
    assert!(err.contains("1045") && err.contains("28000"), "{err}");
    // A caching_sha2 user logs in with the CLI too (the proxy switches plugins).
    let (ok, out, err) = mariadb_cli(c.port, "sha", "sha_pw", "SELECT 'switched';");
    assert!(ok, "{err}");
    assert!(out.contains("switched"));
    // An empty password.
    let (ok, _, err) = mariadb_cli(c.port, "nopw", "", "SELECT 1;");
    assert!(ok, "{err}");
}

#[test]
fn unknown_user_and_wrong_password_get_1045() {
    let c = start("");
    let mut other = c.connect("app", "app_pw").unwrap();
    for (user, pw) in [("ghost", "x"), ("app", "wrong"), ("app", "")] {
        let e = c.connect(user, pw).unwrap_err();
        assert_eq!(err_code(&e), Some(1045), "{user}/{pw}: {e}");
        assert!(e.to_string().contains("28000"), "{e}");
    }
    assert_alive(&mut other);
}

/// An existing user from an address its allow list leaves out gets what an unknown user
/// gets: nothing tells the two apart.
#[test]
fn disallowed_ip_is_refused_as_an_unknown_user_is() {
    let c = start("");
    let mut other = c.connect("app", "app_pw").unwrap();
    let e = c.connect("far", "far_pw").unwrap_err();
    assert_eq!(err_code(&e), Some(1045), "{e}");
    let unknown = c.connect("nobody_here", "far_pw").unwrap_err();
    assert_eq!(
        e.to_string().replace("far", "USER"),
        unknown.to_string().replace("nobody_here", "USER"),
        "the same answer for both"
    );
    assert!(e.to_string().contains("127.0.0.1"), "{e}");
    assert_alive(&mut other);
}

#[test]
fn per_user_connection_limit() {
    let c = start("");
    let mut a = c.connect("two", "two_pw").unwrap();
    let mut b = c.connect("two", "two_pw").unwrap();
    let e = c.connect("two", "two_pw").unwrap_err();
    assert_eq!(err_code(&e), Some(1203), "{e}");
    assert!(e.to_string().contains("max connection limit (2)"), "{e}");
    assert_alive(&mut a);
    assert_alive(&mut b);
    drop(a);
    // The slot frees up once the session ends.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match c.connect("two", "two_pw") {
            Ok(mut again) => {
                assert_alive(&mut again);
                break;
            }
            Err(e) if std::time::Instant::now() < deadline => {
                assert_eq!(err_code(&e), Some(1203));
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("limit not released: {e}"),
        }
    }
}

#[test]
fn global_connection_limit() {
    let c = start("max_client_connections = 3");
    let mut held: Vec<_> = (0..3).map(|_| c.connect("app", "app_pw").unwrap()).collect();
    let e = c.connect("app", "app_pw").unwrap_err();
    assert_eq!(err_code(&e), Some(1040), "{e}");
    assert!(e.to_string().contains("max_client_connections"), "{e}");
    for conn in &mut held {
        assert_alive(conn);
    }
}

#[test]
fn scramble_is_fresh_per_connection() {
    let c = start("");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", c.port)).unwrap();
        let (_, greeting) = read_raw_packet(&mut s).unwrap();
        let g = corelay::protocol::handshake::Greeting::parse(&greeting).unwrap();
        assert_eq!(g.scramble.len(), 20);
        assert!(seen.insert(g.scramble), "a scramble was reused");
    }
}
