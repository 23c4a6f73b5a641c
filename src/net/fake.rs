//! Scripted peers for fast tests of session flows: a client whose commands the test feeds
//! in, and MySQL servers that log in anyone and answer each command as the test's script
//! says — reply, close the connection (before or after replying), or stay silent. Both
//! live in memory: no runtime, no socket, no real server.
//!
//! [`Driver`] runs a session (and any task it spawns) on the test's thread, polling until
//! a condition holds, so a test can look at the shard between commands. Faults a real
//! server will not produce on demand (a connection that dies before replying, after a
//! PREPARE, in the middle of a transaction) are one line of script here; the end-to-end
//! tests against real MariaDB stay on top.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::{Connector, Transport};
use crate::protocol::handshake::{Greeting, HandshakeResponse};
use crate::protocol::packet::{write_packet, Header, HEADER_LEN};
use crate::protocol::{auth, caps, command, status};

/// Capabilities a fake server offers: no CLIENT_DEPRECATE_EOF and no session tracking, so
/// result sets end with EOF packets.
const SERVER_CAPS: u32 = caps::BACKEND_REQUIRED | caps::MULTI_STATEMENTS | caps::MULTI_RESULTS | caps::PS_MULTI_RESULTS;

/// A command a fake server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Which connection (1 for the first one opened, 2 for the next, ...).
    pub conn: usize,
    pub command: u8,
    /// The payload after the command byte.
    pub body: Vec<u8>,
}

impl Received {
    /// The statement of a COM_QUERY or COM_STMT_PREPARE.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or("")
    }

    /// The statement id of a COM_STMT_EXECUTE, FETCH, RESET, CLOSE or SEND_LONG_DATA.
    pub fn stmt_id(&self) -> Option<u32> {
        self.body.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// What a fake server does with a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Sends these packets (sequence ids from 1).
    Reply(Vec<Vec<u8>>),
    /// Closes the connection without a reply.
    Close,
    /// Sends the reply, then closes the connection.
    ReplyThenClose(Vec<Vec<u8>>),
    /// Answers nothing (COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA).
    Nothing,
}

impl Answer {
    /// OK with autocommit on.
    pub fn ok() -> Answer {
        Answer::Reply(vec![ok(0, 0, status::AUTOCOMMIT)])
    }

    /// OK with these status flags.
    pub fn ok_with(status_flags: u16) -> Answer {
        Answer::Reply(vec![ok(0, 0, status_flags)])
    }

    /// A result set of one column and these text rows.
    pub fn rows(column: &str, rows: &[&str]) -> Answer {
        let mut packets = vec![vec![1], column_def(column), eof(status::AUTOCOMMIT)];
        for r in rows {
            let mut p = vec![r.len() as u8];
            p.extend_from_slice(r.as_bytes());
            packets.push(p);
        }
        packets.push(eof(status::AUTOCOMMIT));
        Answer::Reply(packets)
    }

    /// PREPARE_OK for server statement `id` with `params` parameters and one column.
    pub fn prepared(id: u32, params: u16) -> Answer {
        let mut first = vec![0];
        first.extend_from_slice(&id.to_le_bytes());
        first.extend_from_slice(&1u16.to_le_bytes());
        first.extend_from_slice(&params.to_le_bytes());
        first.extend_from_slice(&[0, 0, 0]);
        let mut packets = vec![first];
        if params > 0 {
            packets.extend((0..params).map(|_| column_def("?")));
            packets.push(eof(status::AUTOCOMMIT));
        }
        packets.push(column_def("v"));
        packets.push(eof(status::AUTOCOMMIT));
        Answer::Reply(packets)
    }

    /// A binary-protocol result set of one BIGINT row (the reply to an EXECUTE).
    pub fn binary_row(value: u64) -> Answer {
        let mut row = vec![0, 0];
        row.extend_from_slice(&value.to_le_bytes());
        Answer::Reply(vec![vec![1], column_def("v"), eof(status::AUTOCOMMIT), row, eof(status::AUTOCOMMIT)])
    }

