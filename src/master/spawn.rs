//! Starting a shard as a thread or as a forked process, and learning when it ended.

use std::sync::Arc;
use std::thread::JoinHandle;

use nix::sys::signal::{signal, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::config::{Config, WorkerMode};
use crate::shard::balance::{Balancer, Share};
use crate::shard::ShardSpec;
use crate::status::StatusRegion;

pub enum Worker {
    Thread(Option<JoinHandle<i32>>),
    Process(Pid),
}

impl Worker {
    /// If the shard has ended, its exit code (None when killed by a signal).
    pub fn try_exit(&mut self) -> Option<Option<i32>> {
        match self {
            Worker::Thread(h) => {
                if h.as_ref().is_some_and(|h| h.is_finished()) {
                    let code = h.take().map(|h| h.join().unwrap_or(101));
                    return Some(code);
                }
                None
            }
            Worker::Process(pid) => match waitpid(*pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => Some(Some(code)),
                Ok(WaitStatus::Signaled(..)) => Some(None),
                Ok(_) => None,
                Err(nix::Error::ECHILD) => Some(None),
                Err(_) => None,
            },
        }
    }

    /// Stops the shard at once (used on a second stop signal).
    pub fn kill(self) {
        if let Worker::Process(pid) = self {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
        // A thread shard ends with the process.
    }
}

/// Shards ignore these signals (the master handles TERM/INT/HUP).
pub fn ignore_shard_signals() {
    for s in [Signal::SIGPIPE, Signal::SIGUSR1, Signal::SIGUSR2] {
        // SAFETY: installing SIG_IGN is async-signal-safe and has no handler code.
        unsafe {
            let _ = signal(s, SigHandler::SigIgn);
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub fn start(
    mode: WorkerMode,
    index: usize,
    cpu: usize,
    listeners: crate::shard::Listeners,
    config: &Arc<Config>,
    status: &Arc<StatusRegion>,
    all_listeners: &[i32],
    balancer: &Option<Arc<Balancer>>,
) -> std::io::Result<Worker> {
    let balance = balancer.as_ref().map(|b| Share::new(b.clone(), index));
    let spec = ShardSpec { index, cpu, listeners, config: config.clone(), status: status.clone(), balance };
    match mode {
        WorkerMode::Thread => {
            let h =
                std::thread::Builder::new().name(format!("shard-{index}")).spawn(move || super::shard_main(spec))?;
            Ok(Worker::Thread(Some(h)))
        }
        WorkerMode::Fork => {
            let master = nix::unistd::getpid();
            // SAFETY: in fork mode the master is single-threaded (no thread is ever
            // created there), so the child may run arbitrary code.
            match unsafe { fork() }.map_err(std::io::Error::from)? {
                ForkResult::Parent { child } => {
                    drop(spec);
                    Ok(Worker::Process(child))
                }
                ForkResult::Child => {
                    let own = spec.listeners.raw_fds();
                    child_setup(master, &own, all_listeners);
                    let code = super::shard_main(spec);
                    std::process::exit(code);
                }
            }
        }
    }
}

/// In a forked shard: take the signal behaviour of a shard, die with the master, and close
/// what belongs to other shards.
fn child_setup(master: Pid, own_listeners: &[i32], all_listeners: &[i32]) {
    let _ = SigSet::all().thread_unblock();
    // TERM and QUIT too: a service manager signals every process of the group, and only
    // the master decides how shards stop (drain through the status region).
    for s in [
        Signal::SIGPIPE,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGTERM,
        Signal::SIGQUIT,
    ] {
        // SAFETY: SIG_IGN installs no handler code.
        unsafe {
            let _ = signal(s, SigHandler::SigIgn);
        }
    }
    // SAFETY: plain prctl; a shard must not outlive its master.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    if nix::unistd::getppid() != master {
        std::process::exit(0);
    }
    for &fd in all_listeners {
        if !own_listeners.contains(&fd) {
            // SAFETY: these descriptors are the master's listener copies, unused here.
            unsafe {
                libc::close(fd);
            }
        }
    }
}
