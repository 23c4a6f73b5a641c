//! The watcher: a child process of the master (`corelay zk-watch`) that keeps a ZooKeeper
//! session, watches every cluster's path, and reports what it reads as JSON lines on its
//! standard output, which the master reads between its signal polls. It runs the
//! ZooKeeper client on a small runtime of its own (smol), so the master stays
//! single-threaded for fork mode.
//!
//! What it reads is judged by [`ClusterSet::judge`] (a bad write never empties a
//! cluster), written to the cache file, then reported. A lost connection is retried by
//! the client; an expired session is replaced by a new one with its watches armed again;
//! both end in a full re-read, since a persistent watch can miss events while
//! disconnected.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zookeeper_client as zk;

use super::topology::{ClusterSet, Node, Topology, Verdict};
use crate::config::ZooKeeperFile;

/// What the master hands the watcher on its standard input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub zookeeper: ZooKeeperFile,
    /// Every ZooKeeper-fed cluster with the servers it runs now (the last good set).
    pub cluster: BTreeMap<String, ClusterSet>,
}

/// One line of the watcher's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Report {
    /// The session's state: connecting, connected, disconnected, expired, auth_failed,
    /// read_only.
    State { state: String },
    /// The topology changed (already in the cache file).
    Topology { topology: Topology },
    /// Everything was read again and nothing changed.
    Synced { zxid: i64 },
    /// A child whose data is not a server: skipped.
    Invalid { path: String, why: String },
    /// A line for the master's log.
    Log { level: String, message: String },
}

/// Runs the watcher process: reads the spec from standard input, then watches until the
/// master goes away. Returns the exit code.
pub fn run() -> i32 {
    // SAFETY: plain prctl; the watcher must not outlive the master.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    let mut text = String::new();
    if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
        eprintln!("corelay zk-watch: cannot read the spec on standard input: {e}");
        return 1;
    }
    let spec: Spec = match toml::from_str(&text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("corelay zk-watch: the spec on standard input is not valid: {}", e.message());
            return 1;
        }
    };
    smol::block_on(Watcher::new(spec).run())
}

struct Watcher {
    spec: Spec,
    /// What was last reported (and cached).
    last: Topology,
    /// Bad children already reported, by path and the zxid of their data.
    reported: HashSet<(String, i64)>,
    /// The cache file holds `last`.
    cached: bool,
}

/// ZooKeeper out of reach: since when, how many tries, when the log last heard of it.
struct Failing {
    since: Instant,
    attempts: u64,
    logged: Option<Instant>,
}

/// What ended a session.
enum Ended {
    State(zk::SessionState),
    Error(zk::Error),
}

const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const RETRY_LOG: Duration = Duration::from_secs(30);

impl Watcher {
    fn new(spec: Spec) -> Watcher {
        let last = Topology { zxid: 0, read_unix_ms: 0, cluster: spec.cluster.clone() };
        Watcher { spec, last, reported: HashSet::new(), cached: false }
    }

