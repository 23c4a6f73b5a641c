//! COM_QUERY: a text statement (or a batch of them).
//!
//! The text is read for what corelay must know (see [`crate::router`]): statements corelay
//! answers itself ([`super::local`]), where it may run, and what it does to session state.
//! A stateless read may go down a pipelined connection shared with other sessions; the
//! rest borrows (or keeps) a connection of the session's own, is sent (retried if it may
//! be: [`super::retry`]), and its effects are applied when the reply is in
//! ([`Session::finish_statement`]).

use super::error::{Halt, SessionError, Step};
use super::local;
use super::recorded::Warned;
use super::retry::Outgoing;
use super::Session;
use crate::net::{Connector, Transport};
use crate::protocol::packet::{Header, HEADER_LEN};
use crate::protocol::scanner::{Expect, Scanner};
use crate::router::classify::{self, Class};
use crate::router::statement::{self, pin};
use crate::status::Slot;

impl<C: Transport, N: Connector> Session<'_, C, N> {
    /// COM_QUERY with header `h` (its command byte is buffered).
    pub(super) async fn query(&mut self, h: Header) -> Step {
        let reply_seq = h.seq.wrapping_add(1);
        if !h.continued() {
            let idle = self.idle_timeout();
            self.cbuf.fill_to(&mut self.client, h.total(), idle).await.map_err(SessionError::ClientGone)?;
        }
        let end = h.total().min(self.cbuf.len());
        let text = &self.cbuf.filled()[HEADER_LEN + 1..end];
        let local = (!h.continued()).then(|| local::recognise(text)).flatten();
        if let Some(local) = local.filter(|l| !self.server_answers(l)) {
            self.cbuf.consume(h.total());
            return self.answer_local(reply_seq, local).await;
        }
        let log = self.shard.log();
        if log.on {
            self.cmd.trace.keep_sql(text, log.sql_max_chars);
        }
        let mut fx = statement::analyse(text);
        if log.digests {
            self.cmd.fingerprint(fx.digest, text);
        }
        if h.continued() {
            // A statement of 16 MiB or more streams through: only its first packet was
            // read, and what the rest does to the session is not known.
            fx.pin(pin::UNANALYSED);
            fx.reads_only = false;
        }
        let mut class = fx.class;
        if self.read_only_transactions_allowed() && classify::is_read_only_transaction(text) {
            class = Class::Read;
        }
        let mut hint = classify::hint(text);
        let decision = self.decide(text, class, fx.digest, false);
        if let Some(d) = &decision {
            if let Some(refusal) = &d.error {
                return self.refuse_statement(reply_seq, refusal).await;
            }
            hint = self.take_decision(d, hint);
        }
        self.cmd.statement_vars.clone_from(&fx.statement_vars);
        let warned = self.recorded.warned_before(&fx);
        self.recorded.statement_begins(&fx, warned.is_some());
        self.route_statement(class, hint);
        let pipelinable = fx.pipelinable(class) && !h.continued() && self.cmd.kill_after.is_none();
        if pipelinable && self.may_pipeline(h.total()) && self.query_on_pipe(h, fx.selects).await? {
            return Ok(());
        }
        let held = self.held.conn.is_some();
        if let Err(e) = self.ensure_routed().await {
            return self.refuse_command(reply_seq, e).await;
        }
        self.replay_last_statement(fx.previous, held, warned.as_ref()).await;
        let retryable = self.retryable(&fx, h);
        let reply = self.send_judged(Outgoing::Text(h), retryable).await?;
        let reply = reply.ok_or(SessionError::Internal("a text statement ended without its reply"))?;
        self.finish_statement(&fx, &reply, class);
        Ok(())
    }

    /// Sends a stateless read (whole in the client buffer) down a pipelined connection.
    /// Returns false when it did not go there (no pipe to be had, or the pipe failed before
    /// any byte of the reply reached the client): the ordinary path sends it then.
    async fn query_on_pipe(&mut self, h: Header, selects: bool) -> Step<bool> {
        let pipe = match self.pipe().await {
            Ok(Some(pipe)) => pipe,
            Ok(None) => return Ok(false),
            Err(e) => {
                self.refuse_command(h.seq.wrapping_add(1), e).await?;
                return Ok(true);
            }
        };
        match self.query_piped(&pipe, h).await {
            Ok(reply) => {
                if reply.warnings > 0 || reply.error.is_some() {
                    // SHOW WARNINGS next would run on another connection: keep the
                    // statement to run there first.
                    self.recorded.warned = Some(Warned::Text(self.cbuf.filled()[..h.total()].to_vec()));
                }
                self.cbuf.consume(h.total());
                self.after_piped(&reply, selects);
                Ok(true)
            }
            Err(Halt::Retry) => {
                Slot::add(&self.shard.slot().retries, 1);
                Ok(false)
            }
            Err(e) => {
                self.cbuf.consume(h.total());
                Err(e)
            }
        }
    }

    /// One attempt at a text statement on the held connection: from the client buffer
    /// when `buffered` (a write failure then is [`Halt::Retry`]: nothing was sent), else
    /// forwarded as it arrives.
    pub(super) async fn query_once(&mut self, h: Header, buffered: bool) -> Step<Scanner> {
        self.held.clean = false;
        if buffered {
            self.send_buffered(h.total(), None).await?;
        } else {
            self.forward_packet().await?;
        }
        Ok(self.relay_response(Expect::ResultSets, h.seq, None, None).await?.0)
    }
}
