//! Topology from ZooKeeper, for fleets of corelay hosts.
//!
//! A cluster with a `zk_path` takes its servers from that path's children (JSON, see
//! [`topology::Node`]); its `[[cluster.server]]` entries only seed it. The master runs a
//! [`watcher`] as a child process and follows its reports ([`Follower`]): each change is
//! applied through the ordinary reload path (sessions stay, removed servers drain), and
//! the last good topology is kept in `cache_file`, which corelay starts from when
//! ZooKeeper is down.

pub mod link;
pub mod publish;
pub mod topology;
pub mod watcher;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

use tracing::{error, info, warn};

use crate::config::Config;
use crate::status::zookeeper::{source, ZooKeeperStatus};
use topology::{ClusterSet, Node, Topology};
use watcher::{Report, Spec};

/// Opens a session with the ensemble of `zk` (digest authentication when configured),
/// giving up after the connect and session timeouts.
pub async fn connect(zk: &crate::config::ZooKeeperFile) -> Result<zookeeper_client::Client, String> {
    use std::time::Duration;
    let connect_timeout = Duration::from_millis(zk.connect_timeout_ms.max(100));
    let mut connector = zookeeper_client::Client::connector()
        .with_session_timeout(Duration::from_millis(zk.session_timeout_ms))
        .with_connection_timeout(connect_timeout)
        .with_fail_eagerly();
    if !zk.auth_user.is_empty() {
        connector = connector.with_auth("digest", format!("{}:{}", zk.auth_user, zk.auth_password).as_bytes());
    }
    let hosts = zk.hosts.split(',').map(str::trim).filter(|h| !h.is_empty()).collect::<Vec<_>>().join(",");
    let deadline = connect_timeout * 2 + Duration::from_millis(zk.session_timeout_ms);
    let session =
        async { connector.connect(&hosts).await.map_err(|e| format!("cannot reach ZooKeeper at {hosts}: {e}")) };
    let timeout = async {
        smol::Timer::after(deadline).await;
        Err(format!("cannot reach ZooKeeper at {hosts}: no session within {} ms", deadline.as_millis()))
    };
    futures_lite::future::or(session, timeout).await
}

/// The watcher's spec for `config` (None: no cluster takes its servers from ZooKeeper).
/// The running servers are each cluster's last good set; `outdated` marks those kept.
pub fn spec(config: &Config, current: Option<&Topology>) -> Option<Spec> {
    let zk = config.file.zookeeper.as_ref()?;
    let mut cluster = BTreeMap::new();
    for c in &config.file.cluster {
        let Some(path) = &c.zk_path else { continue };
        let outdated = current.and_then(|t| t.cluster.get(&c.name)).is_some_and(|s| s.outdated);
        let servers = c.server.iter().map(Node::of).collect();
        cluster.insert(c.name.clone(), ClusterSet { path: zk.absolute(path), servers, outdated });
    }
    (!cluster.is_empty()).then(|| Spec { zookeeper: zk.clone(), cluster })
}

/// At start: the configuration with the servers of `cache_file`, when ZooKeeper feeds
/// any cluster and the file is there. Says which it starts from.
pub fn start_config(config: Config, status: &ZooKeeperStatus) -> (Config, Option<Topology>) {
    let Some(zk) = config.file.zookeeper.clone() else { return (config, None) };
    if spec(&config, None).is_none() {
        return (config, None);
    }
    status.source.store(source::SEED, Relaxed);
    if zk.cache_file.is_empty() {
        info!("ZooKeeper-fed clusters start from the configuration file's servers (no zookeeper.cache_file)");
        return (config, None);
    }
    let path = Path::new(&zk.cache_file);
    if !path.exists() {
        info!("no {} yet: ZooKeeper-fed clusters start from the configuration file's servers", path.display());
        return (config, None);
    }
    let topology = match Topology::read(path) {
        Ok(t) => t,
        Err(e) => {
            warn!("cannot use zookeeper.cache_file ({e}); starting from the configuration file's servers");
            return (config, None);
        }
    };
    let mut file = config.file.clone();
    topology.apply(&mut file);
    match Config::new(file, config.source.clone()) {
        Ok(next) => {
            info!(
                "ZooKeeper-fed clusters start from {} (zxid {}, read {}); ZooKeeper's own view replaces it once connected",
                path.display(),
                topology.zxid,
                crate::util::time::format_time(topology.read_unix_ms)
            );
            status.source.store(source::CACHE, Relaxed);
            status.zxid.store(topology.zxid.max(0) as u64, Relaxed);
            status.synced_unix_ms.store(topology.read_unix_ms, Relaxed);
            status.outdated_clusters.store(topology.outdated() as u64, Relaxed);
            (next, Some(topology))
        }
        Err(e) => {
            warn!("the servers in {} do not validate ({e}); starting from the configuration file's", path.display());
            (config, None)
        }
    }
}

