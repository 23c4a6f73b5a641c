//! Statement classification for read/write splitting: is this text safe to run on a
//! replica, and did the client ask for a particular side?
//!
//! A statement is a read only if it cannot change data or take locks: SELECT (but not
//! `FOR UPDATE`, `LOCK IN SHARE MODE`, `FOR SHARE`, `INTO OUTFILE/DUMPFILE/@var`, nor calling
//! lock or sequence functions), SHOW, EXPLAIN (not `EXPLAIN ANALYZE`), DESC/DESCRIBE,
//! `WITH ... SELECT`, HELP. Everything else — including anything the classifier does not
//! recognise — is a write, because sending a write to a replica is the one mistake a
//! router must never make. A batch is a read only if every statement in it is.

use super::lexer::{Lexer, Token};

/// Where a statement may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Class {
    Read,
    /// Also what an empty text is.
    #[default]
    Write,
}

/// A per-statement routing hint in a leading comment: `/* corelay:primary */` or
/// `/* corelay:replica */`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    Primary,
    Replica,
    /// This server (by id), when it is in the session's cluster and usable: a rule's or a
    /// hook's route.
    Server(usize),
}

/// Functions whose call makes a SELECT a write.
const WRITE_FUNCTIONS: &[&str] = &[
    "GET_LOCK",
    "RELEASE_LOCK",
    "RELEASE_ALL_LOCKS",
    "IS_USED_LOCK",
    "IS_FREE_LOCK",
    "NEXTVAL",
    "SETVAL",
    "LASTVAL",
    "LAST_INSERT_ID",
    "SLEEP",
    "MASTER_POS_WAIT",
    "MASTER_GTID_WAIT",
];

/// Classifies a COM_QUERY text.
pub fn classify(sql: &[u8]) -> Class {
    let mut c = Classifier::new();
    for t in Lexer::new(sql) {
        if t == Token::Punct(b';') {
            c.end_statement();
        } else {
            c.feed(t);
        }
    }
    c.end_statement();
    c.class()
}

/// The classifier, one token at a time: [`classify`] runs it over a pass of its own, and
/// [`super::statement::analyse`] over the pass it makes anyway (a statement's text is
/// read once on the way to a server).
#[derive(Debug, Clone)]
pub struct Classifier<'a> {
    first: Option<Token<'a>>,
    second: Option<Token<'a>>,
    read: bool,
    prev: [Option<Token<'a>>; 2],
    depth: i32,
    /// For WITH: the keyword of the main statement, after the CTEs, at depth 0.
    with_main: Option<bool>,
    any_read: bool,
    any_write: bool,
}

impl Default for Classifier<'_> {
    fn default() -> Self {
        Classifier::new()
    }
}

