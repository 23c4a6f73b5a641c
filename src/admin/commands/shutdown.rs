//! `SHUTDOWN`: the graceful stop SIGTERM starts (drain for `drain_timeout_s`, exit 0).

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
        let (master, sent) = view.status.signal_master(libc::SIGTERM);
        match sent {
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
