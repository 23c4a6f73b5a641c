//! `SELECT LAST_INSERT_ID()`, `SELECT CONNECTION_ID()` and `SELECT ROW_COUNT()`, alone
//! (text or prepared): answered from the session's own record, because the backend
//! connection that would run them is not the session's — it may have served other
//! sessions since.

use super::super::error::Step;
use super::super::Session;
use crate::net::{Connector, Transport};
use crate::protocol::resultset::{write_single_bigint, BigInt};
use crate::router::lexer::{Lexer, Token};

/// Session functions the proxy answers itself, because the backend connection that would
/// run them is not the session's: `LAST_INSERT_ID()` (the session's own last insert id),
/// `CONNECTION_ID()` (the id corelay gave the session) and `ROW_COUNT()` (what the
/// session's last statement affected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionFunction {
    LastInsertId,
    ConnectionId,
    RowCount,
    /// Answered here unless the session pinned its connection for it (SQL_CALC_FOUND_ROWS).
    FoundRows,
}

/// If the text is exactly `SELECT LAST_INSERT_ID() [[AS] alias]` (or CONNECTION_ID(),
/// ROW_COUNT()), which function and the column name the server would give it.
pub fn session_function_query(sql: &[u8]) -> Option<(SessionFunction, String)> {
    // Cheap exits first: this runs for every SELECT sent as COM_QUERY. The function is
    // the second token, so it is read once and only its own form is checked.
    if sql.len() > 200 {
        return None;
    }
    let mut lex = Lexer::new(sql);
    if !lex.next()?.is_word("SELECT") {
        return None;
    }
    let Token::Word(word) = lex.next()? else { return None };
    let (function, name): (_, &[u8]) = [
        (SessionFunction::LastInsertId, &b"LAST_INSERT_ID"[..]),
        (SessionFunction::RowCount, b"ROW_COUNT"),
        (SessionFunction::FoundRows, b"FOUND_ROWS"),
        (SessionFunction::ConnectionId, b"CONNECTION_ID"),
    ]
    .into_iter()
    .find(|(_, name)| word.eq_ignore_ascii_case(name))?;
    function_query(sql, name).map(|column| (function, column))
}

/// If the text is exactly `SELECT LAST_INSERT_ID() [[AS] alias]`, the column name the
/// server would give it.
pub fn last_insert_id_query(sql: &[u8]) -> Option<String> {
    function_query(sql, b"LAST_INSERT_ID")
}

/// `SELECT <function>() [[AS] alias]`, alone: the column name.
fn function_query(sql: &[u8], function: &[u8]) -> Option<String> {
    // Cheap exits first: this runs for every COM_QUERY.
    if sql.len() > 200 || !sql.windows(function.len()).any(|w| w.eq_ignore_ascii_case(function)) {
        return None;
    }
    let mut buf = [Token::Punct(0); 8];
    let mut n = 0;
    for t in Lexer::new(sql) {
        if n == buf.len() {
            return None;
        }
        buf[n] = t;
        n += 1;
    }
    let toks = match &buf[..n] {
        [rest @ .., Token::Punct(b';')] => rest,
        all => all,
    };
    let name = |t: &Token<'_>| match t {
        Token::Word(w) | Token::QuotedIdent(w) => Some(String::from_utf8_lossy(w).into_owned()),
        Token::Str(s) if s.len() >= 2 => Some(String::from_utf8_lossy(&s[1..s.len() - 1]).into_owned()),
        _ => None,
    };
    match toks {
        [s, Token::Word(f), Token::Punct(b'('), Token::Punct(b')'), alias @ ..]
            if s.is_word("SELECT") && f.eq_ignore_ascii_case(function) =>
        {
            let default = format!("{}()", String::from_utf8_lossy(f));
            match alias {
                [] => Some(default),
                [a] if !a.is_word("FROM") => name(a),
                [kw, a] if kw.is_word("AS") => name(a),
                _ => None,
            }
        }
        _ => None,
    }
}

impl<C: Transport, N: Connector> Session<'_, C, N> {
    /// Answers `SELECT LAST_INSERT_ID()` from the session's own record (right whichever
    /// connection ran the INSERT) and `SELECT CONNECTION_ID()` with corelay's id.
    pub(in crate::session) async fn answer_session_function(
        &mut self,
        seq: u8,
        function: SessionFunction,
        name: &str,
        binary: bool,
    ) -> Step {
        let flags = self.recorded.status_flags();
        let framing = self.framing();
        self.out.clear();
        let value = match function {
            SessionFunction::LastInsertId => BigInt::Unsigned(self.recorded.last_insert_id),
            SessionFunction::ConnectionId => BigInt::Unsigned(u64::from(self.conn_id)),
            SessionFunction::RowCount => BigInt::Signed(self.recorded.row_count),
            SessionFunction::FoundRows => BigInt::Signed(i64::try_from(self.recorded.found_rows).unwrap_or(i64::MAX)),
        };
        // This SELECT (of one row) is now the session's last statement.
        self.recorded.row_count = -1;
        self.recorded.found_rows = 1;
        write_single_bigint(&mut self.out, seq, name, value, framing, flags, binary);
        Ok(self.flush().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_insert_id_queries() {
        assert_eq!(last_insert_id_query(b"SELECT LAST_INSERT_ID()").as_deref(), Some("LAST_INSERT_ID()"));
        assert_eq!(last_insert_id_query(b"select last_insert_id();").as_deref(), Some("last_insert_id()"));
        assert_eq!(last_insert_id_query(b"SELECT LAST_INSERT_ID() AS id").as_deref(), Some("id"));
        assert_eq!(last_insert_id_query(b"SELECT LAST_INSERT_ID() `x y`").as_deref(), Some("x y"));
        assert_eq!(last_insert_id_query(b"SELECT LAST_INSERT_ID(5)"), None);
        assert_eq!(last_insert_id_query(b"SELECT LAST_INSERT_ID(), 1"), None);
        assert_eq!(last_insert_id_query(b"SELECT LAST_INSERT_ID() FROM t"), None);
        assert_eq!(
            session_function_query(b"select connection_id()"),
            Some((SessionFunction::ConnectionId, "connection_id()".into()))
        );
        assert_eq!(session_function_query(b"SELECT ROW_COUNT() AS n"), Some((SessionFunction::RowCount, "n".into())));
        assert_eq!(session_function_query(b"SELECT ROW_COUNT() + 1"), None);
        assert_eq!(session_function_query(b"SELECT CONNECTION_ID(), 1"), None);
    }
}