    /// An ERR packet.
    pub fn error(code: u16, state: &str, message: &str) -> Answer {
        let mut p = vec![0xFF];
        p.extend_from_slice(&code.to_le_bytes());
        p.push(b'#');
        p.extend_from_slice(state.as_bytes());
        p.extend_from_slice(message.as_bytes());
        Answer::Reply(vec![p])
    }
}

/// An OK packet's payload.
pub fn ok(affected: u8, insert_id: u8, status_flags: u16) -> Vec<u8> {
    let mut p = vec![0, affected, insert_id];
    p.extend_from_slice(&status_flags.to_le_bytes());
    p.extend_from_slice(&0u16.to_le_bytes());
    p
}

fn eof(status_flags: u16) -> Vec<u8> {
    let mut p = vec![0xFE, 0, 0];
    p.extend_from_slice(&status_flags.to_le_bytes());
    p
}

fn column_def(name: &str) -> Vec<u8> {
    let mut p = Vec::new();
    for s in ["def", "", "", "", name, name] {
        p.push(s.len() as u8);
        p.extend_from_slice(s.as_bytes());
    }
    p.extend_from_slice(&[0x0c, 0x3f, 0, 20, 0, 0, 0, 0x08, 0x81, 0, 0, 0, 0]);
    p
}

type Script = Box<dyn FnMut(&Received) -> Answer>;

/// Tasks a session spawned (pipelined connections' drivers), run by [`Driver`].
type Tasks = Rc<RefCell<Vec<Pin<Box<dyn Future<Output = ()>>>>>>;

/// The servers behind a [`FakeConnector`]: one script answers every connection.
struct Servers {
    script: Script,
    opened: usize,
    log: Vec<Received>,
}

/// Opens connections to fake servers, runs spawned tasks (see [`Driver`]) and sleeps by
/// the clock.
pub struct FakeConnector {
    servers: Rc<RefCell<Servers>>,
    tasks: Tasks,
}

impl FakeConnector {
    /// Servers answering every command with `script` (logins are accepted without it).
    pub fn new(script: impl FnMut(&Received) -> Answer + 'static) -> FakeConnector {
        let servers = Servers { script: Box::new(script), opened: 0, log: Vec::new() };
        FakeConnector { servers: Rc::new(RefCell::new(servers)), tasks: Rc::default() }
    }

    /// Every command the servers received, in order.
    pub fn received(&self) -> Vec<Received> {
        self.servers.borrow().log.clone()
    }

    /// Connections opened so far.
    pub fn opened(&self) -> usize {
        self.servers.borrow().opened
    }
}

impl Connector for FakeConnector {
    type Conn = FakeConn;

    async fn connect(&self, _addr: SocketAddr, _timeout: Duration) -> io::Result<FakeConn> {
        let mut servers = self.servers.borrow_mut();
        servers.opened += 1;
        let id = servers.opened;
        let mut out = Vec::new();
        Greeting {
            server_version: "10.11.0-MariaDB-fake".into(),
            connection_id: id as u32,
            scramble: vec![b'x'; auth::SCRAMBLE_LEN],
            capabilities: SERVER_CAPS,
            mariadb_capabilities: 0,
            charset: 45,
            status: status::AUTOCOMMIT,
            auth_plugin: auth::NATIVE.into(),
        }
        .write(&mut out);
        Ok(FakeConn {
            servers: self.servers.clone(),
            id,
            logged_in: false,
            input: Vec::new(),
            output: out.into(),
            closed: false,
        })
    }

    async fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        std::future::poll_fn(|_| if Instant::now() >= until { Poll::Ready(()) } else { Poll::Pending }).await
    }

    fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        self.tasks.borrow_mut().push(Box::pin(task));
    }
}

/// One connection to a fake server.
pub struct FakeConn {
    servers: Rc<RefCell<Servers>>,
    id: usize,
    logged_in: bool,
    /// Bytes written to the server, not yet a whole packet.
    input: Vec<u8>,
    /// Bytes the server sends, not yet read.
    output: VecDeque<u8>,
    /// The server closed the connection (after `output`).
    closed: bool,
}

