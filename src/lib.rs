//! corelay: a thread-per-core, shared-nothing MySQL-protocol proxy.
//!
//! The crate is laid out like its architecture (see the README):
//! `master` supervises shards; each `shard` is a pinned glommio executor that accepts on its
//! own SO_REUSEPORT socket and runs `session`s; a session speaks the `protocol` to its
//! client and to a `backend`; `status` is the shared-memory region every shard writes its
//! own slot of; `config` is the validated configuration every part reads.

pub mod admin;
pub mod backend;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod log;
pub mod master;
pub mod net;
pub mod pool;
pub mod protocol;
pub mod router;
pub mod session;
pub mod shard;
pub mod status;
pub mod util;
