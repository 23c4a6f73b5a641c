//! What the rules and an embedder's hook decide for a statement ([`crate::router::hook`]),
//! and carrying it out: a refusal answered here, a route given to the router, a pin, a
//! forced log line, and a time cap enforced with KILL QUERY on the server.

use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use super::error::{SessionError, Step};
use super::held::login_for;
use super::retry::Outgoing;
use super::shard::ShardState;
use super::Session;
use crate::backend::{self, Key};
use crate::net::{Buffer, Connector, Transport};
use crate::protocol::code::Code;
use crate::protocol::command as cmd;
use crate::protocol::packet::write_command;
use crate::protocol::scanner::{Expect, Scanner};
use crate::router::classify::{Class, Hint};
use crate::router::hook::{self, Auth, Decision, Outcome, Refusal, Route, Statement};
use crate::router::statement::pin;
use crate::status::Slot;

impl<C: Transport, N: Connector> Session<'_, C, N> {
    /// What the shard's rules, then the installed hook, decide for statement `text` (None:
    /// nothing, or no rules and no hook).
    pub(super) fn decide(&self, text: &[u8], class: Class, fingerprint: u64, prepared: bool) -> Option<Decision> {
        let rules = self.shard.rules();
        let hook = hook::installed();
        if rules.is_empty() && hook.is_none() {
            return None;
        }
        let user_index = self.user?;
        let s = Statement {
            text,
            user: self.user_name(),
            user_index,
            schema: self.recorded.schema.as_deref(),
            client: self.peer.ip(),
            class,
            fingerprint,
            prepared,
            shard: self.shard.index,
        };
        let mut d = Decision::default();
        if !rules.is_empty() {
            crate::router::hook::Hook::on_statement(&*rules, &s, &mut d);
        }
        if let Some(h) = hook {
            h.on_statement(&s, &mut d);
        }
        (!d.is_empty()).then_some(d)
    }

    /// Takes in what `d` says before the statement is routed: the route (as a hint for
    /// [`crate::router::pick`], over the statement's own), the pin, the log line and the
    /// time cap. Returns the hint to route with.
    pub(super) fn take_decision(&mut self, d: &Decision, hint: Option<Hint>) -> Option<Hint> {
        if d.pin {
            self.recorded.pins |= pin::NO_MULTIPLEX;
        }
        self.cmd.log_forced = d.log;
        self.cmd.kill_after = d.timeout;
        match d.route {
            None => hint,
            Some(Route::Primary) => Some(Hint::Primary),
            Some(Route::Replica) => Some(Hint::Replica),
            Some(Route::Server(addr)) => match self.config.servers().find(|s| s.addr == addr) {
                Some(s) => Some(Hint::Server(s.id)),
                None => hint,
            },
        }
    }

    /// Answers the command in the client buffer with `refusal` (a rule's or a hook's); the
    /// command is read whole and nothing reaches a server.
    pub(super) async fn refuse_statement(&mut self, reply_seq: u8, refusal: &Refusal) -> Step {
        self.read_local_packet(reply_seq).await?;
        self.cmd.trace.error = refusal.code;
        self.send_err(reply_seq, code_of(refusal), &refusal.message).await;
        Ok(())
    }

    /// Asks the installed hook about the login of `user` (counted as theirs already): a
    /// refusal is the client's answer.
    pub(super) async fn hook_auth(&mut self, user: usize, schema: Option<&str>, seq: u8) -> Result<(), SessionError> {
        let Some(hook) = hook::installed() else { return Ok(()) };
        let auth = Auth {
            user: &self.config.users[user].name,
            client: self.peer.ip(),
            schema,
            tls: self.client.tls().is_some(),
        };
        let Some(r) = hook.on_auth(&auth) else { return Ok(()) };
        self.counted.set_user(None);
        Slot::add(&self.shard.slot().clients_rejected, 1);
        self.send_err(seq, code_of(&r), &r.message).await;
        Err(SessionError::LoginRefused(r.message))
    }

    /// Tells the installed hook how the command ended.
    pub(super) fn hook_result(&self, hook: &dyn hook::Hook) {
        let t = &self.cmd.trace;
        let server = self.cmd.server.and_then(|id| self.config.server(id)).map(|s| s.addr);
        hook.on_result(&Outcome {
            user: self.user_name(),
            fingerprint: self.cmd.digest,
            server,
            error: t.error,
            rows_sent: t.rows_sent,
            rows_affected: t.rows,
            warnings: t.warnings,
            elapsed: self.cmd.started.map(|s| s.elapsed()),
        });
    }

    /// Sends a statement with [`Session::send_statement`], under the time cap a rule or the
    /// hook set for it (`cmd.kill_after`), if any.
    pub(super) async fn send_judged(&mut self, what: Outgoing, retryable: bool) -> Step<Option<Scanner>> {
        match self.cmd.kill_after {
            None => self.send_statement(what, retryable).await,
            Some(after) => self.send_capped(what, retryable, after).await,
        }
    }

    /// Sends a statement as [`Session::send_statement`] does, capped at `after`: when it
    /// runs longer, its statement is killed on the server (KILL QUERY over another
    /// connection) and the client gets what the server answers then. The connection stays
    /// the session's. A KILL under way when the reply comes is waited for, so that it
    /// cannot reach the connection's next statement.
    async fn send_capped(&mut self, what: Outgoing, retryable: bool, after: Duration) -> Step<Option<Scanner>> {
        let (shard, presence, key) = (self.shard, self.presence.clone(), self.key);
        let killing = Cell::new(Kill::Waiting);
        let killer = async {
            shard.connector.sleep(after).await;
            if let (Some((server, thread)), Some(key), Kill::Waiting) = (presence.backend.get(), key, killing.get()) {
                killing.set(Kill::Sending);
                kill_query(shard, key, server, thread, after).await;
            }
            killing.set(Kill::Done);
        };
        let mut send = pin!(self.send_statement(what, retryable));
        let mut killer = pin!(killer);
        let mut result = None;
        std::future::poll_fn(|cx| {
            if result.is_none() {
                if let Poll::Ready(r) = send.as_mut().poll(cx) {
                    result = Some(r);
                }
            }
            if killing.get() != Kill::Done && killer.as_mut().poll(cx).is_ready() {
                killing.set(Kill::Done);
            }
            match (&result, killing.get()) {
                (Some(_), Kill::Waiting | Kill::Done) => Poll::Ready(()),
                _ => Poll::Pending,
            }
        })
        .await;
        result.unwrap_or(Ok(None))
    }
}