impl FakeConn {
    fn answer(&mut self, payload: &[u8]) {
        if !self.logged_in {
            // Anyone logs in.
            self.logged_in = true;
            self.send(2, &[ok(0, 0, status::AUTOCOMMIT)]);
            return;
        }
        let Some((&command, body)) = payload.split_first() else { return };
        let received = Received { conn: self.id, command, body: body.to_vec() };
        let answer = {
            let mut servers = self.servers.borrow_mut();
            servers.log.push(received.clone());
            (servers.script)(&received)
        };
        match answer {
            Answer::Reply(packets) => self.send(1, &packets),
            Answer::ReplyThenClose(packets) => {
                self.send(1, &packets);
                self.closed = true;
            }
            Answer::Close => self.closed = true,
            Answer::Nothing => {}
        }
    }

    fn send(&mut self, mut seq: u8, packets: &[Vec<u8>]) {
        let mut out = Vec::new();
        for p in packets {
            seq = write_packet(&mut out, seq, p);
        }
        self.output.extend(out);
    }
}

impl Transport for FakeConn {
    async fn read(&mut self, dst: &mut [u8], timeout: Option<Duration>) -> io::Result<usize> {
        if !self.output.is_empty() {
            let n = dst.len().min(self.output.len());
            for (d, s) in dst.iter_mut().zip(self.output.drain(..n)) {
                *d = s;
            }
            return Ok(n);
        }
        if self.closed {
            return Ok(0);
        }
        match timeout {
            Some(_) => Err(io::ErrorKind::TimedOut.into()),
            None => std::future::pending().await,
        }
    }

    async fn write_all(&mut self, src: &[u8]) -> io::Result<()> {
        if self.closed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.input.extend_from_slice(src);
        while let Some(h) = Header::parse(&self.input).filter(|h| self.input.len() >= h.total()) {
            let payload: Vec<u8> = self.input[HEADER_LEN..h.total()].to_vec();
            self.input.drain(..h.total());
            if payload.first() == Some(&command::QUIT) && self.logged_in {
                self.closed = true;
                continue;
            }
            self.answer(&payload);
        }
        Ok(())
    }

    fn peer_closed(&self) -> bool {
        self.closed || !self.output.is_empty()
    }
}

/// What the fake client sends and what it got.
#[derive(Default)]
struct ClientSide {
    /// Bytes to send, not yet read by the session.
    input: VecDeque<u8>,
    /// Everything the session wrote to the client.
    output: Vec<u8>,
    /// The client hung up once `input` is read.
    hung_up: bool,
}

/// A client the test feeds commands into.
#[derive(Clone, Default)]
pub struct FakeClient {
    side: Rc<RefCell<ClientSide>>,
}

/// Capabilities the fake client asks for: no CLIENT_DEPRECATE_EOF (results end with EOF).
const CLIENT_CAPS: u32 = caps::LONG_PASSWORD
    | caps::PROTOCOL_41
    | caps::TRANSACTIONS
    | caps::SECURE_CONNECTION
    | caps::MULTI_RESULTS
    | caps::PS_MULTI_RESULTS
    | caps::PLUGIN_AUTH;

impl FakeClient {
    /// A client that logs in as `user` (whose password must be empty).
    pub fn logging_in_as(user: &str) -> FakeClient {
        let client = FakeClient::default();
        let mut out = Vec::new();
        HandshakeResponse {
            capabilities: CLIENT_CAPS,
            mariadb_capabilities: 0,
            max_packet: 1 << 24,
            charset: 45,
            user: user.into(),
            auth_response: Vec::new(),
            database: None,
            auth_plugin: Some(auth::NATIVE.into()),
            attributes: Vec::new(),
        }
        .write(&mut out, 1);
        client.side.borrow_mut().input.extend(out);
        client
    }

