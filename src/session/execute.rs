//! Prepared statements that follow the session from connection to connection.
//!
//! The client sees statement ids the session hands out. Each statement remembers its text,
//! the schema it was prepared in, its parameter count, the last parameter types the client
//! bound, and its analysis (applied at every EXECUTE, as the text path applies a text
//! statement's). When the session executes it on a connection that has not prepared it
//! (see [`crate::backend::StmtCache`]), the session prepares it there first and rewrites
//! the statement id — and, if the client relies on types it sent to another connection,
//! puts the types back into the EXECUTE packet.

use std::rc::Rc;

use super::error::{Halt, SessionError, Step};
use super::local;
use super::recorded::{stmt_hash, Stmt};
use super::relay::NO_CONNECTION;
use super::retry::Outgoing;
use super::Session;
use crate::backend::Backend;
use crate::net::{Connector, Transport};
use crate::protocol::code::{self, Code};
use crate::protocol::err::ErrPacket;
use crate::protocol::metadata::{self, SentDefs, StmtDefs};
use crate::protocol::packet::{write_command, write_packet, Header, HEADER_LEN};
use crate::protocol::scanner::{Expect, Scanner};
use crate::protocol::{command as cmd, status};
use crate::router::classify::hint;
use crate::router::statement::{self, pin};
use crate::status::Slot;

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Errors of the statement commands, as the server words them.
fn unknown_stmt(id: u32, what: &str) -> (Code, String) {
    (code::UNKNOWN_STMT_HANDLER, format!("Unknown prepared statement handler ({id}) given to {what}"))
}

/// What an EXECUTE attempt needs to know of the command.
#[derive(Clone, Copy)]
pub(super) struct Execute {
    pub h: Header,
    pub id: u32,
    pub params: u16,
}

