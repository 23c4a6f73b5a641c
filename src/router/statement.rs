//! What a text statement does to session state that lives on its backend connection.
//!
//! The router reads every statement of a COM_QUERY (split on top-level `;`) and reports:
//! SET assignments the session can replay on another connection, `USE`, and the reasons
//! a session must keep its connection (user variables, temporary tables, locks, ...).
//! Transactions are not read from SQL: the server's status flags say when one is open.

use super::classify::Class;
use super::lexer::{Lexer, Token};
pub use super::set::{replayable, reported_implicitly};
use super::set::{set_statement, split_top_level};

/// Reasons a session keeps (is pinned to) its backend connection. A bit set.
pub mod pin {
    pub const USER_VARIABLES: u32 = 1;
    pub const TEMPORARY_TABLE: u32 = 1 << 1;
    pub const LOCK_TABLES: u32 = 1 << 2;
    pub const GET_LOCK: u32 = 1 << 3;
    pub const FOUND_ROWS: u32 = 1 << 4;
    pub const UNKNOWN_SET: u32 = 1 << 5;
    pub const SQL_PREPARE: u32 = 1 << 6;
    pub const HANDLER: u32 = 1 << 7;
    pub const XA: u32 = 1 << 8;
    /// Set by the session from status flags, not from SQL.
    pub const TRANSACTION: u32 = 1 << 9;
    pub const AUTOCOMMIT_OFF: u32 = 1 << 10;
    pub const CURSOR: u32 = 1 << 11;
    pub const LONG_DATA: u32 = 1 << 12;
    /// `dbconnect master` / `dbconnect <ip>:<port>` until `dbconnect release`.
    pub const DBCONNECT: u32 = 1 << 13;
    /// The last reply reported warnings: the connection is kept for the next command, so
    /// that SHOW WARNINGS (or @@warning_count) reads them there.
    pub const WARNINGS: u32 = 1 << 14;
    /// `CALL`: a procedure may leave variables, temporary tables or locks behind.
    pub const ROUTINE: u32 = 1 << 15;
    /// `FLUSH TABLES ... WITH READ LOCK` / `FOR EXPORT`, `BACKUP STAGE`, `BACKUP LOCK`,
    /// `LOCK INSTANCE FOR BACKUP`.
    pub const BACKUP_LOCK: u32 = 1 << 16;
    /// `NEXTVAL` / `NEXT VALUE FOR`: `LASTVAL()` and `PREVIOUS VALUE FOR` read the
    /// connection's last value.
    pub const SEQUENCE: u32 = 1 << 17;
    /// A statement too large to analyse whole (16 MiB and more).
    pub const UNANALYSED: u32 = 1 << 18;
    /// The user's `multiplex = false`: one connection for the session's life.
    pub const NO_MULTIPLEX: u32 = 1 << 19;
    /// `LAST_INSERT_ID(expr)` set the connection's value where the reply does not show it:
    /// until a reply reports an insert id, the server answers `LAST_INSERT_ID()`.
    pub const INSERT_ID: u32 = 1 << 20;
    /// The server's session tracking reported a state change the statement's analysis did
    /// not foresee (a function's side effect, say): the session keeps what it holds.
    pub const UNPREDICTED: u32 = 1 << 21;

    /// Pins that belong to the session rather than to state on its connection: they
    /// survive the connection's loss.
    pub const SESSION_OWN: u32 = DBCONNECT | NO_MULTIPLEX;

    /// Names for logs and status.
    pub fn names(bits: u32) -> Vec<&'static str> {
        const ALL: [(u32, &str); 22] = [
            (USER_VARIABLES, "user variables"),
            (TEMPORARY_TABLE, "temporary table"),
            (LOCK_TABLES, "LOCK TABLES"),
            (GET_LOCK, "GET_LOCK"),
            (FOUND_ROWS, "SQL_CALC_FOUND_ROWS"),
            (UNKNOWN_SET, "untracked SET"),
            (SQL_PREPARE, "SQL PREPARE"),
            (HANDLER, "HANDLER"),
            (XA, "XA transaction"),
            (TRANSACTION, "transaction"),
            (AUTOCOMMIT_OFF, "autocommit=0"),
            (CURSOR, "open cursor"),
            (LONG_DATA, "long data"),
            (DBCONNECT, "dbconnect"),
            (WARNINGS, "warnings"),
            (ROUTINE, "CALL"),
            (BACKUP_LOCK, "backup lock"),
            (SEQUENCE, "sequence value"),
            (UNANALYSED, "statement too large to analyse"),
            (NO_MULTIPLEX, "multiplex = false"),
            (INSERT_ID, "LAST_INSERT_ID(expr)"),
            (UNPREDICTED, "unpredicted state change"),
        ];
        ALL.iter().filter(|(b, _)| bits & b != 0).map(|(_, n)| *n).collect()
    }
}