/// The master's follower of the watcher.
pub struct Follower {
    link: link::Link,
    /// The topology applied (from ZooKeeper or the cache file).
    topology: Option<Topology>,
}

impl Follower {
    /// Starts the watcher when `config` has ZooKeeper-fed clusters.
    pub fn start(config: &Config, topology: Option<Topology>) -> Option<Follower> {
        let spec = spec(config, topology.as_ref())?;
        info!("watching ZooKeeper at {} for {} cluster(s)", spec.zookeeper.hosts, spec.cluster.len());
        Some(Follower { link: link::Link::start(spec), topology })
    }

    pub fn fd(&self) -> Option<std::os::fd::RawFd> {
        self.link.fd()
    }

    /// The topology applied last (to apply again on a reload of the file).
    pub fn topology(&self) -> Option<&Topology> {
        self.topology.as_ref()
    }

    /// Reads the watcher's reports into `status` and the log. Returns a topology to apply,
    /// if one came.
    pub fn poll(&mut self, status: &ZooKeeperStatus) -> Option<Topology> {
        let mut newest = None;
        for report in self.link.poll() {
            match report {
                Report::State { state } => {
                    let before = status.state.load(Relaxed);
                    status.set_state(&state);
                    if before != status.state.load(Relaxed) {
                        info!("ZooKeeper session: {state}");
                    }
                }
                Report::Topology { topology } => {
                    status.zxid.store(topology.zxid.max(0) as u64, Relaxed);
                    status.synced_unix_ms.store(topology.read_unix_ms, Relaxed);
                    newest = Some(topology);
                }
                Report::Synced { zxid } => {
                    status.zxid.store(zxid.max(0) as u64, Relaxed);
                    status.synced_unix_ms.store(crate::util::time::unix_ms(), Relaxed);
                    status.source.store(source::ZOOKEEPER, Relaxed);
                }
                Report::Invalid { path, why } => {
                    status.invalid_children.fetch_add(1, Relaxed);
                    error!("ZooKeeper node {path} is not a server ({why}); skipped");
                }
                Report::Log { level, message } => match level.as_str() {
                    "error" => error!("{message}"),
                    "warn" => warn!("{message}"),
                    _ => info!("{message}"),
                },
            }
        }
        status.watcher_restarts.store(self.link.restarts, Relaxed);
        newest
    }

    /// A topology was applied (or refused: `applied` false). Either way it is ZooKeeper's
    /// latest word: the next reload of the file (once the file loads again) applies it.
    pub fn applied(&mut self, topology: Topology, applied: bool, status: &ZooKeeperStatus) {
        if applied {
            status.changes.fetch_add(1, Relaxed);
            status.source.store(source::ZOOKEEPER, Relaxed);
            status.outdated_clusters.store(topology.outdated() as u64, Relaxed);
        } else {
            status.refused.fetch_add(1, Relaxed);
        }
        self.topology = Some(topology);
    }

    /// After a reload of the file: a watcher for the new `[zookeeper]` section and paths,
    /// if they changed (None when ZooKeeper feeds no cluster any more).
    pub fn follow(this: &mut Option<Follower>, config: &Config, status: &ZooKeeperStatus) {
        let topology = this.as_mut().and_then(|f| f.topology.take());
        let next = spec(config, topology.as_ref());
        let same = |f: &Follower| {
            next.as_ref().is_some_and(|n| {
                n.zookeeper == f.link.spec().zookeeper
                    && n.cluster.iter().map(|(k, c)| (k, &c.path)).eq(f
                        .link
                        .spec()
                        .cluster
                        .iter()
                        .map(|(k, c)| (k, &c.path)))
            })
        };
        match this {
            Some(f) if same(f) => f.topology = topology,
            _ => {
                if this.is_some() {
                    info!("[zookeeper] or a zk_path changed: restarting the ZooKeeper watcher");
                }
                *this = Follower::start(config, topology);
                if this.is_none() {
                    status.state.store(crate::status::zookeeper::state::OFF, Relaxed);
                    status.source.store(source::FILE, Relaxed);
                }
            }
        }
    }
}