impl<'a> Classifier<'a> {
    pub fn new() -> Classifier<'a> {
        Classifier {
            first: None,
            second: None,
            read: true,
            prev: [None; 2],
            depth: 0,
            with_main: None,
            any_read: false,
            any_write: false,
        }
    }

    /// A token of the current statement (its `;` ends it: [`Classifier::end_statement`]).
    pub fn feed(&mut self, t: Token<'a>) {
        match t {
            Token::Punct(b'(') => self.depth += 1,
            Token::Punct(b')') => self.depth -= 1,
            _ => {}
        }
        if self.first.is_none() {
            // Leading parentheses: (SELECT ...) UNION (SELECT ...).
            if t == Token::Punct(b'(') {
                return;
            }
            self.first = Some(t);
        } else if self.second.is_none() {
            self.second = Some(t);
        }
        let is_with = self.first.is_some_and(|f| f.is_word("WITH"));
        if is_with && self.depth == 0 && self.with_main.is_none() {
            for kw in ["SELECT", "UPDATE", "DELETE", "INSERT", "REPLACE"] {
                if t.is_word(kw) {
                    self.with_main = Some(kw == "SELECT");
                }
            }
        }
        // Locking and side effects anywhere in the statement.
        match (self.prev, t) {
            ([_, Some(w)], Token::Word(_)) if w.is_word("FOR") && (t.is_word("UPDATE") || t.is_word("SHARE")) => {
                self.read = false
            }
            ([Some(a), Some(b)], _) if a.is_word("LOCK") && b.is_word("IN") && t.is_word("SHARE") => self.read = false,
            ([_, Some(into)], _) if into.is_word("INTO") => self.read = false,
            ([_, Some(Token::Word(w))], Token::Punct(b'('))
                if WRITE_FUNCTIONS.iter().any(|f| w.eq_ignore_ascii_case(f.as_bytes())) =>
            {
                self.read = false
            }
            ([Some(a), Some(b)], _) if (a.is_word("NEXT") || a.is_word("PREVIOUS")) && b.is_word("VALUE") => {
                self.read = false
            }
            _ => {}
        }
        self.prev = [self.prev[1], Some(t)];
    }

    /// The current statement ended (at its `;` or the end of the text).
    pub fn end_statement(&mut self) {
        if let Some(first) = self.first {
            let read = if first.is_word("SELECT") || first.is_word("HELP") {
                self.read
            } else if first.is_word("SHOW") || first.is_word("DESC") || first.is_word("DESCRIBE") {
                true
            } else if first.is_word("EXPLAIN") {
                !self.second.is_some_and(|s| s.is_word("ANALYZE"))
            } else {
                first.is_word("WITH") && self.with_main == Some(true) && self.read
            };
            if read {
                self.any_read = true;
            } else {
                self.any_write = true;
            }
        }
        *self = Classifier { any_read: self.any_read, any_write: self.any_write, ..Classifier::new() };
    }

    /// The class of the statements ended so far: a read only if every one is (and there
    /// is one).
    pub fn class(&self) -> Class {
        if self.any_read && !self.any_write {
            Class::Read
        } else {
            Class::Write
        }
    }
}

/// `START TRANSACTION READ ONLY` (alone): a transaction that may run on a replica.
pub fn is_read_only_transaction(sql: &[u8]) -> bool {
    let mut lex = Lexer::new(sql);
    let words = [lex.next(), lex.next(), lex.next(), lex.next(), lex.next()];
    matches!(
        words,
        [Some(a), Some(b), Some(c), Some(d), None | Some(Token::Punct(b';'))]
            if a.is_word("START") && b.is_word("TRANSACTION") && c.is_word("READ") && d.is_word("ONLY")
    )
}

/// A routing hint in the comments before the first keyword.
pub fn hint(sql: &[u8]) -> Option<Hint> {
    leading_comments(sql).find_map(|body| {
        if body.eq_ignore_ascii_case(b"corelay:primary") {
            Some(Hint::Primary)
        } else if body.eq_ignore_ascii_case(b"corelay:replica") {
            Some(Hint::Replica)
        } else {
            None
        }
    })
}

/// Whether a comment before the first keyword says `tag` (case aside): a rule's tag.
pub fn leading_comment_is(sql: &[u8], tag: &str) -> bool {
    leading_comments(sql).any(|body| body.eq_ignore_ascii_case(tag.as_bytes()))
}

/// The texts of the `/* ... */` comments before the first keyword, trimmed (an optimizer
/// hint's `+` dropped); an executable comment (`/*! ... */`) ends them.
fn leading_comments(sql: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = sql;
    std::iter::from_fn(move || {
        let trimmed = rest.trim_ascii_start();
        let body_start = trimmed.strip_prefix(b"/*")?;
        if body_start.starts_with(b"!") {
            return None;
        }
        let end = body_start.windows(2).position(|w| w == b"*/")?;
        rest = &body_start[end + 2..];
        let body = body_start[..end].trim_ascii();
        Some(body.strip_prefix(b"+").unwrap_or(body).trim_ascii())
    })
}

