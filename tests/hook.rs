//! A routing hook of the test's own, in a corelay run in this process the way an embedder
//! runs it (`hook::install`, then `corelay::cli::run_from`): it refuses connections and
//! logins, routes statements over what the rules said, refuses a statement, and hears how
//! statements ended.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use common::*;
use corelay::router::hook::{self, Auth, Connect, Decision, Hook, Outcome, Refusal, Route, Statement};
use mysql::prelude::Queryable;
use mysql::Conn;

static CONNECTS: AtomicU64 = AtomicU64::new(0);
static LOGINS: AtomicU64 = AtomicU64::new(0);
static RESULTS: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);
static REFUSE_CONNECTS: AtomicBool = AtomicBool::new(false);

struct TestHook;

fn has(text: &[u8], word: &str) -> bool {
    text.windows(word.len()).any(|w| w == word.as_bytes())
}

impl Hook for TestHook {
    fn on_connect(&self, _c: &Connect) -> Option<Refusal> {
        CONNECTS.fetch_add(1, SeqCst);
        REFUSE_CONNECTS.load(SeqCst).then(|| Refusal::new(1040, "the test hook takes no connections now"))
    }

    fn on_auth(&self, a: &Auth<'_>) -> Option<Refusal> {
        LOGINS.fetch_add(1, SeqCst);
        (a.user == "hook_blocked").then(|| Refusal::new(1045, "hook_blocked may not log in"))
    }

    fn on_statement(&self, s: &Statement<'_>, d: &mut Decision) {
        if has(s.text, "hook_replica") {
            d.route = Some(Route::Replica);
        }
        if has(s.text, "DELETE FROM hook_t") && !has(s.text, "WHERE") {
            d.error = Some(Refusal::new(1175, "DELETE without WHERE refused by the test hook"));
        }
    }

    fn on_result(&self, o: &Outcome<'_>) {
        RESULTS.fetch_add(1, SeqCst);
        if o.error != 0 {
            FAILED.fetch_add(1, SeqCst);
        }
    }
}

fn first_int(conn: &mut Conn, sql: &str) -> i64 {
    let row: mysql::Row = conn.query_first(sql).unwrap().unwrap();
    row.get(0).unwrap()
}

#[test]
fn an_embedders_hook_sees_connections_logins_statements_and_results() {
    let (primary, replica) = replicated_pair();
    let blocked = TestUser { name: "hook_blocked", password: "blocked_pw", ..TestUser::default() };
    let cfg = config_for(primary.addr(), &[TestUser::default(), blocked], "").replace(
        "[[db_user]]",
        &format!("[[cluster.server]]\naddress = \"{}\"\nrole = \"replica\"\n\n[[db_user]]", replica.addr()),
    );
    // The rules run first: this one sends `rule_primary` statements to the primary.
    let cfg = format!("{cfg}\n[[rule]]\npattern = \"rule_primary\"\nroute = \"primary\"\n");
    let dir = scratch_dir("hook");
    let path = dir.join("corelay.toml");
    std::fs::write(&path, cfg).unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let args: Vec<String> = vec![
        "corelay".into(),
        "--config".into(),
        path.display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--admin-listen".into(),
        format!("127.0.0.1:{admin_port}"),
        "--metrics-listen".into(),
        format!("127.0.0.1:{}", free_port()),
        "--workers".into(),
        "2".into(),
        "--worker-mode".into(),
        "thread".into(),
    ];
    hook::install(Box::new(TestHook)).unwrap();
    assert!(hook::install(Box::new(TestHook)).is_err(), "one hook per process");
    let proxy = std::thread::spawn(move || corelay::cli::run_from(args));

    let opts = |user: &str, pw: &str| client_opts(port, user, pw, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut conn = loop {
        match Conn::new(opts("app", "app_pw")) {
            Ok(c) => break c,
            Err(e) => assert!(Instant::now() < deadline, "corelay did not start: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(CONNECTS.load(SeqCst) >= 1 && LOGINS.load(SeqCst) >= 1);

    // Logins and connections the hook refuses.
    let e = Conn::new(opts("hook_blocked", "blocked_pw")).unwrap_err();
    assert_eq!(err_code(&e), Some(1045), "{e}");
    assert!(e.to_string().contains("hook_blocked may not log in"), "{e}");
    REFUSE_CONNECTS.store(true, SeqCst);
    let e = Conn::new(opts("app", "app_pw")).unwrap_err();
    assert!(e.to_string().contains("the test hook takes no connections now"), "{e}");
    REFUSE_CONNECTS.store(false, SeqCst);

    // Routes: the rule's, then the hook's over it.
    assert_eq!(first_int(&mut conn, "SELECT @@server_id"), 2);
    assert_eq!(first_int(&mut conn, "SELECT @@server_id, 'rule_primary'"), 1);
    assert_eq!(first_int(&mut conn, "SELECT @@server_id, 'rule_primary hook_replica'"), 2);
    let written = first_int(&mut conn, "SELECT @@server_id FROM (SELECT 1) t FOR UPDATE");
    assert_eq!(written, 1, "a locking read goes to the primary");

    // A refusal: nothing reaches the server.
    conn.query_drop("CREATE TABLE IF NOT EXISTS hook_t (id INT PRIMARY KEY)").unwrap();
    conn.query_drop("REPLACE INTO hook_t VALUES (1)").unwrap();
    let e = conn.query_drop("DELETE FROM hook_t").unwrap_err();
    assert_eq!(err_code(&e), Some(1175), "{e}");
    let mut direct = primary.root().unwrap();
    assert_eq!(first_int(&mut direct, &format!("SELECT COUNT(*) FROM {DB_NAME}.hook_t")), 1);

    // Results, failed ones among them.
    let (results, failed) = (RESULTS.load(SeqCst), FAILED.load(SeqCst));
    assert!(conn.query_drop("SELECT * FROM hook_no_such_table").is_err());
    conn.query_drop("SELECT 1").unwrap();
    wait_for(Duration::from_secs(10), "on_result heard both statements", || RESULTS.load(SeqCst) >= results + 2);
    wait_for(Duration::from_secs(10), "on_result heard the failure", || FAILED.load(SeqCst) > failed);

    let (ok, _, err) = mariadb_cli(admin_port, "admin", "admin_pw", "SHUTDOWN");
    assert!(ok, "{err}");
    wait_for(Duration::from_secs(10), "corelay stopped", || proxy.is_finished());
}
