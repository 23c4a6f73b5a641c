//! Prepared statements that follow the session from connection to connection.
//!
//! The client sees statement ids the session hands out. Each statement remembers its text,
//! the schema it was prepared in, its parameter count and the last parameter types the
//! client bound. When the session executes it on a connection that has not prepared it
//! (see [`crate::backend::StmtCache`]), the session prepares it there first and rewrites
//! the statement id — and, if the client relies on types it sent to another connection,
//! puts the types back into the EXECUTE packet.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use super::borrow::AcquireError;
use super::{Session, SessionError};
use crate::net::{Connector, Transport};
use crate::protocol::code::{self, Code};
use crate::protocol::err::ErrPacket;
use crate::protocol::packet::{write_packet, Header, HEADER_LEN};
use crate::protocol::scanner::{Expect, Scanner};
use crate::protocol::{command as cmd, status};
use crate::router::classify::{classify, hint, session_function_query, Class, SessionFunction};
use crate::router::statement::pin;
use crate::router::statement::Previous;
use crate::status::Slot;

/// One prepared statement of a session.
#[derive(Debug)]
pub struct Stmt {
    pub sql: Rc<[u8]>,
    pub schema: Option<Rc<str>>,
    pub hash: u64,
    pub params: u16,
    /// Parameter types (2 bytes each) from the last EXECUTE that sent them.
    pub types: Option<Vec<u8>>,
    /// Read or write: where its executions are routed.
    pub class: Class,
    /// `SELECT LAST_INSERT_ID()` or `CONNECTION_ID()`: answered by the proxy (column name).
    pub session_function: Option<(SessionFunction, String)>,
    /// A read that may share a pipelined connection ([`crate::pool::pipe`]).
    pub pipelinable: bool,
    /// What it reads of, or leaves on, the connection's record of the previous statement.
    pub previous: Previous,
}

/// A session's statements by the ids it handed out.
#[derive(Debug, Default)]
pub struct Statements {
    pub(super) map: HashMap<u32, Stmt>,
    next: u32,
    /// The statement whose cursor is open, if any.
    pub cursor: Option<u32>,
}

impl Statements {
    pub fn clear(&mut self) {
        self.map.clear();
        self.cursor = None;
    }
}

