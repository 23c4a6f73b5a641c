//! Topology: clusters, their servers and roles, as validated in [`crate::config::Cluster`].
//!
//! This version knows the configured topology only; health and lag checks build on it.

pub use crate::config::{Cluster, Role, Server};
