//! Statements corelay answers itself instead of sending them to a server, one file each:
//! the session functions whose answer is the session's own ([`session_function`]), the
//! original's `dbconnect` pins ([`dbconnect`]), `KILL` with corelay's connection ids
//! ([`kill`]), the original's status queries ([`proxystatus`]), and the client
//! connection's TLS status ([`tls_status`]).
//!
//! Each file holds both the statement's parser (pure, unit-tested, fuzzed) and what the
//! session does with it.

pub mod dbconnect;
pub mod kill;
pub mod proxystatus;
pub mod session_function;
pub mod tls_status;

pub use dbconnect::DbConnect;
pub use session_function::{session_function_query, SessionFunction};

use super::error::Step;
use super::Session;
use crate::net::{Connector, Transport};
use crate::router::lexer::{Lexer, Token};

/// A statement corelay answers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    /// `SELECT LAST_INSERT_ID()` (or CONNECTION_ID(), ROW_COUNT()), with its column name.
    SessionFunction(SessionFunction, String),
    /// `checkproxystatus type1|2|3` (or why the form is wrong).
    ProxyStatus(Result<u8, String>),
    DbConnect(DbConnect),
    /// `KILL [QUERY] <id>`.
    Kill {
        query_only: bool,
        id: u64,
    },
    /// `SHOW STATUS LIKE 'Ssl_cipher'` / `'Ssl_version'`.
    TlsStatus(tls_status::TlsStatus),
}

/// Whether a COM_QUERY text is a statement corelay answers itself. This runs for every
/// COM_QUERY: the first word picks the one parser that could match, and every other
/// statement costs one token.
pub fn recognise(text: &[u8]) -> Option<Local> {
    let Some(Token::Word(first)) = Lexer::new(text).next() else { return None };
    let is = |kw: &[u8]| first.eq_ignore_ascii_case(kw);
    if is(b"SELECT") {
        session_function_query(text).map(|(function, name)| Local::SessionFunction(function, name))
    } else if is(b"SHOW") {
        tls_status::parse(text).map(Local::TlsStatus)
    } else if is(b"KILL") {
        kill::parse(text).map(|(query_only, id)| Local::Kill { query_only, id })
    } else if is(b"CHECKPROXYSTATUS") {
        proxystatus::parse(text).map(Local::ProxyStatus)
    } else if is(b"DBCONNECT") {
        dbconnect::parse(text).map(Local::DbConnect)
    } else {
        None
    }
}

impl<C: Transport, N: Connector> Session<'_, C, N> {
    /// Whether a statement corelay could answer goes to the server all the same (see
    /// [`super::recorded::Recorded::server_answers`]).
    pub(in crate::session) fn server_answers(&self, local: &Local) -> bool {
        match local {
            Local::SessionFunction(f, _) => self.recorded.server_answers(Some(*f)),
            _ => false,
        }
    }

    /// Answers a statement corelay recognised as its own (`seq`: the reply's sequence id).
    pub(in crate::session) async fn answer_local(&mut self, seq: u8, local: Local) -> Step {
        match local {
            Local::SessionFunction(function, name) => self.answer_session_function(seq, function, &name, false).await,
            Local::ProxyStatus(kind) => self.proxy_status(seq, kind).await,
            Local::DbConnect(cmd) => self.dbconnect(seq, cmd).await,
            Local::Kill { query_only, id } => self.kill(seq, query_only, id).await,
            Local::TlsStatus(which) => self.tls_status(seq, which).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_statements_are_told_apart_from_the_rest() {
        assert_eq!(
            recognise(b"SELECT LAST_INSERT_ID()"),
            Some(Local::SessionFunction(SessionFunction::LastInsertId, "LAST_INSERT_ID()".into()))
        );
        assert_eq!(recognise(b"checkproxystatus type2"), Some(Local::ProxyStatus(Ok(2))));
        assert_eq!(recognise(b"dbconnect release"), Some(Local::DbConnect(DbConnect::Release)));
        assert_eq!(recognise(b"KILL QUERY 12"), Some(Local::Kill { query_only: true, id: 12 }));
        assert_eq!(
            recognise(b"  show status like 'Ssl_cipher'"),
            Some(Local::TlsStatus(tls_status::TlsStatus::Cipher))
        );
        assert_eq!(
            recognise(b"/* c */ SELECT CONNECTION_ID()").map(|l| matches!(l, Local::SessionFunction(..))),
            Some(true)
        );
        for sql in
            ["SELECT 1", "SELECT LAST_INSERT_ID() + 1", "KILL USER bob", "INSERT INTO t VALUES (1)", "", "(SELECT 1)"]
        {
            assert_eq!(recognise(sql.as_bytes()), None, "{sql}");
        }
    }
}
