//! A session through corelay behaves as on a direct connection: what it leaves on a backend
//! connection stays with it (never reaching the next session served there), KILL reaches
//! it from any shard but only from its own user, and a user with `multiplex = false` keeps
//! one connection of its own.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mysql::prelude::Queryable;
use mysql::{Conn, Value};

/// One shard and at most two backend connections, as db user `db_user` (of this test
/// alone): a session that gives its connection back gives it to the next one asking.
fn two_connections(db_user: &str) -> Corelay {
    let cfg = config_as_db_user(db_user, "pool_wait_timeout_ms = 3000")
        .replace("connect_timeout_ms = 1000", "connect_timeout_ms = 1000\nmax_connections = 2");
    Corelay::start(&cfg, "thread", 1)
}

/// [`two_connections`] where reads too go to the borrowed connection, not to a shared
/// pipelined one: the next session's read runs where the last session's statement did.
fn two_connections_unpiped(db_user: &str) -> Corelay {
    let cfg = config_as_db_user(db_user, "pool_wait_timeout_ms = 3000\npipeline_depth = 0")
        .replace("connect_timeout_ms = 1000", "connect_timeout_ms = 1000\nmax_connections = 2");
    Corelay::start(&cfg, "thread", 1)
}

fn first_i64(conn: &mut Conn, sql: &str) -> Option<i64> {
    conn.query_first::<Option<i64>, _>(sql).unwrap().flatten()
}

