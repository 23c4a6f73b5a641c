//! Stateless reads sent down a pipelined connection ([`crate::pool::pipe`]) shared with
//! other sessions, instead of a connection of the session's own.
//!
//! A read qualifies when the session holds nothing on a connection (no pin, no lock, no
//! transaction), the statement leaves nothing behind and reads nothing a previous
//! statement left (see [`crate::router::statement::Effects::pipelinable`]), its packet is
//! whole in the client buffer and small, and a pipe of the routed server has the session's
//! schema and variables. Everything else takes the ordinary path; so does a read whose
//! pipe failed before any byte of its reply reached the client (it is sent again there).

use std::rc::Rc;
use std::time::Duration;

use super::error::{Halt, SessionError, Step};
use super::execute::with_types;
use super::held::AcquireError;
use super::recorded::Warned;
use super::shard::{Abort, Presence};
use super::Session;
use crate::net::{Connector, Transport};
use crate::pool::pipe::{self, Pipe, Reply, ReplyState};
use crate::protocol::err::ErrPacket;
use crate::protocol::metadata::{self, Defs, StmtDefs};
use crate::protocol::packet::{write_command, write_packet, Header, HEADER_LEN};
use crate::protocol::scanner::{Expect, Scanner};
use crate::protocol::{code, command as cmd};
use crate::status::Slot;

/// Largest command sent down a pipe: one that takes long to write would hold up the
/// replies of everyone behind it.
pub(super) const MAX_PIPED_COMMAND: usize = 64 * 1024;

/// Reply buffers larger than this are given back after the reply.
const KEEP_REPLY_BUFFER: usize = 64 * 1024;

