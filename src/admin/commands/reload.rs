//! `RELOAD`: asks the master to reload the configuration file (SIGHUP).

use crate::admin::{Command, Reply, View};

pub struct Reload;

impl Command for Reload {
    fn words(&self) -> &'static [&'static str] {
        &["RELOAD"]
    }

    fn help(&self) -> &'static str {
        "RELOAD: re-read the configuration file (not available in this version)"
    }

    fn run(&self, _view: &View, _args: &[String]) -> Reply {
        Reply::Err(
            1235,
            "42000",
            "RELOAD: this version of corelay cannot reload its configuration; restart it to apply a new one".into(),
        )
    }
}