/// Each case: what session A does, then what session B (borrowing from the same small
/// pool, so it gets A's connection if A gave it back) reads, and what it must read as on a
/// direct connection: none of A's state. Before the statement analysis knew these forms,
/// A gave its connection back holding the state, and B read it.
#[test]
fn state_left_by_less_common_statements_stays_with_its_session() {
    let c = two_connections("tp_state");
    let mut setup = c.connect("app", "app_pw").unwrap();
    setup
        .query_drop(
            "CREATE OR REPLACE TABLE tp_t (a INT); CREATE OR REPLACE SEQUENCE tp_seq; \
             CREATE OR REPLACE PROCEDURE tp_proc() BEGIN SET @tp_v = 7; CREATE TEMPORARY TABLE tp_tmp (a INT); END",
        )
        .unwrap();
    drop(setup);
    let big = "x".repeat(17 << 20);
    let cases: Vec<(&str, Vec<String>, &str, Option<i64>)> = vec![
        ("CALL", vec!["CALL tp_proc()".into()], "SELECT @tp_v", None),
        ("CALL temporary table", vec!["CALL tp_proc()".into()], "SELECT COUNT(*) FROM tp_tmp", Some(-1146)),
        (
            "SET STATEMENT ... FOR",
            vec!["SET STATEMENT max_statement_time = 10 FOR CREATE TEMPORARY TABLE tp_tmp (a INT)".into()],
            "SELECT COUNT(*) FROM tp_tmp",
            Some(-1146),
        ),
        (
            "GET_LOCK over rows",
            vec![
                "SELECT GET_LOCK(CONCAT('tp_l', seq), 0) FROM seq_1_to_2".into(),
                "SELECT RELEASE_LOCK('tp_l1')".into(),
            ],
            "SELECT GET_LOCK('tp_l2', 0)",
            Some(0),
        ),
        (
            "release of a lock not held",
            vec!["SELECT GET_LOCK('tp_u', 0)".into(), "SELECT RELEASE_LOCK('tp_not_held')".into()],
            "SELECT GET_LOCK('tp_u', 0)",
            Some(0),
        ),
        ("NEXTVAL", vec!["SELECT NEXTVAL(tp_seq)".into()], "SELECT LASTVAL(tp_seq)", None),
        (
            "NEXT VALUE FOR",
            vec!["INSERT INTO tp_t VALUES (NEXT VALUE FOR tp_seq)".into()],
            "SELECT PREVIOUS VALUE FOR tp_seq",
            None,
        ),
        (
            "FLUSH TABLES WITH READ LOCK",
            vec!["FLUSH TABLES WITH READ LOCK".into()],
            "SET STATEMENT lock_wait_timeout = 1 FOR INSERT INTO tp_t VALUES (1)",
            Some(-1205),
        ),
        (
            "a statement of 16 MiB and more",
            vec![format!("SELECT LENGTH('{big}') INTO @tp_big")],
            "SELECT @tp_big",
            None,
        ),
    ];
    let mut wrong = Vec::new();
    for (name, a_does, b_reads, want) in cases {
        let mut a = c.connect("app", "app_pw").unwrap();
        if let Some(e) = a_does.iter().find_map(|sql| a.query_drop(sql).err()) {
            wrong.push(format!("{name}: A failed: {e}"));
            continue;
        }
        let mut b = c.connect("app", "app_pw").unwrap();
        let got = match b.query_first::<Option<i64>, _>(b_reads) {
            Ok(v) => v.flatten(),
            Err(e) => err_code(&e).map(|c| -i64::from(c)),
        };
        if got != want {
            wrong.push(format!("{name}: B read {got:?} (negative: an error code), as direct {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// `LOAD DATA ... (@v) SET c = @v` leaves @v set on the connection.
#[test]
fn load_data_variables_stay_with_their_session() {
    let c = two_connections("tp_load");
    let opts = c
        .opts("app", "app_pw", Some(DB_NAME))
        .local_infile_handler(Some(mysql::LocalInfileHandler::new(|_, w| std::io::Write::write_all(w, b"5\n6\n"))));
    let mut a = Conn::new(opts).unwrap();
    a.query_drop("CREATE OR REPLACE TABLE tp_load (a INT)").unwrap();
    a.query_drop("LOAD DATA LOCAL INFILE 'rows' INTO TABLE tp_load (@tp_lv) SET a = @tp_lv * 10").unwrap();
    assert_eq!(first_i64(&mut a, "SELECT @tp_lv"), Some(6));
    let mut b = c.connect("app", "app_pw").unwrap();
    assert_eq!(first_i64(&mut b, "SELECT @tp_lv"), None, "B read A's variable");
    assert_eq!(first_i64(&mut a, "SELECT SUM(a) FROM tp_load"), Some(110));
}

/// The binary protocol keeps a session's state as the text protocol does, while another
/// session uses the same backend connection between its statements.
#[test]
fn prepared_statements_see_their_sessions_state_between_other_sessions() {
    let cfg = config_as_db_user("tp_ps", "pool_wait_timeout_ms = 3000")
        .replace("connect_timeout_ms = 1000", "connect_timeout_ms = 1000\nmax_connections = 2");
    let c = Corelay::start(&cfg, "thread", 1);
    let db = shared_mariadb();
    let mut direct = db.root().unwrap();
    direct.query_drop(format!("USE {DB_NAME}")).unwrap();
    direct
        .query_drop(
            "CREATE OR REPLACE TABLE tp_ps1 (f1 INT, f2 INT); INSERT INTO tp_ps1 VALUES (1, 1), (2, 2), (3, 3); \
             CREATE OR REPLACE TABLE tp_cs (a VARCHAR(10) CHARACTER SET utf8mb4); INSERT INTO tp_cs VALUES ('x')",
        )
        .unwrap();
    let mut a = c.connect("app", "app_pw").unwrap();
    let mut other = c.connect("app", "app_pw").unwrap();

    // A user variable assigned inside a prepared DELETE.
    direct.query_drop("CREATE OR REPLACE TABLE tp_ps1d AS SELECT * FROM tp_ps1").unwrap();
    direct.exec_drop("DELETE FROM tp_ps1d WHERE (@tp_a := f1) ORDER BY f1 LIMIT 1", ()).unwrap();
    let want = first_i64(&mut direct, "SELECT @tp_a");
    a.exec_drop("DELETE FROM tp_ps1 WHERE (@tp_a := f1) ORDER BY f1 LIMIT 1", ()).unwrap();
    other.query_drop("SELECT 1").unwrap();
    assert!(want.is_some());
    assert_eq!(first_i64(&mut a, "SELECT @tp_a"), want);
    assert_eq!(first_i64(&mut other, "SELECT @tp_a"), None);

    // Warnings of a prepared statement (1052, ambiguous GROUP BY column), read next.
    let sql = "SELECT f1 AS f2 FROM tp_ps1 GROUP BY f2";
    let _: Vec<i64> = direct.exec(sql, ()).unwrap();
    let want: Vec<(String, u32, String)> = direct.query("SHOW WARNINGS").unwrap();
    let _: Vec<i64> = a.exec(sql, ()).unwrap();
    other.query_drop("SELECT 1").unwrap();
    let got: Vec<(String, u32, String)> = a.query("SHOW WARNINGS").unwrap();
    assert_eq!(want.len(), 1);
    assert_eq!(got, want);

    // The session's character set, set in text, applies to its prepared statements.
    for conn in [&mut direct, &mut a] {
        conn.query_drop("SET NAMES swe7").unwrap();
    }
    other.query_drop("SELECT 1").unwrap();
    let sql = "SELECT CONCAT(a, 'é') FROM tp_cs";
    let want = direct.exec::<Value, _, _>(sql, ()).map_err(|e| err_code(&e));
    let got = a.exec::<Value, _, _>(sql, ()).map_err(|e| err_code(&e));
    assert_eq!(want, Err(Some(1267)));
    assert_eq!(got, want);

    // Optimizer settings apply to a prepared EXPLAIN.
    for conn in [&mut direct, &mut a] {
        conn.query_drop("SET NAMES utf8mb4, join_cache_level = 0, optimizer_switch = 'index_merge=off'").unwrap();
    }
    other.query_drop("SELECT 1").unwrap();
    let sql = "EXPLAIN SELECT * FROM tp_ps1 x JOIN tp_ps1 y ON x.f1 = y.f2";
    let want: Vec<mysql::Row> = direct.exec(sql, ()).unwrap();
    let got: Vec<mysql::Row> = a.exec(sql, ()).unwrap();
    let extra =
        |rows: &[mysql::Row]| rows.iter().map(|r| r.get::<Option<String>, _>("Extra").flatten()).collect::<Vec<_>>();
    assert_eq!(extra(&got), extra(&want));
    assert!(!extra(&got).iter().flatten().any(|e| e.contains("join buffer")), "{:?}", extra(&got));
}

/// A SLEEP(30) in session A, and session B on another shard: B's `KILL QUERY <A's id>`
/// ends the statement within seconds, 20 times in a row (once sent by an `admin = true`
/// user instead), with four shards in either worker mode; KILL CONNECTION ends A before
/// its next command; another product user gets 1095.
fn kill_from_another_shard(mode: &str) {
    let users = [
        TestUser::default(),
        TestUser { name: "other", password: "other_pw", ..TestUser::default() },
        TestUser { name: "ops", password: "ops_pw", ..TestUser::default() },
    ];
    let cfg =
        config_for(shared_mariadb().addr(), &users, "").replace("name = \"ops\"\n", "name = \"ops\"\nadmin = true\n");
    let c = Corelay::start(&cfg, mode, 4);
    let mut root = shared_mariadb().root().unwrap();
    let shard_of = |id: u64| id >> 24;
    let mut slowest = Duration::ZERO;
    for round in 0..20 {
        let mut a = c.connect("app", "app_pw").unwrap();
        let a_id: u64 = a.query_first("SELECT CONNECTION_ID()").unwrap().unwrap();
        let mut b = (0..64)
            .map(|_| c.connect("app", "app_pw").unwrap())
            .find_map(|mut b| {
                let id: u64 = b.query_first("SELECT CONNECTION_ID()").unwrap().unwrap();
                (shard_of(id) != shard_of(a_id)).then_some(b)
            })
            .expect("a session on another shard");
        let tag = format!("/* tp_kill_{mode}_{round} */");
        let sleeper = {
            let tag = tag.clone();
            std::thread::spawn(move || {
                let r = a.query_drop(format!("SELECT {tag} SLEEP(30)"));
                (a, r, Instant::now())
            })
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let n: Option<i64> = root
                .query_first(format!(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT {tag}%'"
                ))
                .unwrap();
            if n == Some(1) {
                break;
            }
            assert!(Instant::now() < deadline, "the SLEEP never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        let killed_at = Instant::now();
        if round == 18 {
            // An operator's account (`admin = true`) may kill another user's session.
            c.connect("ops", "ops_pw").unwrap().query_drop(format!("KILL QUERY {a_id}")).unwrap();
        } else {
            b.query_drop(format!("KILL QUERY {a_id}")).unwrap();
        }
        let (mut a, r, ended) = sleeper.join().unwrap();
        let took = ended.duration_since(killed_at);
        slowest = slowest.max(took);
        match r {
            Ok(()) => {}
            Err(e) => assert_eq!(err_code(&e), Some(1317), "round {round}: {e}"),
        }
        assert!(took < Duration::from_secs(10), "round {round}: KILL QUERY took {took:?}");
        assert_alive(&mut a);
        if round == 19 {
            let mut other = c.connect("other", "other_pw").unwrap();
            let e = other.query_drop(format!("KILL QUERY {a_id}")).unwrap_err();
            assert_eq!(err_code(&e), Some(1095), "{e}");
            assert_alive(&mut a);
            b.query_drop(format!("KILL {a_id}")).unwrap();
            let e = a.query_drop("SELECT 1").unwrap_err();
            assert_eq!(err_code(&e), Some(1927), "{e}");
        }
    }
    eprintln!("{mode}: slowest KILL QUERY across shards took {slowest:?}");
    let e = root.query_drop("SELECT 1").map(|_| ());
    assert!(e.is_ok());
}

#[test]
fn kill_query_reaches_a_session_of_another_shard_thread_mode() {
    kill_from_another_shard("thread");
}

#[test]
fn kill_query_reaches_a_session_of_another_shard_fork_mode() {
    kill_from_another_shard("fork");
}

/// A user with `multiplex = false` keeps one backend connection of its own for the
/// session's life: its connection's counters are its own, and the connection ends with it.
#[test]
fn a_user_without_multiplexing_keeps_one_connection_of_its_own() {
    let db_user = "tp_solo";
    let cfg = config_as_db_user(db_user, "pool_wait_timeout_ms = 3000")
        .replace("connect_timeout_ms = 1000", "connect_timeout_ms = 1000\nmax_connections = 4")
        .replace("allow = [", "multiplex = false\nallow = [");
    let c = Corelay::start(&cfg, "thread", 1);
    let count = |root: &mut Conn| -> i64 {
        root.query_first(format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{db_user}'"))
            .unwrap()
            .unwrap_or(0)
    };
    let mut root = shared_mariadb().root().unwrap();
    let mut a = c.connect("app", "app_pw").unwrap();
    let thread = |conn: &mut Conn| -> i64 {
        conn.query_first("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT ID FROM%'")
            .unwrap()
            .unwrap()
    };
    let first = thread(&mut a);
    let mut b = c.connect("app", "app_pw").unwrap();
    let b_thread = thread(&mut b);
    assert_ne!(first, b_thread, "two sessions share a connection");
    for _ in 0..5 {
        b.query_drop("SELECT 1").unwrap();
        assert_eq!(thread(&mut a), first, "the session moved to another connection");
    }
    // The session's own counters, as on a direct connection: a fresh connection has run
    // only this session's statements.
    let questions = |conn: &mut Conn| -> i64 {
        let row: (String, String) = conn.query_first("SHOW SESSION STATUS LIKE 'Com_select'").unwrap().unwrap();
        row.1.parse().unwrap()
    };
    let mut deltas = Vec::new();
    for conn in [&mut root, &mut a] {
        let before = questions(conn);
        conn.query_drop("SELECT 1").unwrap();
        conn.exec_drop("SELECT ?", (2,)).unwrap();
        b.query_drop("SELECT 3").unwrap();
        deltas.push(questions(conn) - before);
    }
    assert_eq!(deltas[1], deltas[0], "another session's statements counted on this connection");
    assert_eq!(count(&mut root), 2);
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(&mut root) != 1 {
        assert!(Instant::now() < deadline, "the session's connection outlived it");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut a2 = c.connect("app", "app_pw").unwrap();
    assert_ne!(thread(&mut a2), first);
}

/// One counter of the admin port's SHOW STATS (0 when it has not counted yet).
fn stat(c: &Corelay, name: &str) -> u64 {
    let (ok, out, err) = mariadb_cli(c.admin_port, "admin", "admin_pw", "SHOW STATS\n");
    assert!(ok, "{err}");
    lines(&out).iter().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or(0)
}

/// A stored function sets a user variable: nothing in `DO f()` says so, but the server's
/// session tracking does. The session keeps its connection (and the variable), the next
/// session never sees it, and the pin is counted. Before session tracking was on for every
/// backend connection, B read 42.
#[test]
fn a_state_change_only_the_server_saw_keeps_the_connection() {
    let c = two_connections_unpiped("tp_unforeseen");
    let mut a = c.connect("app", "app_pw").unwrap();
    a.query_drop(
        "CREATE OR REPLACE FUNCTION tp_leaky() RETURNS INT DETERMINISTIC BEGIN SET @tp_leak = 42; RETURN 1; END",
    )
    .unwrap();
    a.query_drop("DO tp_leaky()").unwrap();
    let mut b = c.connect("app", "app_pw").unwrap();
    assert_eq!(first_i64(&mut b, "SELECT @tp_leak"), None, "B read A's variable");
    assert_eq!(first_i64(&mut a, "SELECT @tp_leak"), Some(42), "A lost its variable");
    assert!(stat(&c, "pins_unpredicted_state_change") >= 1, "the pin is not counted");
    drop((a, b));
    // In a SELECT, with result sets that end with an OK (CLIENT_DEPRECATE_EOF, as this
    // client asks) and with an EOF (PyMySQL), whose status flag is all it says then.
    let mut a = c.connect("app", "app_pw").unwrap();
    assert_eq!(first_i64(&mut a, "SELECT tp_leaky()"), Some(1));
    let mut b = c.connect("app", "app_pw").unwrap();
    assert_eq!(first_i64(&mut b, "SELECT @tp_leak"), None, "B read A's variable (OK-ended result)");
    assert_eq!(first_i64(&mut a, "SELECT @tp_leak"), Some(42), "A lost its variable (OK-ended result)");
    drop((a, b));
    let out = python(&format!(
        r#"
import pymysql
def conn():
    return pymysql.connect(host="127.0.0.1", port={port}, user="app", password="app_pw", database="{db}", autocommit=True)
a = conn()
ca = a.cursor()
ca.execute("SELECT tp_leaky()")
b = conn()
cb = b.cursor()
cb.execute("SELECT @tp_leak")
print("B", cb.fetchone()[0])
ca.execute("SELECT @tp_leak")
print("A", ca.fetchone()[0])
"#,
        port = c.port,
        db = DB_NAME
    ));
    assert_eq!(lines(&out), ["B None", "A 42"], "EOF-ended result");
}

/// A variable is replayed with the value the server reports for it: the whole of
/// `optimizer_switch` after two partial SETs (replaying the last text lost the first), and
/// the value of an expression, in text and in a prepared statement (which kept the
/// connection before). A's connection goes back to the pool, B takes it and holds it, and
/// A's next statement runs on the other one (which another session held meanwhile).
#[test]
fn variables_are_replayed_with_the_values_the_server_reports() {
    let c = two_connections_unpiped("tp_values");
    // Holds one of the two connections while A works on the other.
    let mut hold = c.connect("app", "app_pw").unwrap();
    hold.query_drop("BEGIN").unwrap();
    let mut a = c.connect("app", "app_pw").unwrap();
    a.query_drop("SET optimizer_switch = 'index_merge=off'").unwrap();
    a.query_drop("SET optimizer_switch = 'mrr=on'").unwrap();
    a.query_drop("SET lc_time_names = CONCAT('de', '_DE')").unwrap();
    a.exec_drop("SET time_zone = ?", ("+03:00",)).unwrap();
    // (CONNECTION_ID() alone is the session's id; in an expression, the server's.)
    let before = first_i64(&mut a, "SELECT CONNECTION_ID() + 0");
    let mut b = c.connect("app", "app_pw").unwrap();
    b.query_drop("BEGIN").unwrap();
    assert_eq!(first_i64(&mut b, "SELECT CONNECTION_ID() + 0"), before, "A kept its connection");
    hold.query_drop("COMMIT").unwrap();
    let row: (i64, i64, String, String) = a
        .query_first(
            "SELECT CONNECTION_ID(), @@optimizer_switch LIKE 'index_merge=off,%mrr=on,%', @@lc_time_names, @@time_zone",
        )
        .unwrap()
        .unwrap();
    assert_ne!(Some(row.0), before, "A did not move");
    assert_eq!((row.1, row.2.as_str(), row.3.as_str()), (1, "de_DE", "+03:00"));
    let row: (i64, String) =
        b.query_first("SELECT @@optimizer_switch LIKE 'index_merge=on,%mrr=off,%', @@lc_time_names").unwrap().unwrap();
    assert_eq!(row, (1, "en_US".to_string()), "B has A's settings");
    b.query_drop("COMMIT").unwrap();
}

/// Every backend connection tracks all session state, but a client is told only what a
/// direct connection would tell it: nothing without CLIENT_SESSION_TRACK, and what the
/// server's default trackers report with it. OK packets (status flags and session-state
/// information) and EOF status flags are compared byte for byte with a direct connection.
/// (`SET STATEMENT` with a tracked variable comes last: when MariaDB reports the restored
/// value depends on the trackers in force, a difference the README lists.)
#[test]
fn clients_are_told_of_session_state_as_on_a_direct_connection() {
    let c = two_connections("tp_okview");
    let direct = shared_mariadb().addr().port();
    let script = format!(
        r#"
import pymysql, pymysql.protocol as P
from pymysql.constants import CLIENT
seen = []
orig = P.EOFPacketWrapper.__init__
def eof(self, packet):
    orig(self, packet)
    seen.append(("eof", self.server_status))
P.EOFPacketWrapper.__init__ = eof
stmts = ["SET time_zone = '+01:00'", "USE mysql", "USE {db}", "SET @tp_a = 1", "SET sql_mode = 'ANSI'",
         "SET autocommit = 0", "SET autocommit = 1", "SET wait_timeout = 100", "SET lc_time_names = CONCAT('de', '_DE')",
         "SET @@session.time_zone = @@global.time_zone", "SET STATEMENT sql_select_limit = 1 FOR SELECT 1",
         "CREATE TEMPORARY TABLE tp_okv (a INT)", "PREPARE s FROM 'SELECT 1'", "DEALLOCATE PREPARE s", "SELECT 1",
         "SET STATEMENT time_zone = '+02:00' FOR SELECT 1"]
def run(port, user, password, flag):
    seen.clear()
    c = pymysql.connect(host="127.0.0.1", port=port, user=user, password=password, database="{db}",
                        client_flag=flag, autocommit=True)
    cur = c.cursor()
    for s in stmts:
        cur.execute(s)
        seen.append((s, c._result.server_status, c._result.message))
    c.close()
    return list(seen)
for flag in (0, CLIENT.SESSION_TRACK):
    d = run({direct}, "tp_okview", "{pw}", flag)
    p = run({port}, "app", "app_pw", flag)
    print(flag, "same" if d == p else "differ")
    for x, y in zip(d, p):
        if x != y:
            print("  direct", x, "\n  proxy ", y)
"#,
        db = DB_NAME,
        pw = DB_PASSWORD,
        port = c.port,
    );
    let out = python(&script);
    assert_eq!(lines(&out).iter().filter(|l| l.ends_with(" same")).count(), 2, "{out}");
}

/// A prepared statement with parameters, run on a pipelined connection, reports a warning;
/// SHOW WARNINGS next runs on a connection of the session's own, where corelay runs the
/// EXECUTE again first (prepared there, with its parameter types), so the warning is read
/// as on a direct connection. Before, only parameterless statements were run again and
/// SHOW WARNINGS came back empty.
#[test]
fn warnings_of_a_pipelined_execute_with_parameters_stay_readable() {
    let c = two_connections("tp_warned");
    let mut a = c.connect("app", "app_pw").unwrap();
    let piped = stat(&c, "statements_pipelined");
    let got: Option<i64> = a.exec_first("SELECT CAST(? AS SIGNED) + 0", ("12abc",)).unwrap();
    assert_eq!(got, Some(12));
    assert!(stat(&c, "statements_pipelined") > piped, "the EXECUTE did not go down a pipe");
    let warnings: Vec<(String, u32, String)> = a.query("SHOW WARNINGS").unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].1, 1292, "{warnings:?}");
    assert!(warnings[0].2.contains("12abc"), "{warnings:?}");
}
