//! `SHUTDOWN`: the graceful stop SIGTERM starts (drain for `drain_timeout_s`, exit 0).

use std::sync::atomic::Ordering::Relaxed;

use crate::admin::{Command, Reply, View};

pub struct Shutdown;

impl Command for Shutdown {
    fn words(&self) -> &'static [&'static str] {
        &["SHUTDOWN"]
    }

    fn changes_state(&self) -> bool {
        true
    }

    fn help(&self) -> &'static str {
        "SHUTDOWN: stop accepting, let sessions finish for drain_timeout_s, exit"
    }

    fn run(&self, view: &View, _args: &[String]) -> Reply {
        let master = view.status.header().master_pid.load(Relaxed);
        let pid = nix::unistd::Pid::from_raw(master as i32);
        match nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM) {
            Ok(()) => {
                tracing::warn!("admin SHUTDOWN: stopping");
                Reply::Ok(format!("corelay is stopping (draining for up to {} s)", view.config.proxy.drain_timeout_s))
            }
            Err(e) => Reply::Err(
                crate::protocol::code::UNKNOWN_ERROR,
                format!("SHUTDOWN: cannot signal the master (pid {master}): {e}"),
            ),
        }
    }
}
