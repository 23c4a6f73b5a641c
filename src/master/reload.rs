//! Reloading the configuration: from SIGHUP, the admin port's RELOAD, or the file changing
//! under `watch_config`. The new file is validated against the running configuration and
//! published to the shards through the status region; on any error the running one stays.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tracing::warn;

use super::Source;
use crate::cluster::zookeeper::topology::Topology;
use crate::config::Config;
use crate::status::StatusRegion;

/// Reloads: re-reads the file, validates it against the running configuration and
/// publishes it to the shards; ZooKeeper-fed clusters get `topology`'s servers. Returns
/// the new configuration and what to tell the operator; on any error the running
/// configuration stays.
pub(super) fn reload(
    current: &Config,
    from: &Source,
    status: &StatusRegion,
    topology: Option<&Topology>,
) -> Result<(Arc<Config>, String), String> {
    let Some(path) = &from.path else {
        return Err("corelay runs its embedded default configuration (no --config): there is no file to reload".into());
    };
    let mut file = Config::read_file(path).map_err(|e| e.to_string())?;
    from.overrides.apply(&mut file);
    if let Some(t) = topology {
        t.apply(&mut file);
    }
    let (next, changes) = current.reload(file, path.display().to_string()).map_err(|e| e.to_string())?;
    for note in changes.kept.iter().chain(&next.warnings()) {
        warn!("{note}");
    }
    let text = crate::config::Published::of(&next, status.sealer())
        .to_text()
        .map_err(|e| format!("cannot publish it: {e}"))?;
    status.publish_config(next.version, &text).map_err(|e| format!("{}: {e}", path.display()))?;
    let kept = match changes.kept.len() {
        0 => String::new(),
        n => format!("; {n} start-only key(s) kept their running value (see the log)"),
    };
    let message = format!("configuration version {} loaded from {}: {changes}{kept}", next.version, path.display());
    Ok((Arc::new(next), message))
}

/// The file's modification time and size, to notice it changed (`watch_config`).
fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Watches the configuration file for changes (`watch_config`), by modification time and
/// size.
pub(super) struct Watch {
    stamp: Option<(SystemTime, u64)>,
    looked: Instant,
}

impl Watch {
    pub fn new(source: &Source) -> Watch {
        Watch { stamp: source.path.as_deref().and_then(stamp), looked: Instant::now() }
    }

    /// Whether the file changed since the last reload (looked at once per
    /// `watch_interval_ms` when `watch_config` is on).
    pub fn changed(&mut self, config: &Config, source: &Source) -> bool {
        if !config.proxy.watch_config
            || self.looked.elapsed() < Duration::from_millis(config.proxy.watch_interval_ms.max(50))
        {
            return false;
        }
        self.looked = Instant::now();
        let now = source.path.as_deref().and_then(stamp);
        now.is_some() && now != self.stamp
    }

    /// A reload is starting: what the file looks like now is what it covers.
    pub fn reloading(&mut self, source: &Source) {
        self.stamp = source.path.as_deref().and_then(stamp);
    }
}
