//! `RESUME`: shards accept new clients again after `PAUSE`.

use std::sync::atomic::Ordering::Relaxed;

use crate::admin::{Command, Reply, View};

pub struct Resume;

impl Command for Resume {
    fn words(&self) -> &'static [&'static str] {
        &["RESUME"]
    }

    fn changes_state(&self) -> bool {
        true
    }

    fn help(&self) -> &'static str {
        "RESUME: accept new clients again"
    }

    fn run(&self, view: &View, _args: &[String]) -> Reply {
        view.status.header().paused.store(0, Relaxed);
        tracing::info!("admin RESUME: shards accept new clients");
        Reply::Ok("corelay resumed".into())
    }
}