fn stmt_hash(schema: Option<&str>, sql: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    schema.hash(&mut h);
    sql.hash(&mut h);
    h.finish()
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Errors of the statement commands, as the server words them.
fn unknown_stmt(id: u32, what: &str) -> (Code, String) {
    (code::UNKNOWN_STMT_HANDLER, format!("Unknown prepared statement handler ({id}) given to {what}"))
}

impl<C: Transport, N: Connector> Session<'_, C, N> {
    /// COM_STMT_PREPARE: prepare on a borrowed connection, hand out our own id.
    pub(super) async fn stmt_prepare(&mut self, reply_seq: u8) -> Result<(), SessionError> {
        let (seq, payload) = self.read_local_packet(reply_seq).await?;
        let sql: Rc<[u8]> = Rc::from(&payload[1..]);
        let class = classify(&sql);
        self.route_statement(class, hint(&sql));
        if let Err(e) = self.ensure_routed().await {
            self.report_acquire_error(seq.wrapping_add(1), e).await;
            return Ok(());
        }
        self.stmts.next = self.stmts.next.wrapping_add(1).max(1);
        let id = self.stmts.next;
        let mut out = Vec::with_capacity(payload.len() + 4);
        write_packet(&mut out, seq, &payload);
        self.send_to_backend(&out, seq).await?;
        let (scanner, prepared) = self.relay_response(Expect::Prepare, seq, Some(id)).await?;
        let cap = self.config().proxy.max_prepared_per_connection;
        if scanner.error.is_none() {
            if let (Some((backend_id, params)), Some(b)) = (prepared, self.backend.as_mut()) {
                let schema: Option<Rc<str>> = self.schema.as_deref().map(Rc::from);
                let hash = stmt_hash(schema.as_deref(), &sql);
                if let Some(old) = b.stmts.insert(hash, sql.clone(), schema.clone(), backend_id, cap) {
                    close_on_backend(b, old).await;
                }
                let session_function = session_function_query(&sql);
                let fx = crate::router::statement::analyse(&sql);
                let pipelinable = class == Class::Read && fx.pipelinable();
                let previous = fx.previous;
                let st =
                    Stmt { sql, schema, hash, params, types: None, class, session_function, pipelinable, previous };
                self.stmts.map.insert(id, st);
            }
        }
        self.release_if_unpinned();
        Ok(())
    }

    /// Makes sure statement `id` is prepared on the borrowed connection; returns the
    /// server's id for it, or the error to give the client.
    async fn prepared_on_backend(&mut self, id: u32) -> Result<Result<u32, ErrPacket>, SessionError> {
        let cap = self.config().proxy.max_prepared_per_connection;
        let Some(st) = self.stmts.map.get(&id) else { unreachable!("callers check the id") };
        let (hash, sql, schema) = (st.hash, st.sql.clone(), st.schema.clone());
        let Some(b) = self.backend.as_mut() else { return Ok(Err(no_conn())) };
        if let Some(c) = b.stmts.get(hash, &sql, schema.as_deref()) {
            return Ok(Ok(c.id));
        }
        let mut req = Vec::with_capacity(sql.len() + 5);
        let mut p = Vec::with_capacity(sql.len() + 1);
        p.push(cmd::STMT_PREPARE);
        p.extend_from_slice(&sql);
        write_packet(&mut req, 0, &p);
        let reply = match b.exchange(&req, &[Expect::Prepare], &mut self.bbuf).await {
            Ok(mut r) => r.remove(0),
            Err(e) => {
                let addr = b.addr;
                self.drop_backend();
                return Err(SessionError::BackendLost { addr, reason: e.to_string() });
            }
        };
        if let Some(err) = reply.err {
            return Ok(Err(err));
        }
        if reply.first.len() < 5 {
            return Ok(Err(no_conn()));
        }
        let backend_id = le_u32(&reply.first[1..5]);
        if let Some(old) = b.stmts.insert(hash, sql, schema, backend_id, cap) {
            close_on_backend(b, old).await;
        }
        Ok(Ok(backend_id))
    }

    /// COM_STMT_EXECUTE. A read that holds nothing of the session on its connection is
    /// kept whole in the client buffer and, if its connection dies before any byte of the
    /// reply reached the client, executed once more on another connection (prepared there
    /// first), as text reads are.
    pub(super) async fn stmt_execute(&mut self, h: Header) -> Result<(), SessionError> {
        let reply_seq = h.seq.wrapping_add(1);
        let idle = self.idle_timeout();
        self.cbuf
            .fill_to(&mut self.client, HEADER_LEN + h.len.min(10), idle)
            .await
            .map_err(SessionError::ClientGone)?;
        if h.len < 10 {
            self.read_local_packet(reply_seq).await?;
            self.send_err(reply_seq, code::WRONG_ARGUMENTS, "Incorrect arguments to mysqld_stmt_execute").await;
            return Ok(());
        }
        let id = le_u32(&self.cbuf.filled()[HEADER_LEN + 1..]);
        let Some((params, class)) = self.stmts.map.get(&id).map(|s| (s.params, s.class)) else {
            self.read_local_packet(reply_seq).await?;
            let (code, msg) = unknown_stmt(id, "mysqld_stmt_execute");
            self.send_err(reply_seq, code, &msg).await;
            return Ok(());
        };
        if let Some((function, name)) = self.stmts.map.get(&id).and_then(|s| s.session_function.clone()) {
            self.read_local_packet(reply_seq).await?;
            return self.answer_session_function(reply_seq, function, &name, true).await;
        }
        if let (true, Some(st)) = (self.ctx.log().on, self.stmts.map.get(&id)) {
            super::command::keep_sql(&mut self.trace.sql, &st.sql, self.ctx.log().sql_max_chars);
        }
        self.route_statement(class, None);
        let retryable = class == Class::Read && self.pins == 0 && self.locks == 0 && !h.continued();
        if retryable {
            self.cbuf.fill_to(&mut self.client, h.total(), idle).await.map_err(SessionError::ClientGone)?;
            let no_cursor = self.cbuf.filled()[HEADER_LEN + 5] == 0;
            let pipelinable = self.stmts.map.get(&id).is_some_and(|s| s.pipelinable);
            if pipelinable && no_cursor && self.may_pipeline(h.total()) {
                match self.pipe().await {
                    Ok(Some(pipe)) => {
                        let flag_at = self.note_types(id, params, h).await?;
                        match self.execute_piped(&pipe, h, id, flag_at).await {
                            Ok(Some(scanner)) => {
                                self.after_piped(&scanner);
                                return Ok(());
                            }
                            Ok(None) => return Ok(()),
                            Err(SessionError::Retry) => Slot::add(&self.ctx.slot().retries, 1),
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.read_local_packet(reply_seq).await?;
                        self.report_acquire_error(reply_seq, e).await;
                        return Ok(());
                    }
                }
            }
        }
        let held = self.backend.is_some();
        if let Err(e) = self.ensure_routed().await {
            self.read_local_packet(reply_seq).await?;
            self.report_acquire_error(reply_seq, e).await;
            return Ok(());
        }
        let previous = self.stmts.map.get(&id).map(|s| s.previous).unwrap_or_default();
        self.replay_last_statement(previous, held, None).await;
        let exec = Execute { h, id, params, retryable };
        let mut attempt = 0;
        let scanner = loop {
            self.retry_armed = retryable && attempt == 0;
            let result = self.execute_once(&exec).await;
            self.retry_armed = false;
            match result {
                Ok(Some(scanner)) => break scanner,
                // The client was told why it did not run.
                Ok(None) => return Ok(()),
                Err(SessionError::Retry) if attempt == 0 => {
                    attempt += 1;
                    Slot::add(&self.ctx.slot().retries, 1);
                    if let Err(e) = self.ensure_routed().await {
                        self.cbuf.consume(h.total());
                        self.report_acquire_error(reply_seq, e).await;
                        return Err(SessionError::StatementFailed {
                            addr: ([0, 0, 0, 0], 0).into(),
                            reason: "no connection for the retry".into(),
                        });
                    }
                }
                Err(SessionError::Retry) => {
                    self.cbuf.consume(h.total());
                    let msg = "Lost connection to db server during query, twice; the statement did not complete";
                    self.send_err(reply_seq, crate::protocol::code::BACKEND_LOST, msg).await;
                    return Err(SessionError::StatementFailed { addr: ([0, 0, 0, 0], 0).into(), reason: msg.into() });
                }
                Err(e) => {
                    if retryable {
                        self.cbuf.consume(h.total());
                    }
                    return Err(e);
                }
            }
        };
        if retryable {
            self.cbuf.consume(h.total());
        }
        self.pins &= !pin::LONG_DATA;
        if class == Class::Write {
            self.last_write = Some(std::time::Instant::now());
        }
        if scanner.status_seen() && scanner.status & status::CURSOR_EXISTS != 0 {
            self.pins |= pin::CURSOR;
            self.stmts.cursor = Some(id);
        }
        self.left_for_next_statement(previous, &scanner);
        self.after_response(&scanner);
        Ok(())
    }

    /// Reads an EXECUTE of statement `id` as far as its parameter types and records them
    /// when the client sent them (new-params-bound flag). Returns the flag's offset in the
    /// payload.
    pub(super) async fn note_types(&mut self, id: u32, params: u16, h: Header) -> Result<usize, SessionError> {
        let flag_at = 10 + usize::from(params).div_ceil(8);
        let types_len = 2 * usize::from(params);
        if params == 0 || h.len <= flag_at {
            return Ok(flag_at);
        }
        let want = (flag_at + 1 + types_len).min(h.len);
        let idle = self.idle_timeout();
        self.cbuf.fill_to(&mut self.client, HEADER_LEN + want, idle).await.map_err(SessionError::ClientGone)?;
        let payload = &self.cbuf.filled()[HEADER_LEN..];
        if payload[flag_at] == 1 && payload.len() >= flag_at + 1 + types_len {
            let types = &payload[flag_at + 1..flag_at + 1 + types_len];
            if let Some(st) = self.stmts.map.get_mut(&id) {
                // Reuse the vector: no allocation once a statement has run.
                let v = st.types.get_or_insert_with(Vec::new);
                v.clear();
                v.extend_from_slice(types);
            }
        }
        Ok(flag_at)
    }

    /// Sends an EXECUTE on the borrowed connection (preparing the statement there first if
    /// it has not been) and relays the reply. Returns None when the client got an error
    /// instead. A retryable EXECUTE stays in the client buffer (the caller consumes it); a
    /// failure before any reply byte is then `SessionError::Retry`.
    async fn execute_once(&mut self, exec: &Execute) -> Result<Option<Scanner>, SessionError> {
        let Execute { h, id, params, retryable } = *exec;
        let reply_seq = h.seq.wrapping_add(1);
        let backend_id = match self.prepared_on_backend(id).await {
            Ok(Ok(bid)) => bid,
            Ok(Err(err)) => {
                if retryable {
                    self.cbuf.consume(h.total());
                } else {
                    self.read_local_packet(reply_seq).await?;
                }
                self.send_server_err(reply_seq, &err).await;
                self.release_if_unpinned();
                return Ok(None);
            }
            // The connection died while preparing: nothing reached the client.
            Err(SessionError::BackendLost { .. }) if self.retry_armed => return Err(SessionError::Retry),
            Err(e) => return Err(e),
        };
        let flag_at = self.note_types(id, params, h).await?;
        let bound = params > 0 && self.cbuf.filled().get(HEADER_LEN + flag_at) == Some(&1);
        let st = &self.stmts.map[&id];
        let (hash, sql, schema) = (st.hash, st.sql.clone(), st.schema.clone());
        let session_types = st.types.as_deref();
        let Some(b) = self.backend.as_mut() else { return Ok(None) };
        let cached = b.stmts.get(hash, &sql, schema.as_deref());
        let needs_types = match (cached, session_types) {
            (Some(c), Some(t)) if params > 0 && (bound || c.types != t) => {
                c.types.clear();
                c.types.extend_from_slice(t);
                !bound
            }
            _ => false,
        };
        self.backend_clean = false;
        let types = session_types.filter(|_| needs_types);
        if retryable {
            // The whole packet is buffered; it stays there for a second attempt.
            self.cbuf.filled_mut()[HEADER_LEN + 1..HEADER_LEN + 5].copy_from_slice(&backend_id.to_le_bytes());
            let packet = &self.cbuf.filled()[..h.total()];
            let with_types = types.map(|t| execute_with_types(h.seq, &packet[HEADER_LEN..], flag_at, t));
            let bytes = with_types.as_deref().unwrap_or(packet);
            let Some(b) = self.backend.as_mut() else { return Err(SessionError::Retry) };
            self.cmd_server = Some(b.key.server);
            self.trace.thread = b.thread_id;
            if b.stream.write_all(bytes).await.is_err() {
                self.drop_backend();
                return Err(SessionError::Retry);
            }
            Slot::add(&self.ctx.slot().bytes_from_clients, bytes.len() as u64);
            self.trace_sent();
        } else if let Some(types) = types.map(<[u8]>::to_vec) {
            // This connection never saw the types the client sent elsewhere: add them.
            let (seq, mut payload) = self.read_local_packet(reply_seq).await?;
            payload[1..5].copy_from_slice(&backend_id.to_le_bytes());
            let out = execute_with_types(seq, &payload, flag_at, &types);
            self.send_to_backend(&out, seq).await?;
        } else {
            self.cbuf.filled_mut()[HEADER_LEN + 1..HEADER_LEN + 5].copy_from_slice(&backend_id.to_le_bytes());
            self.forward_packet().await?;
        }
        let (scanner, _) = self.relay_response(Expect::ResultSets, h.seq, None).await?;
        Ok(Some(scanner))
    }

    /// COM_STMT_SEND_LONG_DATA: no reply; the data waits on the connection for the next
    /// EXECUTE, so the session keeps the connection until then.
    pub(super) async fn stmt_long_data(&mut self, h: Header) -> Result<(), SessionError> {
        let reply_seq = h.seq.wrapping_add(1);
        let idle = self.idle_timeout();
        self.cbuf.fill_to(&mut self.client, HEADER_LEN + h.len.min(5), idle).await.map_err(SessionError::ClientGone)?;
        let known = h.len >= 5 && self.stmts.map.contains_key(&le_u32(&self.cbuf.filled()[HEADER_LEN + 1..]));
        self.route_to_side();
        if !known || self.ensure_routed().await.is_err() {
            // The server reports long-data problems at EXECUTE; so do we.
            self.read_local_packet(reply_seq).await?;
            return Ok(());
        }
        let id = le_u32(&self.cbuf.filled()[HEADER_LEN + 1..]);
        match self.prepared_on_backend(id).await? {
            Ok(backend_id) => {
                self.cbuf.filled_mut()[HEADER_LEN + 1..HEADER_LEN + 5].copy_from_slice(&backend_id.to_le_bytes());
                self.forward_packet().await?;
                self.pins |= pin::LONG_DATA;
            }
            Err(_) => {
                self.read_local_packet(reply_seq).await?;
            }
        }
        Ok(())
    }

    /// COM_STMT_CLOSE: no reply. The connection keeps its prepared copy for reuse.
    pub(super) async fn stmt_close(&mut self, reply_seq: u8) -> Result<(), SessionError> {
        let (_, payload) = self.read_local_packet(reply_seq).await?;
        if payload.len() >= 5 {
            let id = le_u32(&payload[1..]);
            self.stmts.map.remove(&id);
            if self.stmts.cursor == Some(id) {
                self.stmts.cursor = None;
                self.pins &= !pin::CURSOR;
                self.release_if_unpinned();
            }
        }
        Ok(())
    }

    /// COM_STMT_RESET and COM_STMT_FETCH: they act on a cursor or long data, which only
    /// exist on a pinned connection; otherwise RESET has nothing to do and FETCH has no
    /// cursor.
    pub(super) async fn stmt_reset_or_fetch(&mut self, command: u8, reply_seq: u8) -> Result<(), SessionError> {
        let (seq, payload) = self.read_local_packet(reply_seq).await?;
        let what = if command == cmd::STMT_FETCH { "mysqld_stmt_fetch" } else { "mysqld_stmt_reset" };
        if payload.len() < 5 {
            self.send_err(reply_seq, code::WRONG_ARGUMENTS, &format!("Incorrect arguments to {what}")).await;
            return Ok(());
        }
        let id = le_u32(&payload[1..]);
        if !self.stmts.map.contains_key(&id) {
            let (code, msg) = unknown_stmt(id, what);
            self.send_err(reply_seq, code, &msg).await;
            return Ok(());
        }
        let on_conn = self.backend.is_some() && self.pins & (pin::CURSOR | pin::LONG_DATA) != 0;
        if !on_conn {
            if command == cmd::STMT_FETCH {
                self.send_err(reply_seq, code::NO_OPEN_CURSOR, &format!("The statement ({id}) has no open cursor."))
                    .await;
            } else {
                self.ok_reply(reply_seq).await?;
            }
            return Ok(());
        }
        let backend_id = match self.prepared_on_backend(id).await? {
            Ok(bid) => bid,
            Err(err) => {
                self.send_server_err(reply_seq, &err).await;
                return Ok(());
            }
        };
        let mut p = payload;
        p[1..5].copy_from_slice(&backend_id.to_le_bytes());
        let mut out = Vec::with_capacity(p.len() + 4);
        write_packet(&mut out, seq, &p);
        self.send_to_backend(&out, seq).await?;
        let expect = if command == cmd::STMT_FETCH { Expect::Rows } else { Expect::Single };
        let (scanner, _) = self.relay_response(expect, seq, None).await?;
        let finished = command == cmd::STMT_RESET
            || (scanner.status_seen() && scanner.status & status::LAST_ROW_SENT != 0)
            || scanner.error.is_some();
        if finished {
            self.pins &= !(pin::CURSOR | pin::LONG_DATA);
            self.stmts.cursor = None;
        }
        self.release_if_unpinned();
        Ok(())
    }
}

/// What `execute_once` needs of an EXECUTE, for each attempt.
#[derive(Clone, Copy)]
struct Execute {
    h: Header,
    id: u32,
    params: u16,
    retryable: bool,
}

/// An EXECUTE packet (`payload` with the server's statement id already in it) with the
/// parameter types put in after the null bitmap, for a connection that never saw them.
pub(super) fn execute_with_types(seq: u8, payload: &[u8], flag_at: usize, types: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(payload.len() + types.len());
    p.extend_from_slice(&payload[..flag_at.min(payload.len())]);
    p.push(1);
    p.extend_from_slice(types);
    p.extend_from_slice(payload.get(flag_at + 1..).unwrap_or_default());
    let mut out = Vec::with_capacity(p.len() + 8);
    write_packet(&mut out, seq, &p);
    out
}

/// Closes a statement on a connection (COM_STMT_CLOSE has no reply).
async fn close_on_backend<T: Transport>(b: &mut crate::backend::Backend<T>, id: u32) {
    let _ = b.stream.write_all(&close_packet(id)).await;
}

/// COM_STMT_CLOSE for a server statement id.
pub(super) fn close_packet(id: u32) -> [u8; 9] {
    let mut p = [5, 0, 0, 0, cmd::STMT_CLOSE, 0, 0, 0, 0];
    p[5..9].copy_from_slice(&id.to_le_bytes());
    p
}

fn no_conn() -> ErrPacket {
    ErrPacket::new(code::BACKEND_LOST, "corelay lost the backend connection while preparing the statement")
}

impl From<AcquireError> for SessionError {
    fn from(e: AcquireError) -> Self {
        match e {
            AcquireError::Connect(b) => SessionError::Backend(b),
            AcquireError::Timeout { waited, .. } => SessionError::PoolTimeout(waited),
            AcquireError::Down { server, .. } => SessionError::LoginRefused(format!("{server} is down")),
            AcquireError::Removed { server } => SessionError::LoginRefused(format!("{server} was removed")),
            AcquireError::Replay(err) => SessionError::LoginRefused(err.message),
        }
    }
}
