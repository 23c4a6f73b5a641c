//! `KILL [HARD|SOFT] [CONNECTION|QUERY] <id>` with an id corelay handed out
//! (`CONNECTION_ID()` through corelay is corelay's id, not a server thread id), for a
//! session of any shard: the shard that owns the session (the id's top byte) checks that
//! the asker is the session's own product user and says where its statement runs
//! (asked through its mailbox in the status region, [`crate::status::mailbox`], when it is
//! another shard); corelay then kills the statement on that backend connection, or, for a
//! statement waiting on a pipelined connection, the owner interrupts it there. Other forms
//! (KILL USER, KILL QUERY ID) go to the server as they are.

use std::time::{Duration, Instant};

use super::super::error::Step;
use super::super::Session;
use crate::net::{Connector, Transport};
use crate::protocol::code;
use crate::protocol::command as cmd;
use crate::protocol::packet::write_command;
use crate::protocol::scanner::Expect;
use crate::router::lexer::{Lexer, Token};
use crate::status::mailbox::{self, KillRequest, Verdict};

/// `KILL [HARD|SOFT] [CONNECTION|QUERY] <id>`: (query only, id). Other forms (KILL USER,
/// KILL QUERY ID) are not recognised and go to the server as they are.
pub fn parse(sql: &[u8]) -> Option<(bool, u64)> {
    let mut lex = Lexer::new(sql).peekable();
    if !lex.next()?.is_word("KILL") {
        return None;
    }
    if lex.peek().is_some_and(|t| t.is_word("HARD") || t.is_word("SOFT")) {
        lex.next();
    }
    let mut query = false;
    if lex.peek().is_some_and(|t| t.is_word("CONNECTION") || t.is_word("QUERY")) {
        query = lex.next()?.is_word("QUERY");
    }
    let Token::Number(n) = lex.next()? else { return None };
    let id = std::str::from_utf8(n).ok()?.parse().ok()?;
    match lex.next() {
        None | Some(Token::Punct(b';')) => Some((query, id)),
        _ => None,
    }
}

/// How long a KILL waits for another shard to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

impl<C: Transport, N: Connector> Session<'_, C, N> {
    /// `KILL [QUERY] <id>` with an id corelay handed out, for a session of any shard (the
    /// shard is the id's top byte): only the session's own product user may, or a user
    /// with `admin = true`. Acts on the
    /// backend connection serving that session now (and, for KILL CONNECTION, ends the
    /// session before its next command).
    pub(in crate::session) async fn kill(&mut self, seq: u8, query_only: bool, id: u64) -> Step {
        let user = match self.user {
            Some(u) if self.config.users.get(u).is_some_and(|u| u.admin) => mailbox::ADMIN,
            Some(u) => u32::try_from(u).unwrap_or(mailbox::ADMIN - 1),
            None => mailbox::ADMIN - 1,
        };
        let verdict = match u32::try_from(id) {
            Ok(target) => self.kill_verdict(KillRequest { target, query_only, user }).await,
            Err(_) => Ok(Verdict::NoSuchSession),
        };
        match verdict {
            Err(msg) => {
                self.send_err(seq, code::UNKNOWN_ERROR, &msg).await;
                Ok(())
            }
            Ok(Verdict::NoSuchSession) => {
                self.send_err(seq, code::NO_SUCH_THREAD, &format!("Unknown thread id: {id}")).await;
                Ok(())
            }
            Ok(Verdict::NotOwner) => {
                self.send_err(seq, code::KILL_DENIED, &format!("You are not owner of thread {id}")).await;
                Ok(())
            }
            Ok(Verdict::Done) => self.ok_reply(seq).await,
            Ok(Verdict::KillOn { server, thread }) => {
                self.kill_on_backend(seq, query_only, server as usize, thread).await
            }
        }
    }

    /// The owning shard's verdict: this shard's own, or one asked through the owner's
    /// mailbox in the status region. Err: a message for the client (no answer).
    async fn kill_verdict(&mut self, req: KillRequest) -> Result<Verdict, String> {
        let owner = (req.target >> 24) as usize;
        if owner == self.shard.index {
            return Ok(self.shard.kill_verdict(req));
        }
        let status = self.shard.status.clone();
        if owner >= status.shards() {
            return Ok(Verdict::NoSuchSession);
        }
        let Some(ticket) = status.mailbox(owner).post(req) else {
            return Err(format!("KILL: shard {owner} has too many KILL requests waiting; try again"));
        };
        status.doorbell(owner).ring();
        let deadline = Instant::now() + ANSWER_WITHIN;
        let mut pause = Duration::from_micros(100);
        loop {
            if let Some(v) = ticket.verdict() {
                return Ok(v);
            }
            if Instant::now() >= deadline {
                return ticket.abandon().ok_or_else(|| {
                    format!("KILL: shard {owner} did not answer within {} s; try again", ANSWER_WITHIN.as_secs())
                });
            }
            self.shard.connector.sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }

    /// Kills the statement (or the connection) `thread` on `server`, over a connection of
    /// this session's to that server.
    async fn kill_on_backend(&mut self, seq: u8, query_only: bool, server: usize, thread: u32) -> Step {
        if self.held.conn.as_ref().is_some_and(|b| b.key.server != server) {
            let msg = "KILL: this session holds a connection to another server; finish its transaction first";
            self.send_err(seq, code::UNKNOWN_ERROR, msg).await;
            return Ok(());
        }
        let primary = self.key.map(|k| k.server);
        self.held.route = (Some(server) != primary).then_some(server);
        if let Err(e) = self.ensure_backend().await {
            self.report_acquire_error(seq, e).await;
            return Ok(());
        }
        let sql = format!("KILL {}{thread}", if query_only { "QUERY " } else { "" });
        let mut req = Vec::new();
        write_command(&mut req, cmd::QUERY, sql.as_bytes());
        let result = match self.held.conn.as_mut() {
            Some(b) => b.exchange(&req, &[Expect::ResultSets], &mut self.held.buf).await,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_statements() {
        assert_eq!(parse(b"KILL 5"), Some((false, 5)));
        assert_eq!(parse(b"kill connection 16777217;"), Some((false, 16777217)));
        assert_eq!(parse(b"KILL QUERY 7"), Some((true, 7)));
        assert_eq!(parse(b"KILL HARD QUERY 7"), Some((true, 7)));
        assert_eq!(parse(b"KILL USER bob"), None);
        assert_eq!(parse(b"KILL QUERY ID 7"), None);
        assert_eq!(parse(b"SELECT 1"), None);
    }
}
