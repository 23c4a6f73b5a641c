//! `PAUSE`: every shard stops accepting new clients (they wait in the listen backlog);
//! sessions already open go on.

use std::sync::atomic::Ordering::Relaxed;

use crate::admin::{Command, Reply, View};

pub struct Pause;

impl Command for Pause {
    fn words(&self) -> &'static [&'static str] {
        &["PAUSE"]
    }

    fn changes_state(&self) -> bool {
        true
    }

    fn help(&self) -> &'static str {
        "PAUSE: stop accepting new clients on every shard until RESUME"
    }

    fn run(&self, view: &View, _args: &[String]) -> Reply {
        view.status.header().paused.store(1, Relaxed);
        tracing::warn!("admin PAUSE: shards stop accepting new clients");
        Reply::Ok("corelay paused: new clients wait in the listen backlog until RESUME".into())
    }
}
