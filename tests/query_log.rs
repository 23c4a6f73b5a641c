//! The query log: slow statements with their timings, failed ones in the `.wf` file too,
//! connects and quits, text and JSON lines, size-based rotation.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use mysql::prelude::Queryable;

fn start(dir: &Path, extra: &str) -> Corelay {
    let db = shared_mariadb();
    let proxy = format!("log_dir = \"{}\"\nstatus_interval_ms = 50\n{extra}", dir.display());
    Corelay::start(&config_for(db.addr(), &[TestUser::default()], &proxy), "thread", 1)
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

#[test]
fn slow_and_failed_statements_are_logged_with_timings() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = start(dir.path(), "log_query_min_time_us = 30000\nlog_sql_max_chars = 40");
    let mut conn = c.connect("app", "app_pw").unwrap();
    conn.query_drop("SELECT 1").unwrap();
    conn.query_drop("SELECT SLEEP(0.05) /* slow text statement */").unwrap();
    let err = conn.query_drop("SELECT * FROM no_such_table").unwrap_err();
    assert_eq!(err_code(&err), Some(1146));
    let stmt = conn.prep("SELECT SLEEP(?), 'prepared'").unwrap();
    conn.exec_drop(&stmt, (0.04,)).unwrap();
    let long = format!("SELECT SLEEP(0.04), '{}'", "x".repeat(100));
    conn.query_drop(&long).unwrap();
    drop(conn);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.stop(), Some(0));

    let log = read(dir.path(), "corelay.0.log");
    let lines: Vec<&str> = log.lines().collect();
    assert!(!log.contains("sql=\"SELECT 1\""), "a fast statement is not logged:\n{log}");
    let slow = lines.iter().find(|l| l.contains("sql=\"SELECT SLEEP(0.05)")).unwrap_or_else(|| panic!("{log}"));
    let db = shared_mariadb().addr().to_string();
    for field in
        ["corelay::query", "shard=0", "client=127.0.0.1:", "user=app", &format!("server={db}"), "cmd=COM_QUERY"]
    {
        assert!(slow.contains(field), "{field} missing: {slow}");
    }
    let num = |line: &str, key: &str| -> u64 {
        let v =
            line.split(' ').find_map(|f| f.strip_prefix(&format!("{key}="))).unwrap_or_else(|| panic!("{key}: {line}"));
        v.parse().unwrap()
    };
    assert!(num(slow, "thread") > 0);
    assert!(num(slow, "wait_us") >= 45_000, "the server's time is the wait: {slow}");
    assert!(num(slow, "total_us") >= num(slow, "wait_us") + num(slow, "send_us"), "{slow}");
    assert!(num(slow, "bytes") > 0);
    let prepared = lines.iter().find(|l| l.contains("cmd=COM_STMT_EXECUTE")).unwrap_or_else(|| panic!("{log}"));
    assert!(prepared.contains("sql=\"SELECT SLEEP(?), 'prepared'\""), "{prepared}");
    let cut = lines.iter().find(|l| l.contains("SELECT SLEEP(0.04), 'x")).unwrap();
    assert!(cut.contains(&format!("sql=\"{}\"", &long[..40])), "cut to 40 characters: {cut}");
    assert!(log.contains("corelay::conn") && log.contains("event=connect") && log.contains("event=quit"), "{log}");

    let wf = read(dir.path(), "corelay.0.log.wf");
    assert!(wf.contains("err=1146") && wf.contains("no_such_table") && wf.contains("WARN"), "{wf}");
    assert!(!wf.contains("SLEEP(0.05)"), "only failures and warnings: {wf}");
}

#[test]
fn json_lines_parse_and_files_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let mut c =
        start(dir.path(), "log_format = \"json\"\nlog_query_min_time_us = 0\nlog_max_bytes = 4096\nlog_keep_files = 2");
    let mut conn = c.connect("app", "app_pw").unwrap();
    for i in 0..200 {
        conn.query_drop(format!("SELECT {i}, 'quote \" backslash \\\\ tab \t'")).unwrap();
    }
    drop(conn);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.stop(), Some(0));
    // (The master's own warnings, if any, are in corelay.master.log.wf.)
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("corelay.0."))
        .collect();
    names.sort();
    assert_eq!(names, ["corelay.0.log", "corelay.0.log.1", "corelay.0.log.2"], "two rotated files kept");
    for n in &names {
        assert!(std::fs::metadata(dir.path().join(n)).unwrap().len() <= 4096, "{n} over log_max_bytes");
    }
    let script = format!(
        "import json,sys\nn=0\nfor f in ['corelay.0.log','corelay.0.log.1']:\n    for l in open('{}/'+f):\n        d=json.loads(l)\n        if d['target']=='corelay::query':\n            assert d['total_us']>=0 and d['user']=='app' and 'quote \"' in d['sql'] and chr(9) in d['sql'] and chr(92)*2 in d['sql'], d\n            n+=1\nprint(n)",
        dir.path().display()
    );
    let n: u64 = python(&script).trim().parse().unwrap();
    assert!(n >= 20, "{n} statement lines parsed");
}

/// Password literals never reach the log files (the statement log, and the `.wf` file
/// for one that failed); the files are readable by corelay's user alone; a newline inside
/// a statement cannot start a forged line.
#[test]
fn passwords_are_redacted_files_are_private_and_lines_cannot_be_forged() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut c = start(dir.path(), "log_query_min_time_us = 0");
    let mut conn = c.connect("app", "app_pw").unwrap();
    conn.query_drop("CREATE USER IF NOT EXISTS 'ql_redact'@'localhost' IDENTIFIED BY 'sekrit-one'").unwrap();
    conn.query_drop("SET PASSWORD FOR 'ql_redact'@'localhost' = PASSWORD('sekrit-two')").unwrap();
    conn.query_drop("ALTER USER 'ql_redact'@'localhost' IDENTIFIED BY 'sekrit-three'").unwrap();
    // Fails (no such user): its line goes to the .wf file too.
    let _ = conn.query_drop("ALTER USER 'ql_nobody'@'localhost' IDENTIFIED BY 'sekrit-four'");
    conn.query_drop("DROP USER 'ql_redact'@'localhost'").unwrap();
    conn.query_drop("SELECT\n1 AS forged").unwrap();
    drop(conn);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !read(dir.path(), "corelay.0.log").contains("forged") {
        assert!(std::time::Instant::now() < deadline, "the statements were not logged");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(c.stop(), Some(0));
    let log = read(dir.path(), "corelay.0.log");
    let wf = read(dir.path(), "corelay.0.log.wf");
    for text in [&log, &wf] {
        assert!(!text.contains("sekrit"), "a password reached the log:\n{text}");
    }
    assert_eq!(log.matches("'<redacted>'").count(), 4, "{log}");
    assert!(wf.contains("'<redacted>'"), "{wf}");
    assert!(log.contains(r#"sql="SELECT\n1 AS forged""#), "{log}");
    assert!(!log.lines().any(|l| l.starts_with("1 AS forged")), "{log}");
    for name in ["corelay.0.log", "corelay.0.log.wf"] {
        let mode = std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
}