    async fn run(mut self) -> i32 {
        let mut backoff = BACKOFF_MIN;
        // While ZooKeeper stays out of reach, the log hears of it once per RETRY_LOG.
        let mut failing: Option<Failing> = None;
        loop {
            if failing.is_none() {
                say(&Report::State { state: "connecting".into() });
            }
            match super::connect(&self.spec.zookeeper).await {
                Ok(client) => {
                    if let Some(f) = failing.take() {
                        let after = f.since.elapsed().as_secs();
                        log("info", format!("ZooKeeper reached again after {after} s and {} attempt(s)", f.attempts));
                    }
                    say(&Report::State { state: state_name(client.state()).into() });
                    let started = Instant::now();
                    let ended = self.session(&client).await;
                    if started.elapsed() > BACKOFF_MAX * 2 {
                        backoff = BACKOFF_MIN;
                    }
                    let why = match &ended {
                        Ended::State(s) => {
                            say(&Report::State { state: state_name(*s).into() });
                            format!("the ZooKeeper session ended ({s}); starting a new one")
                        }
                        Ended::Error(zk::Error::NoAuth) => {
                            say(&Report::State { state: "auth_failed".into() });
                            format!(
                                "ZooKeeper refuses to let corelay read the clusters' paths (NoAuth): check \
                                 zookeeper.auth_user and auth_password; retrying in {} ms",
                                backoff.as_millis()
                            )
                        }
                        Ended::Error(e) => format!("ZooKeeper: {e}; a new session in {} ms", backoff.as_millis()),
                    };
                    log("warn", why);
                    if !matches!(ended, Ended::State(zk::SessionState::Expired)) {
                        // Whatever failed may fail again at once: not in a tight loop.
                        smol::Timer::after(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
                Err(e) => {
                    let now = Instant::now();
                    let f = failing.get_or_insert(Failing { since: now, attempts: 0, logged: None });
                    f.attempts += 1;
                    if f.logged.is_none() {
                        say(&Report::State { state: "disconnected".into() });
                    }
                    if f.logged.is_none_or(|t| t.elapsed() >= RETRY_LOG) {
                        f.logged = Some(now);
                        let attempts = f.attempts;
                        log(
                            "warn",
                            format!("{e}; the running topology stays, retrying with back-off (attempt {attempts})"),
                        );
                    }
                    smol::Timer::after(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Serves one session: arms a watch on every path, reads everything, then reads again
    /// what changes, until the session ends.
    async fn session(&mut self, client: &zk::Client) -> Ended {
        let (tx, rx) = smol::channel::unbounded::<String>();
        let mut tasks = Vec::new();
        for set in self.spec.cluster.values() {
            let mut w = match client.watch(&set.path, zk::AddWatchMode::PersistentRecursive).await {
                Ok(w) => w,
                Err(e) => return Ended::Error(e),
            };
            let (tx, path) = (tx.clone(), set.path.clone());
            tasks.push(smol::spawn(async move {
                loop {
                    let event = w.changed().await;
                    if event.event_type == zk::EventType::Session && event.session_state.is_terminated() {
                        return;
                    }
                    if tx.send(path.clone()).await.is_err() {
                        return;
                    }
                }
            }));
        }
        let mut states = client.state_watcher();
        let mut dirty: Option<HashSet<String>> = None; // None: everything
        loop {
            if let Err(e) = self.read(client, dirty.as_ref()).await {
                if !matches!(e, zk::Error::ConnectionLoss) {
                    return Ended::Error(e);
                }
            }
            // Wait for a change or a state change; changes that come together are read once.
            enum Next {
                Changed(String),
                State(zk::SessionState),
            }
            let next = futures_lite::future::or(
                async { rx.recv().await.map(Next::Changed).unwrap_or(Next::State(zk::SessionState::Closed)) },
                async { Next::State(states.changed().await) },
            )
            .await;
            match next {
                Next::Changed(path) => {
                    smol::Timer::after(Duration::from_millis(5)).await;
                    let mut paths = HashSet::from([path]);
                    while let Ok(p) = rx.try_recv() {
                        paths.insert(p);
                    }
                    dirty = Some(paths);
                }
                Next::State(s) => {
                    say(&Report::State { state: state_name(s).into() });
                    if s.is_terminated() {
                        return Ended::State(s);
                    }
                    if s != zk::SessionState::SyncConnected && s != zk::SessionState::ConnectedReadOnly {
                        // Disconnected: the client reconnects by itself; wait for it.
                        loop {
                            let s = states.changed().await;
                            say(&Report::State { state: state_name(s).into() });
                            if s.is_terminated() {
                                return Ended::State(s);
                            }
                            if s == zk::SessionState::SyncConnected || s == zk::SessionState::ConnectedReadOnly {
                                break;
                            }
                        }
                    }
                    // Back: events may have been missed, read everything.
                    dirty = None;
                }
            }
        }
    }

    /// Reads the clusters whose paths are in `dirty` (all when None), judges them, and
    /// reports the topology when it changed.
    async fn read(&mut self, client: &zk::Client, dirty: Option<&HashSet<String>>) -> Result<(), zk::Error> {
        let mut next = self.last.clone();
        let mut zxid = self.last.zxid;
        let names: Vec<(String, String)> =
            self.spec.cluster.iter().map(|(name, set)| (name.clone(), set.path.clone())).collect();
        for (name, path) in names {
            if dirty.is_some_and(|d| !d.iter().any(|p| p == &path || p.starts_with(&format!("{path}/")))) {
                continue;
            }
            let (nodes, z) = self.read_path(client, &path).await?;
            zxid = zxid.max(z);
            let Some(last) = self.last.cluster.get(&name) else { continue };
            let (set, verdict) = ClusterSet::judge(&path, nodes, last);
            match verdict {
                Verdict::Taken => {}
                Verdict::PrimaryKept => log(
                    "warn",
                    format!(
                        "cluster {name}: no child of {path} is the primary; {} stays the primary",
                        set.servers[0].address
                    ),
                ),
                Verdict::KeptLast(why) => log(
                    "error",
                    format!(
                        "cluster {name}: {why} ({path}); keeping its last {} server(s), marked outdated, until an \
                         operator writes servers under the path again",
                        set.servers.len()
                    ),
                ),
            }
            next.cluster.insert(name, set);
        }
        next.zxid = zxid;
        next.read_unix_ms = crate::util::time::unix_ms();
        let changed = next.cluster != self.last.cluster;
        self.last = next;
        if changed || !self.cached {
            self.cache();
            self.cached = true;
        }
        if changed {
            say(&Report::Topology { topology: self.last.clone() });
        } else {
            say(&Report::Synced { zxid: self.last.zxid });
        }
        Ok(())
    }

    /// A path's children as servers (bad ones reported and skipped), and the highest zxid
    /// seen there. A path that does not exist has no servers.
    async fn read_path(&mut self, client: &zk::Client, path: &str) -> Result<(Vec<Node>, i64), zk::Error> {
        let (mut children, stat) = match client.get_children(path).await {
            Ok(r) => r,
            Err(zk::Error::NoNode) => return Ok((Vec::new(), 0)),
            Err(e) => return Err(e),
        };
        children.sort();
        let mut zxid = stat.pzxid;
        let mut nodes: Vec<Node> = Vec::new();
        for child in children {
            let child_path = format!("{}/{child}", path.trim_end_matches('/'));
            let (data, stat) = match client.get_data(&child_path).await {
                Ok(r) => r,
                Err(zk::Error::NoNode) => continue,
                Err(e) => return Err(e),
            };
            zxid = zxid.max(stat.mzxid);
            match Node::parse(&data) {
                Ok(n) if nodes.iter().any(|m| m.address == n.address) => {
                    self.invalid(&child_path, stat.mzxid, format!("address {} is listed twice", n.address));
                }
                Ok(n) => nodes.push(n),
                Err(why) => self.invalid(&child_path, stat.mzxid, why),
            }
        }
        Ok((nodes, zxid))
    }

    /// Reports a bad child once per write of its data.
    fn invalid(&mut self, path: &str, mzxid: i64, why: String) {
        if self.reported.insert((path.to_string(), mzxid)) {
            say(&Report::Invalid { path: path.to_string(), why });
        }
    }

    fn cache(&self) {
        let file = &self.spec.zookeeper.cache_file;
        if file.is_empty() {
            return;
        }
        if let Err(e) = self.last.write(&PathBuf::from(file)) {
            log("error", format!("cannot write zookeeper.cache_file: {e}"));
        }
    }
}

fn state_name(s: zk::SessionState) -> &'static str {
    match s {
        zk::SessionState::SyncConnected => "connected",
        zk::SessionState::ConnectedReadOnly => "read_only",
        zk::SessionState::Disconnected => "disconnected",
        zk::SessionState::Expired => "expired",
        zk::SessionState::AuthFailed => "auth_failed",
        zk::SessionState::Closed => "closed",
    }
}

fn log(level: &str, message: String) {
    say(&Report::Log { level: level.into(), message });
}

/// Writes one report line; a master that stopped reading is gone, and so is the watcher.
fn say(report: &Report) {
    let Ok(line) = serde_json::to_string(report) else { return };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}
