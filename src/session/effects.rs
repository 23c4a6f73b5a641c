//! The one place a statement's effects are applied, for the text and the prepared path
//! alike, and the one place what the previous statement left is put back before a
//! statement that reads it.
//!
//! Both paths analyse a statement once ([`crate::router::statement::analyse`]: the text
//! path per COM_QUERY, the prepared path at PREPARE, kept with the statement) and, once
//! the reply is in, call [`Session::finish_statement`]. Commands that are not statements
//! (COM_INIT_DB, COM_PING, ...) apply only what their reply says
//! ([`Session::after_response`]).

use std::borrow::Cow;
use std::io::Write as _;

use super::recorded::Warned;
use super::Session;
use crate::net::{Connector, Transport};
use crate::protocol::command as cmd;
use crate::protocol::packet::{write_packet, HEADER_LEN};
use crate::protocol::scanner::{Expect, Scanner};
use crate::router::classify::Class;
use crate::router::statement::{Effects, Previous};
use crate::status::Slot;

impl<C: Transport, N: Connector> Session<'_, C, N> {
    /// After a statement's complete reply: its effects (pins, locks, assignments, schema,
    /// row count, the time of a write, an insert id it may have set out of sight), then
    /// what the reply says, then the connection goes back if nothing pins it.
    pub(super) fn finish_statement(&mut self, fx: &Effects, reply: &Scanner, class: Class) {
        let conn = self.held.conn.as_mut().map(|b| &mut b.state);
        self.recorded.apply_statement(fx, reply, class, conn);
        if fx.previous.may_set_insert_id {
            // LAST_INSERT_ID(expr) or a procedure may have set the connection's value: it
            // stays the session's while it holds the connection, and the next borrower
            // sets its own.
            self.held.insert_id_set_here = true;
            if let Some(b) = self.held.conn.as_mut() {
                b.state.last_insert_id = None;
            }
        }
        self.after_response(reply);
    }

    /// After any complete response: error and row figures for the log and the counters,
    /// what the reply says of the session's state, then give the connection back if
    /// nothing pins it.
    pub(super) fn after_response(&mut self, reply: &Scanner) {
        self.held.clean = true;
        self.note_reply(reply);
        self.recorded.apply_reply(reply, self.held.conn.as_mut().map(|b| &mut b.state));
        self.release_if_unpinned();
    }

    /// What a reply says of its statement, for the counters, the query log and the
    /// digests: its error, the rows it affected and sent, its warnings.
    pub(super) fn note_reply(&mut self, reply: &Scanner) {
        if let Some(code) = reply.error {
            let slot = self.shard.slot();
            Slot::add(&slot.error_replies, 1);
            if let Some(e) = self.cmd.server.and_then(|id| slot.server_errors.get(id)) {
                Slot::add(e, 1);
            }
            self.cmd.trace.error = code;
        }
        if let Some(ok) = reply.ok {
            self.cmd.trace.rows = ok.affected_rows;
        }
        self.cmd.trace.rows_sent = reply.rows;
        self.cmd.trace.warnings = u64::from(reply.warnings);
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
    pub(super) async fn replay_last_statement(&mut self, previous: Previous, held: bool, warned: Option<&Warned>) {
        let fresh = !held;
        let n = self.recorded.last_insert_id;
        let sync = previous.reads_insert_id
            && !self.held.insert_id_set_here
            && self.held.conn.as_ref().is_some_and(|b| b.state.last_insert_id != Some(n));
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
        // The pipelined read run again: a text command as it is; an EXECUTE on the
        // statement as this connection has it prepared (which may take a round trip).
        let mut executed = None;
        let again: Option<Cow<'_, [u8]>> = match (fresh, warned) {
            (true, Some(Warned::Text(packet))) => Some(Cow::Borrowed(packet)),
            (true, Some(Warned::Execute { id, payload })) => match self.prepared_on_backend(*id).await {
                Ok(Ok((server_id, sent))) if payload.len() >= 5 => {
                    executed = Some(sent);
                    let mut p = payload.clone();
                    p[1..5].copy_from_slice(&server_id.to_le_bytes());
                    let mut packet = Vec::with_capacity(p.len() + HEADER_LEN);
                    write_packet(&mut packet, 0, &p);
                    Some(Cow::Owned(packet))
                }
                _ => None,
            },
            _ => None,
        };
        let Some(b) = self.held.conn.as_mut() else {
            // Preparing it there failed and took the connection with it.
            let _ = self.ensure_routed().await;
            return;
        };
        // One round trip: the DO, the pipelined read run again, and, since both leave
        // ROW_COUNT() at -1, a ping when the session's last command left it at 0.
        let mut packets = Vec::with_capacity(text.len() + 2 * HEADER_LEN + 1 + again.as_ref().map_or(0, |p| p.len()));
        let mut expect = Vec::with_capacity(3);
        if text.len() > 1 {
            write_packet(&mut packets, 0, &text);
            expect.push(Expect::ResultSets);
        }
        // The server counts definitions it sends there as sent to the client.
        let mut track = None;
        if let Some(packet) = &again {
            packets.extend_from_slice(packet);
            track = executed.map(|sent| (expect.len(), sent));
            expect.push(Expect::ResultSets);
        }
        if expect.is_empty() {
            return;
        }
        if self.recorded.row_count == 0 {
            write_packet(&mut packets, 0, &[cmd::PING]);
            expect.push(Expect::Single);
        }
        let ok = b.exchange_tracking(&packets, &expect, &mut self.held.buf, track).await.is_ok();
        if ok && sync {
            b.state.last_insert_id = Some(n);
        }
        if !ok {
            self.drop_backend();
            let _ = self.ensure_routed().await;
        }
    }
}
