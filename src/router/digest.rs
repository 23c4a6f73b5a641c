//! Statement fingerprints ("digests"): the statement with every literal made `?`,
//! `IN (?, ?, …)` made `IN (...)`, comments dropped and each run of white space made one
//! space; keywords and identifiers stay as written. `SELECT v FROM t WHERE id = 7` is
//! `SELECT v FROM t WHERE id = ?`.
//!
//! [`Fingerprint`] hashes that text token by token as [`super::statement::analyse`] lexes
//! the statement (no pass of its own, no allocation); [`text`] writes it out, which is
//! only needed the first time a fingerprint is seen.

use super::lexer::{Lexer, Token};

/// The running hash of a statement's normalised text (FNV-1a, 64 bits).
#[derive(Debug, Clone, Copy)]
pub struct Fingerprint {
    hash: u64,
    /// Where the previous token ended (None before the first).
    last_end: Option<usize>,
    in_list: InList,
}

/// Reading `IN (` followed by literals and commas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InList {
    No,
    /// The last token was the word IN.
    AfterIn,
    /// Inside `IN (`, which began at this offset; whether a literal came last.
    Open {
        paren: usize,
        literal_last: bool,
        literals: u32,
    },
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Default for Fingerprint {
    fn default() -> Self {
        Fingerprint { hash: FNV_OFFSET, last_end: None, in_list: InList::No }
    }
}

