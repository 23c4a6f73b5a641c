//! corelay: a thread-per-core, shared-nothing MySQL-protocol proxy.
//!
//! The crate is laid out like its architecture (`docs/architecture.md`): `master`
//! supervises shards; each `shard` is a pinned glommio executor that accepts on its own
//! SO_REUSEPORT socket and runs `session`s; a session speaks the `protocol` to its client
//! and, through `net`, to a `backend` borrowed from its shard's `pool`, routed by the
//! `router`; `status` is the shared-memory region every shard writes its own slot of;
//! `config` is the validated configuration every part reads.
//!
//! Modules are listed bottom-up: each imports only modules above it in this list.

pub mod util;

pub mod protocol;

pub mod net;

pub mod status;

pub mod config;

pub mod log;

pub mod router;

pub mod backend;

pub mod pool;

pub mod cluster;

pub mod session;

pub mod admin;

pub mod shard;

pub mod master;

pub mod cli;