/// The error a refusal is sent as: 1148 with its SQLSTATE (42000), other codes as HY000.
pub(super) fn code_of(r: &Refusal) -> Code {
    let state = if r.code == crate::config::rules::DEFAULT_ERROR_CODE { "42000" } else { "HY000" };
    Code::new(r.code, state)
}

/// Where a statement's time cap stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    Waiting,
    Sending,
    Done,
}

/// Kills statement `thread` on `server`, over a connection of its own for `key`'s db user
/// (closed after: the KILL must not wait for the pool).
async fn kill_query<N: Connector>(shard: &ShardState<N>, mut key: Key, server: usize, thread: u32, after: Duration) {
    key.server = server;
    let config = shard.config();
    let Some(s) = config.server(server) else { return };
    let login = login_for(&config, key, None, key.caps, false);
    let mut buf = Buffer::new();
    let timeout = Duration::from_millis(s.connect_timeout_ms);
    let sql = format!("KILL QUERY {thread}");
    let mut req = Vec::new();
    write_command(&mut req, cmd::QUERY, sql.as_bytes());
    let result = match backend::connect(&shard.connector, s.addr, timeout, &login, key, &mut buf).await {
        Ok(mut b) => {
            let r = b.exchange(&req, &[Expect::ResultSets], &mut buf).await;
            b.quit().await;
            r.map_err(|e| e.to_string())
                .and_then(|r| r.into_iter().next().and_then(|r| r.err).map_or(Ok(()), |e| Err(e.message)))
        }
        Err(e) => Err(e.to_string()),
    };
    let ms = after.as_millis();
    match result {
        Ok(()) => {
            tracing::info!(server = %s.address, thread, "a rule's timeout_ms ({ms} ms) passed: KILL QUERY {thread}")
        }
        Err(e) => {
            tracing::warn!(server = %s.address, thread, "a rule's timeout_ms ({ms} ms) passed; KILL QUERY {thread} failed: {e}")
        }
    }
}
