//! Real clients run real workloads through corelay, in both worker modes.

mod common;

use common::*;
use mysql::prelude::Queryable;
use mysql::Conn;
use sha2::{Digest, Sha256};

fn start(mode: &str) -> Corelay {
    let db = shared_mariadb();
    Corelay::start(&config_for(db.addr(), &[TestUser::default()], ""), mode, 2)
}

fn app(c: &Corelay) -> Conn {
    c.connect("app", "app_pw").expect("app logs in through corelay")
}

fn queries_ddl_dml(mode: &str) {
    let c = start(mode);
    let mut conn = app(&c);
    let one: Option<i32> = conn.query_first("SELECT 1").unwrap();
    assert_eq!(one, Some(1));
    let t = format!("basic_{mode}");
    conn.query_drop(format!("DROP TABLE IF EXISTS {t}")).unwrap();
    conn.query_drop(format!("CREATE TABLE {t} (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(50))")).unwrap();
    conn.query_drop(format!("INSERT INTO {t} (v) VALUES ('a'), ('b'), ('c')")).unwrap();
    assert_eq!(conn.affected_rows(), 3);
    let rows: Vec<(i32, String)> = conn.query(format!("SELECT id, v FROM {t} ORDER BY id")).unwrap();
    assert_eq!(rows, vec![(1, "a".into()), (2, "b".into()), (3, "c".into())]);
    // Empty result, error, then the session still works.
    let none: Vec<i32> = conn.query(format!("SELECT id FROM {t} WHERE id > 100")).unwrap();
    assert!(none.is_empty());
    let e = conn.query_drop("SELECT * FROM no_such_table").unwrap_err();
    assert_eq!(err_code(&e), Some(1146));
    // Multi-statement text query: several result sets in one response.
    let mut r = conn.query_iter(format!("SELECT 1; SELECT 2, 3; UPDATE {t} SET v = v WHERE 0")).unwrap();
    let mut sets = 0;
    while let Some(set) = r.iter() {
        sets += 1;
        for row in set {
            row.unwrap();
        }
    }
    drop(r);
    assert_eq!(sets, 3);
    // Database switch (COM_INIT_DB) and ping.
    conn.select_db("mysql").unwrap();
    let db: Option<String> = conn.query_first("SELECT DATABASE()").unwrap();
    assert_eq!(db.as_deref(), Some("mysql"));
    assert!(conn.ping().is_ok());
    assert_eq!(c.stop_code(), Some(0));
}

trait StopCode {
    fn stop_code(self) -> Option<i32>;
}
impl StopCode for Corelay {
    fn stop_code(mut self) -> Option<i32> {
        self.stop()
    }
}

#[test]
fn queries_ddl_dml_thread_mode() {
    queries_ddl_dml("thread");
}

#[test]
fn queries_ddl_dml_fork_mode() {
    queries_ddl_dml("fork");
}

fn blob_roundtrip(mode: &str) {
    let c = start(mode);
    let mut conn = app(&c);
    let t = format!("blob_{mode}");
    conn.query_drop(format!("DROP TABLE IF EXISTS {t}")).unwrap();
    conn.query_drop(format!("CREATE TABLE {t} (id INT PRIMARY KEY, b LONGBLOB)")).unwrap();
    // 20 MiB of non-repeating bytes: crosses the 16 MiB packet boundary both ways.
    let mut data = Vec::with_capacity(20 << 20);
    let mut x: u32 = 0x1234_5678;
    while data.len() < 20 << 20 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data.extend_from_slice(&x.to_le_bytes());
    }
    let sum = Sha256::digest(&data);
    conn.exec_drop(format!("INSERT INTO {t} VALUES (1, ?)"), (data.clone(),)).unwrap();
    // Back through the binary protocol...
    let back: Option<Vec<u8>> = conn.exec_first(format!("SELECT b FROM {t} WHERE id = ?"), (1,)).unwrap();
    assert_eq!(Sha256::digest(back.unwrap()), sum, "prepared read returns the same bytes");
    // ...and the text protocol.
    let back: Option<Vec<u8>> = conn.query_first(format!("SELECT b FROM {t} WHERE id = 1")).unwrap();
    assert_eq!(Sha256::digest(back.unwrap()), sum, "text read returns the same bytes");
    // The server agrees on what it stored.
    let server_sum: Option<String> = conn.query_first(format!("SELECT SHA2(b, 256) FROM {t} WHERE id = 1")).unwrap();
    let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(server_sum.unwrap(), hex);
    conn.query_drop(format!("DROP TABLE {t}")).unwrap();
}

#[test]
fn blob_20mib_roundtrip_thread_mode() {
    blob_roundtrip("thread");
}

#[test]
fn blob_20mib_roundtrip_fork_mode() {
    blob_roundtrip("fork");
}