    /// Sends a command packet (command byte and body).
    pub fn send(&self, command: u8, body: &[u8]) {
        let mut payload = vec![command];
        payload.extend_from_slice(body);
        let mut out = Vec::new();
        write_packet(&mut out, 0, &payload);
        self.side.borrow_mut().input.extend(out);
    }

    /// Sends a COM_QUERY.
    pub fn query(&self, sql: &str) {
        self.send(command::QUERY, sql.as_bytes());
    }

    /// Sends a COM_STMT_EXECUTE of statement `id` with one BIGINT parameter bound to
    /// `value` (or no parameter when None).
    pub fn execute(&self, id: u32, value: Option<u64>) {
        let mut body = id.to_le_bytes().to_vec();
        body.extend_from_slice(&[0, 1, 0, 0, 0]);
        if let Some(v) = value {
            body.extend_from_slice(&[0, 1, 0x08, 0]);
            body.extend_from_slice(&v.to_le_bytes());
        }
        self.send(command::STMT_EXECUTE, &body);
    }

    /// The client hangs up after what it sent.
    pub fn hang_up(&self) {
        self.side.borrow_mut().hung_up = true;
    }

    /// Every packet the session sent the client, as (sequence id, payload).
    pub fn packets(&self) -> Vec<(u8, Vec<u8>)> {
        let side = self.side.borrow();
        let mut rest = &side.output[..];
        let mut out = Vec::new();
        while let Some(h) = Header::parse(rest).filter(|h| rest.len() >= h.total()) {
            out.push((h.seq, rest[HEADER_LEN..h.total()].to_vec()));
            rest = &rest[h.total()..];
        }
        out
    }

    /// Whether the session read everything the client sent.
    pub fn all_read(&self) -> bool {
        self.side.borrow().input.is_empty()
    }
}

impl Transport for FakeClient {
    async fn read(&mut self, dst: &mut [u8], timeout: Option<Duration>) -> io::Result<usize> {
        let side = self.side.clone();
        std::future::poll_fn(move |_| {
            let mut side = side.borrow_mut();
            if !side.input.is_empty() {
                let n = dst.len().min(side.input.len());
                for (d, s) in dst.iter_mut().zip(side.input.drain(..n)) {
                    *d = s;
                }
                return Poll::Ready(Ok(n));
            }
            if side.hung_up {
                return Poll::Ready(Ok(0));
            }
            // The test decides when the client speaks next: an idle timeout never fires.
            let _ = timeout;
            Poll::Pending
        })
        .await
    }

    async fn write_all(&mut self, src: &[u8]) -> io::Result<()> {
        self.side.borrow_mut().output.extend_from_slice(src);
        Ok(())
    }

    fn peer_closed(&self) -> bool {
        false
    }
}

/// Runs a future (a session) and the tasks its connector spawned, on this thread.
pub struct Driver<'a> {
    main: Option<Pin<Box<dyn Future<Output = ()> + 'a>>>,
    tasks: Tasks,
}

impl<'a> Driver<'a> {
    pub fn new(connector: &FakeConnector, main: impl Future<Output = ()> + 'a) -> Driver<'a> {
        Driver { main: Some(Box::pin(main)), tasks: connector.tasks.clone() }
    }

    /// Polls everything until `done` holds (or the main future ended and `done` is
    /// `finished`). Everything lives in memory, so a flow that needs more than a few
    /// seconds is stuck: that panics, naming `what`.
    pub fn until(&mut self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut cx = Context::from_waker(Waker::noop());
        while !done(self) {
            assert!(Instant::now() < deadline, "the flow stalled waiting for {what}");
            if let Some(main) = self.main.as_mut() {
                if main.as_mut().poll(&mut cx).is_ready() {
                    self.main = None;
                }
            }
            let mut tasks = std::mem::take(&mut *self.tasks.borrow_mut());
            tasks.retain_mut(|t| t.as_mut().poll(&mut cx).is_pending());
            self.tasks.borrow_mut().extend(tasks);
        }
    }

    /// Whether the main future ended.
    pub fn finished(&self) -> bool {
        self.main.is_none()
    }
}
