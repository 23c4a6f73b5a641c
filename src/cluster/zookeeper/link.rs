//! The master's side of the watcher: starts `corelay zk-watch` as a child process (an
//! exec, safe from a threaded master too), hands it its [`Spec`], reads its reports
//! without blocking, and starts it again with back-off when it ends.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use tracing::{error, warn};

use super::watcher::{Report, Spec};

const RESTART_MIN: Duration = Duration::from_millis(500);
const RESTART_MAX: Duration = Duration::from_secs(10);
/// A report line longer than this is not one (a topology of thousands of servers fits).
const MAX_LINE: usize = 64 << 20;

pub struct Link {
    spec: Spec,
    child: Option<(Child, ChildStdout)>,
    buf: Vec<u8>,
    restart_at: Option<Instant>,
    backoff: Duration,
    /// Times the watcher process was started again after it ended.
    pub restarts: u64,
}

impl Link {
    /// Starts the watcher for `spec`.
    pub fn start(spec: Spec) -> Link {
        let mut link = Link {
            spec,
            child: None,
            buf: Vec::new(),
            restart_at: Some(Instant::now()),
            backoff: RESTART_MIN,
            restarts: 0,
        };
        link.start_due();
        link
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The descriptor to poll for reports (None while no watcher runs).
    pub fn fd(&self) -> Option<RawFd> {
        self.child.as_ref().map(|(_, out)| out.as_raw_fd())
    }

    /// Starts the watcher if it is due.
    fn start_due(&mut self) {
        if self.restart_at.is_none_or(|t| Instant::now() < t) {
            return;
        }
        self.restart_at = None;
        match spawn(&self.spec) {
            Ok(c) => self.child = Some(c),
            Err(e) => {
                error!("cannot start the ZooKeeper watcher: {e}; trying again in {} ms", self.backoff.as_millis());
                self.restart_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(RESTART_MAX);
            }
        }
    }

    /// Reports that came since the last call; restarts a watcher that ended.
    pub fn poll(&mut self) -> Vec<Report> {
        self.start_due();
        let mut reports = Vec::new();
        let Some((child, out)) = &mut self.child else { return reports };
        let mut chunk = [0u8; 16 << 10];
        let mut ended = false;
        loop {
            match out.read(&mut chunk) {
                Ok(0) => {
                    ended = true;
                    break;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    ended = true;
                    break;
                }
            }
        }
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            match serde_json::from_slice::<Report>(&line) {
                Ok(r) => reports.push(r),
                Err(e) => warn!("the ZooKeeper watcher said something unreadable ({e}); ignored"),
            }
        }
        if self.buf.len() > MAX_LINE {
            warn!("the ZooKeeper watcher sent a line over {MAX_LINE} bytes; dropped");
            self.buf.clear();
        }
        if ended || child.try_wait().ok().flatten().is_some() {
            let status = child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            error!(
                "the ZooKeeper watcher ended ({status}); the running topology stays, restarting it in {} ms",
                self.backoff.as_millis()
            );
            self.child = None;
            self.buf.clear();
            self.restarts += 1;
            self.restart_at = Some(Instant::now() + self.backoff);
            self.backoff = (self.backoff * 2).min(RESTART_MAX);
            reports.push(Report::State { state: "watcher_down".into() });
        } else if !reports.is_empty() {
            self.backoff = RESTART_MIN;
        }
        reports
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some((mut child, _)) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `corelay zk-watch` with the spec on its standard input (not its command line:
/// it may hold a password) and its reports on a non-blocking pipe.
fn spawn(spec: &Spec) -> std::io::Result<(Child, ChildStdout)> {
    let exe = std::env::current_exe()?;
    let text = toml::to_string(spec).map_err(std::io::Error::other)?;
    let mut child = Command::new(exe)
        .arg("zk-watch")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(std::io::Error::other("no pipes to the watcher"));
    };
    let written = stdin.write_all(text.as_bytes());
    drop(stdin);
    if let Err(e) = written.and_then(|()| set_nonblocking(stdout.as_raw_fd())) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    Ok((child, stdout))
}

fn set_nonblocking(fd: RawFd) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
    fcntl(fd, FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK)).map_err(std::io::Error::from)?;
    Ok(())
}
