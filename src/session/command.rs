//! The command in flight: what it is (its class for the counters), where it went (the
//! server), and its timings for the query log. Reset at every command; accounted in the
//! shard's status slot when it ends.

use std::time::Instant;

use super::Session;
use crate::net::{Connector, Transport};
use crate::protocol::command as cmd;
use crate::status::{Class, Slot};

/// Statement bytes kept for a fingerprint's text (which is cut far shorter).
const DIGEST_SQL_MAX: usize = 4096;

/// The per-command context.
#[derive(Debug)]
pub(super) struct CommandContext {
    /// The class of the command being served, for the counters and histograms.
    pub class: Class,
    /// The server it was sent to.
    pub server: Option<usize>,
    /// When it started, when commands are timed.
    pub started: Option<Instant>,
    /// The session's pins before it (the pins it started are counted).
    pub pins_before: u32,
    /// The variables of a `SET STATEMENT ... FOR` it runs (see
    /// [`crate::protocol::ok::ClientView::eof_flag`]).
    pub statement_vars: Vec<String>,
    /// The statement's fingerprint, when digests are on, and its text (reused buffer,
    /// read only when the fingerprint is new to the shard's table).
    pub digest: Option<u64>,
    pub digest_sql: Vec<u8>,
    /// A rule (or the hook) wants the statement in the query log whatever its time.
    pub log_forced: bool,
    /// A rule's (or the hook's) cap on the statement's time.
    pub kill_after: Option<std::time::Duration>,
    pub trace: Trace,
}

impl Default for CommandContext {
    fn default() -> CommandContext {
        CommandContext {
            class: Class::Other,
            server: None,
            started: None,
            pins_before: 0,
            statement_vars: Vec::new(),
            digest: None,
            digest_sql: Vec::new(),
            log_forced: false,
            kill_after: None,
            trace: Trace::default(),
        }
    }
}

/// One command's timings and results, for the query log (kept only when it is on).
#[derive(Debug, Default)]
pub(super) struct Trace {
    /// The command's last byte went to the server.
    pub sent: Option<Instant>,
    /// The first byte of the reply came back.
    pub first_byte: Option<Instant>,
    /// Reply bytes passed to the client.
    pub bytes: u64,
    /// Rows affected, rows of the result set, warnings.
    pub rows: u64,
    pub rows_sent: u64,
    pub warnings: u64,
    pub error: u16,
    pub thread: u32,
    /// The statement, cut to `log_sql_max_chars` (reused buffer).
    pub sql: String,
}

impl Trace {
    /// A new command: forget the last one's figures (the SQL buffer is kept for reuse).
    fn start(&mut self) {
        self.sent = None;
        self.first_byte = None;
        self.bytes = 0;
        self.rows = 0;
        self.rows_sent = 0;
        self.warnings = 0;
        self.error = 0;
        self.sql.clear();
    }

    /// Keeps a statement's text for the query log, password literals redacted, cut to
    /// `max` characters (no allocation once the buffer has grown, unless redacted).
    pub fn keep_sql(&mut self, text: &[u8], max: usize) {
        self.sql.clear();
        let text = crate::log::redact::redact(text);
        self.sql.extend(String::from_utf8_lossy(&text).chars().take(max));
    }
}

impl CommandContext {
    /// A new command begins at `now` with the session's `pins`; `timed` and `traced` (its
    /// figures are kept: for the log or the digests) from the shard's log policy.
    pub fn begin(&mut self, now: Instant, pins: u32, timed: bool, traced: bool) {
        self.class = Class::Other;
        self.server = None;
        self.pins_before = pins;
        self.statement_vars.clear();
        self.digest = None;
        self.log_forced = false;
        self.kill_after = None;
        self.started = timed.then_some(now);
        if traced {
            self.trace.start();
        }
    }