#[cfg(test)]
mod tests {
    use super::Class::{Read as R, Write as W};
    use super::*;

    /// (statement, expected class). Tricky ones on purpose.
    const CASES: &[(&str, Class)] = &[
        // Plain reads.
        ("SELECT 1", R),
        ("select * from t", R),
        ("  SELECT id FROM t WHERE id = 1", R),
        ("\n\tSELECT\n1", R),
        ("SELECT * FROM t LIMIT 10", R),
        ("SELECT COUNT(*) FROM t", R),
        ("SELECT a, b FROM t1 JOIN t2 USING (id)", R),
        ("SELECT * FROM t WHERE name = 'FOR UPDATE'", R),
        ("SELECT * FROM t WHERE note = 'INTO OUTFILE'", R),
        ("SELECT 'GET_LOCK(1)'", R),
        ("SELECT `for`, `update` FROM t", R),
        ("SELECT * FROM t ORDER BY id DESC", R),
        ("SELECT * FROM t GROUP BY a HAVING COUNT(*) > 1", R),
        ("SELECT * FROM t WHERE id IN (SELECT id FROM u)", R),
        ("SELECT SQL_NO_CACHE * FROM t", R),
        ("SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1", R),
        ("SELECT FOUND_ROWS()", R),
        ("SELECT NOW(), UUID(), RAND()", R),
        ("SELECT @@version", R),
        ("SELECT @a", R),
        ("SELECT DATABASE(), USER()", R),
        ("SELECT * FROM information_schema.tables", R),
        ("SELECT 1 UNION SELECT 2", R),
        ("SELECT 1 UNION ALL SELECT 2 ORDER BY 1", R),
        ("(SELECT 1) UNION (SELECT 2)", R),
        ("((SELECT 1))", R),
        ("SELECT * FROM t WHERE a LIKE '%;%'", R),
        ("SELECT JSON_EXTRACT(doc, '$.a') FROM t", R),
        ("SELECT CAST(x AS CHAR) FROM t", R),
        ("SELECT * FROM t FORCE INDEX (PRIMARY)", R),
        ("SELECT STRAIGHT_JOIN * FROM a, b", R),
        ("SELECT HIGH_PRIORITY * FROM t", R),
        ("SELECT * FROM t WINDOW w AS (ORDER BY id)", R),
        ("SELECT ROW_NUMBER() OVER (PARTITION BY a) FROM t", R),
        ("SELECT * FROM t FOR SYSTEM_TIME AS OF '2020-01-01'", R),
        ("SELECT * FROM t AS forx", R),
        ("SELECT updated FROM t", R),
        ("SELECT * FROM `select`", R),
        ("SELECT 'a' 'b'", R),
        ("SELECT x FROM t WHERE y = \"FOR SHARE\"", R),
        // Comments of every kind.
        ("/* comment */ SELECT 1", R),
        ("-- line comment\nSELECT 1", R),
        ("# hash comment\nSELECT 1", R),
        ("/* multi\nline */ SELECT 1", R),
        ("SELECT /* inline */ 1", R),
        ("SELECT 1 -- trailing", R),
        ("SELECT 1 # trailing", R),
        ("/*+ MAX_EXECUTION_TIME(1000) */ SELECT 1", R),
        ("SELECT /*+ BKA(t) */ * FROM t", R),
        ("/* UPDATE t SET a=1 */ SELECT 1", R),
        ("-- DELETE FROM t\nSELECT 1", R),
        ("/*!40001 SQL_NO_CACHE */ SELECT 1", W),
        ("/*!50100 SELECT 1 */", R),
        ("/*!50100 DELETE FROM t */", W),
        ("/*M!100100 SELECT 1 */", R),
        // Locking reads and side effects.
        ("SELECT * FROM t FOR UPDATE", W),
        ("select * from t for update", W),
        ("SELECT * FROM t WHERE id = 1 FOR UPDATE NOWAIT", W),
        ("SELECT * FROM t FOR UPDATE SKIP LOCKED", W),
        ("SELECT * FROM t LOCK IN SHARE MODE", W),
        ("SELECT * FROM t FOR SHARE", W),
        ("SELECT * FROM t /* x */ FOR /* y */ UPDATE", W),
        ("SELECT * FROM t\nFOR\nUPDATE", W),
        ("SELECT * INTO OUTFILE '/tmp/x' FROM t", W),
        ("SELECT * FROM t INTO OUTFILE '/tmp/x'", W),
        ("SELECT a INTO DUMPFILE '/tmp/x' FROM t", W),
        ("SELECT a INTO @x FROM t", W),
        ("SELECT a FROM t INTO @x", W),
        ("SELECT GET_LOCK('a', 1)", W),
        ("select get_lock('a', 1)", W),
        ("SELECT RELEASE_LOCK('a')", W),
        ("SELECT RELEASE_ALL_LOCKS()", W),
        ("SELECT IS_USED_LOCK('a')", W),
        ("SELECT IS_FREE_LOCK('a')", W),
        ("SELECT NEXTVAL(s)", W),
        ("SELECT NEXT VALUE FOR s", W),
        ("SELECT PREVIOUS VALUE FOR s", W),
        ("SELECT SETVAL(s, 10)", W),
        ("SELECT LASTVAL(s)", W),
        ("SELECT LAST_INSERT_ID()", W),
        ("SELECT SLEEP(1)", W),
        ("SELECT MASTER_POS_WAIT('f', 4)", W),
        ("SELECT MASTER_GTID_WAIT('0-1-1')", W),
        ("SELECT * FROM (SELECT * FROM t FOR UPDATE) x", W),
        ("(SELECT * FROM t FOR UPDATE)", W),
        // SHOW, DESCRIBE, EXPLAIN, HELP.
        ("SHOW TABLES", R),
        ("show databases", R),
        ("SHOW CREATE TABLE t", R),
        ("SHOW VARIABLES LIKE 'x'", R),
        ("SHOW SLAVE STATUS", R),
        ("SHOW PROCESSLIST", R),
        ("SHOW WARNINGS", R),
        ("SHOW FULL COLUMNS FROM t", R),
        ("DESC t", R),
        ("DESCRIBE t", R),
        ("describe t id", R),
        ("EXPLAIN SELECT 1", R),
        ("EXPLAIN UPDATE t SET a = 1", R),
        ("EXPLAIN FORMAT=JSON SELECT * FROM t", R),
        ("EXPLAIN ANALYZE SELECT * FROM t", W),
        ("ANALYZE SELECT * FROM t", W),
        ("ANALYZE TABLE t", W),
        ("HELP 'contents'", R),
        // WITH.
        ("WITH x AS (SELECT 1) SELECT * FROM x", R),
        ("WITH RECURSIVE r AS (SELECT 1 UNION SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r", R),
        ("WITH a AS (SELECT 1), b AS (SELECT 2) SELECT * FROM a, b", R),
        ("WITH x AS (SELECT id FROM t) UPDATE t SET a = 1 WHERE id IN (SELECT id FROM x)", W),
        ("WITH x AS (SELECT id FROM t) DELETE FROM t WHERE id IN (SELECT id FROM x)", W),
        ("WITH x AS (SELECT 1) SELECT * FROM x FOR UPDATE", W),
        // Writes.
        ("INSERT INTO t VALUES (1)", W),
        ("insert into t select * from u", W),
        ("INSERT INTO t (a) SELECT a FROM u", W),
        ("REPLACE INTO t VALUES (1)", W),
        ("UPDATE t SET a = 1", W),
        ("DELETE FROM t", W),
        ("TRUNCATE TABLE t", W),
        ("CREATE TABLE t (id INT)", W),
        ("CREATE TABLE t AS SELECT 1", W),
        ("CREATE TEMPORARY TABLE t (id INT)", W),
        ("DROP TABLE t", W),
        ("ALTER TABLE t ADD c INT", W),
        ("RENAME TABLE a TO b", W),
        ("CREATE INDEX i ON t (a)", W),
        ("CREATE VIEW v AS SELECT 1", W),
        ("LOAD DATA LOCAL INFILE 'x' INTO TABLE t", W),
        ("CALL proc()", W),
        ("DO SLEEP(1)", W),
        ("DO 1", W),
        ("BEGIN", W),
        ("START TRANSACTION", W),
        ("START TRANSACTION READ ONLY", W),
        ("COMMIT", W),
        ("ROLLBACK", W),
        ("SAVEPOINT a", W),
        ("SET autocommit = 0", W),
        ("SET NAMES utf8mb4", W),
        ("USE db", W),
        ("LOCK TABLES t READ", W),
        ("UNLOCK TABLES", W),
        ("FLUSH TABLES", W),
        ("GRANT SELECT ON *.* TO u", W),
        ("KILL 5", W),
        ("OPTIMIZE TABLE t", W),
        ("CHECK TABLE t", W),
        ("PREPARE s FROM 'SELECT 1'", W),
        ("EXECUTE s", W),
        ("DEALLOCATE PREPARE s", W),
        ("HANDLER t OPEN", W),
        ("XA START 'x'", W),
        ("VALUES (1), (2)", W),
        ("TABLE t", W),
        ("selection", W),
        ("SELECTX 1", W),
        ("showx", W),
        ("", W),
        ("   ", W),
        ("-- only a comment", W),
        ("/* only a comment */", W),
        (";", W),
        ("garbage \u{1}\u{2}", W),
        // Batches.
        ("SELECT 1; SELECT 2", R),
        ("SELECT 1; UPDATE t SET a = 1", W),
        ("UPDATE t SET a = 1; SELECT 1", W),
        ("SELECT 1;", R),
        ("SELECT 1;;SELECT 2", R),
        ("SELECT ';' ; DELETE FROM t", W),
        ("SELECT 1; SELECT * FROM t FOR UPDATE", W),
        ("SHOW TABLES; DESC t", R),
    ];

