//! The command phase: wait for the client's next command (or an interruption from the
//! shard), run it, account for it; and the commands that are not statements.
//!
//! Only the 4-byte header and the command byte are decoded on the way through; command
//! bytes are forwarded in the buffer they arrived in (see [`super::relay`]).

use std::io::ErrorKind;
use std::time::Instant;

use super::error::{Halt, SessionError, Step};
use super::shard::{Abort, Doing};
use super::Session;
use crate::net::{Connector, Transport};
use crate::protocol::code;
use crate::protocol::command as cmd;
use crate::protocol::packet::{write_packet, Header, HEADER_LEN};
use crate::protocol::scanner::Expect;
use crate::router::statement::pin;

/// Message for a client whose idle time ran out (as MySQL 8 words it).
const IDLE_MESSAGE: &str = "The client was disconnected by corelay because of inactivity (proxy.client_idle_timeout_s)";

impl<C: Transport, N: Connector> Session<'_, C, N> {
    /// Serves commands until the client quits (Ok) or the session ends (Err).
    pub(super) async fn command_loop(&mut self) -> Result<(), SessionError> {
        loop {
            let Some(h) = self.wait_for_command().await? else { continue };
            self.follow_config();
            let reply_seq = h.seq.wrapping_add(1);
            if h.len == 0 {
                self.cbuf.consume(HEADER_LEN);
                let msg = "Got an error reading communication packets: empty command packet";
                self.send_err(reply_seq, code::NET_READ_ERROR, msg).await;
                continue;
            }
            if h.len as u64 > self.config.proxy.max_packet_bytes {
                return Err(self.too_large(reply_seq, h.len).await);
            }
            let idle = self.idle_timeout();
            self.cbuf.fill_to(&mut self.client, HEADER_LEN + 1, idle).await.map_err(SessionError::ClientGone)?;
            let command = self.cbuf.filled()[HEADER_LEN];
            self.shard.slot().command(command);
            if self.presence.killed.get() {
                self.send_err(reply_seq, code::CONNECTION_KILLED, "Connection was killed").await;
                return Err(SessionError::Killed);
            }
            self.begin_command(command);
            let result = self.dispatch(command, h).await;
            self.account(command);
            if let Some(hook) = crate::router::hook::installed().filter(|_| is_statement(command)) {
                self.hook_result(hook);
            }
            match result {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(Halt::Failed(f)) => {
                    tracing::debug!(id = self.conn_id, server = ?f.server, "statement failed: {}", f.reason)
                }
                Err(Halt::Retry) => return Err(SessionError::Internal("a retry escaped its loop")),
                Err(Halt::End(e)) => return Err(e),
            }
        }
    }

    /// Waits for the header of the client's next command, or for the shard to interrupt
    /// the session. None: look again (an interruption that does not end the session).
    async fn wait_for_command(&mut self) -> Result<Option<Header>, SessionError> {
        let idle = self.idle_timeout();
        let pinned = self.recorded.holds_open_state();
        let presence = self.presence.clone();
        presence.doing.set(Doing::Idle { pinned });
        if self.shard.draining() && !pinned && self.cbuf.is_empty() {
            return Err(self.shutting_down(Abort::Drain).await);
        }
        let read = async { Ok(self.cbuf.fill_to(&mut self.client, HEADER_LEN, idle).await) };
        let interrupted = async { Err(presence.aborted().await) };
        let read = match futures_lite::future::or(read, interrupted).await {
            Ok(r) => r,
            // A drain reaches only sessions with nothing open; one that opened a
            // transaction since then waits for the stop.
            Err(Abort::Drain) if pinned => {
                presence.abort.set(None);
                return Ok(None);
            }
            Err(Abort::Timeout | Abort::Killed) => {
                presence.abort.set(None);
                return Ok(None);
            }
            Err(why) => return Err(self.shutting_down(why).await),
        };
        if let Err(e) = read {
            return Err(match e.kind() {
                ErrorKind::TimedOut => {
                    self.send_err(1, code::CLIENT_INTERACTION_TIMEOUT, IDLE_MESSAGE).await;
                    SessionError::ClientIdle(idle.unwrap_or_default())
                }
                _ => SessionError::ClientGone(e),
            });
        }
        Ok(Header::parse(self.cbuf.filled()))
    }

    /// A command starts: its context, what the shard sees the session do, and the
    /// connection kept for the last reply's warnings (it serves this command, and is kept
    /// again only if this reply has warnings too).
    fn begin_command(&mut self, command: u8) {
        let now = Instant::now();
        let log = self.shard.log();
        self.cmd.begin(now, self.recorded.pins, log.timed, log.on || log.digests);
        self.presence.doing.set(Doing::Busy { since: now });
        if self.presence.abort.get() == Some(Abort::Timeout) {
            self.presence.abort.set(None);
        }
        // (A statement replaces the last one's warnings, unless it reads them: see
        // `Recorded::statement_begins`. Other commands leave them to read, as on a server.)
        if command == cmd::PING || command == cmd::INIT_DB {
            // What ROW_COUNT() says after them on a server.
            self.recorded.row_count = 0;
        }
    }

    /// Runs one command. Returns false when the client quit.
    async fn dispatch(&mut self, command: u8, h: Header) -> Step<bool> {
        let reply_seq = h.seq.wrapping_add(1);
        match command {
            cmd::QUERY => self.query(h).await?,
            cmd::STMT_PREPARE => self.stmt_prepare(reply_seq).await?,
            cmd::STMT_EXECUTE => self.stmt_execute(h).await?,
            cmd::STMT_SEND_LONG_DATA => self.stmt_long_data(h).await?,
            cmd::STMT_CLOSE => self.stmt_close(reply_seq).await?,
            cmd::STMT_RESET | cmd::STMT_FETCH => self.stmt_reset_or_fetch(command, reply_seq).await?,
            cmd::INIT_DB => self.init_db(reply_seq).await?,
            cmd::PING if self.held.conn.is_none() => {
                // Nothing to ask a server: the proxy is alive and so is the session.
                self.read_local_packet(reply_seq).await?;
                self.ok_reply(reply_seq).await?;
            }
            cmd::RESET_CONNECTION if self.held.conn.is_none() => {
                // No connection holds anything of this session: reset what it recorded.
                self.read_local_packet(reply_seq).await?;
                self.recorded.reset();
                self.ok_reply(reply_seq).await?;
            }
            cmd::PING | cmd::STATISTICS | cmd::RESET_CONNECTION => self.simple(h, Expect::Single).await?,
            cmd::FIELD_LIST => self.simple(h, Expect::FieldList).await?,
            cmd::SET_OPTION => {
                // Multi-statement mode is connection state the proxy does not replay.
                self.recorded.pins |= pin::UNKNOWN_SET;
                self.simple(h, Expect::Single).await?
            }
            cmd::QUIT => return Ok(false),
            cmd::CHANGE_USER => {
                let (seq, payload) = self.read_local_packet(reply_seq).await?;
                self.change_user(seq, &payload).await?;
            }
            cmd::SHUTDOWN | cmd::PROCESS_KILL => {
                self.read_local_packet(reply_seq).await?;
                let msg = format!(
                    "Access denied; {} is not allowed through corelay: connect to the server directly",
                    cmd::name(command)
                );
                self.send_err(reply_seq, code::SPECIFIC_ACCESS_DENIED, &msg).await;
            }
            other => {
                self.read_local_packet(reply_seq).await?;
                let msg = format!("Unknown command 0x{other:02x} ({}): corelay does not forward it", cmd::name(other));
                self.send_err(reply_seq, code::UNKNOWN_COM, &msg).await;
            }
        }
        Ok(true)
    }

    /// COM_INIT_DB: forward; on success the schema becomes the session's.
    async fn init_db(&mut self, reply_seq: u8) -> Step {
        let (seq, payload) = self.read_local_packet(reply_seq).await?;
        let schema = String::from_utf8_lossy(&payload[1..]).into_owned();
        self.route_to_side();
        if let Err(e) = self.ensure_routed().await {
            self.report_acquire_error(reply_seq, e).await;
            return Ok(());
        }
        let mut out = Vec::with_capacity(payload.len() + 4);
        write_packet(&mut out, seq, &payload);
        self.send_to_backend(&out, seq).await?;
        let (reply, _) = self.relay_response(Expect::Single, seq, None, None).await?;
        if reply.error.is_none() {
            self.recorded.enter_schema(&schema, self.held.conn.as_mut().map(|b| &mut b.state));
        }
        self.after_response(&reply);
        Ok(())
    }

    /// Commands forwarded as they are, with no state of their own to record (except
    /// RESET_CONNECTION, which clears it).
    async fn simple(&mut self, h: Header, expect: Expect) -> Step {
        let command = self.cbuf.filled()[HEADER_LEN];
        self.route_to_side();
        if let Err(e) = self.ensure_routed().await {
            return self.refuse_command(h.seq.wrapping_add(1), e).await;
        }
        self.held.clean = false;
        self.forward_packet().await?;
        let (reply, _) = self.relay_response(expect, h.seq, None, None).await?;
        if command == cmd::RESET_CONNECTION && reply.error.is_none() {
            self.recorded.reset();
            if let Some(b) = self.held.conn.as_mut() {
                b.after_reset();
            }
        }
        if command == cmd::PING {
            // Says nothing of the session's state (and leaves its warnings).
            self.held.clean = true;
            self.release_if_unpinned();
            return Ok(());
        }
        self.after_response(&reply);
        Ok(())
    }
}

/// Commands that run a statement (what the hook's `on_result` hears of).
fn is_statement(command: u8) -> bool {
    command == cmd::QUERY || command == cmd::STMT_EXECUTE
}