impl<C: Transport, N: Connector> Session<'_, C, N> {
    /// Whether the session may use a pipe now: pipelining is on and the session holds
    /// nothing on a connection of its own.
    pub(super) fn may_pipeline(&self, packet_len: usize) -> bool {
        self.config.proxy.pipeline_depth > 0
            && self.held.conn.is_none()
            && !self.recorded.pinned()
            && packet_len <= MAX_PIPED_COMMAND
    }

    /// Whether `pipe`'s connection is in the state this session's statements expect.
    fn fits(&self, pipe: &Pipe) -> bool {
        (self.recorded.schema.is_none() || pipe.schema == self.recorded.schema)
            && (pipe.vars == self.recorded.vars
                || self.recorded.vars.replay_sql(&pipe.vars, pipe.charset_name, pipe.mariadb).is_none())
    }

    /// A pipe to the routed server for this session: the least busy one that fits and
    /// takes another command, or a new one made from a borrowed connection while the shard
    /// has fewer than `pipeline_connections` for the server. None: use the ordinary path.
    pub(super) async fn pipe(&mut self) -> Result<Option<Rc<Pipe>>, AcquireError> {
        let Some(mut key) = self.key else { return Ok(None) };
        if let Some(server) = self.held.route {
            key.server = server;
        }
        let p = &self.config.proxy;
        let (depth, wanted, max_uses) = (p.pipeline_depth, p.pipeline_connections, p.backend_max_uses);
        let stall = Duration::from_millis(p.pipeline_stall_ms);
        if let Some(pipe) = self.shard.pipes.find(&key, |pipe| self.fits(pipe), stall) {
            return Ok(Some(pipe));
        }
        if self.shard.pipes.count(&key) >= wanted {
            return Ok(None);
        }
        // A connection of the session's state, as for the ordinary path; it becomes a pipe.
        self.ensure_routed().await?;
        let Some(mut b) = self.held.conn.take() else { return Ok(None) };
        self.presence.backend.set(None);
        self.held.clean = true;
        let pipe = Pipe::new(&mut b, depth, max_uses);
        self.shard.pipes.add(pipe.clone());
        // The runtime may drive the new pipe once right away, before the command is queued.
        self.shard.connector.spawn(pipe::drive(pipe.clone(), b, self.shard.pool.clone()));
        Ok(Some(pipe))
    }

    /// COM_QUERY down `pipe`; the packet (whole in the client buffer) stays there for the
    /// caller. Err(Retry): the pipe failed before any reply byte reached the client.
    pub(super) async fn query_piped(&mut self, pipe: &Rc<Pipe>, h: Header) -> Step<Scanner> {
        let reply = self.reply.clone();
        let view = self.client_view(pipe.caps, &pipe.trackers, pipe.tracks_all, &[]);
        pipe.submit(&self.cbuf.filled()[..h.total()], Expect::ResultSets, &reply, view, None);
        self.piped_sent(pipe, h.total());
        self.relay_piped(pipe, h.seq).await
    }

    /// COM_STMT_EXECUTE of statement `id` down `pipe`, preparing it there first if the
    /// pipe's connection has not; the parameter types the connection last got for it are
    /// put in when the client leaves them out and they differ. Ok(None): the client got an
    /// error instead (the statement cannot be prepared any more). Errors as for
    /// [`Session::query_piped`].
    pub(super) async fn execute_piped(
        &mut self,
        pipe: &Rc<Pipe>,
        h: Header,
        id: u32,
        flag_at: usize,
    ) -> Step<Option<Scanner>> {
        let Some(st) = self.recorded.stmts.map.get(&id) else { return Ok(None) };
        let (hash, sql, schema) = (st.hash, st.sql.clone(), st.schema.clone());
        let known = pipe.stmts().get(hash, &sql, schema.as_deref()).map(|c| c.id);
        let server_id = match known {
            Some(server_id) => server_id,
            None => match self.prepare_piped(pipe, &sql).await? {
                Ok((server_id, defs)) => {
                    let cap = self.config.proxy.max_prepared_per_connection;
                    let sent = metadata::sent(self.recorded.stmts.shared_defs(id, defs));
                    let replaced = pipe.stmts().insert(hash, sql.clone(), schema.clone(), server_id, sent, cap);
                    if let Some(old) = replaced {
                        pipe.send_only(&super::execute::close_packet(old));
                    }
                    server_id
                }
                Err(err) => {
                    self.cbuf.consume(h.total());
                    self.send_server_err(h.seq.wrapping_add(1), &err).await;
                    return Ok(None);
                }
            },
        };
        // From the lookup (or the insert) to the submit there is no await: a statement the
        // pipe closes later is closed after this EXECUTE.
        let session_st = self.recorded.stmts.map.get(&id);
        let session_types = session_st.and_then(|s| s.types.as_deref());
        let payload = &self.cbuf.filled()[HEADER_LEN..h.total()];
        let bound = payload.get(flag_at) == Some(&1);
        let (stmt, inject) = {
            let mut stmts = pipe.stmts();
            let cached = stmts.get(hash, &sql, schema.as_deref());
            let stmt = match (&cached, session_st) {
                (Some(c), Some(st)) if pipe.cache_metadata => {
                    Some(StmtDefs { sent: c.defs.clone(), client: st.defs.clone(), to_client: true })
                }
                _ => None,
            };
            let inject = match (cached, session_types) {
                (Some(c), Some(types)) if bound || c.types != types => {
                    c.types.clear();
                    c.types.extend_from_slice(types);
                    !bound
                }
                _ => false,
            };
            (stmt, inject)
        };
        let reply = self.reply.clone();
        self.cbuf.filled_mut()[HEADER_LEN + 1..HEADER_LEN + 5].copy_from_slice(&server_id.to_le_bytes());
        let view = self.client_view(pipe.caps, &pipe.trackers, pipe.tracks_all, &[]);
        let packet = &self.cbuf.filled()[..h.total()];
        let sent = match (inject, session_types) {
            (true, Some(types)) => {
                let with_types = super::execute::execute_with_types(h.seq, &packet[HEADER_LEN..], flag_at, types);
                pipe.submit(&with_types, Expect::ResultSets, &reply, view, stmt);
                with_types.len()
            }
            _ => {
                pipe.submit(packet, Expect::ResultSets, &reply, view, stmt);
                packet.len()
            }
        };
        self.piped_sent(pipe, sent);
        let scanner = self.relay_piped(pipe, h.seq).await;
        match scanner {
            Ok(s) => {
                self.client_got_defs(id, &s);
                if s.warnings > 0 || s.error.is_some() {
                    // SHOW WARNINGS next would run on another connection: keep what runs
                    // it again there first (the same warnings): a parameterless
                    // statement's text, or the EXECUTE with its parameter types.
                    let payload = &self.cbuf.filled()[HEADER_LEN..h.total()];
                    let st = self.recorded.stmts.map.get(&id);
                    let again = match (flag_at > 10, st) {
                        (false, Some(st)) => {
                            let mut packet = Vec::with_capacity(st.sql.len() + HEADER_LEN + 1);
                            write_command(&mut packet, cmd::QUERY, &st.sql);
                            Some(Warned::Text(packet))
                        }
                        (true, st) => {
                            let payload = match (bound, st.and_then(|s| s.types.as_deref())) {
                                (false, Some(types)) => with_types(payload, flag_at, types),
                                _ => payload.to_vec(),
                            };
                            Some(Warned::Execute { id, payload })
                        }
                        (false, None) => None,
                    };
                    if again.is_some() {
                        self.recorded.warned = again;
                    }
                }
                self.cbuf.consume(h.total());
                Ok(Some(s))
            }
            Err(Halt::Retry) => Err(Halt::Retry),
            Err(e) => {
                self.cbuf.consume(h.total());
                Err(e)
            }
        }
    }

    /// Prepares `sql` on the pipe's connection; the reply is the proxy's, not the
    /// client's. Returns the server's statement id and the column definitions it sent
    /// (MariaDB's metadata cache), or the server's error.
    async fn prepare_piped(&mut self, pipe: &Rc<Pipe>, sql: &[u8]) -> Step<Result<(u32, Option<Defs>), ErrPacket>> {
        // A KILL meanwhile interrupts the pipe; the abort stays set, so the ordinary path
        // this falls back to stops the EXECUTE at once and tells the client.
        self.presence.piped.set(true);
        let prepared = self.prepare_piped_reply(pipe, sql).await;
        self.presence.piped.set(false);
        prepared
    }

    async fn prepare_piped_reply(
        &mut self,
        pipe: &Rc<Pipe>,
        sql: &[u8],
    ) -> Step<Result<(u32, Option<Defs>), ErrPacket>> {
        let mut payload = Vec::with_capacity(sql.len() + 1);
        payload.push(cmd::STMT_PREPARE);
        payload.extend_from_slice(sql);
        let mut req = Vec::with_capacity(payload.len() + HEADER_LEN);
        write_packet(&mut req, 0, &payload);
        let reply = self.reply.clone();
        pipe.submit(&req, Expect::Prepare, &reply, None, None);
        loop {
            match reply.state() {
                ReplyState::Waiting => {}
                ReplyState::Failed => return Err(Halt::Retry),
                ReplyState::Done => break,
            }
            if wait_piped(&reply, pipe, &self.presence).await.is_some() {
                // Nothing reached the client yet.
                return Err(Halt::Retry);
            }
        }
        reply.take_bytes(&mut self.piped);
        let defs = reply.take_scanner().and_then(|mut s| s.prepared_defs.take());
        let first = Header::parse(&self.piped)
            .filter(|h| self.piped.len() >= h.total() && h.len >= 1)
            .map(|h| &self.piped[HEADER_LEN..h.total()]);
        Ok(match first {
            Some(p) if p[0] == 0 && p.len() >= 5 => Ok((u32::from_le_bytes([p[1], p[2], p[3], p[4]]), defs)),
            Some(p) => Err(ErrPacket::parse(p).unwrap_or_else(|_| lost_prepare())),
            None => Err(lost_prepare()),
        })
    }

    /// Accounting for a command handed to a pipe.
    fn piped_sent(&mut self, pipe: &Pipe, bytes: usize) {
        self.trace_server(pipe.key.server, pipe.thread_id);
        Slot::add(&self.shard.slot().bytes_from_clients, bytes as u64);
        Slot::add(&self.shard.slot().statements_pipelined, 1);
        self.trace_sent();
    }

    /// Streams the reply of the command just submitted to the client as the pipe hands it
    /// over. `request_seq` is the client's command sequence id.
    async fn relay_piped(&mut self, pipe: &Rc<Pipe>, request_seq: u8) -> Step<Scanner> {
        self.presence.piped.set(true);
        let relayed = self.relay_piped_reply(pipe, request_seq).await;
        self.presence.piped.set(false);
        // A KILL QUERY that came as the reply ended finds nothing to stop, as on a server.
        if self.presence.abort.get() == Some(Abort::Killed) {
            self.presence.abort.set(None);
        }
        // A large reply leaves large buffers: an idle session keeps small ones.
        if self.piped.capacity() > KEEP_REPLY_BUFFER {
            self.piped = Vec::new();
        }
        self.reply.shrink_to(KEEP_REPLY_BUFFER);
        relayed
    }

    async fn relay_piped_reply(&mut self, pipe: &Rc<Pipe>, request_seq: u8) -> Step<Scanner> {
        let reply = self.reply.clone();
        let presence = self.presence.clone();
        let mut forwarded = false;
        loop {
            // The state first: when it says done, every byte of the reply is there to take.
            let state = reply.state();
            reply.take_bytes(&mut self.piped);
            if !self.piped.is_empty() {
                pipe.taken();
                if let Err(e) = self.client.write_all(&self.piped).await {
                    // The rest of the reply may be long: close the connection, as for a
                    // connection of the session's own (the others in flight are sent
                    // again, none of their reply having reached a client).
                    reply.abandon();
                    if state == ReplyState::Waiting {
                        pipe.interrupt("a client went away in the middle of its reply");
                    }
                    return Err(SessionError::ClientGone(e).into());
                }
                let n = self.piped.len() as u64;
                Slot::add(&self.shard.slot().bytes_from_backends, n);
                if self.shard.log().on && self.cmd.trace.first_byte.is_none() {
                    self.cmd.trace.first_byte = Some(std::time::Instant::now());
                }
                self.cmd.trace.bytes += n;
                forwarded = true;
            }
            match state {
                ReplyState::Done => {
                    let scanner = reply.take_scanner().ok_or_else(|| SessionError::BackendLost {
                        addr: Some(pipe.addr),
                        reason: "a finished reply without its scan".into(),
                    })?;
                    return Ok(scanner);
                }
                ReplyState::Failed if !forwarded => return Err(Halt::Retry),
                ReplyState::Failed => {
                    let reason = reply.failure().clone();
                    let seq = reply.last_seq().wrapping_add(1);
                    return self.piped_lost(seq, pipe, reason, reply.at_boundary()).await;
                }
                ReplyState::Waiting => {}
            }
            if let Some(why) = wait_piped(&reply, pipe, &presence).await {
                let seq = if forwarded { reply.last_seq() } else { request_seq };
                return self.interrupted(why, seq.wrapping_add(1), pipe.addr, reply.at_boundary()).await;
            }
        }
    }

    /// The pipe failed after part of the reply reached the client: 1927 if the client can
    /// still be told, else the session ends.
    async fn piped_lost<T>(&mut self, seq: u8, pipe: &Pipe, reason: String, at_boundary: bool) -> Step<T> {
        let addr = pipe.addr;
        if !at_boundary {
            return Err(SessionError::BackendLost { addr: Some(addr), reason }.into());
        }
        let msg =
            format!("Lost connection to db server {addr} during query ({reason}); the statement may not have run");
        self.send_err(seq, code::BACKEND_LOST, &msg).await;
        Err(Halt::failed(Some(addr), reason))
    }

    /// After a pipelined reply: what the server said about the statement (the connection
    /// was not the session's, so no pin or state comes from it).
    pub(super) fn after_piped(&mut self, scanner: &Scanner, selects: bool) {
        self.recorded.row_count = scanner.row_count();
        self.recorded.after_select(selects, scanner);
        self.note_reply(scanner);
    }
}

/// Waits until `reply` moves on or the shard interrupts the session. A drain is let go (it
/// reaches idle sessions only; this one is busy). Any other interruption — the statement
/// ran too long, was killed, or the drain time is over — abandons the reply and closes the
/// pipe's connection, which stops the statement (the others in flight there are sent
/// again), and is returned.
async fn wait_piped(reply: &Reply, pipe: &Pipe, presence: &Presence) -> Option<Abort> {
    let changed = async {
        reply.changed().await;
        None
    };
    let aborted = async { Some(presence.aborted().await) };
    match futures_lite::future::or(changed, aborted).await {
        None => None,
        Some(Abort::Drain) => {
            presence.abort.set(None);
            None
        }
        Some(why) => {
            reply.abandon();
            pipe.interrupt("a statement on this connection was interrupted");
            Some(why)
        }
    }
}

fn lost_prepare() -> ErrPacket {
    ErrPacket::new(code::BACKEND_LOST, "corelay could not read the server's reply while preparing the statement")
}