    /// The statement about to run has fingerprint `digest` and text `sql` (kept up to what
    /// a fingerprint's text needs).
    pub fn fingerprint(&mut self, digest: u64, sql: &[u8]) {
        self.digest = Some(digest);
        self.digest_sql.clear();
        self.digest_sql.extend_from_slice(&sql[..sql.len().min(DIGEST_SQL_MAX)]);
    }
}

impl<C: Transport, N: Connector> Session<'_, C, N> {
    /// The command's last byte went to the server.
    pub(super) fn trace_sent(&mut self) {
        if self.shard.log().on {
            self.cmd.trace.sent = Some(Instant::now());
        }
    }

    /// The command goes to connection `thread` of server `server`.
    pub(super) fn trace_server(&mut self, server: usize, thread: u32) {
        self.cmd.server = Some(server);
        self.cmd.trace.thread = thread;
    }

    /// Counts a finished command in the shard's slot: its class, its latency (per class and
    /// per server), and the pins it started; slow or failed statements go to the query log.
    pub(super) fn account(&self, command: u8) {
        let slot = self.shard.slot();
        let (status, shard) = (&self.shard.status, self.shard.index);
        Slot::add(&slot.statements[self.cmd.class as usize], 1);
        if let Some(n) = self.cmd.server.and_then(|id| slot.server_statements.get(id)) {
            Slot::add(n, 1);
        }
        if let Some(started) = self.cmd.started {
            let end = Instant::now();
            let us = end.duration_since(started).as_micros() as u64;
            let log = self.shard.log();
            let wanted = us >= log.min_us || self.cmd.trace.error != 0 || self.cmd.log_forced;
            if log.on && wanted && command != cmd::QUIT {
                self.log_statement(command, started, end);
            }
            if log.histograms {
                status.latency(shard, self.cmd.class).record(us);
                if let Some(b) = self.cmd.server.and_then(|id| status.server_latency(shard, id)) {
                    b.record(us);
                }
            }
            if let Some(digest) = self.cmd.digest.filter(|_| log.digests) {
                self.count_digest(digest, us, log.digest_text_max_chars);
            }
        }
        let new_pins = self.recorded.pins & !self.cmd.pins_before;
        if new_pins != 0 {
            slot.pinned(new_pins);
        }
    }

    /// Counts the statement in the shard's digest table.
    fn count_digest(&self, hash: u64, us: u64, max_chars: usize) {
        use crate::status::digests::{Sample, Side};
        let side = match self.cmd.server.and_then(|id| self.config.server(id)).map(|s| s.role) {
            Some(crate::config::Role::Primary) => Side::Primary,
            Some(crate::config::Role::Replica) => Side::Replica,
            None => Side::None,
        };
        let t = &self.cmd.trace;
        let sample = Sample {
            hash,
            user: self.user.map_or(u32::MAX, |u| u as u32),
            side,
            schema: self.recorded.schema.as_deref().unwrap_or(""),
            us,
            rows_sent: t.rows_sent,
            rows_affected: t.rows,
            error: t.error != 0,
            warnings: t.warnings,
            now_ms: crate::util::time::unix_ms(),
        };
        let table = self.shard.status.digests(self.shard.index);
        let generation = self.shard.status.header().digest_generation.load(std::sync::atomic::Ordering::Relaxed);
        let sql = &self.cmd.digest_sql;
        self.shard
            .digests
            .borrow_mut()
            .record(&table, generation, &sample, || crate::router::digest::text(sql, max_chars));
    }

    /// One statement line in the query log.
    fn log_statement(&self, command: u8, started: Instant, end: Instant) {
        let t = &self.cmd.trace;
        let us = |a: Instant, b: Instant| b.saturating_duration_since(a).as_micros() as u64;
        let sent = t.sent.unwrap_or(started);
        let first = t.first_byte.unwrap_or(end);
        let server = self.cmd.server.and_then(|id| self.config.server(id)).map_or("", |s| s.address.as_str());
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
}