/// A session variable assignment the proxy can replay: `name` is lower case and
/// unqualified; `value` is the literal as written (or a rebuilt form for NAMES).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub name: String,
    pub value: String,
}

/// The effects of one COM_QUERY text.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Effects {
    /// The statement's fingerprint ([`crate::router::digest`]).
    pub digest: u64,
    /// Where it may run ([`crate::router::classify`], read in the same pass).
    pub class: Class,
    /// Pins to add once the statement succeeded.
    pub pin: u32,
    /// Pins to drop once the statement succeeded. Never overlaps `pin`: the later of a pin
    /// and an unpin in the text wins ([`Effects::pin`], [`Effects::unpin`]).
    pub unpin: u32,
    /// Session variables to record once the statement succeeded.
    pub assignments: Vec<Assignment>,
    /// `USE db`: the new schema.
    pub use_schema: Option<String>,
    /// Every statement starts with SELECT, SHOW, DESC(RIBE), EXPLAIN or HELP: sending the
    /// text twice does no harm (pins aside, which the caller checks).
    pub reads_only: bool,
    /// What it reads of, or leaves on, the connection's record of the previous statement.
    pub previous: Previous,
    /// The last statement is a SELECT: the rows it returns are what `FOUND_ROWS()` says
    /// next (SHOW and the rest leave that alone).
    pub selects: bool,
    /// The variables of `SET STATEMENT ... FOR`, lower case (the server reports their
    /// change on the result's EOF).
    pub statement_vars: Vec<String>,
    /// It sets the session's own `session_track_*` variables: the client's settings rule
    /// what its connection reports from then on.
    pub sets_trackers: bool,
    /// Session variables set to an expression: replayable with the value the server's
    /// session tracking reports for them, pinned without one.
    pub server_values: Vec<String>,
}

/// What a statement reads of, or leaves on, its connection's record of the previous
/// statement (warnings, errors, row counts, LAST_INSERT_ID()).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Previous {
    /// It reads what the connection's previous statement left: it must run where that
    /// statement ran, so it is never pipelined with other sessions' statements.
    pub bound: bool,
    /// It reads LAST_INSERT_ID() (or @@identity, @@last_insert_id): the connection must
    /// hold the session's value, even one the session holds on to (a transaction may have
    /// started after the insert, on another connection).
    pub reads_insert_id: bool,
    /// It may leave the connection's LAST_INSERT_ID() at a value the proxy does not see in
    /// the reply (`LAST_INSERT_ID(expr)`, inserts inside a procedure).
    pub may_set_insert_id: bool,
    /// It only reads the previous statement's diagnostics (SHOW WARNINGS, SHOW ERRORS,
    /// GET DIAGNOSTICS, @@warning_count): it leaves them in place for the next one, as the
    /// server does.
    pub keeps_diagnostics: bool,
    /// It opens a table (as far as its words tell): the server clears the previous
    /// statement's warnings then, and only then (`SELECT 1`, `SET`, `DO` leave them).
    pub uses_tables: bool,
}

impl Previous {
    /// Whether the statement replaces what SHOW WARNINGS would list (it may add its own
    /// warnings without that).
    pub fn clears_diagnostics(&self) -> bool {
        self.uses_tables && !self.keeps_diagnostics
    }
}

/// Words that say a statement opens a table.
const TABLE_WORDS: &[&str] = &[
    "FROM", "UPDATE", "INSERT", "DELETE", "REPLACE", "JOIN", "TABLE", "TABLES", "CREATE", "ALTER", "DROP", "TRUNCATE",
    "RENAME", "LOAD", "CALL", "HANDLER", "ANALYZE", "OPTIMIZE", "CHECK", "REPAIR", "DESC", "DESCRIBE", "EXPLAIN",
    "SHOW",
];

/// Words and system variables that refer to the connection's previous statement.
const PREVIOUS_STATEMENT: &[&str] = &[
    "WARNINGS",
    "ERRORS",
    "DIAGNOSTICS",
    "ROW_COUNT",
    "FOUND_ROWS",
    "LAST_INSERT_ID",
    "IDENTITY",
    "warning_count",
    "error_count",
];