impl<C: Transport, N: Connector> Session<'_, C, N> {
    /// COM_STMT_PREPARE: prepare on a borrowed connection, hand out our own id.
    pub(super) async fn stmt_prepare(&mut self, reply_seq: u8) -> Step {
        let (seq, payload) = self.read_local_packet(reply_seq).await?;
        let limit = self.config.proxy.max_prepared_per_session;
        if self.recorded.stmts.map.len() >= limit {
            let msg = format!(
                "Can't create more than max_prepared_stmt_count statements (current value: {limit}): corelay's proxy.max_prepared_per_session; close statements the session no longer uses, or raise it"
            );
            self.send_err(seq.wrapping_add(1), code::MAX_PREPARED_STMT_COUNT_REACHED, &msg).await;
            return Ok(());
        }
        let sql: Rc<[u8]> = Rc::from(&payload[1..]);
        let effects = Rc::new(statement::analyse(&sql));
        self.route_statement(effects.class, hint(&sql));
        if let Err(e) = self.ensure_routed().await {
            self.report_acquire_error(seq.wrapping_add(1), e).await;
            return Ok(());
        }
        let id = self.recorded.stmts.next_id();
        let mut out = Vec::with_capacity(payload.len() + 4);
        write_packet(&mut out, seq, &payload);
        self.send_to_backend(&out, seq).await?;
        let (mut reply, prepared) = self.relay_response(Expect::Prepare, seq, Some(id), None).await?;
        let cap = self.config.proxy.max_prepared_per_connection;
        if let (None, Some((backend_id, params)), Some(b)) = (reply.error, prepared, self.held.conn.as_mut()) {
            let schema: Option<Rc<str>> = self.recorded.schema.as_deref().map(Rc::from);
            let hash = stmt_hash(schema.as_deref(), &sql);
            // The client and the connection hold the same definitions now.
            let defs = reply.prepared_defs.take();
            let sent = metadata::sent(defs.clone());
            if let Some(old) = b.stmts.insert(hash, sql.clone(), schema.clone(), backend_id, sent, cap) {
                close_on_backend(b, old).await;
            }
            let st = Stmt {
                session_function: local::session_function_query(&sql),
                effects,
                sql,
                schema,
                hash,
                params,
                types: None,
                defs,
            };
            self.recorded.stmts.map.insert(id, st);
        }
        // Warnings of the PREPARE are read on its connection, as any statement's.
        self.after_response(&reply);
        Ok(())
    }

    /// Makes sure statement `id` is prepared on the held connection; returns the server's
    /// id for it and the connection's record of the column definitions it sent for it, or
    /// the server's error to give the client. A connection that dies meanwhile is
    /// [`Halt::Retry`] while a retry is armed (nothing reached the client).
    pub(super) async fn prepared_on_backend(&mut self, id: u32) -> Step<Result<(u32, SentDefs), ErrPacket>> {
        let cap = self.config.proxy.max_prepared_per_connection;
        let st = self.recorded.stmts.map.get(&id).ok_or(SessionError::Internal("a statement id not checked"))?;
        let (hash, sql, schema) = (st.hash, st.sql.clone(), st.schema.clone());
        let Some(b) = self.held.conn.as_mut() else { return Ok(Err(no_conn())) };
        if let Some(c) = b.stmts.get(hash, &sql, schema.as_deref()) {
            return Ok(Ok((c.id, c.defs.clone())));
        }
        let mut req = Vec::with_capacity(sql.len() + 5);
        write_command(&mut req, cmd::STMT_PREPARE, &sql);
        let reply = match b.exchange(&req, &[Expect::Prepare], &mut self.held.buf).await {
            Ok(mut r) => r.remove(0),
            Err(e) => {
                let addr = b.addr;
                self.drop_backend();
                if self.held.retry_armed {
                    return Err(Halt::Retry);
                }
                return Err(SessionError::BackendLost { addr: Some(addr), reason: e.to_string() }.into());
            }
        };
        if let Some(err) = reply.err {
            return Ok(Err(err));
        }
        if reply.first.len() < 5 {
            return Ok(Err(no_conn()));
        }
        let backend_id = le_u32(&reply.first[1..5]);
        let sent = metadata::sent(self.recorded.stmts.shared_defs(id, reply.defs));
        if let Some(old) = b.stmts.insert(hash, sql, schema, backend_id, sent.clone(), cap) {
            close_on_backend(b, old).await;
        }
        Ok(Ok((backend_id, sent)))
    }

    /// COM_STMT_EXECUTE. A read that holds nothing of the session on its connection is
    /// kept whole in the client buffer and sent again if its connection dies before
    /// replying ([`super::retry`]), as text reads are.
    pub(super) async fn stmt_execute(&mut self, h: Header) -> Step {
        let reply_seq = h.seq.wrapping_add(1);
        let idle = self.idle_timeout();
        let head = HEADER_LEN + h.len.min(10);
        self.cbuf.fill_to(&mut self.client, head, idle).await.map_err(SessionError::ClientGone)?;
        if h.len < 10 {
            self.read_local_packet(reply_seq).await?;
            self.send_err(reply_seq, code::WRONG_ARGUMENTS, "Incorrect arguments to mysqld_stmt_execute").await;
            return Ok(());
        }
        let id = le_u32(&self.cbuf.filled()[HEADER_LEN + 1..]);
        let Some(st) = self.recorded.stmts.map.get(&id) else {
            self.read_local_packet(reply_seq).await?;
            let (code, msg) = unknown_stmt(id, "mysqld_stmt_execute");
            self.send_err(reply_seq, code, &msg).await;
            return Ok(());
        };
        let (params, fx) = (st.params, st.effects.clone());
        let class = fx.class;
        let server_answers = self.recorded.server_answers(st.session_function.as_ref().map(|(f, _)| *f));
        if let Some((function, name)) = st.session_function.clone().filter(|_| !server_answers) {
            self.read_local_packet(reply_seq).await?;
            // The client takes corelay's column definitions for the statement's.
            if let Some(st) = self.recorded.stmts.map.get_mut(&id) {
                st.defs = None;
            }
            return self.answer_session_function(reply_seq, function, &name, true).await;
        }
        let log = self.shard.log();
        let sql = st.sql.clone();
        if log.on {
            self.cmd.trace.keep_sql(&sql, log.sql_max_chars);
        }
        if log.digests {
            self.cmd.fingerprint(fx.digest, &sql);
        }
        let mut hint = None;
        if let Some(d) = self.decide(&sql, class, fx.digest, true) {
            if let Some(refusal) = &d.error {
                return self.refuse_statement(reply_seq, refusal).await;
            }
            hint = self.take_decision(&d, None);
        }
        self.cmd.statement_vars.clone_from(&fx.statement_vars);
        let warned = self.recorded.warned_before(&fx);
        self.recorded.statement_begins(&fx, warned.is_some());
        self.route_statement(class, hint);
        let retryable = self.retryable(&fx, h);
        if retryable {
            self.cbuf.fill_to(&mut self.client, h.total(), idle).await.map_err(SessionError::ClientGone)?;
            let no_cursor = self.cbuf.filled()[HEADER_LEN + 5] == 0;
            let capped = self.cmd.kill_after.is_some();
            if fx.pipelinable(class) && no_cursor && !capped && self.may_pipeline(h.total()) {
                if let Some(done) = self.execute_on_pipe(h, id, params, fx.selects).await? {
                    return Ok(done);
                }
            }
        }
        let held = self.held.conn.is_some();
        if let Err(e) = self.ensure_routed().await {
            return self.refuse_command(reply_seq, e).await;
        }
        self.replay_last_statement(fx.previous, held, warned.as_ref()).await;
        let exec = Execute { h, id, params };
        let Some(reply) = self.send_judged(Outgoing::Prepared(exec), retryable).await? else {
            // The client was told why it did not run.
            return Ok(());
        };
        self.recorded.after_execute(id, &reply);
        self.finish_statement(&fx, &reply, class);
        Ok(())
    }

    /// Sends a stateless read (whole in the client buffer) down a pipelined connection.
    /// Returns None when it did not go there (no pipe to be had, or the pipe failed before
    /// any byte of the reply reached the client): the ordinary path sends it then.
    async fn execute_on_pipe(&mut self, h: Header, id: u32, params: u16, selects: bool) -> Step<Option<()>> {
        let pipe = match self.pipe().await {
            Ok(Some(pipe)) => pipe,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.refuse_command(h.seq.wrapping_add(1), e).await?;
                return Ok(Some(()));
            }
        };
        let flag_at = self.note_types(id, params, h).await?;
        match self.execute_piped(&pipe, h, id, flag_at).await {
            Ok(Some(reply)) => {
                self.after_piped(&reply, selects);
                Ok(Some(()))
            }
            Ok(None) => Ok(Some(())),
            Err(Halt::Retry) => {
                Slot::add(&self.shard.slot().retries, 1);
                Ok(None)
            }
            Err(e) => Err(e),
        }
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
            if let Some(st) = self.recorded.stmts.map.get_mut(&id) {
                // Reuse the vector: no allocation once a statement has run.
                let v = st.types.get_or_insert_with(Vec::new);
                v.clear();
                v.extend_from_slice(types);
            }
        }
        Ok(flag_at)
    }

    /// One attempt at an EXECUTE on the held connection (preparing the statement there
    /// first if it has not been), and its reply. Returns None when the client got an error
    /// instead. A `buffered` EXECUTE stays in the client buffer (the retry loop consumes
    /// it); a failure to write it is then [`Halt::Retry`].
    pub(super) async fn execute_once(&mut self, exec: &Execute, buffered: bool) -> Step<Option<Scanner>> {
        let Execute { h, id, params } = *exec;
        let reply_seq = h.seq.wrapping_add(1);
        let (backend_id, sent) = match self.prepared_on_backend(id).await? {
            Ok(prepared) => prepared,
            Err(err) => {
                if !buffered {
                    self.read_local_packet(reply_seq).await?;
                }
                self.send_server_err(reply_seq, &err).await;
                self.release_if_unpinned();
                return Ok(None);
            }
        };
        let flag_at = self.note_types(id, params, h).await?;
        let types = self.types_to_add(id, params, flag_at)?;
        self.held.clean = false;
        if buffered {
            // The whole packet is buffered; it stays there for a second attempt.
            self.cbuf.filled_mut()[HEADER_LEN + 1..HEADER_LEN + 5].copy_from_slice(&backend_id.to_le_bytes());
            let payload = &self.cbuf.filled()[HEADER_LEN..h.total()];
            let with_types = types.map(|t| execute_with_types(h.seq, payload, flag_at, &t));
            self.send_buffered(h.total(), with_types.as_deref()).await?;
        } else if let Some(types) = types {
            // This connection never saw the types the client sent elsewhere: add them.
            let (seq, mut payload) = self.read_local_packet(reply_seq).await?;
            payload[1..5].copy_from_slice(&backend_id.to_le_bytes());
            let out = execute_with_types(seq, &payload, flag_at, &types);
            self.send_to_backend(&out, seq).await?;
        } else {
            self.cbuf.filled_mut()[HEADER_LEN + 1..HEADER_LEN + 5].copy_from_slice(&backend_id.to_le_bytes());
            self.forward_packet().await?;
        }
        // The statement's column definitions, for the reply's scan where the connection
        // has MariaDB's metadata cache.
        let stmt = match (self.held.conn.as_ref(), self.recorded.stmts.map.get(&id)) {
            (Some(b), Some(st)) if b.cache_metadata => {
                Some(StmtDefs { sent, client: st.defs.clone(), to_client: true })
            }
            _ => None,
        };
        let (reply, _) = self.relay_response(Expect::ResultSets, h.seq, None, stmt).await?;
        self.client_got_defs(id, &reply);
        Ok(Some(reply))
    }

    /// Records the column definitions an EXECUTE reply of statement `id` gave the client.
    pub(super) fn client_got_defs(&mut self, id: u32, reply: &Scanner) {
        if let (Some(defs), Some(st)) = (&reply.client_defs, self.recorded.stmts.map.get_mut(&id)) {
            st.defs = Some(defs.clone());
        }
    }

    /// The parameter types to put into an EXECUTE of statement `id` that leaves them out,
    /// when the held connection last got other types for it (the server decodes the
    /// parameters with those); records on the connection the types it gets now.
    fn types_to_add(&mut self, id: u32, params: u16, flag_at: usize) -> Result<Option<Vec<u8>>, SessionError> {
        let bound = params > 0 && self.cbuf.filled().get(HEADER_LEN + flag_at) == Some(&1);
        let st = self.recorded.stmts.map.get(&id).ok_or(SessionError::Internal("a statement id not checked"))?;
        let b = self.held.conn.as_mut().ok_or(NO_CONNECTION)?;
        let cached = b.stmts.get(st.hash, &st.sql, st.schema.as_deref());
        Ok(match (cached, st.types.as_deref()) {
            (Some(c), Some(t)) if params > 0 && (bound || c.types != t) => {
                c.types.clear();
                c.types.extend_from_slice(t);
                (!bound).then(|| t.to_vec())
            }
            _ => None,
        })
    }

    /// COM_STMT_SEND_LONG_DATA: no reply; the data waits on the connection for the next
    /// EXECUTE, so the session keeps the connection until then.
    pub(super) async fn stmt_long_data(&mut self, h: Header) -> Step {
        let reply_seq = h.seq.wrapping_add(1);
        let idle = self.idle_timeout();
        self.cbuf.fill_to(&mut self.client, HEADER_LEN + h.len.min(5), idle).await.map_err(SessionError::ClientGone)?;
        let id = (h.len >= 5).then(|| le_u32(&self.cbuf.filled()[HEADER_LEN + 1..]));
        let known = id.filter(|id| self.recorded.stmts.map.contains_key(id));
        self.route_to_side();
        let Some(id) = known else {
            // The server reports long-data problems at EXECUTE; so do we.
            self.read_local_packet(reply_seq).await?;
            return Ok(());
        };
        if self.ensure_routed().await.is_err() {
            self.read_local_packet(reply_seq).await?;
            return Ok(());
        }
        match self.prepared_on_backend(id).await? {
            Ok((backend_id, _)) => {
                self.cbuf.filled_mut()[HEADER_LEN + 1..HEADER_LEN + 5].copy_from_slice(&backend_id.to_le_bytes());
                self.forward_packet().await?;
                self.recorded.pins |= pin::LONG_DATA;
            }
            Err(_) => {
                self.read_local_packet(reply_seq).await?;
            }
        }
        Ok(())
    }

    /// COM_STMT_CLOSE: no reply. The connection keeps its prepared copy for reuse.
    pub(super) async fn stmt_close(&mut self, reply_seq: u8) -> Step {
        let (_, payload) = self.read_local_packet(reply_seq).await?;
        if payload.len() >= 5 {
            let id = le_u32(&payload[1..]);
            self.recorded.stmts.map.remove(&id);
            if self.recorded.stmts.cursor == Some(id) {
                self.recorded.stmts.cursor = None;
                self.recorded.pins &= !pin::CURSOR;
                self.release_if_unpinned();
            }
        }
        Ok(())
    }

    /// COM_STMT_RESET and COM_STMT_FETCH: they act on a cursor or long data, which only
    /// exist on a pinned connection; otherwise RESET has nothing to do and FETCH has no
    /// cursor.
    pub(super) async fn stmt_reset_or_fetch(&mut self, command: u8, reply_seq: u8) -> Step {
        let (seq, payload) = self.read_local_packet(reply_seq).await?;
        let what = if command == cmd::STMT_FETCH { "mysqld_stmt_fetch" } else { "mysqld_stmt_reset" };
        if payload.len() < 5 {
            self.send_err(reply_seq, code::WRONG_ARGUMENTS, &format!("Incorrect arguments to {what}")).await;
            return Ok(());
        }
        let id = le_u32(&payload[1..]);
        if !self.recorded.stmts.map.contains_key(&id) {
            let (code, msg) = unknown_stmt(id, what);
            self.send_err(reply_seq, code, &msg).await;
            return Ok(());
        }
        let on_conn = self.held.conn.is_some() && self.recorded.pins & (pin::CURSOR | pin::LONG_DATA) != 0;
        if !on_conn {
            if command == cmd::STMT_FETCH {
                let msg = format!("The statement ({id}) has no open cursor.");
                self.send_err(reply_seq, code::NO_OPEN_CURSOR, &msg).await;
            } else {
                self.ok_reply(reply_seq).await?;
            }
            return Ok(());
        }
        let backend_id = match self.prepared_on_backend(id).await? {
            Ok((bid, _)) => bid,
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
        let (reply, _) = self.relay_response(expect, seq, None, None).await?;
        let finished = command == cmd::STMT_RESET
            || (reply.status_seen() && reply.status & status::LAST_ROW_SENT != 0)
            || reply.error.is_some();
        if finished {
            self.recorded.pins &= !(pin::CURSOR | pin::LONG_DATA);
            self.recorded.stmts.cursor = None;
        }
        self.release_if_unpinned();
        Ok(())
    }
}

/// An EXECUTE packet (`payload` with the server's statement id already in it) with the
/// parameter types put in after the null bitmap, for a connection that never saw them.
pub(super) fn execute_with_types(seq: u8, payload: &[u8], flag_at: usize, types: &[u8]) -> Vec<u8> {
    let p = with_types(payload, flag_at, types);
    let mut out = Vec::with_capacity(p.len() + 8);
    write_packet(&mut out, seq, &p);
    out
}

/// An EXECUTE payload with the new-params-bound flag set and `types` after it.
pub(super) fn with_types(payload: &[u8], flag_at: usize, types: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(payload.len() + types.len());
    p.extend_from_slice(&payload[..flag_at.min(payload.len())]);
    p.push(1);
    p.extend_from_slice(types);
    p.extend_from_slice(payload.get(flag_at + 1..).unwrap_or_default());
    p
}

/// Closes a statement on a connection (COM_STMT_CLOSE has no reply).
async fn close_on_backend<T: Transport>(b: &mut Backend<T>, id: u32) {
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
