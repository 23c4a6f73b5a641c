//! Per-shard mailboxes for requests about one shard's sessions from another (KILL).
//!
//! A session lives on one shard, and a KILL for it may arrive on any. The shard that
//! receives the KILL claims a free cell of the owning shard's mailbox, writes the request
//! and rings the owner's doorbell (one byte down a socket pair the master made before
//! spawning, so forked shards share it too); the owner, woken by the byte, answers in the
//! cell; the asker reads the answer and frees the cell. Nothing is locked: each cell moves
//! through its states by compare-and-swap, and only the cell's current holder writes its
//! fields.
//!
//! States: FREE → (asker) CLAIMED → (asker) ASKED → (owner) ANSWERED → (asker) FREE. An
//! asker that gives up waiting takes ASKED back to FREE; an owner that then finds the cell
//! no longer ASKED drops its answer.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

/// Requests one shard can have outstanding at once.
pub const CELLS: usize = 16;

const FREE: u32 = 0;
const CLAIMED: u32 = 1;
const ASKED: u32 = 2;
const ANSWERED: u32 = 3;

/// `user` of a request made by an admin (allowed to kill any session).
pub const ADMIN: u32 = u32::MAX;

/// One request and its answer.
#[repr(C, align(64))]
#[derive(Default)]
pub struct Cell {
    state: AtomicU32,
    query_only: AtomicU32,
    target: AtomicU32,
    /// The asking session's product user index, or [`ADMIN`].
    user: AtomicU32,
    verdict: AtomicU32,
    server: AtomicU32,
    thread: AtomicU32,
}

/// One shard's cells.
#[repr(C, align(64))]
#[derive(Default)]
pub struct Mailbox {
    cells: [Cell; CELLS],
}

/// A KILL for a session of another shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillRequest {
    pub target: u32,
    pub query_only: bool,
    pub user: u32,
}

/// What the owning shard did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No live session has that id.
    NoSuchSession,
    /// The asker's user is not the session's.
    NotOwner,
    /// Done: the session was not running a statement on a connection of its own (or was
    /// waiting on a shared one, which it gave up).
    Done,
    /// The session's statement runs on `thread` of server `server`: the asker kills it
    /// there (and, for KILL CONNECTION, the session ends before its next command).
    KillOn { server: u32, thread: u32 },
}

impl Verdict {
    fn encode(self) -> (u32, u32, u32) {
        match self {
            Verdict::NoSuchSession => (1, 0, 0),
            Verdict::NotOwner => (2, 0, 0),
            Verdict::Done => (3, 0, 0),
            Verdict::KillOn { server, thread } => (4, server, thread),
        }
    }

    fn decode(code: u32, server: u32, thread: u32) -> Verdict {
        match code {
            2 => Verdict::NotOwner,
            3 => Verdict::Done,
            4 => Verdict::KillOn { server, thread },
            _ => Verdict::NoSuchSession,
        }
    }
}

/// A cell the asker holds (CLAIMED or ASKED).
pub struct Ticket<'a> {
    cell: &'a Cell,
}

impl Mailbox {
    /// Claims a free cell and posts `req` in it; None when every cell is in use.
    pub fn post(&self, req: KillRequest) -> Option<Ticket<'_>> {
        let cell = self
            .cells
            .iter()
            .find(|c| c.state.compare_exchange(FREE, CLAIMED, Ordering::Acquire, Ordering::Relaxed).is_ok())?;
        cell.target.store(req.target, Ordering::Relaxed);
        cell.query_only.store(u32::from(req.query_only), Ordering::Relaxed);
        cell.user.store(req.user, Ordering::Relaxed);
        cell.state.store(ASKED, Ordering::Release);
        Some(Ticket { cell })
    }

    /// The owner: answers every request waiting in the mailbox with `answer`.
    pub fn answer_all(&self, mut answer: impl FnMut(KillRequest) -> Verdict) {
        for cell in &self.cells {
            if cell.state.load(Ordering::Acquire) != ASKED {
                continue;
            }
            let req = KillRequest {
                target: cell.target.load(Ordering::Relaxed),
                query_only: cell.query_only.load(Ordering::Relaxed) != 0,
                user: cell.user.load(Ordering::Relaxed),
            };
            let (code, server, thread) = answer(req).encode();
            cell.server.store(server, Ordering::Relaxed);
            cell.thread.store(thread, Ordering::Relaxed);
            cell.verdict.store(code, Ordering::Relaxed);
            // An asker that gave up meanwhile took the cell back: the answer is dropped.
            let _ = cell.state.compare_exchange(ASKED, ANSWERED, Ordering::Release, Ordering::Relaxed);
        }
    }
}

