//! `KILL [HARD|SOFT] [CONNECTION|QUERY] <id>` with an id corelay handed out
//! (`CONNECTION_ID()` through corelay is corelay's id, not a server thread id): corelay
//! kills the statement on the backend connection serving that session now, or, for a
//! statement waiting on a pipelined connection, interrupts it there. Other forms (KILL
//! USER, KILL QUERY ID) go to the server as they are.

use super::super::error::Step;
use super::super::shard::Abort;
use super::super::Session;
use crate::net::{Connector, Transport};
use crate::protocol::code;
use crate::protocol::command as cmd;
use crate::protocol::packet::write_packet;
use crate::protocol::scanner::Expect;
use crate::router::lexer::{Lexer, Token};

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

impl<C: Transport, N: Connector> Session<'_, C, N> {
    /// `KILL [QUERY] <id>` with an id corelay handed out: acts on the backend connection
    /// serving that session now (and, for KILL CONNECTION, ends the session before its next
    /// command). Sessions of other shards cannot be reached: shards share nothing.
    pub(in crate::session) async fn kill(&mut self, seq: u8, query_only: bool, id: u64) -> Step {
        let target = u32::try_from(id).ok().and_then(|i| self.shard.session(i));
        let Some(target) = target else {
            let shard = id >> 24;
            let msg = if shard as usize != self.shard.index {
                format!("Unknown thread id: {id} (KILL reaches sessions of the same corelay shard only; this is shard {}, that id belongs to shard {shard})", self.shard.index)
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
            target.abort(Abort::Killed);
            return self.ok_reply(seq).await;
        }
        let Some((server, thread)) = target.backend.get() else {
            return self.ok_reply(seq).await;
        };
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
        let mut p = vec![cmd::QUERY];
        p.extend_from_slice(sql.as_bytes());
        write_packet(&mut req, 0, &p);
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