fn prepared_workload(mode: &str) {
    let c = start(mode);
    let t = format!("ps_{mode}");
    let mut setup = app(&c);
    setup.query_drop(format!("DROP TABLE IF EXISTS {t}")).unwrap();
    setup
        .query_drop(format!("CREATE TABLE {t} (id INT PRIMARY KEY, k INT, s VARCHAR(40), f DOUBLE, d DATETIME)"))
        .unwrap();
    let port = c.port;
    let handles: Vec<_> = (0..4)
        .map(|w| {
            let t = t.clone();
            std::thread::spawn(move || {
                let mut conn = Conn::new(client_opts(port, "app", "app_pw", Some(DB_NAME))).unwrap();
                let ins = conn.prep(format!("INSERT INTO {t} VALUES (?, ?, ?, ?, NOW())")).unwrap();
                let sel = conn.prep(format!("SELECT k, s, f FROM {t} WHERE id = ?")).unwrap();
                for i in 0..200 {
                    let id = w * 1000 + i;
                    conn.exec_drop(&ins, (id, id * 2, format!("row-{id}"), id as f64 / 3.0)).unwrap();
                    let got: Option<(i32, String, f64)> = conn.exec_first(&sel, (id,)).unwrap();
                    assert_eq!(got, Some((id * 2, format!("row-{id}"), id as f64 / 3.0)));
                }
                conn.close(ins).unwrap();
                let n: Option<i64> = conn
                    .exec_first(
                        format!("SELECT COUNT(*) FROM {t} WHERE id BETWEEN ? AND ?"),
                        (w * 1000, w * 1000 + 999),
                    )
                    .unwrap();
                assert_eq!(n, Some(200));
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let total: Option<i64> = setup.query_first(format!("SELECT COUNT(*) FROM {t}")).unwrap();
    assert_eq!(total, Some(800));
}

#[test]
fn prepared_statement_workload_thread_mode() {
    prepared_workload("thread");
}

#[test]
fn prepared_statement_workload_fork_mode() {
    prepared_workload("fork");
}

#[test]
fn mariadb_cli_runs_statements() {
    let c = start("thread");
    let (ok, out, err) = mariadb_cli(
        c.port,
        "app",
        "app_pw",
        "USE app; DROP TABLE IF EXISTS cli_t; CREATE TABLE cli_t (id INT, v TEXT);\n\
         INSERT INTO cli_t VALUES (1, 'one'), (2, 'two');\nSELECT v FROM cli_t ORDER BY id;\nSTATUS;\n",
    );
    assert!(ok, "stderr: {err}");
    assert!(out.contains("one\ntwo\n"), "{out}");
    // STATUS shows the server version string corelay announces.
    assert!(out.contains("corelay"), "{out}");
}

#[test]
fn load_data_local_infile() {
    let c = start("thread");
    let file = c.dir.join("rows.csv");
    std::fs::write(&file, (0..1000).map(|i| format!("{i},name{i}\n")).collect::<String>()).unwrap();
    let mut conn = Conn::new(c.opts("app", "app_pw", Some(DB_NAME)).local_infile_handler(Some(
        mysql::LocalInfileHandler::new(|name, w| {
            let data = std::fs::read(std::str::from_utf8(name).unwrap())?;
            std::io::Write::write_all(w, &data)
        }),
    )))
    .unwrap();
    conn.query_drop("DROP TABLE IF EXISTS infile_t").unwrap();
    conn.query_drop("CREATE TABLE infile_t (id INT, name VARCHAR(20))").unwrap();
    conn.query_drop(format!(
        "LOAD DATA LOCAL INFILE '{}' INTO TABLE infile_t FIELDS TERMINATED BY ','",
        file.display()
    ))
    .unwrap();
    let n: Option<i64> = conn.query_first("SELECT COUNT(*) FROM infile_t").unwrap();
    assert_eq!(n, Some(1000));
    assert_alive(&mut conn);
}

#[test]
fn statistics_ping_and_admin_commands() {
    let c = start("thread");
    // mariadb-admin sends COM_STATISTICS and COM_PING.
    let out = std::process::Command::new("mariadb-admin")
        .args(["--no-defaults", "-h127.0.0.1", &format!("-P{}", c.port), "-uapp", "-papp_pw", "status", "ping"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Uptime:"), "{text}");
    assert!(text.contains("mysqld is alive"), "{text}");
    // COM_SHUTDOWN is refused and corelay keeps serving.
    let out = std::process::Command::new("mariadb-admin")
        .args(["--no-defaults", "-h127.0.0.1", &format!("-P{}", c.port), "-uapp", "-papp_pw", "shutdown"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not allowed through corelay"), "{err}");
    let mut conn = app(&c);
    assert_alive(&mut conn);
}

#[test]
fn change_user_and_reset_connection() {
    let db = shared_mariadb();
    let users = [TestUser::default(), TestUser { name: "other", password: "other_pw", ..TestUser::default() }];
    let c = Corelay::start(&config_for(db.addr(), &users, ""), "thread", 1);
    let mut conn = app(&c);
    conn.query_drop("SET @marker = 7").unwrap();
    conn.change_user(
        mysql::ChangeUserOpts::default().with_user(Some("other".into())).with_pass(Some("other_pw".into())),
    )
    .unwrap();
    let marker: Option<Option<i64>> = conn.query_first("SELECT @marker").unwrap();
    assert_eq!(marker, Some(None), "change user starts a clean session");
    assert_alive(&mut conn);
    let bad = conn
        .change_user(mysql::ChangeUserOpts::default().with_user(Some("other".into())).with_pass(Some("wrong".into())));
    assert!(bad.is_err());
    // COM_RESET_CONNECTION is forwarded.
    let mut conn = app(&c);
    conn.query_drop("SET @marker = 9").unwrap();
    conn.reset().unwrap();
    let marker: Option<Option<i64>> = conn.query_first("SELECT @marker").unwrap();
    assert_eq!(marker, Some(None));
}
