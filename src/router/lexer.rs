//! A small SQL lexer: enough to read a statement's leading keywords and the assignments of
//! a SET statement, skipping whitespace and comments the way the server does.
//!
//! Comments: `-- ` (dashes followed by white space or the end), `#` to end of line, and
//! `/* ... */`. `/*! ... */` and `/*M! ... */` are executable comments whose contents the
//! server runs, so the lexer reads their contents as code. `/*+ ... */` optimizer hints are
//! skipped like comments.

/// One token. Slices point into the statement text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    /// A bare word: keyword or unquoted identifier.
    Word(&'a [u8]),
    /// A back-quoted identifier, without the quotes (doubled quotes not undone).
    QuotedIdent(&'a [u8]),
    /// A string literal with its quotes, exactly as written.
    Str(&'a [u8]),
    Number(&'a [u8]),
    /// `@name` (a user variable), without the `@`.
    UserVar(&'a [u8]),
    /// `@@name`, `@@session.name` ..., without the `@@`.
    SysVar(&'a [u8]),
    Punct(u8),
}

impl Token<'_> {
    /// Whether this is the bare word `kw` (ASCII case-insensitive). Called for every
    /// token against many keywords, so inlined: most differ in length, which
    /// `eq_ignore_ascii_case` compares first.
    #[inline]
    pub fn is_word(&self, kw: &str) -> bool {
        matches!(self, Token::Word(w) if w.eq_ignore_ascii_case(kw.as_bytes()))
    }
}

/// Iterator over the tokens of a statement.
#[derive(Debug, Clone)]
pub struct Lexer<'a> {
    sql: &'a [u8],
    pos: usize,
    /// Where the last token returned began.
    start: usize,
    /// Inside a `/*! ... */` executable comment.
    in_exec_comment: bool,
}

impl<'a> Lexer<'a> {
    pub fn new(sql: &'a [u8]) -> Lexer<'a> {
        Lexer { sql, pos: 0, start: 0, in_exec_comment: false }
    }

    /// Byte offset of the next unread character.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Byte offset where the last token returned began (its quotes or `@` included).
    pub fn token_start(&self) -> usize {
        self.start
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.sql.get(self.pos + ahead).copied()
    }

    fn skip_space_and_comments(&mut self) {
        loop {
            match self.peek(0) {
                Some(c) if c.is_ascii_whitespace() => self.pos += 1,
                Some(b'#') => self.skip_line(),
                Some(b'-') if self.peek(1) == Some(b'-') && self.peek(2).is_none_or(|c| c.is_ascii_whitespace()) => {
                    self.skip_line()
                }
                Some(b'/') if self.peek(1) == Some(b'*') => {
                    let exec = self.peek(2) == Some(b'!') || (self.peek(2) == Some(b'M') && self.peek(3) == Some(b'!'));
                    if exec {
                        self.pos += if self.peek(2) == Some(b'M') { 4 } else { 3 };
                        // Optional version number: /*!40101 ... */
                        while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
                            self.pos += 1;
                        }
                        self.in_exec_comment = true;
                    } else {
                        self.pos += 2;
                        while self.pos < self.sql.len() && !(self.peek(0) == Some(b'*') && self.peek(1) == Some(b'/')) {
                            self.pos += 1;
                        }
                        self.pos = (self.pos + 2).min(self.sql.len());
                    }
                }
                Some(b'*') if self.in_exec_comment && self.peek(1) == Some(b'/') => {
                    self.in_exec_comment = false;
                    self.pos += 2;
                }
                _ => return,
            }
        }
    }

    fn skip_line(&mut self) {
        while let Some(c) = self.peek(0) {
            self.pos += 1;
            if c == b'\n' {
                return;
            }
        }
    }

    /// Reads a quoted run starting at the opening quote; returns the end (exclusive).
    fn quoted_end(&self, quote: u8) -> usize {
        let mut i = self.pos + 1;
        while i < self.sql.len() {
            let c = self.sql[i];
            if c == b'\\' && quote != b'`' {
                i += 2;
                continue;
            }
            if c == quote {
                if self.sql.get(i + 1) == Some(&quote) {
                    i += 2;
                    continue;
                }
                return i + 1;
            }
            i += 1;
        }
        self.sql.len()
    }

    fn word_end(&self, from: usize) -> usize {
        let mut i = from;
        while i < self.sql.len()
            && (self.sql[i].is_ascii_alphanumeric()
                || self.sql[i] == b'_'
                || self.sql[i] == b'$'
                || self.sql[i] >= 0x80)
        {
            i += 1;
        }
        i
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        self.skip_space_and_comments();
        let c = self.peek(0)?;
        let start = self.pos;
        self.start = start;
        let tok = match c {
            b'\'' | b'"' => {
                let end = self.quoted_end(c);
                self.pos = end;
                Token::Str(&self.sql[start..end])
            }
            b'`' => {
                let end = self.quoted_end(b'`');
                self.pos = end;
                Token::QuotedIdent(&self.sql[start + 1..end.saturating_sub(1).max(start + 1)])
            }
            b'@' => {
                let sys = self.peek(1) == Some(b'@');
                let from = start + if sys { 2 } else { 1 };
                let mut end = from;
                if let Some(q @ (b'\'' | b'"' | b'`')) = self.sql.get(from).copied() {
                    self.pos = from;
                    end = self.quoted_end(q);
                } else {
                    // System variables may be qualified: @@session.sql_mode.
                    loop {
                        end = self.word_end(end);
                        if sys && self.sql.get(end) == Some(&b'.') {
                            end += 1;
                            continue;
                        }
                        break;
                    }
                }
                self.pos = end;
                if sys {
                    Token::SysVar(&self.sql[from..end])
                } else {
                    Token::UserVar(&self.sql[from..end])
                }
            }
            b'0'..=b'9' => {
                let mut end = start;
                while end < self.sql.len() && (self.sql[end].is_ascii_alphanumeric() || self.sql[end] == b'.') {
                    end += 1;
                }
                self.pos = end;
                Token::Number(&self.sql[start..end])
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c >= 0x80 => {
                let end = self.word_end(start);
                self.pos = end;
                Token::Word(&self.sql[start..end])
            }
            other => {
                self.pos += 1;
                Token::Punct(other)
            }
        };
        Some(tok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Token<'_>> {
        Lexer::new(s.as_bytes()).collect()
    }

    #[test]
    fn skips_comments_and_space() {
        let t = toks("  /* c */ -- line\n # hash\n\tSELECT/*x*/1");
        assert_eq!(t, vec![Token::Word(b"SELECT"), Token::Number(b"1")]);
        // "--" without a following space is an operator, not a comment.
        assert_eq!(toks("1--2").len(), 4);
    }

    #[test]
    fn executable_comments_are_code() {
        let t = toks("/*!40101 SET NAMES utf8 */;");
        assert_eq!(t, vec![Token::Word(b"SET"), Token::Word(b"NAMES"), Token::Word(b"utf8"), Token::Punct(b';')]);
        let t = toks("/*M!100100 SELECT */ 1");
        assert_eq!(t[0], Token::Word(b"SELECT"));
        // Optimizer hints are skipped.
        assert_eq!(toks("SELECT /*+ MAX_EXECUTION_TIME(10) */ 1").len(), 2);
    }

    #[test]
    fn strings_variables_identifiers() {
        let t = toks(r"SET @a='it''s', @@session.sql_mode = 'x\'y', `we``ird` = @`q v`");
        assert_eq!(
            t,
            vec![
                Token::Word(b"SET"),
                Token::UserVar(b"a"),
                Token::Punct(b'='),
                Token::Str(b"'it''s'"),
                Token::Punct(b','),
                Token::SysVar(b"session.sql_mode"),
                Token::Punct(b'='),
                Token::Str(br"'x\'y'"),
                Token::Punct(b','),
                Token::QuotedIdent(b"we``ird"),
                Token::Punct(b'='),
                Token::UserVar(b"`q v`"),
            ]
        );
    }

    #[test]
    fn unterminated_input_does_not_panic() {
        for s in ["'abc", "/* open", "`x", "@", "@@", "/*!", "--", "\"\\"] {
            let _ = toks(s);
        }
    }
}
