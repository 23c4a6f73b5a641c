//! The ZooKeeper watcher's state as the master last heard it, for `SHOW ZOOKEEPER`,
//! `SHOW SERVERS` and `/metrics`. Written by the master only.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// Where the running topology of ZooKeeper-fed clusters came from.
pub mod source {
    /// No `[zookeeper]`: the configuration file.
    pub const FILE: u32 = 0;
    /// The file's `[[cluster.server]]` entries, while ZooKeeper has not been read yet.
    pub const SEED: u32 = 1;
    /// `zookeeper.cache_file`, while ZooKeeper has not been read yet.
    pub const CACHE: u32 = 2;
    pub const ZOOKEEPER: u32 = 3;

    pub fn name(v: u32) -> &'static str {
        match v {
            SEED => "file (seed)",
            CACHE => "cache_file",
            ZOOKEEPER => "zookeeper",
            _ => "file",
        }
    }
}

/// The watcher's session states.
pub mod state {
    pub const OFF: u32 = 0;
    pub const CONNECTING: u32 = 1;
    pub const CONNECTED: u32 = 2;
    pub const DISCONNECTED: u32 = 3;
    pub const EXPIRED: u32 = 4;
    pub const AUTH_FAILED: u32 = 5;
    pub const READ_ONLY: u32 = 6;
    /// The watcher process is not running (it is restarted with back-off).
    pub const WATCHER_DOWN: u32 = 7;

    pub fn of(name: &str) -> u32 {
        match name {
            "connecting" => CONNECTING,
            "connected" => CONNECTED,
            "disconnected" | "closed" => DISCONNECTED,
            "expired" => EXPIRED,
            "auth_failed" => AUTH_FAILED,
            "read_only" => READ_ONLY,
            "watcher_down" => WATCHER_DOWN,
            _ => DISCONNECTED,
        }
    }

    pub fn name(v: u32) -> &'static str {
        match v {
            CONNECTING => "connecting",
            CONNECTED => "connected",
            DISCONNECTED => "disconnected",
            EXPIRED => "expired",
            AUTH_FAILED => "auth_failed",
            READ_ONLY => "read_only",
            WATCHER_DOWN => "watcher_down",
            _ => "off",
        }
    }
}

#[repr(C, align(64))]
#[derive(Default)]
pub struct ZooKeeperStatus {
    /// [`source`].
    pub source: AtomicU32,
    /// [`state`].
    pub state: AtomicU32,
    /// The highest zxid read.
    pub zxid: AtomicU64,
    /// When ZooKeeper was last read in full or in part (ms since the epoch; 0: never).
    pub synced_unix_ms: AtomicU64,
    /// Sessions established.
    pub sessions: AtomicU64,
    /// Topology changes applied.
    pub changes: AtomicU64,
    /// Children skipped for data that is not a server.
    pub invalid_children: AtomicU64,
    /// Clusters kept at their last servers (ZooKeeper had none usable).
    pub outdated_clusters: AtomicU64,
    /// Times the watcher process was started again.
    pub watcher_restarts: AtomicU64,
    /// Topology changes the configuration refused (the running one stayed).
    pub refused: AtomicU64,
}

impl ZooKeeperStatus {
    pub fn set_state(&self, name: &str) {
        let v = state::of(name);
        if v == state::CONNECTED && self.state.load(Relaxed) != state::CONNECTED {
            self.sessions.fetch_add(1, Relaxed);
        }
        self.state.store(v, Relaxed);
    }
}