    #[test]
    fn classification_table() {
        assert!(CASES.len() >= 150, "{} cases", CASES.len());
        let mut wrong = Vec::new();
        for (sql, want) in CASES {
            let got = classify(sql.as_bytes());
            if got != *want {
                wrong.push(format!("{sql:?}: got {got:?}, want {want:?}"));
            }
        }
        assert!(wrong.is_empty(), "misclassified:\n{}", wrong.join("\n"));
    }

    #[test]
    fn read_only_transactions() {
        assert!(is_read_only_transaction(b"START TRANSACTION READ ONLY"));
        assert!(is_read_only_transaction(b"start transaction read only;"));
        assert!(!is_read_only_transaction(b"START TRANSACTION"));
        assert!(!is_read_only_transaction(b"START TRANSACTION READ WRITE"));
        assert!(!is_read_only_transaction(b"START TRANSACTION READ ONLY, WITH CONSISTENT SNAPSHOT"));
    }

    #[test]
    fn hints() {
        assert_eq!(hint(b"/* corelay:primary */ SELECT 1"), Some(Hint::Primary));
        assert_eq!(hint(b"  /*corelay:replica*/SELECT 1"), Some(Hint::Replica));
        assert_eq!(hint(b"/* other */ /* CORELAY:PRIMARY */ SELECT 1"), Some(Hint::Primary));
        assert_eq!(hint(b"/*+ corelay:replica */ SELECT 1"), Some(Hint::Replica));
        assert_eq!(hint(b"SELECT /* corelay:primary */ 1"), None);
        assert_eq!(hint(b"/* corelay:primaryx */ SELECT 1"), None);
        assert_eq!(hint(b"/* unterminated"), None);
    }
}