impl Effects {
    /// The statement leaves `bit` held (whatever came before it in the text).
    pub fn pin(&mut self, bit: u32) {
        self.pin |= bit;
        self.unpin &= !bit;
    }

    /// The statement releases `bit` (whatever came before it in the text).
    pub fn unpin(&mut self, bit: u32) {
        self.unpin |= bit;
        self.pin &= !bit;
    }

    /// Whether the statement is expected to change session state (what makes the server's
    /// "state changed" no surprise).
    pub fn changes_state(&self) -> bool {
        self.pin != 0
            || self.unpin != 0
            || !self.assignments.is_empty()
            || !self.server_values.is_empty()
            || self.use_schema.is_some()
            || self.sets_trackers
            || !self.statement_vars.is_empty()
    }

    /// Whether a statement of `class` with these effects may share a connection with other
    /// sessions' statements, sent back to back (see [`crate::pool::pipe`]): reads that leave
    /// nothing behind on the connection and read nothing a previous statement left there.
    pub fn pipelinable(&self, class: Class) -> bool {
        class == Class::Read
            && self.reads_only
            && self.pin == 0
            && self.unpin == 0
            && self.assignments.is_empty()
            && self.server_values.is_empty()
            && self.use_schema.is_none()
            && !self.previous.bound
    }
}

