//! Pipelined connections: one backend connection carrying the stateless reads of many
//! sessions at once, their commands sent back to back without waiting for each reply.
//!
//! Why: a server answers the commands of one connection in order, and a server thread
//! that finds the next command already waiting serves it without going to sleep and being
//! woken again. On a busy host those wake-ups are most of what a short read costs the
//! server; sending several sessions' reads down one connection removes them, and the
//! proxy writes those reads with one system call and reads their replies with one too.
//!
//! A pipe owns its connection; a driver task ([`drive`]) writes what sessions queued and
//! hands each reply, as the [`Scanner`] finds it, to the [`Reply`] of the session that
//! sent the command, which streams it to its client.
//!
//! Invariants:
//! - The bytes queued in `out` are in the order of `inflight`: a command and its reply slot
//!   are queued in one step, with no await between them, so replies pair with commands.
//! - Only commands that leave nothing on the connection come here (the session decides:
//!   stateless reads, in autocommit, with the pipe's schema and variables). A reply that
//!   says otherwise (a schema change, changed session state, an open transaction) retires
//!   the pipe: it takes nothing new and closes once its replies are in.
//! - A pipe that fails (the connection breaks, a reply is malformed, a statement is
//!   interrupted) fails every command in flight; one whose session got no byte of its
//!   reply may be sent again elsewhere.
//! - A session that stops listening (its client went away) abandons its reply: the driver
//!   reads it to its end and drops it, so the connection stays usable.
//! - The connection stays counted in the pool of its server while the pipe lives. When a
//!   session waits for a connection of that server, idle pipes give theirs back to the
//!   pool (with its prepared statements); a pipe that fails or retires makes the pool
//!   forget its connection as it closes.

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::backend::Key;
use crate::backend::Vars;
use crate::backend::{Backend, StmtCache};
use crate::net::{Buffer, Transport};
use crate::pool::Pool;
use crate::protocol::caps;
use crate::protocol::metadata::StmtDefs;
use crate::protocol::ok::{ClientView, Trackers};
use crate::protocol::scanner::{Expect, Progress, Scanner};
use crate::protocol::status;
use crate::util::waker::WakerSlot;

/// Reply bytes a session may leave unsent before the driver stops reading (a slow client
/// holds up its pipe, not the proxy's memory).
const REPLY_BUFFER_LIMIT: usize = 256 * 1024;

/// A flag and the task waiting for it to be set.
#[derive(Default)]
struct Notify {
    set: Cell<bool>,
    waker: WakerSlot,
}

impl Notify {
    fn notify(&self) {
        self.set.set(true);
        self.waker.wake();
    }

    /// Resolves once the flag is set (at once if it already is), clearing it.
    fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx: &mut Context<'_>| {
            if self.set.replace(false) {
                return Poll::Ready(());
            }
            self.waker.register(cx);
            Poll::Pending
        })
    }
}

/// Where a reply stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyState {
    Waiting,
    Done,
    Failed,
}

/// One command's reply, as the driver hands it to the session that sent the command.
/// A session keeps one and reuses it: nothing is allocated per statement.
#[derive(Default)]
pub struct Reply {
    /// Reply bytes not yet taken by the session.
    bytes: RefCell<Vec<u8>>,
    state: Cell<Option<ReplyState>>,
    /// The finished scan (status flags, error code, OK packet) once done.
    scanner: RefCell<Option<Scanner>>,
    /// Why the pipe failed, once failed.
    failure: RefCell<String>,
    /// The bytes handed over so far end on a packet boundary.
    at_boundary: Cell<bool>,
    /// Sequence id of the last packet handed over.
    last_seq: Cell<u8>,
    /// The session stopped listening: the rest of the reply is dropped.
    abandoned: Cell<bool>,
    ready: Notify,
}

impl Reply {
    /// Readies the slot for a new command.
    pub fn reset(&self) {
        self.bytes.borrow_mut().clear();
        self.state.set(Some(ReplyState::Waiting));
        self.scanner.borrow_mut().take();
        self.failure.borrow_mut().clear();
        self.at_boundary.set(true);
        self.last_seq.set(0);
        self.abandoned.set(false);
        self.ready.set.set(false);
    }

    pub fn state(&self) -> ReplyState {
        self.state.get().unwrap_or(ReplyState::Waiting)
    }

