//! Shared test harness: throwaway MariaDB servers and the real `corelay` binary.
//!
//! One MariaDB datadir is initialised per test binary (`mariadb-install-db`) and copied
//! for every server started from it; each server runs on its own port and socket and is
//! killed when its handle drops (or, for the shared one, when the test process exits).
//! corelay is started with a generated configuration on free ports and stopped on drop.
#![allow(dead_code)]

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder};

pub mod zookeeper;

pub const DB_USER: &str = "app_db";
pub const DB_PASSWORD: &str = "app_db_pw";
pub const DB_NAME: &str = "app";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Processes and directories to clean up when the test binary exits.
static CLEANUP: Mutex<Vec<(u32, Option<PathBuf>)>> = Mutex::new(Vec::new());

extern "C" fn cleanup_at_exit() {
    if let Ok(list) = CLEANUP.lock() {
        for (pid, dir) in list.iter() {
            if *pid != 0 {
                // SAFETY: sending a signal to a child we started.
                unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
            }
            if let Some(d) = dir {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }
}

fn register_cleanup(pid: u32, dir: Option<PathBuf>) {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(cleanup_at_exit) };
    });
    CLEANUP.lock().unwrap().push((pid, dir));
}

fn unregister_cleanup(pid: u32) {
    CLEANUP.lock().unwrap().retain(|(p, _)| *p != pid);
}

