//! The command phase: read a command, borrow a connection, forward, stream the response
//! back, update the session's state, give the connection back.
//!
//! Only the 4-byte header and the command byte are decoded on the way through (plus the
//! statement text of COM_QUERY, which the router reads for state changes); command bytes
//! are forwarded in the buffer they arrived in, and response bytes are written to the
//! client as soon as the scanner has accounted for them.

use std::io::ErrorKind;

use super::{Session, SessionError};
use crate::net::{read_packet, Connector, PacketReadError, Transport};
use crate::protocol::code;
use crate::protocol::command as cmd;
use crate::protocol::ok::write_ok;
use crate::protocol::packet::{Header, HEADER_LEN};
use crate::protocol::scanner::{Expect, Progress, Scanner};
use crate::protocol::status;
use crate::router::classify;
use crate::router::statement::{self, pin, Previous};
use crate::status::Slot;

/// Message for a client whose idle time ran out (as MySQL 8 words it).
const IDLE_MESSAGE: &str = "The client was disconnected by corelay because of inactivity (proxy.client_idle_timeout_s)";

impl<C: Transport, N: Connector> Session<'_, C, N> {
    pub(super) async fn command_loop(&mut self) -> Result<(), SessionError> {
        loop {
            let idle = self.idle_timeout();
            // A connection kept only for its warnings holds nothing a drain must wait for.
            let pinned = self.pins & !pin::WARNINGS != 0 || self.locks > 0;
            let presence = self.presence.clone();
            presence.doing.set(super::Doing::Idle { pinned });
            if self.ctx.draining.get() && !pinned && self.cbuf.is_empty() {
                return self.shutting_down(super::Abort::Drain).await;
            }
            let read = async { Ok(self.cbuf.fill_to(&mut self.client, HEADER_LEN, idle).await) };
            let interrupted = async { Err(presence.aborted().await) };
            let read = match futures_lite::future::or(read, interrupted).await {
                Ok(r) => r,
                // A drain reaches only sessions with nothing open; one that opened a
                // transaction since then waits for the stop.
                Err(super::Abort::Drain) if pinned => {
                    presence.abort.set(None);
                    continue;
                }
                Err(super::Abort::Timeout | super::Abort::Killed) => {
                    presence.abort.set(None);
                    continue;
                }
                Err(why) => return self.shutting_down(why).await,
            };
            if let Err(e) = read {
                return match e.kind() {
                    ErrorKind::TimedOut => {
                        self.send_err(1, code::CLIENT_INTERACTION_TIMEOUT, IDLE_MESSAGE).await;
                        Err(SessionError::ClientIdle(idle.unwrap_or_default()))
                    }
                    _ => Err(SessionError::ClientGone(e)),
                };
            }
            let Some(h) = Header::parse(self.cbuf.filled()) else { continue };
            self.follow_config();
            let reply_seq = h.seq.wrapping_add(1);
            if h.len == 0 {
                self.cbuf.consume(HEADER_LEN);
                let msg = "Got an error reading communication packets: empty command packet";
                self.send_err(reply_seq, code::NET_READ_ERROR, msg).await;
                continue;
            }
            let max = self.config().proxy.max_packet_bytes;
            if h.len as u64 > max {
                return self.too_large(reply_seq, h.len).await;
            }
            self.cbuf.fill_to(&mut self.client, HEADER_LEN + 1, idle).await.map_err(SessionError::ClientGone)?;
            let command = self.cbuf.filled()[HEADER_LEN];
            self.ctx.slot().command(command);
            if self.presence.killed.get() {
                self.send_err(reply_seq, code::CONNECTION_KILLED, "Connection was killed").await;
                return Err(SessionError::LoginRefused("killed".into()));
            }
            self.cmd_class = crate::status::Class::Other;
            self.cmd_server = None;
            if self.ctx.log().on {
                self.trace.start();
            }
            let pins_before = self.pins;
            let now = std::time::Instant::now();
            presence.doing.set(super::Doing::Busy { since: now });
            if presence.abort.get() == Some(super::Abort::Timeout) {
                presence.abort.set(None);
            }
            let started = self.ctx.log().timed.then_some(now);
            // The connection kept for the last reply's warnings serves this command; it is
            // kept again only if this reply has warnings too.
            self.pins &= !pin::WARNINGS;
            if command != cmd::QUERY {
                self.warned = None;
            }
            let result = self.dispatch(command, h).await;
            self.account(command, started, pins_before);
            match result {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                // The statement failed with the backend; the client was told and the
                // session goes on.
                Err(SessionError::StatementFailed { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Tells the client corelay is stopping (1053, as a server that shuts down does) and
    /// ends the session. Sent as the reply to the command the client sends next.
    async fn shutting_down(&mut self, why: super::Abort) -> Result<(), SessionError> {
        let msg = match self.held_on_connection() {
            Some(held) if why == super::Abort::Stop => format!(
                "Server shutdown in progress: corelay's drain time (proxy.drain_timeout_s) is over; what this session held is gone ({held}); reconnect"
            ),
            _ => "Server shutdown in progress: corelay is stopping; reconnect".to_string(),
        };
        self.send_err(1, code::SERVER_SHUTDOWN, &msg).await;
        Err(SessionError::Shutdown)
    }

    /// Counts a finished command in the shard's slot: its class, its latency (per class and
    /// per server), and the pins it started.
    fn account(&self, command: u8, started: Option<std::time::Instant>, pins_before: u32) {
        let slot = self.ctx.slot();
        let (status, shard) = (&self.ctx.status, self.ctx.shard);
        Slot::add(&slot.statements[self.cmd_class as usize], 1);
        if let Some(started) = started {
            let end = std::time::Instant::now();
            let us = end.duration_since(started).as_micros() as u64;
            // Slow statements go to the query log; failed ones to the warning log too.
            let log = self.ctx.log();
            if log.on && (us >= log.min_us || self.trace.error != 0) && command != cmd::QUIT {
                self.log_statement(command, started, end);
            }
            if log.histograms {
                status.latency(shard, self.cmd_class).record(us);
                if let Some(b) = self.cmd_server.and_then(|id| status.server_latency(shard, id)) {
                    b.record(us);
                }
            }
        }
        let new_pins = self.pins & !pins_before;
        if new_pins != 0 {
            slot.pinned(new_pins);
        }
    }

    /// One statement line in the query log.
    fn log_statement(&self, command: u8, started: std::time::Instant, end: std::time::Instant) {
        let t = &self.trace;
        let us = |a: std::time::Instant, b: std::time::Instant| b.saturating_duration_since(a).as_micros() as u64;
        let sent = t.sent.unwrap_or(started);
        let first = t.first_byte.unwrap_or(end);
        let server = self.cmd_server.and_then(|id| self.config.server(id)).map_or("", |s| s.address.as_str());
        macro_rules! line {
            ($level:ident) => {
                tracing::$level!(
                    target: crate::log::QUERY,
                    conn = self.conn_id,
                    client = %self.peer,
                    user = self.user_name(),
                    server,
                    thread = if server.is_empty() { 0 } else { t.thread },
                    cmd = cmd::name(command),
                    send_us = us(started, sent),
                    wait_us = if t.first_byte.is_some() { us(sent, first) } else { 0 },
                    resp_us = if t.first_byte.is_some() { us(first, end) } else { 0 },
                    total_us = us(started, end),
                    rows = t.rows,
                    bytes = t.bytes,
                    err = t.error,
                    sql = t.sql.as_str(),
                )
            };
        }
        if t.error != 0 {
            line!(warn);
        } else {
            line!(info);
        }
    }

    /// The command's last byte went to the server.
    pub(super) fn trace_sent(&mut self) {
        if self.ctx.log().on {
            self.trace.sent = Some(std::time::Instant::now());
        }
    }

    /// Runs one command. Returns false when the client quit.
    async fn dispatch(&mut self, command: u8, h: Header) -> Result<bool, SessionError> {
        let reply_seq = h.seq.wrapping_add(1);
        match command {
            cmd::QUERY => self.query(h).await?,
            cmd::STMT_PREPARE => self.stmt_prepare(reply_seq).await?,
            cmd::STMT_EXECUTE => self.stmt_execute(h).await?,
            cmd::STMT_SEND_LONG_DATA => self.stmt_long_data(h).await?,
            cmd::STMT_CLOSE => self.stmt_close(reply_seq).await?,
            cmd::STMT_RESET | cmd::STMT_FETCH => self.stmt_reset_or_fetch(command, reply_seq).await?,
            cmd::INIT_DB => self.init_db(reply_seq).await?,
            cmd::PING if self.backend.is_none() => {
                // Nothing to ask a server: the proxy is alive and so is the session.
                self.read_local_packet(reply_seq).await?;
                self.ok_reply(reply_seq).await?;
            }
            cmd::RESET_CONNECTION if self.backend.is_none() => {
                // No connection holds anything of this session: reset what it recorded.
                self.read_local_packet(reply_seq).await?;
                self.reset_session_state();
                self.ok_reply(reply_seq).await?;
            }
            cmd::PING | cmd::STATISTICS | cmd::RESET_CONNECTION => self.simple(h, Expect::Single).await?,
            cmd::FIELD_LIST => self.simple(h, Expect::FieldList).await?,
            cmd::SET_OPTION => {
                // Multi-statement mode is connection state the proxy does not replay.
                self.pins |= pin::UNKNOWN_SET;
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

    /// COM_QUERY: read the text for state changes, forward, apply what succeeded.
    async fn query(&mut self, h: Header) -> Result<(), SessionError> {
        let warned = self.warned.take();
        let idle = self.idle_timeout();
        if !h.continued() {
            self.cbuf.fill_to(&mut self.client, h.total(), idle).await.map_err(SessionError::ClientGone)?;
        }
        let end = h.total().min(self.cbuf.len());
        let text = &self.cbuf.filled()[HEADER_LEN + 1..end];
        if let (false, Some((function, name))) = (h.continued(), classify::session_function_query(text)) {
            self.cbuf.consume(h.total());
            return self.answer_session_function(h.seq.wrapping_add(1), function, &name, false).await;
        }
        if let (false, Some(kind)) = (h.continued(), crate::admin::proxystatus::parse(text)) {
            self.cbuf.consume(h.total());
            return self.proxy_status(h.seq.wrapping_add(1), kind).await;
        }
        if let (false, Some(cmd)) = (h.continued(), classify::dbconnect(text)) {
            self.cbuf.consume(h.total());
            return self.dbconnect(h.seq.wrapping_add(1), cmd).await;
        }
        if let (false, Some((query_only, id))) = (h.continued(), classify::kill_statement(text)) {
            self.cbuf.consume(h.total());
            return self.kill(h.seq.wrapping_add(1), query_only, id).await;
        }
        if self.ctx.log().on {
            keep_sql(&mut self.trace.sql, text, self.ctx.log().sql_max_chars);
        }
        let fx = statement::analyse(text);
        let mut class = classify::classify(text);
        if self.read_only_transactions_allowed() && classify::is_read_only_transaction(text) {
            class = classify::Class::Read;
        }
        let hint = classify::hint(text);
        self.route_statement(class, hint);
        let pipelinable = class == classify::Class::Read && fx.pipelinable() && !h.continued();
        if pipelinable && self.may_pipeline(h.total()) {
            match self.pipe().await {
                Ok(Some(pipe)) => match self.query_piped(&pipe, h).await {
                    Ok(scanner) => {
                        if scanner.warnings > 0 {
                            // SHOW WARNINGS next would run on another connection: keep the
                            // statement to run there first.
                            self.warned = Some(self.cbuf.filled()[..h.total()].to_vec());
                        }
                        self.cbuf.consume(h.total());
                        self.after_piped(&scanner);
                        return Ok(());
                    }
                    // Nothing reached the client: the ordinary path sends it again.
                    Err(SessionError::Retry) => Slot::add(&self.ctx.slot().retries, 1),
                    Err(e) => {
                        self.cbuf.consume(h.total());
                        return Err(e);
                    }
                },
                Ok(None) => {}
                Err(e) => {
                    self.read_local_packet(h.seq.wrapping_add(1)).await?;
                    self.report_acquire_error(h.seq.wrapping_add(1), e).await;
                    return Ok(());
                }
            }
        }
        let held = self.backend.is_some();
        if let Err(e) = self.ensure_routed().await {
            self.read_local_packet(h.seq.wrapping_add(1)).await?;
            self.report_acquire_error(h.seq.wrapping_add(1), e).await;
            return Ok(());
        }
        self.replay_last_statement(fx.previous, held, warned.as_deref()).await;
        // A read on a connection that holds nothing of the session may be sent again on
        // another connection if the first one dies before any byte of the reply came back.
        let retryable = fx.reads_only && fx.pin == 0 && self.pins == 0 && self.locks == 0 && !h.continued();
        let scanner = if retryable {
            self.query_with_retry(h).await?
        } else {
            self.backend_clean = false;
            self.forward_packet().await?;
            self.relay_response(Expect::ResultSets, h.seq, None).await?.0
        };
        // Pins take effect even if a later statement of a batch failed: being cautious
        // only costs a connection. State changes count only when everything succeeded.
        self.pins |= fx.pin;
        if scanner.error.is_some() && !fx.assignments.is_empty() {
            // Part of a batch may have run: what the connection holds is not known.
            self.pins |= pin::UNKNOWN_SET;
        }
        if scanner.error.is_none() {
            self.pins &= !fx.unpin;
            if let Some(b) = self.backend.as_mut() {
                for a in &fx.assignments {
                    self.vars.set(a);
                    b.state.vars.set(a);
                }
                if let Some(schema) = fx.use_schema {
                    b.state.schema = Some(schema.clone());
                    self.schema = Some(schema);
                }
            }
        }
        if class == classify::Class::Write {
            self.last_write = Some(std::time::Instant::now());
        }
        self.locks = (self.locks + fx.lock_delta).max(0);
        if self.locks == 0 {
            self.pins &= !pin::GET_LOCK;
        }
        self.left_for_next_statement(fx.previous, &scanner);
        self.after_response(&scanner);
        Ok(())
    }

    /// `dbconnect master|<ip>:<port>|release`: pins the session to a server of its cluster
    /// (or ends the pin), answered by the proxy.
    async fn dbconnect(&mut self, seq: u8, cmd: classify::DbConnect) -> Result<(), SessionError> {
        let (Some(key), Some(user)) = (self.key, self.user) else { return Ok(()) };
        let config = self.config.clone();
        let cluster = &config.clusters[config.db_users[config.users[user].db_user].cluster];
        let target = match &cmd {
            classify::DbConnect::Release => {
                self.pins &= !pin::DBCONNECT;
                self.release_if_unpinned();
                return self.ok_reply(seq).await;
            }
            classify::DbConnect::Primary => cluster.primary().id,
            classify::DbConnect::Server(addr) => {
                let wanted: Option<std::net::SocketAddr> = addr.parse().ok();
                match cluster.servers.iter().find(|s| s.address == *addr || Some(s.addr) == wanted) {
                    Some(s) => s.id,
                    None => {
                        let msg = format!("dbconnect: no server {addr} in cluster '{}'", cluster.name);
                        self.send_err(seq, code::UNKNOWN_ERROR, &msg).await;
                        return Ok(());
                    }
                }
            }
        };
        if let Some(b) = &self.backend {
            if b.key.server != target {
                let msg = "dbconnect: this session holds a connection to another server (a transaction or session state); finish it first";
                self.send_err(seq, code::UNKNOWN_ERROR, msg).await;
                return Ok(());
            }
        }
        self.route = (target != key.server).then_some(target);
        if let Err(e) = self.ensure_backend().await {
            self.report_acquire_error(seq, e).await;
            return Ok(());
        }
        self.pins |= pin::DBCONNECT;
        self.ok_reply(seq).await
    }

    /// `checkproxystatus type1|type2|type3`, answered from the status region when
    /// `proxy.status_queries` is on.
    async fn proxy_status(&mut self, seq: u8, kind: Result<u8, String>) -> Result<(), SessionError> {
        if !self.config.proxy.status_queries {
            let msg = "checkproxystatus is disabled on this corelay (proxy.status_queries = false)";
            self.send_err(seq, code::SPECIFIC_ACCESS_DENIED, msg).await;
            return Ok(());
        }
        let kind = match kind {
            Ok(k) => k,
            Err(msg) => {
                self.send_err(seq, code::PARSE_ERROR, &msg).await;
                return Ok(());
            }
        };
        let view = crate::admin::View { config: &self.config, status: &self.ctx.status, balance: None };
        let rs = crate::admin::proxystatus::result(&view, kind);
        let flags = self.session_status();
        let deprecate_eof = self.caps & crate::protocol::caps::DEPRECATE_EOF != 0;
        self.out.clear();
        rs.write(&mut self.out, seq, deprecate_eof, flags);
        self.flush().await
    }

    /// Status flags for a reply corelay makes itself: the session's autocommit and
    /// transaction state as the server last reported them.
    fn session_status(&self) -> u16 {
        let mut flags = 0;
        if self.pins & pin::AUTOCOMMIT_OFF == 0 {
            flags |= status::AUTOCOMMIT;
        }
        if self.pins & pin::TRANSACTION != 0 {
            flags |= status::IN_TRANS;
        }
        flags
    }

    /// An OK packet corelay answers itself.
    pub(super) async fn ok_reply(&mut self, seq: u8) -> Result<(), SessionError> {
        let flags = self.session_status();
        self.out.clear();
        write_ok(&mut self.out, seq, 0, 0, flags);
        self.flush().await
    }

    /// `KILL [QUERY] <id>` with an id corelay handed out: acts on the backend connection
    /// serving that session now (and, for KILL CONNECTION, ends the session before its next
    /// command). Sessions of other shards cannot be reached: shards share nothing.
    async fn kill(&mut self, seq: u8, query_only: bool, id: u64) -> Result<(), SessionError> {
        let target = u32::try_from(id).ok().and_then(|i| self.ctx.session(i));
        let Some(target) = target else {
            let shard = id >> 24;
            let msg = if shard as usize != self.ctx.shard {
                format!("Unknown thread id: {id} (KILL reaches sessions of the same corelay shard only; this is shard {}, that id belongs to shard {shard})", self.ctx.shard)
            } else {
                format!("Unknown thread id: {id}")
            };
            self.send_err(seq, code::NO_SUCH_THREAD, &msg).await;
            return Ok(());
        };
        if !query_only {
            target.killed.set(true);
        }
        if target.piped.get() {
            // Its statement waits on a shared connection: the session stops waiting and
            // closes that connection, which stops the statement.
            target.abort(super::Abort::Killed);
            return self.ok_reply(seq).await;
        }
        let Some((server, thread)) = target.backend.get() else {
            return self.ok_reply(seq).await;
        };
        if self.backend.as_ref().is_some_and(|b| b.key.server != server) {
            let msg = "KILL: this session holds a connection to another server; finish its transaction first";
            self.send_err(seq, code::UNKNOWN_ERROR, msg).await;
            return Ok(());
        }
        let primary = self.key.map(|k| k.server);
        self.route = (Some(server) != primary).then_some(server);
        if let Err(e) = self.ensure_backend().await {
            self.report_acquire_error(seq, e).await;
            return Ok(());
        }
        let sql = format!("KILL {}{thread}", if query_only { "QUERY " } else { "" });
        let mut req = Vec::new();
        let mut p = vec![cmd::QUERY];
        p.extend_from_slice(sql.as_bytes());
        crate::protocol::packet::write_packet(&mut req, 0, &p);
        let result = match self.backend.as_mut() {
            Some(b) => b.exchange(&req, &[Expect::ResultSets], &mut self.bbuf).await,
            None => return Ok(()),
        };
        match result {
            Ok(replies) => {
                self.release_if_unpinned();
                match replies.into_iter().next().and_then(|r| r.err) {
                    // The connection was already gone: the session is killed all the same.
                    Some(err) if err.code != code::NO_SUCH_THREAD.number => {
                        self.send_server_err(seq, &err).await;
                        Ok(())
                    }
                    _ => self.ok_reply(seq).await,
                }
            }
            Err(e) => {
                self.drop_backend();
                let msg = format!("KILL failed: {e}");
                self.send_err(seq, code::BACKEND_LOST, &msg).await;
                Ok(())
            }
        }
    }

    /// Whether the session's cluster lets read-only transactions run on replicas.
    fn read_only_transactions_allowed(&self) -> bool {
        let config = &self.config;
        self.user.is_some_and(|u| {
            config.clusters[config.db_users[config.users[u].db_user].cluster].read_only_transactions_on_replicas
        })
    }

    /// Answers `SELECT LAST_INSERT_ID()` from the session's own record (right whichever
    /// connection ran the INSERT) and `SELECT CONNECTION_ID()` with corelay's id.
    pub(super) async fn answer_session_function(
        &mut self,
        seq: u8,
        function: classify::SessionFunction,
        name: &str,
        binary: bool,
    ) -> Result<(), SessionError> {
        let flags = self.session_status();
        let deprecate = self.caps & crate::protocol::caps::DEPRECATE_EOF != 0;
        self.out.clear();
        use crate::protocol::resultset::{write_single_bigint, BigInt};
        let value = match function {
            classify::SessionFunction::LastInsertId => BigInt::Unsigned(self.last_insert_id),
            classify::SessionFunction::ConnectionId => BigInt::Unsigned(u64::from(self.conn_id)),
            classify::SessionFunction::RowCount => BigInt::Signed(self.row_count),
        };
        // This SELECT is now the session's last statement.
        self.row_count = -1;
        write_single_bigint(&mut self.out, seq, name, value, deprecate, flags, binary);
        self.flush().await
    }

    /// Sends a read held whole in the client buffer; if the connection dies before any
    /// byte of the reply reached the client, sends it once more on another connection.
    async fn query_with_retry(&mut self, h: Header) -> Result<Scanner, SessionError> {
        for attempt in 0..2 {
            self.retry_armed = attempt == 0;
            self.backend_clean = false;
            let sent = match self.backend.as_mut() {
                Some(b) => {
                    self.cmd_server = Some(b.key.server);
                    self.trace.thread = b.thread_id;
                    b.stream.write_all(&self.cbuf.filled()[..h.total()]).await.is_ok()
                }
                None => false,
            };
            if sent {
                Slot::add(&self.ctx.slot().bytes_from_clients, h.total() as u64);
                self.trace_sent();
            }
            let result = if sent {
                self.relay_response(Expect::ResultSets, h.seq, None).await
            } else {
                self.drop_backend();
                Err(SessionError::Retry)
            };
            self.retry_armed = false;
            match result {
                Ok((scanner, _)) => {
                    self.cbuf.consume(h.total());
                    return Ok(scanner);
                }
                Err(SessionError::Retry) if attempt == 0 => {
                    Slot::add(&self.ctx.slot().retries, 1);
                    // The server may be gone altogether: a replica that cannot be had gives
                    // way to the primary, as for any read.
                    if let Err(e) = self.ensure_routed().await {
                        self.cbuf.consume(h.total());
                        self.report_acquire_error(h.seq.wrapping_add(1), e).await;
                        return Err(SessionError::StatementFailed {
                            addr: ([0, 0, 0, 0], 0).into(),
                            reason: "no connection for the retry".into(),
                        });
                    }
                }
                Err(SessionError::Retry) => {
                    self.cbuf.consume(h.total());
                    let msg = "Lost connection to db server during query, twice; the statement did not complete";
                    self.send_err(h.seq.wrapping_add(1), code::BACKEND_LOST, msg).await;
                    return Err(SessionError::StatementFailed { addr: ([0, 0, 0, 0], 0).into(), reason: msg.into() });
                }
                Err(e) => {
                    self.cbuf.consume(h.total());
                    return Err(e);
                }
            }
        }
        unreachable!("the second attempt always returns")
    }

    /// COM_INIT_DB: forward; on success the schema becomes the session's.
    async fn init_db(&mut self, reply_seq: u8) -> Result<(), SessionError> {
        let (seq, payload) = self.read_local_packet(reply_seq).await?;
        let schema = String::from_utf8_lossy(&payload[1..]).into_owned();
        self.route_to_side();
        if let Err(e) = self.ensure_routed().await {
            self.report_acquire_error(reply_seq, e).await;
            return Ok(());
        }
        let mut out = Vec::with_capacity(payload.len() + 4);
        crate::protocol::packet::write_packet(&mut out, seq, &payload);
        self.send_to_backend(&out, seq).await?;
        let (scanner, _) = self.relay_response(Expect::Single, seq, None).await?;
        if scanner.error.is_none() {
            if let Some(b) = self.backend.as_mut() {
                b.state.schema = Some(schema.clone());
            }
            self.schema = Some(schema);
        }
        self.after_response(&scanner);
        Ok(())
    }

    /// Commands forwarded as they are, with no state of their own to record (except
    /// RESET_CONNECTION, which clears it).
    async fn simple(&mut self, h: Header, expect: Expect) -> Result<(), SessionError> {
        let command = self.cbuf.filled()[HEADER_LEN];
        self.route_to_side();
        if let Err(e) = self.ensure_routed().await {
            self.read_local_packet(h.seq.wrapping_add(1)).await?;
            self.report_acquire_error(h.seq.wrapping_add(1), e).await;
            return Ok(());
        }
        self.backend_clean = false;
        self.forward_packet().await?;
        let (scanner, _) = self.relay_response(expect, h.seq, None).await?;
        if command == cmd::RESET_CONNECTION && scanner.error.is_none() {
            self.reset_session_state();
            if let Some(b) = self.backend.as_mut() {
                b.after_reset();
            }
        }
        self.after_response(&scanner);
        Ok(())
    }

    /// What COM_RESET_CONNECTION clears: variables, statements, connection-bound state.
    pub(super) fn reset_session_state(&mut self) {
        self.vars.clear();
        self.stmts.clear();
        self.pins = 0;
        self.locks = 0;
        self.last_insert_id = 0;
        self.row_count = -1;
    }

    /// After a complete response: transaction state from the server's status flags, then
    /// give the connection back if nothing pins it.
    pub(super) fn after_response(&mut self, scanner: &Scanner) {
        self.backend_clean = true;
        if let Some(code) = scanner.error {
            Slot::add(&self.ctx.slot().error_replies, 1);
            self.trace.error = code;
        }
        if let Some(ok) = scanner.ok {
            self.trace.rows = ok.affected_rows;
            if ok.last_insert_id != 0 {
                self.last_insert_id = ok.last_insert_id;
                if let Some(b) = self.backend.as_mut() {
                    b.state.last_insert_id = Some(ok.last_insert_id);
                }
            }
        }
        // What the server itself reports (CLIENT_SESSION_TRACK) overrides what the proxy
        // read from SQL: a schema changed inside a procedure, state no replay rebuilds.
        if let Some(schema) = &scanner.changes.schema {
            if let Some(b) = self.backend.as_mut() {
                b.state.schema = Some(schema.clone());
            }
            self.schema = Some(schema.clone());
        }
        if scanner.changes.state_changed {
            self.pins |= pin::UNKNOWN_SET;
        }
        if scanner.status_seen() {
            let st = scanner.status;
            set_bit(&mut self.pins, pin::TRANSACTION, st & status::IN_TRANS != 0);
            set_bit(&mut self.pins, pin::AUTOCOMMIT_OFF, st & status::AUTOCOMMIT == 0);
        }
        set_bit(&mut self.pins, pin::WARNINGS, scanner.warnings > 0);
        self.release_if_unpinned();
    }

    /// Before a statement that reads what the previous one left (SHOW WARNINGS,
    /// @@warning_count, LAST_INSERT_ID(), ...), on the connection it will run on (`held`:
    /// the session had it already). On a connection just borrowed, which holds what its
    /// last user left: runs again `warned`, a pipelined read whose reply had warnings, so
    /// that they are there to read; or, when the last statement left none, a statement
    /// that clears what the connection's last user left. Either way, when the statement
    /// reads LAST_INSERT_ID() and the connection may hold another value than the session's
    /// (its last user's, or one from before the session's last insert), sets it first.
    /// The replies are dropped; if this fails, the statement finds nothing.
    pub(super) async fn replay_last_statement(&mut self, previous: Previous, held: bool, warned: Option<&[u8]>) {
        use std::io::Write as _;
        let fresh = !held;
        let n = self.last_insert_id;
        let sync = previous.reads_insert_id
            && !self.insert_id_set_here
            && self.backend.as_ref().is_some_and(|b| b.state.last_insert_id != Some(n));
        if !previous.bound || (!fresh && !sync) {
            return;
        }
        let mut text = Vec::with_capacity(96);
        text.push(cmd::QUERY);
        if sync {
            let _ = write!(text, "DO LAST_INSERT_ID({n})");
        }
        if fresh && warned.is_none() {
            // (MariaDB clears its warnings at a statement that uses a table, not at any.)
            text.extend_from_slice(if sync { b", " } else { b"DO " });
            text.extend_from_slice(b"(SELECT 1 FROM information_schema.COLLATIONS LIMIT 0)");
        }
        let Some(b) = self.backend.as_mut() else { return };
        let mut ok = true;
        if text.len() > 1 {
            let mut packet = Vec::with_capacity(text.len() + HEADER_LEN);
            crate::protocol::packet::write_packet(&mut packet, 0, &text);
            ok = b.exchange(&packet, &[Expect::ResultSets], &mut self.bbuf).await.is_ok();
            if ok && sync {
                b.state.last_insert_id = Some(n);
            }
        }
        if let (true, true, Some(w)) = (ok, fresh, warned) {
            ok = b.exchange(w, &[Expect::ResultSets], &mut self.bbuf).await.is_ok();
        }
        if !ok {
            self.drop_backend();
            let _ = self.ensure_routed().await;
        }
    }

    /// After a statement's reply: what `ROW_COUNT()` returns now, and, when the statement
    /// may have set the connection's LAST_INSERT_ID() out of the proxy's sight
    /// (`LAST_INSERT_ID(expr)`, a procedure), that this value stays while the session
    /// holds the connection and the next session to borrow it sets its own.
    pub(super) fn left_for_next_statement(&mut self, previous: Previous, scanner: &Scanner) {
        self.row_count = scanner.row_count();
        if previous.may_set_insert_id {
            self.insert_id_set_here = true;
            if let Some(b) = self.backend.as_mut() {
                b.state.last_insert_id = None;
            }
        }
    }

    /// Reads a whole command the proxy handles itself (bounded by max_packet_bytes).
    pub(super) async fn read_local_packet(&mut self, reply_seq: u8) -> Result<(u8, Vec<u8>), SessionError> {
        let max = self.config().proxy.max_packet_bytes as usize;
        let idle = self.idle_timeout();
        match read_packet(&mut self.client, &mut self.cbuf, max, idle).await {
            Ok(p) => Ok(p),
            Err(PacketReadError::Io(e)) => Err(SessionError::ClientGone(e)),
            Err(PacketReadError::TooLarge(n)) => self.too_large(reply_seq, n).await,
        }
    }

    async fn too_large<T>(&mut self, seq: u8, len: usize) -> Result<T, SessionError> {
        let max = self.config().proxy.max_packet_bytes;
        let msg =
            format!("Got a packet bigger than 'max_allowed_packet' bytes: {len} > {max} (proxy.max_packet_bytes)");
        self.send_err(seq, code::NET_PACKET_TOO_LARGE, &msg).await;
        self.discard_input().await;
        Err(SessionError::ClientPacketTooLarge(len))
    }

    /// Before closing on a client that is still sending, read and drop what it sends for a
    /// moment: closing with unread data makes the kernel reset the connection, and the
    /// client would lose the ERR packet just sent.
    async fn discard_input(&mut self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let mut budget = 2 * self.config().proxy.max_packet_bytes as usize + (1 << 20);
        let mut sink = [0u8; 16 * 1024];
        self.cbuf.consume(self.cbuf.len());
        while budget > 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match self.client.read(&mut sink, Some(left)).await {
                Ok(0) | Err(_) => return,
                Ok(n) => budget = budget.saturating_sub(n),
            }
        }
    }

    /// Writes bytes the proxy built (a rewritten command) to the borrowed connection.
    pub(super) async fn send_to_backend(&mut self, bytes: &[u8], seq: u8) -> Result<(), SessionError> {
        self.backend_clean = false;
        let Some(b) = self.backend.as_mut() else { return Err(no_backend()) };
        self.cmd_server = Some(b.key.server);
        self.trace.thread = b.thread_id;
        if let Err(e) = b.stream.write_all(bytes).await {
            let addr = b.addr;
            return self.backend_lost(seq.wrapping_add(1), addr, e.to_string(), true).await;
        }
        Slot::add(&self.ctx.slot().bytes_from_clients, bytes.len() as u64);
        self.trace_sent();
        Ok(())
    }

    /// Forwards one logical packet (all its physical packets) from the client to the
    /// backend as its bytes arrive. Returns the sequence id of its last physical packet.
    pub(super) async fn forward_packet(&mut self) -> Result<u8, SessionError> {
        let max = self.config().proxy.max_packet_bytes as usize;
        let idle = self.idle_timeout();
        let mut total = 0usize;
        loop {
            self.cbuf.fill_to(&mut self.client, HEADER_LEN, idle).await.map_err(SessionError::ClientGone)?;
            let Some(h) = Header::parse(self.cbuf.filled()) else { unreachable!("four bytes are buffered") };
            let seq = h.seq;
            total += h.len;
            if total > max {
                // The backend holds half a packet now; it cannot be used again.
                self.drop_backend();
                return self.too_large(h.seq.wrapping_add(1), total).await;
            }
            let mut left = h.total();
            while left > 0 {
                self.need_client_bytes(idle).await?;
                let n = left.min(self.cbuf.len());
                let backend = self.backend.as_mut().ok_or_else(no_backend)?;
                self.cmd_server = Some(backend.key.server);
                self.trace.thread = backend.thread_id;
                if let Err(e) = backend.stream.write_all(&self.cbuf.filled()[..n]).await {
                    let addr = backend.addr;
                    // The rest of this command is still on its way: it must not be read
                    // as the next command.
                    self.skip_client_bytes(left, h.continued()).await?;
                    return self.backend_lost(seq.wrapping_add(1), addr, e.to_string(), true).await;
                }
                Slot::add(&self.ctx.slot().bytes_from_clients, n as u64);
                self.cbuf.consume(n);
                left -= n;
            }
            if !h.continued() {
                self.trace_sent();
                return Ok(seq);
            }
        }
    }

    /// Makes sure at least one byte from the client is buffered.
    async fn need_client_bytes(&mut self, idle: Option<std::time::Duration>) -> Result<(), SessionError> {
        if self.cbuf.is_empty() {
            let n = self.cbuf.fill_from(&mut self.client, idle).await.map_err(SessionError::ClientGone)?;
            if n == 0 {
                return Err(SessionError::ClientGone(ErrorKind::UnexpectedEof.into()));
            }
        }
        Ok(())
    }

    /// Reads and drops `left` bytes of the current physical packet and, if it is
    /// continued, the packets that follow it.
    async fn skip_client_bytes(&mut self, mut left: usize, mut continued: bool) -> Result<(), SessionError> {
        let idle = self.idle_timeout();
        loop {
            while left > 0 {
                self.need_client_bytes(idle).await?;
                let n = left.min(self.cbuf.len());
                self.cbuf.consume(n);
                left -= n;
            }
            if !continued {
                return Ok(());
            }
            self.cbuf.fill_to(&mut self.client, HEADER_LEN, idle).await.map_err(SessionError::ClientGone)?;
            let Some(h) = Header::parse(self.cbuf.filled()) else { unreachable!("four bytes are buffered") };
            left = h.total();
            continued = h.continued();
        }
    }

    /// Streams the backend's response to the client until the scanner sees its end. With
    /// `stmt_id`, the response is a PREPARE_OK whose statement id is replaced by it; the
    /// server's id and the parameter count are returned.
    pub(super) async fn relay_response(
        &mut self,
        expect: Expect,
        request_seq: u8,
        stmt_id: Option<u32>,
    ) -> Result<(Scanner, Option<(u32, u16)>), SessionError> {
        let backend = self.backend.as_ref().ok_or_else(no_backend)?;
        let tracking = backend.caps & crate::protocol::caps::SESSION_TRACK != 0;
        let mut scanner = Scanner::new(expect, backend.deprecate_eof()).tracking_session(tracking);
        let mut forwarded = false;
        let mut prepared = None;
        loop {
            if !self.bbuf.is_empty() {
                let (n, progress) = match scanner.feed(self.bbuf.filled()) {
                    Ok(r) => r,
                    Err(e) => {
                        let seq = if forwarded { scanner.last_seq } else { request_seq };
                        let addr = self.backend.as_ref().map(|b| b.addr).ok_or_else(no_backend)?;
                        let reason = format!("malformed response: {e}");
                        return self.backend_lost(seq.wrapping_add(1), addr, reason, scanner.at_boundary()).await;
                    }
                };
                if n > 0 {
                    if let (Some(id), false) = (stmt_id, forwarded) {
                        let out = self.bbuf.filled_mut();
                        if n >= HEADER_LEN + 9 && out[HEADER_LEN] == 0 {
                            let p = &mut out[HEADER_LEN..];
                            let server_id = u32::from_le_bytes([p[1], p[2], p[3], p[4]]);
                            let params = u16::from_le_bytes([p[7], p[8]]);
                            p[1..5].copy_from_slice(&id.to_le_bytes());
                            prepared = Some((server_id, params));
                        }
                    }
                    // The response is half read if this fails: the connection is unusable.
                    self.client.write_all(&self.bbuf.filled()[..n]).await.map_err(SessionError::ClientGone)?;
                    self.bbuf.consume(n);
                    self.trace.bytes += n as u64;
                    forwarded = true;
                }
                match progress {
                    Progress::Done => {
                        self.backend_clean = true;
                        return Ok((scanner, prepared));
                    }
                    Progress::LocalInfile => {
                        self.forward_local_infile().await?;
                        continue;
                    }
                    Progress::More => {}
                }
            }
            let backend = self.backend.as_mut().ok_or_else(no_backend)?;
            let addr = backend.addr;
            let presence = self.presence.clone();
            let read = async { Ok(self.bbuf.fill_from(&mut backend.stream, None).await) };
            let interrupted = async { Err(presence.aborted().await) };
            let read = match futures_lite::future::or(read, interrupted).await {
                Ok(r) => r,
                Err(super::Abort::Drain) => {
                    // Drains reach idle sessions only; this one is busy.
                    presence.abort.set(None);
                    continue;
                }
                Err(why) => {
                    let seq = if forwarded { scanner.last_seq } else { request_seq };
                    return self.interrupted(why, seq.wrapping_add(1), addr, scanner.at_boundary()).await;
                }
            };
            match read {
                Ok(n) if n > 0 => {
                    Slot::add(&self.ctx.slot().bytes_from_backends, n as u64);
                    if self.ctx.log().on && self.trace.first_byte.is_none() {
                        self.trace.first_byte = Some(std::time::Instant::now());
                    }
                }
                result => {
                    let reason = match result {
                        Err(e) => e.to_string(),
                        Ok(_) => "connection closed by the server".into(),
                    };
                    if self.retry_armed && !forwarded {
                        self.drop_backend();
                        return Err(SessionError::Retry);
                    }
                    let seq = if forwarded { scanner.last_seq } else { request_seq };
                    return self.backend_lost(seq.wrapping_add(1), addr, reason, scanner.at_boundary()).await;
                }
            }
        }
    }

    /// The shard interrupted the wait for the server's reply: the statement ran past
    /// `query_timeout_ms` (the client gets 1969 and the session goes on), or the drain time
    /// is over (1053, and the session ends). The connection, with a statement still running
    /// or a reply half read, is closed. A client in the middle of a reply cannot be told:
    /// it is disconnected.
    pub(super) async fn interrupted<T>(
        &mut self,
        why: super::Abort,
        seq: u8,
        addr: std::net::SocketAddr,
        at_boundary: bool,
    ) -> Result<T, SessionError> {
        self.presence.abort.set(if why == super::Abort::Stop { Some(why) } else { None });
        self.drop_backend();
        let reason = match why {
            super::Abort::Timeout => {
                format!("no reply within query_timeout_ms ({} ms)", self.config().proxy.query_timeout_ms)
            }
            super::Abort::Killed => "the statement was killed".into(),
            _ => "corelay's drain time is over".into(),
        };
        if !at_boundary {
            return Err(SessionError::BackendLost { addr, reason });
        }
        let lost = self
            .held_on_connection()
            .map_or_else(String::new, |held| format!("; what lived on that connection is gone ({held})"));
        self.forget_connection_state();
        if why == super::Abort::Timeout {
            let msg = format!(
                "Query execution was interrupted: no reply from {addr} within query_timeout_ms ({} ms); the connection was closed{lost}",
                self.config().proxy.query_timeout_ms
            );
            self.send_err(seq, code::STATEMENT_TIMEOUT, &msg).await;
            return Err(SessionError::StatementFailed { addr, reason });
        }
        if why == super::Abort::Killed {
            self.send_err(seq, code::QUERY_INTERRUPTED, "Query execution was interrupted").await;
            return Err(SessionError::StatementFailed { addr, reason });
        }
        let msg = format!(
            "Server shutdown in progress: corelay's drain time (proxy.drain_timeout_s) is over{lost}; reconnect"
        );
        self.send_err(seq, code::SERVER_SHUTDOWN, &msg).await;
        Err(SessionError::Shutdown)
    }

    /// LOAD DATA LOCAL INFILE: the client sends the file as packets ending with an empty
    /// one; pass them all to the backend.
    async fn forward_local_infile(&mut self) -> Result<(), SessionError> {
        loop {
            let idle = self.idle_timeout();
            self.cbuf.fill_to(&mut self.client, HEADER_LEN, idle).await.map_err(SessionError::ClientGone)?;
            let Some(h) = Header::parse(self.cbuf.filled()) else { unreachable!("four bytes are buffered") };
            self.forward_packet().await?;
            if h.len == 0 {
                return Ok(());
            }
        }
    }

    /// The borrowed connection failed mid-command. The client gets 1927 saying what was
    /// lost, and the session goes on with another connection next time: whatever lived on
    /// the dead connection (an open transaction, temporary tables, user variables, locks,
    /// cursors) is gone, which the message says, and the session's pins are cleared. Only a
    /// client in the middle of a packet cannot be told: it is disconnected.
    async fn backend_lost<T>(
        &mut self,
        seq: u8,
        addr: std::net::SocketAddr,
        reason: String,
        at_boundary: bool,
    ) -> Result<T, SessionError> {
        self.drop_backend();
        if !at_boundary {
            return Err(SessionError::BackendLost { addr, reason });
        }
        let msg = match self.held_on_connection() {
            None => {
                format!("Lost connection to db server {addr} during query ({reason}); the statement may not have run")
            }
            Some(held) => format!(
                "Lost connection to db server {addr} during query ({reason}); what lived on that connection is gone \
({held}); this session can go on"
            ),
        };
        self.send_err(seq, code::BACKEND_LOST, &msg).await;
        self.forget_connection_state();
        Err(SessionError::StatementFailed { addr, reason })
    }

    /// What the session holds on its connection, for a message saying it is gone ("the
    /// open transaction was rolled back; user variables, ..."), or None when it holds
    /// nothing there (a `dbconnect` pin is not state on the connection).
    fn held_on_connection(&self) -> Option<String> {
        let held = pin::names(self.pins & !(pin::DBCONNECT | pin::WARNINGS));
        if held.is_empty() && self.locks == 0 {
            return None;
        }
        let what = if held.is_empty() { "locks".to_string() } else { held.join(", ") };
        Some(format!("the open transaction was rolled back; {what}"))
    }

    /// The connection is gone and with it what the session held there.
    fn forget_connection_state(&mut self) {
        self.pins &= pin::DBCONNECT;
        self.locks = 0;
        self.stmts.cursor = None;
    }
}

/// Keeps a statement's text for the query log, cut to `max` characters, in `buf` (reused:
/// no allocation once it has grown).
pub(super) fn keep_sql(buf: &mut String, text: &[u8], max: usize) {
    buf.clear();
    buf.extend(String::from_utf8_lossy(text).chars().take(max));
}

fn set_bit(bits: &mut u32, bit: u32, on: bool) {
    if on {
        *bits |= bit;
    } else {
        *bits &= !bit;
    }
}

fn no_backend() -> SessionError {
    SessionError::BackendLost { addr: ([0, 0, 0, 0], 0).into(), reason: "no backend connection".into() }
}