    /// Resolves when there are bytes to take or the reply ended.
    pub fn changed(&self) -> impl Future<Output = ()> + '_ {
        self.ready.wait()
    }

    /// Swaps the bytes received so far into `into` (which is cleared first).
    pub fn take_bytes(&self, into: &mut Vec<u8>) {
        into.clear();
        std::mem::swap(&mut *self.bytes.borrow_mut(), into);
    }

    pub fn take_scanner(&self) -> Option<Scanner> {
        self.scanner.borrow_mut().take()
    }

    pub fn failure(&self) -> Ref<'_, String> {
        self.failure.borrow()
    }

    pub fn at_boundary(&self) -> bool {
        self.at_boundary.get()
    }

    pub fn last_seq(&self) -> u8 {
        self.last_seq.get()
    }

    /// Gives back the byte buffer's memory if it grew past `keep`.
    pub fn shrink_to(&self, keep: usize) {
        let mut bytes = self.bytes.borrow_mut();
        if bytes.capacity() > keep {
            *bytes = Vec::new();
        }
    }

    pub fn abandon(&self) {
        self.abandoned.set(true);
        self.bytes.borrow_mut().clear();
    }

    fn fail(&self, reason: &str) {
        if self.state() == ReplyState::Waiting {
            self.failure.borrow_mut().push_str(reason);
            self.state.set(Some(ReplyState::Failed));
            self.ready.notify();
        }
    }
}

struct Entry {
    reply: Rc<Reply>,
    expect: Expect,
    /// What the reply's client is told of session-state changes (None: all of it).
    view: Option<ClientView>,
    /// The statement of an EXECUTE (MariaDB's metadata cache).
    stmt: Option<StmtDefs>,
    /// Its session was told to send the command again elsewhere (the pipe evicted a slow
    /// reader ahead of it): the reply is read and dropped, and `reply`, which the session
    /// reuses, is not touched again.
    dropped: bool,
}

#[derive(Default)]
struct PipeState {
    /// Commands queued for the driver to write.
    out: Vec<u8>,
    /// Commands sent or queued whose replies are not complete, oldest first.
    inflight: VecDeque<Entry>,
    /// When the oldest command in flight became the one the server works on.
    front_since: Option<Instant>,
    /// Statements prepared on this connection.
    stmts: StmtCache,
    /// Why the pipe closed; it takes nothing once set.
    closed: Option<String>,
    /// Takes nothing new; closes once the replies in flight are in.
    retiring: bool,
    /// Takes nothing new; gives its connection back to the pool once the replies in
    /// flight are in (sessions wait for a connection of this server).
    giving_back: bool,
    /// Commands sent, for `backend_max_uses`.
    served: u64,
    last_used: Option<Instant>,
    /// Since when the oldest reply's session has left too much unsent for the driver to
    /// read on (a slow-reading client).
    blocked_since: Option<Instant>,
}

/// A connection in pipelined use.
pub struct Pipe {
    pub key: Key,
    /// Schema and variables of the connection: a session's must be the same to use it.
    pub schema: Option<String>,
    pub vars: Vars,
    pub charset_name: &'static str,
    pub mariadb: bool,
    pub addr: SocketAddr,
    pub thread_id: u32,
    deprecate_eof: bool,
    /// MariaDB's metadata cache is in force on the connection.
    pub cache_metadata: bool,
    /// The connection's capabilities.
    pub caps: u32,
    /// What its session tracking would report to a client connected directly.
    pub trackers: Rc<Trackers>,
    /// corelay's trackers are in force on it ([`Backend::tracks_all`]).
    pub tracks_all: bool,
    /// Most commands in flight at once.
    depth: usize,
    /// Commands after which the connection is retired.
    max_uses: u64,
    state: RefCell<PipeState>,
    wake: Notify,
}

impl Pipe {
    /// A pipe for a logged-in connection whose state is the session's; the connection
    /// itself goes to the pipe's driver ([`drive`]), its prepared statements to the pipe.
    pub fn new<T: Transport>(b: &mut Backend<T>, depth: usize, max_uses: u64) -> Rc<Pipe> {
        let stmts = std::mem::take(&mut b.stmts);
        Rc::new(Pipe {
            key: b.key,
            schema: b.state.schema.clone(),
            vars: b.state.vars.clone(),
            charset_name: b.charset_name,
            mariadb: b.server_version.contains("MariaDB"),
            addr: b.addr,
            thread_id: b.thread_id,
            deprecate_eof: b.deprecate_eof(),
            cache_metadata: b.cache_metadata,
            caps: b.caps,
            trackers: b.trackers.clone(),
            tracks_all: b.tracks_all,
            depth: depth.max(1),
            max_uses: max_uses.saturating_sub(b.uses).max(1),
            state: RefCell::new(PipeState { stmts, last_used: Some(Instant::now()), ..Default::default() }),
            wake: Notify::default(),
        })
    }

