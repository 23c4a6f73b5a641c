//! Clusters as corelay sees them while it runs: which servers are up, lagging or down.
//!
//! The topology itself (clusters, their servers and roles) is validated configuration
//! ([`crate::config::Cluster`]); this module watches it. [`health::Checker`] logs in to
//! every server and publishes its state and replication lag in the status region, where
//! every shard's router reads it. The master schedules the checks between its signal
//! polls, so one process checks each server whatever the shard count.

pub mod health;

pub use health::Checker;
pub mod zookeeper;