impl Ticket<'_> {
    /// The owner's answer, once given (the cell is then free again).
    pub fn verdict(&self) -> Option<Verdict> {
        if self.cell.state.load(Ordering::Acquire) != ANSWERED {
            return None;
        }
        let v = Verdict::decode(
            self.cell.verdict.load(Ordering::Relaxed),
            self.cell.server.load(Ordering::Relaxed),
            self.cell.thread.load(Ordering::Relaxed),
        );
        self.cell.state.store(FREE, Ordering::Release);
        Some(v)
    }

    /// Gives up waiting. Returns the answer if it came meanwhile.
    pub fn abandon(self) -> Option<Verdict> {
        match self.cell.state.compare_exchange(ASKED, FREE, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => None,
            Err(_) => self.verdict(),
        }
    }
}

/// One shard's doorbell: a connected socket pair. Any shard writes a byte to `ring`; the
/// owner reads `listen`.
pub struct Doorbell {
    listen: OwnedFd,
    ring: OwnedFd,
}

impl Doorbell {
    pub fn new() -> std::io::Result<Doorbell> {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (listen, ring) =
            socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC)
                .map_err(std::io::Error::from)?;
        Ok(Doorbell { listen, ring })
    }

    /// Wakes the owner. A full socket means it has bytes to read already: nothing lost.
    pub fn ring(&self) {
        use nix::sys::socket::{send, MsgFlags};
        let _ = send(self.ring.as_raw_fd(), &[1], MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL);
    }

    /// A new descriptor of the owner's end, for the owner to wait on (it owns and closes it).
    pub fn listener(&self) -> std::io::Result<RawFd> {
        nix::unistd::dup(self.listen.as_raw_fd()).map_err(std::io::Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_answered_once_and_frees_its_cell() {
        let mb = Mailbox::default();
        let req = KillRequest { target: 0x0100_0007, query_only: true, user: 3 };
        let t = mb.post(req).unwrap();
        assert_eq!(t.verdict(), None, "not answered yet");
        let mut seen = Vec::new();
        mb.answer_all(|r| {
            seen.push(r);
            Verdict::KillOn { server: 2, thread: 99 }
        });
        assert_eq!(seen, [req]);
        mb.answer_all(|_| panic!("answered twice"));
        assert_eq!(t.verdict(), Some(Verdict::KillOn { server: 2, thread: 99 }));
        assert_eq!(mb.cells.iter().filter(|c| c.state.load(Ordering::Relaxed) == FREE).count(), CELLS);
    }

    #[test]
    fn a_full_mailbox_refuses_and_an_abandoned_request_is_not_answered() {
        let mb = Mailbox::default();
        let req = KillRequest { target: 1, query_only: false, user: ADMIN };
        let tickets: Vec<_> = (0..CELLS).map(|_| mb.post(req).unwrap()).collect();
        assert!(mb.post(req).is_none());
        for t in tickets {
            assert_eq!(t.abandon(), None);
        }
        mb.answer_all(|_| panic!("an abandoned request was answered"));
        let t = mb.post(req).unwrap();
        mb.answer_all(|_| Verdict::NotOwner);
        assert_eq!(t.abandon(), Some(Verdict::NotOwner), "an answer that came meanwhile is kept");
    }

    #[test]
    fn the_doorbell_rings_across_a_socket_pair() {
        let bell = Doorbell::new().unwrap();
        bell.ring();
        bell.ring();
        let fd = bell.listener().unwrap();
        let mut buf = [0u8; 8];
        let n = nix::unistd::read(fd, &mut buf).unwrap();
        assert_eq!(n, 2);
        let _ = nix::unistd::close(fd);
    }
}
