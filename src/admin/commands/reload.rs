//! `RELOAD`: asks the master to re-read the configuration file (as SIGHUP does) and
//! answers what came of it: the new version and what changed, or why the file was refused
//! (the old configuration keeps running then).

use crate::admin::{Command, Reply, View};

pub struct Reload;

impl Command for Reload {
    fn words(&self) -> &'static [&'static str] {
        &["RELOAD"]
    }

    fn changes_state(&self) -> bool {
        true
    }

    fn help(&self) -> &'static str {
        "RELOAD: re-read the configuration file; users, servers, timeouts and limits change without dropping sessions"
    }

    fn run(&self, view: &View, _args: &[String]) -> Reply {
        Reply::AwaitReload(view.status.request_reload())
    }
}
