//! `dbconnect master|primary`, `dbconnect <ip>:<port>`, `dbconnect release`: the
//! original's session commands that pin a session to a server of its cluster (its
//! primary, or a named server) until released. Answered by corelay; the pin is the
//! session's (`pin::DBCONNECT`), not state on the connection.

use super::super::error::Step;
use super::super::Session;
use crate::net::{Connector, Transport};
use crate::protocol::code;
use crate::router::lexer::{Lexer, Token};
use crate::router::statement::pin;

/// The original's session commands, answered by the proxy: `dbconnect master`,
/// `dbconnect <ip>:<port>`, and `dbconnect release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbConnect {
    Primary,
    Server(String),
    Release,
}

/// A `dbconnect ...` session command, if the text is one.
pub fn parse(sql: &[u8]) -> Option<DbConnect> {
    let mut lex = Lexer::new(sql);
    if !lex.next()?.is_word("DBCONNECT") {
        return None;
    }
    let arg = lex.next()?;
    let rest_start = lex.offset();
    let text = match arg {
        Token::Word(w) if w.eq_ignore_ascii_case(b"master") || w.eq_ignore_ascii_case(b"primary") => {
            return Some(DbConnect::Primary)
        }
        Token::Word(w) if w.eq_ignore_ascii_case(b"release") => return Some(DbConnect::Release),
        Token::Number(_) | Token::Word(_) | Token::Str(_) => {
            // ip:port (or 'ip:port'): take the rest of the text up to ';'.
            let start = rest_start - token_len(&arg);
            let tail = &sql[start..];
            let end = tail.iter().position(|&c| c == b';' || c.is_ascii_whitespace()).unwrap_or(tail.len());
            String::from_utf8_lossy(&tail[..end]).trim_matches(|c| c == '\'' || c == '"').to_string()
        }
        _ => return None,
    };
    Some(DbConnect::Server(text))
}

fn token_len(t: &Token<'_>) -> usize {
    match t {
        Token::Word(w) | Token::Number(w) | Token::Str(w) => w.len(),
        _ => 0,
    }
}

impl<C: Transport, N: Connector> Session<'_, C, N> {
    /// `dbconnect master|<ip>:<port>|release`: pins the session to a server of its cluster
    /// (or ends the pin), answered by the proxy.
    pub(in crate::session) async fn dbconnect(&mut self, seq: u8, cmd: DbConnect) -> Step {
        let (Some(key), Some(user)) = (self.key, self.user) else { return Ok(()) };
        let config = self.config.clone();
        let cluster = config.cluster_of(user);
        let target = match &cmd {
            DbConnect::Release => {
                self.recorded.pins &= !pin::DBCONNECT;
                self.release_if_unpinned();
                return self.ok_reply(seq).await;
            }
            DbConnect::Primary => cluster.primary().id,
            DbConnect::Server(addr) => {
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
        if let Some(b) = &self.held.conn {
            if b.key.server != target {
                let msg = "dbconnect: this session holds a connection to another server (a transaction or session state); finish it first";
                self.send_err(seq, code::UNKNOWN_ERROR, msg).await;
                return Ok(());
            }
        }
        self.held.route = (target != key.server).then_some(target);
        if let Err(e) = self.ensure_backend().await {
            self.report_acquire_error(seq, e).await;
            return Ok(());
        }
        self.recorded.pins |= pin::DBCONNECT;
        self.ok_reply(seq).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dbconnect_commands() {
        assert_eq!(parse(b"dbconnect master"), Some(DbConnect::Primary));
        assert_eq!(parse(b"DBCONNECT primary;"), Some(DbConnect::Primary));
        assert_eq!(parse(b"dbconnect release"), Some(DbConnect::Release));
        assert_eq!(parse(b"dbconnect 10.0.0.5:3306"), Some(DbConnect::Server("10.0.0.5:3306".into())));
        assert_eq!(parse(b"dbconnect '10.0.0.5:3306'"), Some(DbConnect::Server("10.0.0.5:3306".into())));
        assert_eq!(parse(b"SELECT 1"), None);
        assert_eq!(parse(b"dbconnect"), None);
    }
}