/// Analyses a COM_QUERY text in one pass over its tokens. It allocates only for SET
/// statements (whose tokens it collects) and for what it reports.
pub fn analyse(sql: &[u8]) -> Effects {
    let mut fx = Effects { reads_only: true, ..Effects::default() };
    fx.previous.keeps_diagnostics = true;
    let mut seen = 0;
    let mut lex = Lexer::new(sql);
    let mut digest = crate::router::digest::Fingerprint::default();
    let mut classifier = crate::router::classify::Classifier::new();
    loop {
        let mut head: [Option<Token<'_>>; 4] = [None; 4];
        let mut count = 0;
        let mut prev: [Option<Token<'_>>; 2] = [None; 2];
        let mut set_tokens: Option<Vec<Token<'_>>> = None;
        let mut more = false;
        let mut diagnostics_var = false;
        let mut first = First::Other;
        while let Some(t) = lex.next() {
            digest.feed(sql, t, lex.token_start(), lex.offset());
            if t == Token::Punct(b';') {
                more = true;
                break;
            }
            classifier.feed(t);
            if count < head.len() {
                head[count] = Some(t);
            }
            count += 1;
            match set_tokens.as_mut() {
                Some(v) => v.push(t),
                None if count == 1 && t.is_word("SET") => set_tokens = Some(Vec::new()),
                None => {}
            }
            anywhere(prev, t, &mut fx);
            if !fx.previous.uses_tables && opens_table(prev, t) {
                fx.previous.uses_tables = true;
            }
            diagnostics_var |= matches!(t, Token::SysVar(w) if [&b"warning_count"[..], b"error_count"]
                .iter()
                .any(|n| w.rsplit(|&b| b == b'.').next().is_some_and(|x| x.eq_ignore_ascii_case(n))));
            if count == 1 {
                first = First::of(t);
            }
            within(first, prev, t, &mut fx);
            prev = [prev[1], Some(t)];
        }
        classifier.end_statement();
        if count > 0 {
            seen += 1;
            leading(&head, set_tokens.as_deref(), &mut fx);
            let read = ["SELECT", "SHOW", "DESC", "DESCRIBE", "EXPLAIN", "HELP"]
                .iter()
                .any(|kw| head[0].is_some_and(|t| t.is_word(kw)));
            fx.reads_only &= read;
            fx.previous.keeps_diagnostics &= reads_diagnostics(&head, diagnostics_var);
            fx.selects = head[0].is_some_and(|t| t.is_word("SELECT") || t.is_word("WITH") || t == Token::Punct(b'('));
        }
        if !more {
            fx.digest = digest.finish(sql);
            fx.class = classifier.class();
            fx.reads_only &= seen > 0;
            fx.previous.keeps_diagnostics &= seen > 0;
            return fx;
        }
    }
}

/// Whether token `t` (after `prev`) says the statement opens a table: a table word, but not
/// `FROM DUAL` (judged at DUAL: FROM alone is taken as a table).
fn opens_table(prev: [Option<Token<'_>>; 2], t: Token<'_>) -> bool {
    if prev[1].is_some_and(|p| p.is_word("FROM")) {
        return !t.is_word("DUAL");
    }
    !t.is_word("FROM") && TABLE_WORDS.iter().any(|w| t.is_word(w))
}

/// Whether a statement (by its first keywords; `diagnostics_var`: it names @@warning_count
/// or @@error_count) only reads the previous statement's diagnostics.
fn reads_diagnostics(head: &[Option<Token<'_>>; 4], diagnostics_var: bool) -> bool {
    let word = |i: usize, kw: &str| head[i].is_some_and(|x| x.is_word(kw));
    (word(0, "SHOW") && (word(1, "WARNINGS") || word(1, "ERRORS") || word(1, "COUNT")))
        || (word(0, "GET") && (word(1, "DIAGNOSTICS") || word(2, "DIAGNOSTICS")))
        || (word(0, "SELECT") && diagnostics_var)
}

/// What a statement's first keywords say.
fn leading(head: &[Option<Token<'_>>; 4], set: Option<&[Token<'_>]>, fx: &mut Effects) {
    let word = |i: usize, kw: &str| head[i].is_some_and(|x| x.is_word(kw));
    if let Some(rest) = set {
        if rest.first().is_some_and(|x| x.is_word("STATEMENT")) {
            set_statement_for(rest, fx);
        } else {
            set_statement(rest, fx);
        }
    } else if word(0, "USE") {
        fx.use_schema = head[1].as_ref().and_then(identifier);
    } else if word(0, "LOCK") && (word(1, "TABLES") || word(1, "TABLE")) {
        fx.pin(pin::LOCK_TABLES);
    } else if word(0, "UNLOCK") && (word(1, "TABLES") || word(1, "TABLE")) {
        fx.unpin(pin::LOCK_TABLES);
    } else if word(0, "LOCK") && word(1, "INSTANCE") {
        fx.pin(pin::BACKUP_LOCK);
    } else if (word(0, "UNLOCK") && word(1, "INSTANCE"))
        || (word(0, "BACKUP") && ((word(1, "STAGE") && word(2, "END")) || word(1, "UNLOCK")))
    {
        fx.unpin(pin::BACKUP_LOCK);
    } else if word(0, "BACKUP") {
        fx.pin(pin::BACKUP_LOCK);
    } else if word(0, "CREATE") && (word(1, "TEMPORARY") || (word(1, "OR") && word(3, "TEMPORARY"))) {
        fx.pin(pin::TEMPORARY_TABLE);
    } else if word(0, "PREPARE") || word(0, "EXECUTE") || word(0, "DEALLOCATE") {
        fx.pin(pin::SQL_PREPARE);
    } else if word(0, "CALL") {
        fx.pin(pin::ROUTINE);
        fx.previous.may_set_insert_id = true;
    } else if word(0, "HANDLER") {
        fx.pin(pin::HANDLER);
    } else if word(0, "XA") {
        if word(1, "COMMIT") || word(1, "ROLLBACK") {
            fx.unpin(pin::XA);
        } else {
            fx.pin(pin::XA);
        }
    }
}

/// MariaDB's `SET STATEMENT var = value [, ...] FOR <statement>`: the assignments last for
/// the one statement; the statement after FOR has its usual effects.
fn set_statement_for(t: &[Token<'_>], fx: &mut Effects) {
    let Some(at) = t.iter().position(|x| x.is_word("FOR")) else { return };
    for part in split_top_level(&t[1..at]) {
        if let Some(Token::Word(n) | Token::SysVar(n)) = part.first() {
            let n = String::from_utf8_lossy(n).to_ascii_lowercase();
            let name = n.rsplit('.').next().unwrap_or(&n).to_string();
            fx.statement_vars.push(name);
        }
    }
    let inner = &t[at + 1..];
    let mut head: [Option<Token<'_>>; 4] = [None; 4];
    for (slot, tok) in head.iter_mut().zip(inner) {
        *slot = Some(*tok);
    }
    let set = inner.first().filter(|x| x.is_word("SET")).map(|_| &inner[1..]);
    leading(&head, set, fx);
}

/// What a token says wherever it stands, given the two before it.
fn anywhere(prev: [Option<Token<'_>>; 2], t: Token<'_>, fx: &mut Effects) {
    match (prev, t) {
        // @x := ...
        ([Some(Token::UserVar(_)), Some(Token::Punct(b':'))], Token::Punct(b'=')) => fx.pin(pin::USER_VARIABLES),
        // ... INTO @x
        ([_, Some(into)], Token::UserVar(_)) if into.is_word("INTO") => fx.pin(pin::USER_VARIABLES),
        // NEXT VALUE FOR s
        ([Some(next), Some(value)], for_) if next.is_word("NEXT") && value.is_word("VALUE") && for_.is_word("FOR") => {
            fx.pin(pin::SEQUENCE)
        }
        // LAST_INSERT_ID(expr)
        ([Some(f), Some(Token::Punct(b'('))], arg) if f.is_word("LAST_INSERT_ID") && arg != Token::Punct(b')') => {
            fx.pin(pin::INSERT_ID)
        }
        ([_, Some(Token::Word(w))], Token::Punct(b'(')) => {
            // A lock of GET_LOCK stays until RELEASE_ALL_LOCKS(): RELEASE_LOCK may release
            // a lock not held, or one of several a GET_LOCK over rows took, so counting
            // calls in the text cannot tell when the last one goes.
            if w.eq_ignore_ascii_case(b"GET_LOCK") {
                fx.pin(pin::GET_LOCK);
            } else if w.eq_ignore_ascii_case(b"RELEASE_ALL_LOCKS") {
                fx.unpin(pin::GET_LOCK);
            } else if w.eq_ignore_ascii_case(b"FOUND_ROWS") {
                fx.unpin(pin::FOUND_ROWS);
            } else if w.eq_ignore_ascii_case(b"NEXTVAL") {
                fx.pin(pin::SEQUENCE);
            }
        }
        (_, Token::Word(w)) if w.eq_ignore_ascii_case(b"SQL_CALC_FOUND_ROWS") => fx.pin(pin::FOUND_ROWS),
        _ => {}
    }
    if let Token::Word(w) | Token::SysVar(w) = t {
        let name = w.rsplit(|&b| b == b'.').next().unwrap_or(w);
        if PREVIOUS_STATEMENT.iter().any(|kw| name.eq_ignore_ascii_case(kw.as_bytes())) {
            fx.previous.bound = true;
            if [&b"LAST_INSERT_ID"[..], b"IDENTITY"].iter().any(|kw| name.eq_ignore_ascii_case(kw)) {
                fx.previous.reads_insert_id = true;
                fx.previous.may_set_insert_id = true;
            }
        }
    }
}

/// A statement's first word, as far as [`within`] cares: read once per statement rather
/// than compared again at every token.
#[derive(Clone, Copy, PartialEq, Eq)]
enum First {
    /// `LOAD` or `GET`.
    LoadOrGet,
    Flush,
    Other,
}

impl First {
    fn of(t: Token<'_>) -> First {
        if t.is_word("LOAD") || t.is_word("GET") {
            First::LoadOrGet
        } else if t.is_word("FLUSH") {
            First::Flush
        } else {
            First::Other
        }
    }
}

/// What a token says given the statement's first word: `LOAD DATA ... (@v) SET c = @v`
/// assigns user variables; `FLUSH TABLES ... WITH READ LOCK` and `... FOR EXPORT` lock
/// until UNLOCK TABLES.
fn within(first: First, prev: [Option<Token<'_>>; 2], t: Token<'_>, fx: &mut Effects) {
    match first {
        First::LoadOrGet if matches!(t, Token::UserVar(_)) => fx.pin(pin::USER_VARIABLES),
        First::Flush => {
            let read_lock = prev[0].is_some_and(|x| x.is_word("WITH"))
                && prev[1].is_some_and(|x| x.is_word("READ"))
                && t.is_word("LOCK");
            let export = prev[1].is_some_and(|x| x.is_word("FOR")) && t.is_word("EXPORT");
            if read_lock || export {
                fx.pin(pin::LOCK_TABLES);
            }
        }
        _ => {}
    }
}

/// An identifier token as a string (bare word or back-quoted).
fn identifier(t: &Token<'_>) -> Option<String> {
    match t {
        Token::Word(w) => Some(String::from_utf8_lossy(w).into_owned()),
        Token::QuotedIdent(w) => Some(String::from_utf8_lossy(w).replace("``", "`")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_class_read_in_the_same_pass_is_the_classifiers() {
        use crate::router::classify::classify;
        for sql in [
            "SELECT c FROM sbtest1 WHERE id=4711",
            "select 1; select 2",
            "SELECT 1; UPDATE t SET a = 1",
            "SELECT * FROM t FOR UPDATE",
            "SELECT * FROM t LOCK IN SHARE MODE",
            "SELECT GET_LOCK('a', 1)",
            "SELECT NEXT VALUE FOR s",
            "SELECT 1 INTO @x",
            "(SELECT 1) UNION (SELECT 2)",
            "WITH a AS (SELECT 1) SELECT * FROM a",
            "WITH a AS (SELECT 1) UPDATE t SET x = 1",
            "EXPLAIN SELECT 1",
            "EXPLAIN ANALYZE SELECT 1",
            "SHOW TABLES",
            "DESC t",
            "HELP 'x'",
            "INSERT INTO t VALUES (1)",
            "/* corelay:replica */ SELECT 1",
            "",
            ";",
            "SELECT 1;",
        ] {
            assert_eq!(analyse(sql.as_bytes()).class, classify(sql.as_bytes()), "{sql}");
        }
    }

    fn a(name: &str, value: &str) -> Assignment {
        Assignment { name: name.into(), value: value.into() }
    }

    #[test]
    fn set_statements_are_tracked() {
        let cases: &[(&str, Vec<Assignment>)] = &[
            ("SET sql_mode = 'STRICT_ALL_TABLES'", vec![a("sql_mode", "'STRICT_ALL_TABLES'")]),
            (
                "set session time_zone='+02:00', @@session.autocommit=1",
                vec![a("time_zone", "'+02:00'"), a("autocommit", "1")],
            ),
            ("SET @@local.sql_select_limit = DEFAULT", vec![a("sql_select_limit", "DEFAULT")]),
            ("SET @@foreign_key_checks=OFF", vec![a("foreign_key_checks", "OFF")]),
            ("SET NAMES utf8mb4", vec![a("names", "utf8mb4")]),
            ("SET NAMES 'latin1' COLLATE 'latin1_bin'", vec![a("names", "'latin1' COLLATE 'latin1_bin'")]),
            ("/*!40101 SET NAMES utf8 */", vec![a("names", "utf8")]),
            ("SET CHARACTER SET latin1", vec![a("character set", "latin1")]),
            ("SET LOCAL max_statement_time = 2.5", vec![a("max_statement_time", "2.5")]),
            ("SET tx_isolation = 'READ-COMMITTED'", vec![a("tx_isolation", "'READ-COMMITTED'")]),
            ("SET auto_increment_offset = -1", vec![a("auto_increment_offset", "-1")]),
            (
                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED, READ ONLY",
                vec![a("transaction_isolation", "'READ-COMMITTED'"), a("transaction_read_only", "1")],
            ),
            ("SET SESSION TRANSACTION READ WRITE", vec![a("transaction_read_only", "0")]),
            ("SET GLOBAL max_connections = 10, SESSION wait_timeout = 5", vec![a("wait_timeout", "5")]),
            ("SET GLOBAL max_connections = 10", vec![]),
            ("SET @@global.sql_mode = ''", vec![]),
            ("SET STATEMENT max_statement_time=1 FOR SELECT 1", vec![]),
            ("SET STATEMENT max_statement_time=1 FOR SET sql_mode = ''", vec![a("sql_mode", "''")]),
            ("SET PASSWORD = PASSWORD('secret')", vec![]),
            ("SET PASSWORD FOR 'app'@'%' = 'x'", vec![]),
        ];
        for (sql, want) in cases {
            let fx = analyse(sql.as_bytes());
            assert_eq!(&fx.assignments, want, "{sql}");
            assert_eq!(fx.pin, 0, "{sql}: pinned by {:?}", pin::names(fx.pin));
        }
    }

    #[test]
    fn untracked_sets_pin() {
        for sql in [
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SET session_track_schema = ON",
            "SET insert_id = 5",
            "SET insert_id = 2 + 3",
            "SET ROLE admin",
            "SET NAMES @cs",
            "SET x",
            "SET time_zone =",
        ] {
            assert_eq!(analyse(sql.as_bytes()).pin & pin::UNKNOWN_SET, pin::UNKNOWN_SET, "{sql}");
        }
        assert!(analyse(b"SET session_track_schema = ON").sets_trackers);
    }

    #[test]
    fn a_variable_set_to_an_expression_waits_for_the_servers_value() {
        let cases: &[(&str, &[&str])] = &[
            ("SET sql_mode = CONCAT(@@sql_mode, ',STRICT_ALL_TABLES')", &["sql_mode"]),
            ("SET time_zone = @tz", &["time_zone"]),
            ("SET SESSION wait_timeout = 10 * 6, @@session.sql_mode = ?", &["wait_timeout", "sql_mode"]),
        ];
        for (sql, want) in cases {
            let fx = analyse(sql.as_bytes());
            assert_eq!(fx.pin, 0, "{sql}: pinned by {:?}", pin::names(fx.pin));
            assert_eq!(fx.server_values, *want, "{sql}");
            assert!(fx.changes_state() && !fx.pipelinable(Class::Read), "{sql}");
        }
        // A literal among them is recorded as written until the server says more.
        let fx = analyse(b"SET lc_time_names = 'de_DE', time_zone = @tz");
        assert_eq!(fx.assignments, vec![Assignment { name: "lc_time_names".into(), value: "'de_DE'".into() }]);
        assert_eq!(fx.server_values, vec!["time_zone".to_string()]);
    }

    #[test]
    fn set_statement_names_its_variables() {
        let fx = analyse(b"SET STATEMENT max_statement_time = 10, @@session.time_zone = '+01:00' FOR SELECT 1");
        assert_eq!(fx.statement_vars, vec!["max_statement_time".to_string(), "time_zone".to_string()]);
        assert!(fx.assignments.is_empty());
    }

    #[test]
    fn pins_and_unpins() {
        let cases: &[(&str, u32, u32)] = &[
            ("SET @a = 1", pin::USER_VARIABLES, 0),
            ("SELECT @a := 5", pin::USER_VARIABLES, 0),
            ("SELECT id INTO @x FROM t", pin::USER_VARIABLES, 0),
            ("SELECT @a", 0, 0),
            ("CREATE TEMPORARY TABLE t (id int)", pin::TEMPORARY_TABLE, 0),
            ("create or replace temporary table t (id int)", pin::TEMPORARY_TABLE, 0),
            ("LOCK TABLES t WRITE", pin::LOCK_TABLES, 0),
            ("UNLOCK TABLES", 0, pin::LOCK_TABLES),
            ("SELECT GET_LOCK('x', 1)", pin::GET_LOCK, 0),
            ("SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1", pin::FOUND_ROWS, 0),
            ("SELECT FOUND_ROWS()", 0, pin::FOUND_ROWS),
            ("PREPARE s FROM 'SELECT 1'", pin::SQL_PREPARE, 0),
            ("XA START 'x'", pin::XA, 0),
            ("XA COMMIT 'x'", 0, pin::XA),
            ("SELECT 'GET_LOCK(' , '@a := 1'", 0, 0),
            ("-- SET @a = 1\nSELECT 1", 0, 0),
            ("SELECT 1; SET @a = 2", pin::USER_VARIABLES, 0),
            ("CALL add_row(1)", pin::ROUTINE, 0),
            ("FLUSH TABLES WITH READ LOCK", pin::LOCK_TABLES, 0),
            ("flush no_write_to_binlog tables t1, t2 with read lock", pin::LOCK_TABLES, 0),
            ("FLUSH TABLES t1 FOR EXPORT", pin::LOCK_TABLES, 0),
            ("FLUSH TABLES", 0, 0),
            ("LOCK INSTANCE FOR BACKUP", pin::BACKUP_LOCK, 0),
            ("UNLOCK INSTANCE", 0, pin::BACKUP_LOCK),
            ("BACKUP STAGE START", pin::BACKUP_LOCK, 0),
            ("BACKUP STAGE BLOCK_COMMIT", pin::BACKUP_LOCK, 0),
            ("BACKUP STAGE END", 0, pin::BACKUP_LOCK),
            ("BACKUP LOCK t1", pin::BACKUP_LOCK, 0),
            ("BACKUP UNLOCK", 0, pin::BACKUP_LOCK),
            ("SET STATEMENT max_statement_time=5 FOR CREATE TEMPORARY TABLE t (a int)", pin::TEMPORARY_TABLE, 0),
            ("SET STATEMENT sql_mode='' FOR SET @a = 1", pin::USER_VARIABLES, 0),
            ("SET STATEMENT sql_mode='' FOR SELECT GET_LOCK('a', 0)", pin::GET_LOCK, 0),
            ("SET STATEMENT sql_mode='' FOR SELECT 1", 0, 0),
            ("LOAD DATA INFILE '/tmp/x' INTO TABLE t (@v) SET a = @v + 1", pin::USER_VARIABLES, 0),
            ("LOAD DATA LOCAL INFILE 'x' INTO TABLE t (a, b)", 0, 0),
            ("SELECT NEXTVAL(s)", pin::SEQUENCE, 0),
            ("INSERT INTO t VALUES (NEXT VALUE FOR s)", pin::SEQUENCE, 0),
            ("SELECT LASTVAL(s), PREVIOUS VALUE FOR s", 0, 0),
            ("SELECT GET_LOCK('a', 0); SELECT RELEASE_LOCK('a')", pin::GET_LOCK, 0),
            ("SELECT RELEASE_ALL_LOCKS()", 0, pin::GET_LOCK),
            ("UNLOCK TABLES; LOCK TABLES t READ", pin::LOCK_TABLES, 0),
            ("LOCK TABLES t READ; UNLOCK TABLES", 0, pin::LOCK_TABLES),
            ("GET DIAGNOSTICS @n = NUMBER", pin::USER_VARIABLES, 0),
            ("SELECT LAST_INSERT_ID(77)", pin::INSERT_ID, 0),
            ("UPDATE t SET id = LAST_INSERT_ID(id + 1)", pin::INSERT_ID, 0),
            ("SELECT LAST_INSERT_ID()", 0, 0),
        ];
        for (sql, pins, unpins) in cases {
            let sql = sql.replace("\\n", "\n");
            let fx = analyse(sql.as_bytes());
            assert_eq!((fx.pin, fx.unpin), (*pins, *unpins), "{sql}");
        }
    }

    #[test]
    fn pipelinable() {
        assert!(analyse(b"SELECT c FROM sbtest1 WHERE id = 5").pipelinable(Class::Read));
        assert!(analyse(b"select @@server_id, @@session.sql_mode; show tables").pipelinable(Class::Read));
        assert!(!analyse(b"SELECT NEXTVAL(s)").pipelinable(Class::Write), "writes never share a connection");
        for sql in [
            "SHOW WARNINGS",
            "SHOW ERRORS",
            "SELECT @@warning_count",
            "SELECT @@session.error_count",
            "SELECT ROW_COUNT()",
            "SELECT FOUND_ROWS()",
            "SELECT @@IDENTITY",
            "SELECT SQL_CALC_FOUND_ROWS * FROM t",
            "SELECT @a := 1",
            "SELECT 1 INTO @x",
            "SELECT GET_LOCK('a', 1)",
            "SET @a = 1",
            "USE db",
            "SELECT 1; UPDATE t SET a = 1",
        ] {
            assert!(!analyse(sql.as_bytes()).pipelinable(Class::Read), "{sql}");
        }
    }

    #[test]
    fn insert_id() {
        for sql in ["INSERT INTO c VALUES (LAST_INSERT_ID())", "SELECT @@identity + 1", "select last_insert_id() * 2"] {
            let fx = analyse(sql.as_bytes()).previous;
            assert!(fx.bound && fx.reads_insert_id && fx.may_set_insert_id, "{sql}");
        }
        let call = analyse(b"CALL add_row(1)").previous;
        assert!(call.may_set_insert_id && !call.reads_insert_id);
        for sql in ["SELECT ROW_COUNT()", "INSERT INTO t VALUES (1)", "SELECT last_insert_id_col FROM t"] {
            let fx = analyse(sql.as_bytes()).previous;
            assert!(!fx.reads_insert_id && !fx.may_set_insert_id, "{sql}");
        }
    }

    #[test]
    fn statements_that_only_read_diagnostics_leave_them() {
        for sql in [
            "SHOW WARNINGS",
            "show errors limit 1",
            "SHOW COUNT(*) WARNINGS",
            "GET DIAGNOSTICS @n = NUMBER",
            "GET CURRENT DIAGNOSTICS CONDITION 1 @m = MESSAGE_TEXT",
            "SELECT @@warning_count, @@session.error_count",
        ] {
            assert!(analyse(sql.as_bytes()).previous.keeps_diagnostics, "{sql}");
        }
        for sql in ["SELECT 1", "SHOW TABLES", "SHOW WARNINGS; SELECT 1", "", "SELECT ROW_COUNT()"] {
            assert!(!analyse(sql.as_bytes()).previous.keeps_diagnostics, "{sql}");
        }
    }

    #[test]
    fn reads_only() {
        assert!(analyse(b"SELECT 1").reads_only);
        assert!(analyse(b"/* x */ show tables; select 2").reads_only);
        assert!(!analyse(b"SELECT 1; DELETE FROM t").reads_only);
        assert!(!analyse(b"INSERT INTO t VALUES (1)").reads_only);
        assert!(!analyse(b"").reads_only);
    }

    #[test]
    fn use_statement() {
        assert_eq!(analyse(b"USE shop").use_schema.as_deref(), Some("shop"));
        assert_eq!(analyse(b"use `my db`").use_schema.as_deref(), Some("my db"));
        assert_eq!(analyse(b"SELECT 1").use_schema, None);
    }
}