/// A port nobody listens on right now. Ports are handed out from a per-process range
/// (derived from the pid) so parallel test binaries rarely collide, and each is checked.
/// They stay below Linux's ephemeral range (32768 and up): a port from there can be taken
/// as the local port of an outgoing connection between the check and the listen.
pub fn free_port() -> u16 {
    const FIRST: u16 = 10000;
    const LAST: u16 = 32700;
    static NEXT: Mutex<u16> = Mutex::new(0);
    let mut next = NEXT.lock().unwrap();
    if *next == 0 {
        *next = FIRST + (std::process::id() % 220) as u16 * 100;
    }
    loop {
        let p = *next;
        *next = if p >= LAST { FIRST } else { p + 1 };
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// A directory of this test binary's own, removed with the others at exit.
pub fn scratch_dir(name: &str) -> PathBuf {
    let d = scratch_root().join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn scratch_root() -> PathBuf {
    let base = std::env::var_os("CORELAY_TEST_TMP").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("corelay-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Common server flags: small, fast, and large packets allowed.
fn server_args(datadir: &Path) -> Vec<String> {
    let mut a = vec![
        "--no-defaults".to_string(),
        format!("--datadir={}", datadir.display()),
        "--innodb-log-file-size=8M".into(),
        "--innodb-buffer-pool-size=32M".into(),
    ];
    if is_root() {
        a.push("--user=root".into());
    }
    a
}

/// The initialised datadir every server of this test binary is copied from.
fn template_datadir() -> &'static PathBuf {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = scratch_root().join("template");
        let _ = std::fs::remove_dir_all(&dir);
        let mut cmd = Command::new("mariadb-install-db");
        cmd.args(server_args(&dir))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let out = cmd.output().expect("mariadb-install-db is installed (apt-get install mariadb-server)");
        assert!(out.status.success(), "mariadb-install-db failed: {}", String::from_utf8_lossy(&out.stderr));
        register_cleanup(0, Some(scratch_root()));
        dir
    })
}

/// A MariaDB server on its own port, killed on drop.
pub struct MariaDb {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    extra: Vec<String>,
}

impl MariaDb {
    pub fn start() -> MariaDb {
        Self::start_with(&["--skip-log-bin"])
    }

    /// A server with extra `mariadbd` flags (for replication: binlog, server id).
    pub fn start_with(extra: &[&str]) -> MariaDb {
        let template = template_datadir();
        let port = free_port();
        let dir = scratch_root().join(format!("mdb-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        let status = Command::new("cp").arg("-a").arg(template).arg(&dir).status().unwrap();
        assert!(status.success());
        let mut m = MariaDb { port, dir, child: None, extra: extra.iter().map(|s| s.to_string()).collect() };
        m.spawn();
        m.setup_users();
        m
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        let child = Command::new("mariadbd")
            .args(server_args(&self.dir))
            .arg(format!("--port={}", self.port))
            .arg(format!("--socket={}", self.dir.join("sock").display()))
            .arg(format!("--pid-file={}", self.dir.join("pid").display()))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--performance-schema=OFF",
                "--max-allowed-packet=256M",
                "--max-connections=2000",
                "--innodb-flush-log-at-trx-commit=2",
                "--local-infile=1",
            ])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mariadbd is installed");
        register_cleanup(child.id(), None);
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.root().is_ok() {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!(
                        "mariadbd exited with {st}: {}",
                        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
                    );
                }
            }
            assert!(Instant::now() < deadline, "mariadbd on port {} not ready in 60 s", self.port);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn setup_users(&self) {
        let mut c = self.root().unwrap();
        c.query_drop(format!(
            "CREATE USER IF NOT EXISTS {DB_USER}@'%' IDENTIFIED BY '{DB_PASSWORD}';
             GRANT ALL ON *.* TO {DB_USER}@'%';
             CREATE USER IF NOT EXISTS b_db@'%' IDENTIFIED BY '{DB_PASSWORD}';
             GRANT ALL ON *.* TO b_db@'%';
             CREATE DATABASE IF NOT EXISTS {DB_NAME};"
        ))
        .unwrap();
    }

    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// A root connection straight to the server.
    pub fn root(&self) -> mysql::Result<Conn> {
        Conn::new(
            OptsBuilder::new()
                .ip_or_hostname(Some("127.0.0.1"))
                .tcp_port(self.port)
                .user(Some("root"))
                .prefer_socket(false),
        )
    }

    /// Starts a killed server again on the same port and datadir.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Kills the server at once (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            unregister_cleanup(c.id());
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A primary and a replica with real (binlog) replication between them.
pub fn replicated_pair() -> (MariaDb, MariaDb) {
    let (primary, mut replicas) = replication(1);
    (primary, replicas.remove(0))
}

/// A primary and `n` replicas (server ids 1, 2, 3, ...) with real binlog replication.
pub fn replication(n: usize) -> (MariaDb, Vec<MariaDb>) {
    let primary = MariaDb::start_with(&["--log-bin=mysql-bin", "--server-id=1", "--binlog-format=ROW"]);
    let mut p = primary.root().unwrap();
    let logs: Vec<mysql::Row> = p.query("SHOW BINARY LOGS").unwrap();
    let first: String = logs.first().and_then(|r| r.get(0)).expect("the primary writes a binlog");
    let replicas: Vec<MariaDb> = (0..n)
        .map(|k| {
            let id = format!("--server-id={}", k + 2);
            let replica = MariaDb::start_with(&["--skip-log-bin", &id, "--relay-log=relay-bin"]);
            replica
                .root()
                .unwrap()
                .query_drop(format!(
                    "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='root', MASTER_PASSWORD='', \
                     MASTER_LOG_FILE='{first}', MASTER_LOG_POS=4, MASTER_USE_GTID=no; START SLAVE",
                    primary.port
                ))
                .unwrap();
            replica
        })
        .collect();
    // Replication works once a marker written on the primary shows up on every replica.
    p.query_drop("CREATE DATABASE IF NOT EXISTS repl_check").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    for r in &replicas {
        let mut conn = r.root().unwrap();
        loop {
            let n: Option<i64> = conn
                .query_first("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'repl_check'")
                .unwrap();
            if n == Some(1) {
                break;
            }
            assert!(Instant::now() < deadline, "replication did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    (primary, replicas)
}

/// One MariaDB shared by all tests of a binary (tests must not depend on each other's data:
/// each uses its own tables).
pub fn shared_mariadb() -> &'static MariaDb {
    static SHARED: OnceLock<MariaDb> = OnceLock::new();
    SHARED.get_or_init(MariaDb::start)
}

/// A config for the shared server (as [`config_for`], with the default product user) whose
/// shards log in as `db_user`: a server user of the calling test alone, created here, so
/// that its connections can be found or counted on the server.
pub fn config_as_db_user(db_user: &str, proxy_extra: &str) -> String {
    let db = shared_mariadb();
    db.root()
        .unwrap()
        .query_drop(format!(
            "CREATE USER IF NOT EXISTS {db_user}@'%' IDENTIFIED BY '{DB_PASSWORD}'; GRANT ALL ON *.* TO {db_user}@'%'"
        ))
        .unwrap();
    config_for(db.addr(), &[TestUser::default()], proxy_extra)
        .replace(&format!("name = \"{DB_USER}\""), &format!("name = \"{db_user}\""))
        .replace(&format!("db_user = \"{DB_USER}\""), &format!("db_user = \"{db_user}\""))
}

/// A product user for generated configs.
pub struct TestUser<'a> {
    pub name: &'a str,
    pub password: &'a str,
    pub auth: &'a str,
    pub max_connections: u32,
    pub allow: &'a str,
    /// More keys of the `[[user]]` block.
    pub extra: &'a str,
}

impl Default for TestUser<'_> {
    fn default() -> Self {
        TestUser {
            name: "app",
            password: "app_pw",
            auth: "mysql_native_password",
            max_connections: 1000,
            allow: "\"127.0.0.1/32\", \"::1/128\"",
            extra: "",
        }
    }
}

/// Health checks log in as root, so that connections counted by db user are the shards'.
pub const MONITOR: &str = "monitor_user = \"root\"\n";

/// A config for one cluster whose primary is `backend`, with the given users.
pub fn config_for(backend: SocketAddr, users: &[TestUser], proxy_extra: &str) -> String {
    let mut s = format!(
        "[proxy]\n{proxy_extra}\n\n[[cluster]]\nname = \"main\"\n{MONITOR}\n[[cluster.server]]\naddress = \"{backend}\"\nrole = \"primary\"\nconnect_timeout_ms = 1000\n\n\
[[db_user]]\nname = \"{DB_USER}\"\npassword = \"{DB_PASSWORD}\"\ncluster = \"main\"\ndefault_db = \"{DB_NAME}\"\n\n"
    );
    for u in users {
        s.push_str(&format!(
            "[[user]]\nname = \"{}\"\npassword = \"{}\"\ndb_user = \"{DB_USER}\"\nauth = \"{}\"\nmax_connections = {}\nallow = [{}]\n{}\n\n",
            u.name, u.password, u.auth, u.max_connections, u.allow, u.extra
        ));
    }
    s.push_str("[[admin_user]]\nname = \"admin\"\npassword = \"admin_pw\"\n");
    s
}

/// The real corelay binary, stopped on drop.
/// The corelay binary under test: this build's, or CORELAY_TEST_BINARY (an older build, to
/// see a test fail without the change it covers).
pub fn corelay_binary() -> std::ffi::OsString {
    std::env::var_os("CORELAY_TEST_BINARY").unwrap_or_else(|| env!("CARGO_BIN_EXE_corelay").into())
}

pub struct Corelay {
    pub port: u16,
    pub admin_port: u16,
    pub metrics_port: u16,
    pub child: Child,
    pub dir: PathBuf,
}

impl Corelay {
    /// Starts corelay with `config` (its `[proxy]` listen keys are added here).
    pub fn start(config: &str, mode: &str, workers: usize) -> Corelay {
        let port = free_port();
        let dir = scratch_root().join(format!("corelay-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("corelay.toml");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.join("corelay.log")).unwrap();
        let (admin_port, metrics_port) = (free_port(), free_port());
        let child = Command::new(corelay_binary())
            .arg("--config")
            .arg(&path)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .args(["--workers", &workers.to_string(), "--worker-mode", mode, "--log-level", "info"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        register_cleanup(child.id(), None);
        let mut c = Corelay { port, admin_port, metrics_port, child, dir };
        c.wait_ready();
        c
    }

    /// Waits until a shard answers with a greeting.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut b = [0u8; 5];
                if s.read_exact(&mut b).is_ok() && b[4] == 10 {
                    return;
                }
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("corelay exited with {st}: {}", self.log());
            }
            assert!(Instant::now() < deadline, "corelay not ready: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("corelay.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Pids of forked shard processes.
    pub fn shard_pids(&self) -> Vec<u32> {
        let path = format!("/proc/{0}/task/{0}/children", self.pid());
        std::fs::read_to_string(path).unwrap_or_default().split_whitespace().filter_map(|p| p.parse().ok()).collect()
    }

    pub fn opts(&self, user: &str, password: &str, db: Option<&str>) -> OptsBuilder {
        client_opts(self.port, user, password, db)
    }

    pub fn connect(&self, user: &str, password: &str) -> mysql::Result<Conn> {
        Conn::new(self.opts(user, password, Some(DB_NAME)))
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(&mut self) -> Option<i32> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                unregister_cleanup(self.child.id());
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        None
    }
}

impl Drop for Corelay {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        unregister_cleanup(self.child.id());
    }
}

/// Options for the `mysql` crate to log in at 127.0.0.1:`port` over TCP.
pub fn client_opts(port: u16, user: &str, password: &str, db: Option<&str>) -> OptsBuilder {
    OptsBuilder::new()
        .ip_or_hostname(Some("127.0.0.1"))
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(password))
        .db_name(db)
        .prefer_socket(false)
}

/// Runs the `mariadb` command-line client against corelay; returns (status ok, stdout, stderr).
pub fn mariadb_cli(port: u16, user: &str, password: &str, sql: &str) -> (bool, String, String) {
    mariadb_cli_with(port, user, password, sql, &["--skip-ssl"])
}

/// [`mariadb_cli`] over TLS, verifying the server's certificate against `ca` (as a
/// MariaDB 11.4 client does by default).
pub fn mariadb_cli_tls(port: u16, user: &str, password: &str, ca: &Path, sql: &str) -> (bool, String, String) {
    let ca = format!("--ssl-ca={}", ca.display());
    mariadb_cli_with(port, user, password, sql, &["--ssl", "--ssl-verify-server-cert", &ca])
}

/// [`mariadb_cli`] with other TLS flags.
pub fn mariadb_cli_with(port: u16, user: &str, password: &str, sql: &str, tls: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new("mariadb");
    cmd.args(["--no-defaults", "-h127.0.0.1", &format!("-P{port}"), &format!("-u{user}"), "--batch"]);
    cmd.args(tls);
    cmd.arg("--connect-timeout=10");
    if !password.is_empty() {
        cmd.arg(format!("-p{password}"));
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mariadb client is installed");
    child.stdin.take().unwrap().write_all(sql.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a Python snippet (PyMySQL) and returns its stdout; panics with stderr on failure.
pub fn python(script: &str) -> String {
    let out = Command::new("python3").arg("-c").arg(script).output().expect("python3 is installed");
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Reads one raw packet from a plain socket (for tests that speak bytes).
pub fn read_raw_packet(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 4];
    s.read_exact(&mut h)?;
    let len = h[0] as usize | (h[1] as usize) << 8 | (h[2] as usize) << 16;
    let mut p = vec![0; len];
    s.read_exact(&mut p)?;
    Ok((h[3], p))
}

/// Extracts the MySQL error code from a client error.
pub fn err_code(e: &mysql::Error) -> Option<u16> {
    match e {
        mysql::Error::MySqlError(m) => Some(m.code),
        _ => None,
    }
}

/// A second session that must keep working while another misbehaves.
pub fn assert_alive(conn: &mut Conn) {
    let v: Option<i64> = conn.query_first("SELECT 40 + 2").expect("the other session keeps working");
    assert_eq!(v, Some(42));
}

pub fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

pub fn read_line(r: &mut impl BufRead) -> String {
    let mut s = String::new();
    r.read_line(&mut s).unwrap();
    s
}

/// Logs in over a plain socket with mysql_native_password; for tests that send raw bytes.
pub fn raw_login(port: u16, user: &str, password: &str) -> TcpStream {
    raw_login_on(TcpStream::connect(("127.0.0.1", port)).unwrap(), user, password)
}

/// [`raw_login`] on a socket already connected.
pub fn raw_login_on(s: TcpStream, user: &str, password: &str) -> TcpStream {
    raw_login_with(s, user, password, 0)
}

/// [`raw_login_on`] asking for MariaDB's extended capabilities `ext` as well (which the
/// greeting must offer).
pub fn raw_login_with(mut s: TcpStream, user: &str, password: &str, ext: u32) -> TcpStream {
    use corelay::protocol::{auth, caps, handshake};
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let (_, g) = read_raw_packet(&mut s).unwrap();
    let g = handshake::Greeting::parse(&g).unwrap();
    let mut capabilities = caps::BACKEND_REQUIRED | caps::DEPRECATE_EOF;
    if ext != 0 {
        assert_eq!(g.mariadb_capabilities & ext, ext, "the greeting offers MariaDB capabilities {ext:#x}");
        capabilities &= !caps::LONG_PASSWORD;
    }
    let hr = handshake::HandshakeResponse {
        capabilities,
        mariadb_capabilities: ext,
        max_packet: 1 << 24,
        charset: 45,
        user: user.into(),
        auth_response: auth::native_proof(password.as_bytes(), &g.scramble),
        database: None,
        auth_plugin: Some(auth::NATIVE.into()),
        attributes: Vec::new(),
    };
    let mut out = Vec::new();
    hr.write(&mut out, 1);
    s.write_all(&out).unwrap();
    let (_, ok) = read_raw_packet(&mut s).unwrap();
    assert_eq!(ok[0], 0, "login failed: {}", String::from_utf8_lossy(&ok));
    s
}

/// Sends one command packet (sequence 0) over a raw socket.
pub fn send_command(s: &mut TcpStream, payload: &[u8]) {
    let mut out = Vec::new();
    corelay::protocol::packet::write_packet(&mut out, 0, payload);
    s.write_all(&out).unwrap();
}

/// Decodes an ERR packet payload into (code, message).
pub fn parse_err(p: &[u8]) -> (u16, String) {
    let e = corelay::protocol::err::ErrPacket::parse(p).unwrap_or_else(|_| panic!("not an ERR packet: {p:?}"));
    (e.code, e.message)
}

/// A config with two clusters: user `app` on `a`, user `b_app` on `b`.
pub fn two_cluster_config(a: SocketAddr, b: SocketAddr, proxy_extra: &str) -> String {
    format!(
        "[proxy]\n{proxy_extra}\n\n\
[[cluster]]\nname = \"a\"\n{MONITOR}[[cluster.server]]\naddress = \"{a}\"\nrole = \"primary\"\nconnect_timeout_ms = 1000\n\n\
[[cluster]]\nname = \"b\"\n{MONITOR}[[cluster.server]]\naddress = \"{b}\"\nrole = \"primary\"\nconnect_timeout_ms = 1000\n\n\
[[db_user]]\nname = \"{DB_USER}\"\npassword = \"{DB_PASSWORD}\"\ncluster = \"a\"\ndefault_db = \"{DB_NAME}\"\n\n\
[[db_user]]\nname = \"b_db\"\npassword = \"{DB_PASSWORD}\"\ncluster = \"b\"\ndefault_db = \"{DB_NAME}\"\n\n\
[[user]]\nname = \"app\"\npassword = \"app_pw\"\ndb_user = \"{DB_USER}\"\n\n\
[[user]]\nname = \"b_app\"\npassword = \"app_pw\"\ndb_user = \"b_db\"\n"
    )
}

/// Runs sysbench's `workload` (2 tables of 2000 rows in database `sbtest`) against
/// 127.0.0.1:`port`; returns (status ok, its report).
pub fn sysbench(workload: &str, port: u16, user: &str, password: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("sysbench")
        .arg(workload)
        .args(["--db-driver=mysql", "--mysql-host=127.0.0.1", &format!("--mysql-port={port}")])
        .args([&format!("--mysql-user={user}"), &format!("--mysql-password={password}"), "--mysql-db=sbtest"])
        .args(["--tables=2", "--table-size=2000"])
        .args(args)
        .output()
        .expect("sysbench is installed");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The transaction count of a sysbench report.
pub fn transactions(report: &str) -> u64 {
    sysbench_figure(report, "transactions:")
}

/// The first number after `label` at the start of a line of a sysbench report.
pub fn sysbench_figure(report: &str, label: &str) -> u64 {
    report
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .and_then(|l| l.trim_start()[label.len()..].split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A result of the admin port as rows of column name to value.
pub fn admin_table(port: u16, sql: &str) -> Vec<std::collections::HashMap<String, String>> {
    let (ok, out, err) = mariadb_cli(port, "admin", "admin_pw", sql);
    assert!(ok, "{sql}: {err}");
    let mut lines = out.lines();
    let head: Vec<String> = lines.next().unwrap_or_default().split('\t').map(String::from).collect();
    lines.map(|l| head.iter().cloned().zip(l.split('\t').map(String::from)).collect()).collect()
}

/// The body of an HTTP/1.0 GET of `path` at 127.0.0.1:`port`.
pub fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or(out)
}

/// Polls `f` every 5 ms until it holds; how long that took (panics after `limit`).
pub fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}