/// What the normalised text is written to: a hash, or a string.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for u64 {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        for &b in bytes {
            *self = (*self ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A literal, or a prepared statement's placeholder (which stands for one).
fn is_literal(t: &Token<'_>) -> bool {
    matches!(t, Token::Str(_) | Token::Number(_) | Token::Punct(b'?'))
}

impl Fingerprint {
    /// Takes the next token of `sql`, which spans `start..end`.
    #[inline]
    pub fn feed(&mut self, sql: &[u8], t: Token<'_>, start: usize, end: usize) {
        let mut hash = self.hash;
        self.step(&mut hash, sql, t, start, end);
        self.hash = hash;
    }

    /// The fingerprint of everything fed (`sql` is the statement fed).
    pub fn finish(mut self, sql: &[u8]) -> u64 {
        let mut hash = self.hash;
        self.flush_open(&mut hash, sql, sql.len());
        hash
    }

    fn step(&mut self, out: &mut impl Sink, sql: &[u8], t: Token<'_>, start: usize, end: usize) {
        match self.in_list {
            InList::Open { paren, literal_last, literals } => {
                let fits =
                    if literal_last { t == Token::Punct(b',') || t == Token::Punct(b')') } else { is_literal(&t) };
                if fits {
                    if t == Token::Punct(b')') {
                        self.in_list = InList::No;
                        out.put(b"(...)");
                        self.last_end = Some(end);
                    } else {
                        self.in_list = InList::Open { paren, literal_last: is_literal(&t), literals: literals + 1 };
                    }
                    return;
                }
                // Not a list of literals: what was held back is written as it was read.
                self.flush_open(out, sql, start);
            }
            InList::AfterIn if t == Token::Punct(b'(') => {
                self.space_before(out, start);
                self.last_end = Some(start);
                self.in_list = InList::Open { paren: start, literal_last: false, literals: 0 };
                return;
            }
            _ => {}
        }
        self.in_list = if t.is_word("IN") { InList::AfterIn } else { InList::No };
        self.emit(out, sql, t, start, end);
    }

    /// Writes out an `IN (` list held back, up to `upto`, as it was read.
    fn flush_open(&mut self, out: &mut impl Sink, sql: &[u8], upto: usize) {
        let InList::Open { paren, .. } = self.in_list else { return };
        self.in_list = InList::No;
        let held = sql.get(paren..upto).unwrap_or_default();
        let mut replay = Lexer::new(held);
        while let Some(tok) = replay.next() {
            let (s, e) = (paren + replay.token_start(), paren + replay.offset());
            self.emit(out, sql, tok, s, e);
        }
    }

    fn space_before(&mut self, out: &mut impl Sink, start: usize) {
        if self.last_end.is_some_and(|e| start > e) {
            out.put(b" ");
        }
    }

    fn emit(&mut self, out: &mut impl Sink, sql: &[u8], t: Token<'_>, start: usize, end: usize) {
        self.space_before(out, start);
        if is_literal(&t) {
            out.put(b"?");
        } else {
            out.put(sql.get(start..end).unwrap_or_default());
        }
        self.last_end = Some(end);
    }
}

/// The fingerprint of a whole statement.
pub fn of(sql: &[u8]) -> u64 {
    let mut f = Fingerprint::default();
    let mut lex = Lexer::new(sql);
    while let Some(t) = lex.next() {
        f.feed(sql, t, lex.token_start(), lex.offset());
    }
    f.finish(sql)
}

/// The normalised text of `sql`, cut to `max_chars` characters.
pub fn text(sql: &[u8], max_chars: usize) -> String {
    let mut f = Fingerprint::default();
    let mut out: Vec<u8> = Vec::with_capacity(sql.len().min(max_chars * 4 + 8));
    let mut lex = Lexer::new(sql);
    while let Some(t) = lex.next() {
        let (s, e) = (lex.token_start(), lex.offset());
        f.step(&mut out, sql, t, s, e);
        if out.len() > max_chars * 4 {
            break;
        }
    }
    f.flush_open(&mut out, sql, sql.len());
    String::from_utf8_lossy(&out).chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> String {
        text(s.as_bytes(), 1000)
    }

    #[test]
    fn literals_comments_and_space_are_normalised() {
        assert_eq!(t("SELECT v FROM t WHERE id = 7"), "SELECT v FROM t WHERE id = ?");
        assert_eq!(t("  select  v\n\tFROM t /* c */ WHERE id='x' -- end\n"), "select v FROM t WHERE id=?");
        assert_eq!(t("SELECT c FROM sbtest1 WHERE id=4711"), "SELECT c FROM sbtest1 WHERE id=?");
        assert_eq!(
            t("SELECT COUNT(*), @@server_id, @a FROM `t` WHERE x > -1.5e3"),
            "SELECT COUNT(*), @@server_id, @a FROM `t` WHERE x > -?"
        );
        assert_eq!(t("SELECT /*+ hint */ 1"), "SELECT ?");
    }

    #[test]
    fn in_lists_of_literals_collapse() {
        assert_eq!(
            t("SELECT * FROM t WHERE id IN (1, 2,3) AND k in ('a')"),
            "SELECT * FROM t WHERE id IN (...) AND k in (...)"
        );
        assert_eq!(
            t("SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE k = 5)"),
            "SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE k = ?)"
        );
        assert_eq!(t("SELECT * FROM t WHERE id IN (1, x)"), "SELECT * FROM t WHERE id IN (?, x)");
        assert_eq!(t("SELECT * FROM t WHERE id IN ()"), "SELECT * FROM t WHERE id IN ()");
        assert_eq!(t("SELECT 1 IN (1,"), "SELECT ? IN (?,");
        // A prepared statement's placeholders, and a rule's shape, are literals too.
        assert_eq!(t("SELECT * FROM t WHERE id IN (?, ?) AND k = ?"), "SELECT * FROM t WHERE id IN (...) AND k = ?");
        assert_eq!(of(b"SELECT @@server_id, ?"), of(b"SELECT  @@server_id, 1"));
    }

    #[test]
    fn the_hash_is_that_of_the_text() {
        for s in [
            "SELECT v FROM t WHERE id = 7",
            "SELECT * FROM t WHERE id IN (1, 2,3) AND k in ('a')",
            "SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE k = 5)",
            "SELECT * FROM t WHERE id IN (1, x)",
            "UPDATE t SET c='it''s' WHERE id IN (4) ; SELECT 1",
        ] {
            let mut h = FNV_OFFSET;
            h.put(t(s).as_bytes());
            assert_eq!(of(s.as_bytes()), h, "{s}");
        }
        assert_eq!(of(b"SELECT v FROM t WHERE id = 7"), of(b"SELECT  v FROM t WHERE id = 123 /* x */"));
        assert_ne!(of(b"SELECT v FROM t WHERE id = 7"), of(b"select v FROM t WHERE id = 7"));
    }

    #[test]
    fn no_input_panics() {
        for s in ["", "'", "IN (", "IN", "(((", "x IN ('a", "/*", "@@"] {
            let _ = text(s.as_bytes(), 10);
            let _ = of(s.as_bytes());
        }
    }
}
