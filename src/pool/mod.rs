//! Per-shard backend connection pools.
//!
//! In this version each session owns one backend connection for its life (opened at login
//! by [`crate::backend::connect`]); a shard's open backend connections are counted in its
//! status slot (`backend_connections`).
