//! The master and its shards: respawn in fork mode, clean stop, CLI and config checks.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn corelay() -> Command {
    Command::new(env!("CARGO_BIN_EXE_corelay"))
}

#[test]
fn fork_mode_respawns_a_killed_shard_within_a_second() {
    let mut c = Corelay::start(&config_for(shared_mariadb().addr(), &[TestUser::default()], ""), "fork", 2);
    // /proc's children list is read without stopping the process: poll it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let shards = loop {
        let pids = c.shard_pids();
        if pids.len() == 2 || Instant::now() > deadline {
            break pids;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(shards.len(), 2, "two forked shards: {shards:?}");
    let mut survivor = c.connect("app", "app_pw").unwrap();
    let victim = shards[0];
    // SAFETY: killing a child process of the corelay we started.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let killed = Instant::now();
    let respawned = loop {
        let now = c.shard_pids();
        if now.len() == 2 && !now.contains(&victim) {
            break killed.elapsed();
        }
        assert!(killed.elapsed() < Duration::from_secs(5), "no respawn: {now:?}\n{}", c.log());
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(respawned < Duration::from_secs(1), "respawned after {respawned:?}");
    // New connections succeed (the kernel spreads them over both shards).
    for _ in 0..20 {
        let mut conn = c.connect("app", "app_pw").expect("new connections succeed after a respawn");
        assert_alive(&mut conn);
    }
    // The survivor session may have been on the killed shard; if not, it still works.
    let _ = mysql::prelude::Queryable::query_drop(&mut survivor, "SELECT 1");
    drop(survivor);
    assert!(c.log().contains("shard died; restarting"));
    assert_eq!(c.stop(), Some(0));
}

#[test]
fn sigterm_stops_cleanly_in_both_modes() {
    for mode in ["thread", "fork"] {
        let mut c = Corelay::start(&config_for(shared_mariadb().addr(), &[TestUser::default()], ""), mode, 2);
        let mut conn = c.connect("app", "app_pw").unwrap();
        assert_alive(&mut conn);
        drop(conn);
        assert_eq!(c.stop(), Some(0), "{mode}: {}", c.log());
        // The listening sockets close with the processes that hold them.
        let deadline = Instant::now() + Duration::from_secs(3);
        while std::net::TcpStream::connect(("127.0.0.1", c.port)).is_ok() {
            assert!(Instant::now() < deadline, "{mode}: still listening");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn check_config_accepts_valid_and_names_bad_keys() {
    let dir = std::env::temp_dir().join(format!("corelay-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, config_for(([127, 0, 0, 1], 3306).into(), &[TestUser::default()], "")).unwrap();
    let out = corelay().arg("check-config").arg(&good).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("[proxy]") && printed.contains("worker_mode = \"thread\""), "{printed}");
    assert!(!printed.contains("app_pw"), "passwords are masked");

    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        config_for(([127, 0, 0, 1], 3306).into(), &[TestUser::default()], "")
            .replace("db_user = \"app_db\"\nauth", "db_user = \"missing\"\nauth"),
    )
    .unwrap();
    let out = corelay().arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml") && err.contains("user[0].db_user") && err.contains("missing"), "{err}");

    let unknown = dir.join("unknown.toml");
    std::fs::write(&unknown, "[proxy]\nlisten_addr = \"x\"\n").unwrap();
    let out = corelay().arg("check-config").arg(&unknown).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen_addr"));

    // CLI flags override the file in what check-config prints.
    let out = corelay().arg("check-config").arg(&good).args(["--workers", "3", "--backlog", "99"]).output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("workers = 3") && printed.contains("backlog = 99"), "{printed}");

    // Running with an invalid file exits with the configuration-error code, at once.
    let out = corelay().arg("--config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_documents_every_flag() {
    let out = corelay().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--listen",
        "--workers",
        "--worker-mode",
        "--cpus",
        "--backlog",
        "--sched-policy",
        "--admin-listen",
        "--metrics-listen",
        "--log-level",
        "check-config",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn listen_address_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = corelay().args(["--listen", &format!("127.0.0.1:{port}"), "--workers", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{err}");
}

#[test]
fn a_second_corelay_on_the_same_port_is_refused() {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let on_port = || {
        let mut c = corelay();
        c.args(["--listen", &listen, "--workers", "1", "--admin-listen", "", "--metrics-listen", ""]);
        c
    };
    let first = on_port().stderr(std::process::Stdio::null()).spawn().unwrap();
    let _first = Guard(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "first corelay did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Both would bind with SO_REUSEPORT and share the port unnoticed.
    let out = on_port().output().unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen on"));
}

/// Kills the child when the test ends, however it ends.
struct Guard(std::process::Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs corelay as an unprivileged user (root hides RLIMIT_MEMLOCK) with the given
/// locked-memory limit in bytes.
fn unprivileged_corelay(memlock: u64, args: &[&str]) -> Command {
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--memlock={memlock}:{memlock}")).arg("--");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.args(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
    }
    // The admin and metrics ports are off: their default ports may be taken here.
    cmd.arg(world_readable_binary()).args(args).args(["--admin-listen", "", "--metrics-listen", ""]);
    cmd
}

/// A copy of the binary that an unprivileged user can execute wherever the checkout is.
fn world_readable_binary() -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("corelay-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.join("corelay");
    if !bin.exists() {
        std::fs::copy(env!("CARGO_BIN_EXE_corelay"), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

#[test]
fn memlock_limit_is_checked_for_unprivileged_users() {
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let out = unprivileged_corelay(256 * 1024, &["--listen", &listen, "--workers", "2"]).output().unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("RLIMIT_MEMLOCK is 256 KiB") && err.contains("ulimit -l"), "{err}");

    // With enough locked memory the same user runs shards that serve clients.
    let mut child = unprivileged_corelay(8 << 20, &["--listen", &listen, "--workers", "2", "--config", "/dev/null"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // An empty config file has no users: a clear configuration error, not a crash.
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(78));
    let config = config_for(shared_mariadb().addr(), &[TestUser::default()], "");
    let path = std::env::temp_dir().join(format!("corelay-memlock-{}.toml", std::process::id()));
    std::fs::write(&path, config).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let mut child =
        unprivileged_corelay(8 << 20, &["--listen", &listen, "--workers", "2", "--config", path.to_str().unwrap()])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let conn = loop {
        match mysql::Conn::new(client_opts(port.parse().unwrap(), "app", "app_pw", None)) {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "unprivileged corelay never served: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let mut conn = conn;
    assert_alive(&mut conn);
    drop(conn);
    // SAFETY: signalling our own child (prlimit execs corelay in place).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir_all(world_readable_binary().parent().unwrap());
}

/// Shard 0's pid and whether the master gave up on it, from the admin port.
/// (A connection that reached shard 0's admin socket just as that shard died is reset:
/// asked again.)
fn shard0(c: &Corelay) -> (u32, String) {
    for _ in 0..20 {
        let (ok, out, _) = mariadb_cli(c.admin_port, "admin", "admin_pw", "SHOW SHARDS\n");
        if let (true, Some(line)) = (ok, out.lines().nth(1)) {
            let head: Vec<&str> = out.lines().next().unwrap_or_default().split('\t').collect();
            let given_up = head.iter().position(|h| *h == "given_up").expect("a given_up column");
            let row: Vec<String> = line.split('\t').map(String::from).collect();
            return (row[1].parse().unwrap(), row[given_up].clone());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the admin port does not answer: {}", c.log());
}

#[test]
fn a_crash_looping_shard_is_not_restarted_forever() {
    let cfg =
        config_for(shared_mariadb().addr(), &[TestUser::default()], "crash_loop_limit = 3\ncrash_loop_window_s = 60");
    let c = Corelay::start(&cfg, "fork", 2);
    for round in 1..=3 {
        let (pid, _) = shard0(&c);
        // SAFETY: killing a shard process of the corelay we started.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        if round == 3 {
            break;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while shard0(&c).0 == pid || !c.shard_pids().contains(&shard0(&c).0) {
            assert!(Instant::now() < deadline, "shard 0 not respawned after kill {round}: {}", c.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while shard0(&c).1 != "1" {
        assert!(Instant::now() < deadline, "the master did not give up: {}", c.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.shard_pids().len(), 1, "shard 0 stays down");
    assert!(c.log().contains("crash loop"), "{}", c.log());
    // The other shard serves every new client: the dead shard's socket is closed, so the
    // kernel sends nobody there.
    for _ in 0..20 {
        let mut conn = c.connect("app", "app_pw").unwrap();
        assert_alive(&mut conn);
    }
}

/// Each shard's `column` of SHOW SHARDS (a count).
fn per_shard(c: &Corelay, column: &str) -> Vec<u64> {
    let (ok, out, err) = mariadb_cli(c.admin_port, "admin", "admin_pw", "SHOW SHARDS\n");
    assert!(ok, "SHOW SHARDS: {err}");
    let mut lines = out.lines();
    let head: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    let col = head.iter().position(|h| *h == column).unwrap_or_else(|| panic!("a {column} column"));
    lines.map(|l| l.split('\t').nth(col).and_then(|v| v.parse().ok()).expect("a count")).collect()
}

/// Each shard's `clients` column of SHOW SHARDS.
fn clients_per_shard(c: &Corelay) -> Vec<u64> {
    per_shard(c, "clients")
}

/// Waits until the shards hold `total` clients in all, and returns how they are spread.
fn spread_when(c: &Corelay, total: u64) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let per = clients_per_shard(c);
        if per.iter().sum::<u64>() == total || Instant::now() > deadline {
            return per;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn new_clients_go_to_the_shard_with_fewer_sessions_in_both_modes() {
    // The kernel's address hash alone splits 40 clients 20/20 about one time in eight;
    // the balancer does it every time, and again after every client left.
    for mode in ["thread", "fork"] {
        let mut c = Corelay::start(&config_for(shared_mariadb().addr(), &[TestUser::default()], ""), mode, 2);
        assert!(c.log().contains("new clients go to the shard with fewer sessions"), "{mode}: {}", c.log());
        for round in 0..2 {
            // Sessions still open count: wait for the readiness probe's to end, and for the
            // balancer to have counted every ended session down (or settled).
            assert_eq!(spread_when(&c, 0), vec![0, 0], "{mode}, before round {round}");
            let deadline = Instant::now() + Duration::from_secs(10);
            while per_shard(&c, "balance_count") != [0, 0] {
                assert!(Instant::now() < deadline, "{mode}: balancer counts {:?}", per_shard(&c, "balance_count"));
                std::thread::sleep(Duration::from_millis(50));
            }
            let clients: Vec<mysql::Conn> = (0..40).map(|_| c.connect("app", "app_pw").unwrap()).collect();
            let counts = per_shard(&c, "balance_count");
            assert_eq!(spread_when(&c, 40), vec![20, 20], "{mode}, round {round}; balancer counts {counts:?}");
            drop(clients);
            assert_eq!(spread_when(&c, 0), vec![0, 0], "{mode}, round {round}");
        }
        assert_eq!(c.stop(), Some(0), "{mode}: {}", c.log());
    }
}

#[test]
fn accept_balance_hash_leaves_spreading_to_the_kernel() {
    let mut c = Corelay::start(
        &config_for(shared_mariadb().addr(), &[TestUser::default()], "accept_balance = \"hash\""),
        "thread",
        2,
    );
    let clients: Vec<mysql::Conn> = (0..10).map(|_| c.connect("app", "app_pw").unwrap()).collect();
    assert_eq!(spread_when(&c, 10).iter().sum::<u64>(), 10);
    assert!(!c.log().contains("new clients go to the shard with fewer sessions"), "{}", c.log());
    drop(clients);
    assert_eq!(c.stop(), Some(0));
}

#[test]
fn clients_reconnecting_after_a_shard_died_are_spread_over_its_successor_too() {
    let mut c = Corelay::start(&config_for(shared_mariadb().addr(), &[TestUser::default()], ""), "fork", 2);
    assert_eq!(spread_when(&c, 0), vec![0, 0], "the readiness probe's session ended");
    let first: Vec<mysql::Conn> = (0..20).map(|_| c.connect("app", "app_pw").unwrap()).collect();
    assert_eq!(spread_when(&c, 20), vec![10, 10]);
    let shards = c.shard_pids();
    assert_eq!(shards.len(), 2, "{shards:?}");
    // SAFETY: killing a child process of the corelay we started.
    unsafe { libc::kill(shards[0] as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.shard_pids().len() != 2 || c.shard_pids().contains(&shards[0]) {
        assert!(Instant::now() < deadline, "no respawn: {}", c.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    // The dead shard's 10 sessions are gone, the other's 10 remain: 20 newcomers fill the
    // successor up to them and then split, 15/15 (with the dead sessions still counted,
    // it would be 20/10).
    let again: Vec<mysql::Conn> = (0..20).map(|_| c.connect("app", "app_pw").unwrap()).collect();
    assert_eq!(spread_when(&c, 30), vec![15, 15], "{}", c.log());
    drop((first, again));
    assert_eq!(c.stop(), Some(0));
}

/// Each shard's scheduling policy (field 41 of /proc/PID/task/TID/stat: 0 = SCHED_OTHER,
/// 3 = SCHED_BATCH), by the pid and tid SHOW SHARDS gives.
fn shard_policies(c: &Corelay) -> Vec<u32> {
    let (pids, tids) = (per_shard(c, "pid"), per_shard(c, "tid"));
    pids.iter()
        .zip(&tids)
        .map(|(pid, tid)| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).expect("the shard's stat");
            // The command name may hold spaces: count the fields after its closing parenthesis.
            let after = &stat[stat.rfind(')').expect("a command name") + 2..];
            after.split(' ').nth(41 - 3).and_then(|v| v.parse().ok()).expect("a policy field")
        })
        .collect()
}

#[test]
fn shards_run_as_sched_batch_unless_told_normal() {
    for mode in ["thread", "fork"] {
        for (extra, want) in [("", 3), ("sched_policy = \"normal\"", 0)] {
            let mut c = Corelay::start(&config_for(shared_mariadb().addr(), &[TestUser::default()], extra), mode, 2);
            assert_eq!(shard_policies(&c), vec![want, want], "{mode}, {extra:?}: {}", c.log());
            let mut conn = c.connect("app", "app_pw").unwrap();
            assert_alive(&mut conn);
            drop(conn);
            assert_eq!(c.stop(), Some(0), "{mode}: {}", c.log());
        }
    }
}
