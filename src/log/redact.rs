//! Password literals kept out of the query log: in `CREATE USER` / `ALTER USER` / `GRANT`
//! ... `IDENTIFIED BY 'pw'` (and `BY PASSWORD`, `VIA ... USING PASSWORD('pw')`, `WITH ...
//! AS 'hash'`), `SET PASSWORD [FOR u] = 'pw'`, `PASSWORD('pw')` anywhere, and
//! `... PASSWORD = 'pw'` options (`MASTER_PASSWORD`), each literal is written as
//! `'<redacted>'`.

use std::borrow::Cow;

use crate::router::lexer::{Lexer, Token};

/// What a password literal is written as.
pub const REDACTED: &str = "'<redacted>'";

/// `sql` with its password literals redacted; borrowed as it is when it has none (the
/// common case costs one scan for the word PASSWORD or IDENTIFIED).
pub fn redact(sql: &[u8]) -> Cow<'_, [u8]> {
    if !contains_word(sql, b"PASSWORD") && !contains_word(sql, b"IDENTIFIED") {
        return Cow::Borrowed(sql);
    }
    let mut spans = Vec::new();
    let mut prev: [Option<Token<'_>>; 2] = [None; 2];
    let mut head: [Option<Token<'_>>; 2] = [None; 2];
    let mut count = 0;
    for t in Lexer::new(sql) {
        if t == Token::Punct(b';') {
            (prev, head, count) = ([None; 2], [None; 2], 0);
            continue;
        }
        if count < 2 {
            head[count] = Some(t);
        }
        count += 1;
        if let Token::Str(s) = t {
            if is_secret(head, prev) {
                let at = s.as_ptr() as usize - sql.as_ptr() as usize;
                spans.push(at..at + s.len());
            }
        }
        prev = [prev[1], Some(t)];
    }
    if spans.is_empty() {
        return Cow::Borrowed(sql);
    }
    let mut out = Vec::with_capacity(sql.len());
    let mut from = 0;
    for span in spans {
        out.extend_from_slice(&sql[from..span.start]);
        out.extend_from_slice(REDACTED.as_bytes());
        from = span.end;
    }
    out.extend_from_slice(&sql[from..]);
    Cow::Owned(out)
}

/// Whether a string literal after `prev` (in a statement that starts with `head`) is a
/// password.
fn is_secret(head: [Option<Token<'_>>; 2], prev: [Option<Token<'_>>; 2]) -> bool {
    let word = |t: Option<Token<'_>>, kw: &str| t.is_some_and(|t| t.is_word(kw));
    let password_word =
        |t: Option<Token<'_>>| matches!(t, Some(Token::Word(w)) if w.to_ascii_uppercase().ends_with(b"PASSWORD"));
    match prev[1] {
        Some(Token::Word(_)) => {
            word(prev[1], "BY") || word(prev[1], "USING") || word(prev[1], "AS") || password_word(prev[1])
        }
        Some(Token::Punct(b'(')) => password_word(prev[0]),
        Some(Token::Punct(b'=')) => password_word(prev[0]) || (word(head[0], "SET") && word(head[1], "PASSWORD")),
        _ => false,
    }
}

/// Whether `word` (upper case) occurs in `sql`, any case.
fn contains_word(sql: &[u8], word: &[u8]) -> bool {
    sql.windows(word.len()).any(|w| w.eq_ignore_ascii_case(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(sql: &str) -> String {
        String::from_utf8(redact(sql.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn password_literals_are_redacted() {
        let cases = [
            ("CREATE USER 'bob'@'%' IDENTIFIED BY 'pw1'", "CREATE USER 'bob'@'%' IDENTIFIED BY '<redacted>'"),
            ("ALTER USER bob IDENTIFIED BY PASSWORD '*ABC'", "ALTER USER bob IDENTIFIED BY PASSWORD '<redacted>'"),
            (
                "CREATE USER bob IDENTIFIED VIA ed25519 USING PASSWORD('pw2')",
                "CREATE USER bob IDENTIFIED VIA ed25519 USING PASSWORD('<redacted>')",
            ),
            (
                "CREATE USER bob IDENTIFIED WITH mysql_native_password AS '*AB'",
                "CREATE USER bob IDENTIFIED WITH mysql_native_password AS '<redacted>'",
            ),
            ("GRANT ALL ON *.* TO bob IDENTIFIED BY \"pw3\"", "GRANT ALL ON *.* TO bob IDENTIFIED BY '<redacted>'"),
            ("SET PASSWORD = 'pw4'", "SET PASSWORD = '<redacted>'"),
            ("set password for 'bob'@'h' = PASSWORD('pw5')", "set password for 'bob'@'h' = PASSWORD('<redacted>')"),
            ("SELECT PASSWORD('pw6'), 'x' AS y", "SELECT PASSWORD('<redacted>'), 'x' AS y"),
            ("CHANGE MASTER TO MASTER_PASSWORD = 'pw7'", "CHANGE MASTER TO MASTER_PASSWORD = '<redacted>'"),
            ("DO 1; SET PASSWORD = 'pw8'", "DO 1; SET PASSWORD = '<redacted>'"),
        ];
        for (sql, want) in cases {
            assert_eq!(r(sql), want, "{sql}");
        }
    }

    #[test]
    fn other_statements_are_left_as_they_are() {
        for sql in ["SELECT 'a' AS 'b'", "INSERT INTO t VALUES ('by')", "SELECT password FROM users WHERE id = 'x'"] {
            assert!(matches!(redact(sql.as_bytes()), Cow::Borrowed(_)) || r(sql) == sql, "{sql}");
            assert_eq!(r(sql), sql);
        }
    }
}
