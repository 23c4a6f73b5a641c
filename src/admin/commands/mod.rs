//! The admin port's commands, one file each.

pub mod digests;
mod histogram;
mod latency;
mod pause;
mod pools;
mod reload;
mod resume;
pub mod rules;
mod servers;
mod shards;
mod shutdown;
pub mod stats;
mod users;
mod zookeeper;

use super::Command;

/// Every admin command.
pub static ALL: &[&dyn Command] = &[
    &shards::ShowShards,
    &servers::ShowServers,
    &pools::ShowPools,
    &users::ShowUsers,
    &stats::ShowStats,
    &latency::ShowLatency,
    &histogram::ShowHistogram,
    &digests::ShowDigests,
    &digests::ResetDigests,
    &rules::ShowRules,
    &reload::Reload,
    &pause::Pause,
    &resume::Resume,
    &shutdown::Shutdown,
    &zookeeper::ShowZooKeeper,
];