    /// Whether a new command may be queued: the pipe is open, not full, and the command
    /// the server works on has not been at it for `stall` or longer (a slow statement
    /// holds up what is queued behind it; new commands go elsewhere then).
    pub fn accepts(&self, now: Instant, stall: Duration) -> bool {
        let st = self.state.borrow();
        st.closed.is_none()
            && !st.retiring
            && !st.giving_back
            && st.inflight.len() < self.depth
            && st.front_since.is_none_or(|t| now.saturating_duration_since(t) < stall)
    }

    pub fn in_flight(&self) -> usize {
        self.state.borrow().inflight.len()
    }

    pub fn is_closed(&self) -> bool {
        self.state.borrow().closed.is_some()
    }

    /// Statements prepared on the pipe's connection.
    pub fn stmts(&self) -> RefMut<'_, StmtCache> {
        RefMut::map(self.state.borrow_mut(), |s| &mut s.stmts)
    }

    /// Queues a complete command packet whose reply goes to `reply`, rewritten for `view`.
    /// On a pipe that has closed meanwhile, the reply fails at once (nothing was sent).
    pub fn submit(
        &self,
        command: &[u8],
        expect: Expect,
        reply: &Rc<Reply>,
        view: Option<ClientView>,
        stmt: Option<StmtDefs>,
    ) {
        reply.reset();
        let mut st = self.state.borrow_mut();
        if let Some(why) = &st.closed {
            reply.fail(why);
            return;
        }
        if st.inflight.is_empty() {
            st.front_since = Some(Instant::now());
        }
        st.out.extend_from_slice(command);
        st.inflight.push_back(Entry { reply: reply.clone(), expect, view, stmt, dropped: false });
        st.served += 1;
        if st.served >= self.max_uses {
            st.retiring = true;
        }
        drop(st);
        self.wake.notify();
    }

    /// Queues a command that has no reply (COM_STMT_CLOSE).
    pub fn send_only(&self, command: &[u8]) {
        self.state.borrow_mut().out.extend_from_slice(command);
        self.wake.notify();
    }

    /// Tells the driver a session took reply bytes (it may read again).
    pub fn taken(&self) {
        self.wake.notify();
    }

    /// Takes nothing new; the connection closes once the replies in flight are in.
    pub fn retire(&self) {
        self.state.borrow_mut().retiring = true;
        self.wake.notify();
    }

    /// Takes nothing new; the connection goes back to the pool once the replies in flight
    /// are in.
    pub fn give_back(&self) {
        self.state.borrow_mut().giving_back = true;
        self.wake.notify();
    }

    /// Closes the connection now: every command in flight fails with `reason` (a statement
    /// ran too long or was killed; the server stops it when the connection goes).
    pub fn interrupt(&self, reason: &str) {
        self.close(reason);
        self.wake.notify();
    }

    fn close(&self, reason: &str) {
        let mut st = self.state.borrow_mut();
        if st.closed.is_none() {
            st.closed = Some(reason.to_string());
        }
        let entries: Vec<Entry> = st.inflight.drain(..).collect();
        st.out.clear();
        drop(st);
        for e in entries {
            e.reply.fail(reason);
        }
    }

    /// When the oldest reply's client has kept the pipe from reading for `limit` or longer:
    /// the pipe takes nothing new, and every command queued behind that reply fails over
    /// to another connection (its session got no byte of it, so it is sent again there).
    /// The slow client keeps this connection to itself until its reply is read; then the
    /// replies of the commands behind it are read and dropped, and the pipe closes.
    /// Returns whether it evicted.
    pub fn evict_slow_reader(&self, now: Instant, limit: Duration) -> bool {
        let mut st = self.state.borrow_mut();
        if st.blocked_since.is_none_or(|t| now.saturating_duration_since(t) < limit) {
            return false;
        }
        st.retiring = true;
        st.blocked_since = None;
        let mut behind = Vec::new();
        for e in st.inflight.iter_mut().skip(1).filter(|e| !e.dropped) {
            e.dropped = true;
            behind.push(e.reply.clone());
        }
        drop(st);
        for r in behind {
            r.fail("a slow-reading client held up its pipelined connection");
        }
        tracing::debug!(server = %self.addr, thread = self.thread_id, "pipelined connection left to a slow-reading client");
        true
    }

    /// Idle (nothing in flight) since longer than `max_idle`.
    fn idle_longer_than(&self, now: Instant, max_idle: Duration) -> bool {
        let st = self.state.borrow();
        st.inflight.is_empty() && st.last_used.is_some_and(|t| now.saturating_duration_since(t) > max_idle)
    }

    /// Hands the bytes in `rbuf` to the replies they belong to. Returns true when the
    /// oldest reply's session has too much unsent and the driver must wait for it.
    fn deliver(&self, rbuf: &mut Buffer, scanner: &mut Option<Scanner>) -> Result<bool, String> {
        while !rbuf.is_empty() {
            let mut st = self.state.borrow_mut();
            let Some(front) = st.inflight.front() else {
                return Err("the server sent bytes no command asked for".into());
            };
            let reply = front.reply.clone();
            let own = !front.dropped;
            let dropped = !own || reply.abandoned.get();
            let sc = scanner.get_or_insert_with(|| {
                Scanner::new(front.expect, self.deprecate_eof)
                    .tracking_session(self.caps & caps::SESSION_TRACK != 0)
                    .client_view(front.view.clone())
                    .metadata(self.cache_metadata, self.key.cache_metadata)
                    .statement(front.stmt.clone())
            });
            if !dropped && reply.bytes.borrow().len() >= REPLY_BUFFER_LIMIT {
                st.blocked_since.get_or_insert_with(Instant::now);
                return Ok(true);
            }
            st.blocked_since = None;
            let (n, progress) = sc.feed(rbuf.filled()).map_err(|e| format!("malformed reply: {e}"))?;
            if n > 0 {
                if !dropped {
                    reply.bytes.borrow_mut().extend_from_slice(&sc.edited(&rbuf.filled()[..n]));
                }
                rbuf.consume(n);
                if own {
                    reply.at_boundary.set(sc.at_boundary());
                    reply.last_seq.set(sc.last_seq);
                }
            }
            match progress {
                Progress::Done => {
                    let Some(done) = scanner.take() else { continue };
                    let leaves_state = done.changes.schema.is_some()
                        || done.changes.state_changed
                        || (done.status_seen()
                            && (done.status & status::IN_TRANS != 0 || done.status & status::AUTOCOMMIT == 0));
                    if leaves_state {
                        st.retiring = true;
                    }
                    st.inflight.pop_front();
                    let now = Instant::now();
                    st.front_since = (!st.inflight.is_empty()).then_some(now);
                    st.last_used = Some(now);
                    drop(st);
                    if own {
                        *reply.scanner.borrow_mut() = Some(done);
                        reply.state.set(Some(ReplyState::Done));
                        reply.ready.notify();
                    }
                }
                Progress::LocalInfile => return Err("the server asked for a LOCAL INFILE on a pipelined read".into()),
                Progress::More => {
                    drop(st);
                    if n > 0 {
                        if own {
                            reply.ready.notify();
                        }
                    } else {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(false)
    }
}

/// How a pipe's driver ends.
enum End {
    /// The connection failed (or a statement on it was interrupted): it is closed.
    Failed(String),
    /// Retired: closed politely.
    Retired,
    /// Sessions wait for a connection: it goes back to the pool.
    GivenBack,
}

/// Runs a pipe's connection until the pipe closes: writes the queued commands, reads the
/// replies and hands them out. A failure closes the pipe and fails what is in flight. The
/// connection then leaves the pool's count, or goes back to the pool when the pipe gave
/// it back.
pub async fn drive<T: Transport>(pipe: Rc<Pipe>, mut b: Backend<T>, pool: Rc<Pool<T>>) {
    tracing::debug!(server = %pipe.addr, thread = pipe.thread_id, "pipelined connection opened");
    let end = run(&pipe, &mut b, &pool).await;
    let server = pipe.key.server;
    let served = pipe.state.borrow().served;
    match &end {
        End::Failed(why) => {
            tracing::debug!(server = %pipe.addr, thread = pipe.thread_id, served, "pipelined connection closed: {why}")
        }
        End::Retired => {
            tracing::debug!(server = %pipe.addr, thread = pipe.thread_id, served, "pipelined connection retired")
        }
        End::GivenBack => {
            tracing::debug!(server = %pipe.addr, thread = pipe.thread_id, served, "pipelined connection given back to the pool")
        }
    }
    match end {
        End::Failed(why) => {
            pipe.close(&why);
            pool.forget(server);
        }
        End::Retired => {
            b.quit().await;
            pipe.close("retired");
            pool.forget(server);
        }
        End::GivenBack => {
            pipe.close("given back to the pool");
            b.stmts = std::mem::take(&mut pipe.state.borrow_mut().stmts);
            b.uses += pipe.state.borrow().served;
            b.idle_since = Instant::now();
            pool.put(b);
        }
    }
}

async fn run<T: Transport>(pipe: &Pipe, b: &mut Backend<T>, pool: &Pool<T>) -> End {
    let mut rbuf = Buffer::new();
    let mut sending = Vec::new();
    let mut scanner = None;
    loop {
        if let Some(why) = pipe.state.borrow().closed.clone() {
            return End::Failed(why);
        }
        std::mem::swap(&mut pipe.state.borrow_mut().out, &mut sending);
        if !sending.is_empty() {
            if let Err(e) = b.stream.write_all(&sending).await {
                return End::Failed(format!("lost connection to db server {}: {e}", pipe.addr));
            }
            sending.clear();
        }
        let blocked = match pipe.deliver(&mut rbuf, &mut scanner) {
            Ok(blocked) => blocked,
            Err(why) => return End::Failed(why),
        };
        let (idle, retiring, giving_back, served) = {
            let st = pipe.state.borrow();
            (st.inflight.is_empty() && st.out.is_empty(), st.retiring, st.giving_back, st.served)
        };
        // (A pipe is driven first when it is spawned, before the session that made it has
        // queued its command: it has served nothing then and is kept.)
        let wanted_back = giving_back || pool.has_waiters(pipe.key.server);
        if idle && wanted_back && served > 0 && !retiring && rbuf.is_empty() {
            return End::GivenBack;
        }
        if idle && retiring {
            return End::Retired;
        }
        if idle || blocked {
            pipe.wake.wait().await;
            continue;
        }
        // Read, or wake up to send what sessions queued meanwhile.
        let read = async { Some(rbuf.fill_from(&mut b.stream, None).await) };
        let woken = async {
            pipe.wake.wait().await;
            None
        };
        match futures_lite::future::or(read, woken).await {
            None | Some(Ok(1..)) => {}
            Some(Ok(0)) => {
                return End::Failed(format!("lost connection to db server {}: closed by the server", pipe.addr))
            }
            Some(Err(e)) => return End::Failed(format!("lost connection to db server {}: {e}", pipe.addr)),
        }
    }
}

/// A shard's pipes.
#[derive(Default)]
pub struct Pipes {
    list: RefCell<Vec<Rc<Pipe>>>,
}

impl Pipes {
    /// The open pipe for `key` (its server included) whose connection has `schema` and
    /// state equal to `fits`, with the fewest commands in flight, if one accepts another.
    pub fn find(&self, key: &Key, fits: impl Fn(&Pipe) -> bool, stall: Duration) -> Option<Rc<Pipe>> {
        let now = Instant::now();
        self.list
            .borrow()
            .iter()
            .filter(|p| p.key == *key && p.accepts(now, stall) && fits(p))
            .min_by_key(|p| p.in_flight())
            .cloned()
    }

    /// Open pipes for `key`.
    pub fn count(&self, key: &Key) -> usize {
        self.list.borrow().iter().filter(|p| p.key == *key && !p.is_closed()).count()
    }

    pub fn add(&self, pipe: Rc<Pipe>) {
        self.list.borrow_mut().push(pipe);
    }

    /// Open pipes (for the status tables): (server, in flight).
    pub fn open(&self) -> Vec<(usize, usize)> {
        self.list.borrow().iter().filter(|p| !p.is_closed()).map(|p| (p.key.server, p.in_flight())).collect()
    }

    /// Removes the closed pipes and retires those idle longer than `max_idle`.
    pub fn reap(&self, max_idle: Duration) {
        let now = Instant::now();
        self.list.borrow_mut().retain(|p| {
            if p.idle_longer_than(now, max_idle) {
                p.retire();
            }
            !p.is_closed()
        });
    }

    /// Evicts the slow readers of every pipe (see [`Pipe::evict_slow_reader`]); returns
    /// how many pipes were left to one.
    pub fn evict_slow_readers(&self, limit: Duration) -> usize {
        let now = Instant::now();
        self.list.borrow().iter().filter(|p| !p.is_closed() && p.evict_slow_reader(now, limit)).count()
    }

    /// A session waits for a connection to `server`: the pipes there give theirs back to
    /// the pool as soon as their replies are in.
    pub fn give_back(&self, server: usize) {
        for p in self.list.borrow().iter().filter(|p| p.key.server == server && !p.is_closed()) {
            p.give_back();
        }
    }

    /// Retires the pipes `gone` says no longer belong (a reload removed their server).
    pub fn retire_where(&self, gone: impl Fn(&Pipe) -> bool) {
        for p in self.list.borrow().iter().filter(|p| gone(p)) {
            p.retire();
        }
    }

    pub fn all_closed(&self) -> bool {
        self.list.borrow().iter().all(|p| p.is_closed())
    }
}
