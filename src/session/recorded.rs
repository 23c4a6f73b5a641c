//! What a session recorded of its own state: the reasons it keeps its connection (pins and
//! locks), its schema and variables, its prepared statements, what its last statement left
//! (insert id, row count, warnings), and when it last wrote.
//!
//! Plain data with no I/O: the transitions a statement's reply causes are methods here,
//! unit-tested, and the session applies them through one function for every path
//! ([`super::Session::finish_statement`]). The connection's own record
//! ([`crate::backend::State`]) follows alongside, so the next borrower knows what to
//! replay.
//!
//! Invariants:
//! - A state change counts only when the statement succeeded; a pin counts even when a
//!   later statement of its batch failed (caution costs a connection, not correctness).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::local::SessionFunction;
use crate::backend::{canonical_name, is_charset_var, server_literal, State, Vars};
use crate::protocol::metadata::{self, Defs};
use crate::protocol::scanner::Scanner;
use crate::protocol::status;
use crate::router::classify::Class;
use crate::router::statement::{pin, replayable, reported_implicitly, Assignment, Effects};

/// A session's own record of its state.
#[derive(Debug)]
pub(super) struct Recorded {
    /// Why the session keeps its connection ([`pin`] bits).
    pub pins: u32,
    /// The schema the client is in.
    pub schema: Option<String>,
    /// Session variables the client set, to replay on other connections.
    pub vars: Vars,
    /// Prepared statements by the ids this session handed out.
    pub stmts: Statements,
    /// The last non-zero insert id the server reported to this session.
    pub last_insert_id: u64,
    /// What `ROW_COUNT()` returns now: what the session's last statement affected (-1
    /// after a result set or an error).
    pub row_count: i64,
    /// What `FOUND_ROWS()` returns now: the rows of the session's last SELECT.
    pub found_rows: u64,
    /// When this session's last write finished (read-your-writes).
    pub last_write: Option<Instant>,
    /// The last command, when it was a pipelined read whose reply had warnings: run again
    /// before a statement that reads them, on whatever connection that gets.
    pub warned: Option<Warned>,
    /// The client set `session_track_*` itself: its connection reports what the client
    /// asked for, passed on as it is.
    pub own_trackers: bool,
}

impl Default for Recorded {
    fn default() -> Recorded {
        Recorded {
            pins: 0,
            schema: None,
            vars: Vars::default(),
            stmts: Statements::default(),
            last_insert_id: 0,
            row_count: -1,
            found_rows: 0,
            last_write: None,
            warned: None,
            own_trackers: false,
        }
    }
}

fn set_bit(bits: &mut u32, bit: u32, on: bool) {
    if on {
        *bits |= bit;
    } else {
        *bits &= !bit;
    }
}

impl Recorded {
    /// Whether the session must keep its connection.
    pub fn pinned(&self) -> bool {
        self.pins != 0
    }

    /// Whether the session holds state on its connection that a drain must wait for (a
    /// connection kept only for its warnings holds nothing that matters).
    pub fn holds_open_state(&self) -> bool {
        self.pins & !pin::WARNINGS != 0
    }

    /// Whether the session wrote within `window` (reads go to the primary then).
    pub fn wrote_within(&self, window: Duration) -> bool {
        self.last_write.is_some_and(|t| t.elapsed() < window)
    }

    /// A statement's effects once its reply is in (a text statement, or a prepared one
    /// with the analysis kept at PREPARE): pins, locks, assignments, schema, the row count,
    /// the time of a write. `conn`: the record of the connection it ran on, which follows.
    pub fn apply_statement(&mut self, fx: &Effects, reply: &Scanner, class: Class, mut conn: Option<&mut State>) {
        self.pins |= fx.pin;
        self.own_trackers |= fx.sets_trackers;
        if reply.error.is_some() && !(fx.assignments.is_empty() && fx.server_values.is_empty()) {
            // Part of a batch may have run: what the connection holds is not known.
            self.pins |= pin::UNKNOWN_SET;
        }
        if reply.error.is_none() {
            self.pins &= !fx.unpin;
            if let Some(c) = conn.as_deref_mut() {
                for a in &fx.assignments {
                    self.vars.set(a);
                    c.vars.set(a);
                }
                if let Some(schema) = &fx.use_schema {
                    self.enter_schema(schema, Some(c));
                }
            }
        }
        self.apply_tracked(fx, reply, conn);
        if class == Class::Write {
            self.last_write = Some(Instant::now());
        }
        self.row_count = reply.row_count();
        self.after_select(fx.selects, reply);
    }

    /// What the server's session tracking reported of a statement with effects `fx`, which
    /// has the last word: a system variable's value as the server reports it is the one to
    /// replay (`sql_mode = 'ansi'` is recorded as the modes it stands for, a variable set to
    /// an expression as what it came to); a variable set to an expression that the server
    /// did not report, or one that cannot be replayed, keeps the connection; and so does a
    /// state change the analysis did not foresee ([`pin::UNPREDICTED`]).
    fn apply_tracked(&mut self, fx: &Effects, reply: &Scanner, conn: Option<&mut State>) {
        // A pipelined read holds no connection: its pipe retires after a state change.
        let Some(c) = conn else { return };
        let changes = &reply.changes;
        // NAMES / CHARACTER SET are recorded as written: the server reports their parts
        // but not the collation they set.
        let names_written = fx.assignments.iter().any(|a| is_charset_var(&a.name));
        let mut explained = changes.schema.is_some();
        for (name, value) in &changes.sysvars {
            let name = canonical_name(name);
            if name.starts_with("session_track") || reported_implicitly(name) || (names_written && is_charset_var(name))
            {
                explained = true;
                continue;
            }
            let written = fx.assignments.iter().find(|a| canonical_name(&a.name) == name);
            if written.is_some_and(|a| a.value.eq_ignore_ascii_case("DEFAULT")) {
                // Replayed as DEFAULT: the server's report of it may be the value before.
                explained = true;
                continue;
            }
            let predicted = written.is_some() || fx.server_values.iter().any(|n| canonical_name(n) == name);
            if !predicted && !changes.state_changed {
                // Reported with no state change: the server's own bookkeeping.
                continue;
            }
            let literal = if replayable(name) { server_literal(name, value) } else { None };
            match literal {
                Some(value) => {
                    let a = Assignment { name: name.to_string(), value };
                    self.vars.set(&a);
                    c.vars.set(&a);
                    explained = true;
                }
                // Set where the analysis saw it (pinned then) or not: the session keeps it.
                _ if fx.changes_state() => {}
                _ => self.pins |= pin::UNPREDICTED,
            }
        }
        for name in &fx.server_values {
            if !changes.sysvars.iter().any(|(n, _)| canonical_name(n) == canonical_name(name)) {
                self.pins |= pin::UNKNOWN_SET;
            }
        }
        if changes.state_changed && !explained && !fx.changes_state() {
            self.pins |= pin::UNPREDICTED;
        }
    }

    /// A SELECT's rows are what `FOUND_ROWS()` returns next (unless SQL_CALC_FOUND_ROWS
    /// made the server count more: that pins, and the server answers).
    pub fn after_select(&mut self, selects: bool, reply: &Scanner) {
        if let (true, Some(n)) = (selects, reply.rows_returned()) {
            self.found_rows = n;
        }
    }

    /// What any reply says, whatever the command: the insert id, the transaction and
    /// autocommit state from the status flags, warnings, and what the server's session
    /// tracking reports — which overrides what was read from SQL (a schema changed inside a
    /// procedure, state no replay rebuilds).
    pub fn apply_reply(&mut self, reply: &Scanner, mut conn: Option<&mut State>) {
        if let Some(ok) = reply.ok {
            if ok.last_insert_id != 0 {
                // The server's value is known again (LAST_INSERT_ID(expr) included).
                self.pins &= !pin::INSERT_ID;
                self.last_insert_id = ok.last_insert_id;
                if let Some(c) = conn.as_deref_mut() {
                    c.last_insert_id = Some(ok.last_insert_id);
                }
            }
        }
        if let Some(schema) = &reply.changes.schema {
            self.enter_schema(schema, conn);
        }
        if reply.status_seen() {
            set_bit(&mut self.pins, pin::TRANSACTION, reply.status & status::IN_TRANS != 0);
            set_bit(&mut self.pins, pin::AUTOCOMMIT_OFF, reply.status & status::AUTOCOMMIT == 0);
        }
        if reply.warnings > 0 || reply.error.is_some() {
            // SHOW WARNINGS / SHOW ERRORS next read them on this connection.
            self.pins |= pin::WARNINGS;
        }
    }

    /// The pipelined read whose warnings a statement with effects `fx` may need run again
    /// first (see [`Recorded::warned`]): kept for later unless the statement clears them.
    pub fn warned_before(&mut self, fx: &Effects) -> Option<Warned> {
        if fx.previous.clears_diagnostics() {
            self.warned.take()
        } else {
            self.warned.clone()
        }
    }

    /// A statement (COM_QUERY, COM_STMT_EXECUTE) with effects `fx` starts. One that opens a
    /// table is about to replace the last statement's warnings, so they keep the
    /// connection no longer; one that only reads them keeps them there (`replayed`: they
    /// were just put back on a borrowed connection); any other leaves them (and replaces
    /// them only if it has warnings of its own: `apply_reply`).
    pub fn statement_begins(&mut self, fx: &Effects, replayed: bool) {
        if fx.previous.clears_diagnostics() {
            self.pins &= !pin::WARNINGS;
        } else if replayed && fx.previous.keeps_diagnostics {
            self.pins |= pin::WARNINGS;
        }
    }

    /// Whether the server, not corelay, answers session function `f` now: the session
    /// keeps the connection that holds the value (`FOUND_ROWS()` after
    /// SQL_CALC_FOUND_ROWS; `LAST_INSERT_ID()` after `LAST_INSERT_ID(expr)` or a CALL).
    pub fn server_answers(&self, f: Option<SessionFunction>) -> bool {
        match f {
            Some(SessionFunction::FoundRows) => self.pins & pin::FOUND_ROWS != 0,
            Some(SessionFunction::LastInsertId) => self.pins & (pin::INSERT_ID | pin::ROUTINE) != 0,
            _ => false,
        }
    }

    /// The session is in `schema` now, on `conn` too (USE, COM_INIT_DB, or the server's
    /// session tracking said so).
    pub fn enter_schema(&mut self, schema: &str, conn: Option<&mut State>) {
        if let Some(c) = conn {
            c.schema = Some(schema.to_string());
        }
        self.schema = Some(schema.to_string());
    }

    /// After an EXECUTE of statement `id`: its long data is used up, and a cursor it opened
    /// keeps the connection until fetched or closed.
    pub fn after_execute(&mut self, id: u32, reply: &Scanner) {
        self.pins &= !pin::LONG_DATA;
        if reply.status_seen() && reply.status & status::CURSOR_EXISTS != 0 {
            self.pins |= pin::CURSOR;
            self.stmts.cursor = Some(id);
        }
    }

    /// COM_RESET_CONNECTION: variables, statements, `dbconnect` and connection-bound state
    /// are gone (the user's `multiplex = false` stays).
    pub fn reset(&mut self) {
        self.vars.clear();
        self.stmts.clear();
        self.pins &= pin::NO_MULTIPLEX;
        self.last_insert_id = 0;
        self.row_count = -1;
        self.found_rows = 0;
        self.warned = None;
        self.own_trackers = false;
    }

    /// The connection died, and with it what the session held there (a `dbconnect` pin
    /// is the session's, not the connection's: it stays).
    pub fn connection_lost(&mut self) {
        self.pins &= pin::SESSION_OWN;
        self.stmts.cursor = None;
    }

    /// What the session holds on its connection, for a message saying it is gone ("the
    /// open transaction was rolled back; user variables, ..."), or None when it holds
    /// nothing there.
    pub fn held_on_connection(&self) -> Option<String> {
        let held = pin::names(self.pins & !(pin::SESSION_OWN | pin::WARNINGS));
        if held.is_empty() {
            return None;
        }
        Some(format!("the open transaction was rolled back; {}", held.join(", ")))
    }

    /// Status flags for a reply corelay makes itself: autocommit and transaction state as
    /// the server last reported them.
    pub fn status_flags(&self) -> u16 {
        let mut flags = 0;
        if self.pins & pin::AUTOCOMMIT_OFF == 0 {
            flags |= status::AUTOCOMMIT;
        }
        if self.pins & pin::TRANSACTION != 0 {
            flags |= status::IN_TRANS;
        }
        flags
    }
}

/// A pipelined read whose reply had warnings, to run again where SHOW WARNINGS will.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Warned {
    /// A command packet, sent as it is (COM_QUERY, or a parameterless statement's text).
    Text(Vec<u8>),
    /// COM_STMT_EXECUTE of the session's statement `id` with parameters: its payload, the
    /// parameter types in it; the statement id is the one the connection gives it.
    Execute { id: u32, payload: Vec<u8> },
}

/// One prepared statement of a session.
#[derive(Debug)]
pub(super) struct Stmt {
    pub sql: Rc<[u8]>,
    pub schema: Option<Rc<str>>,
    pub hash: u64,
    pub params: u16,
    /// Parameter types (2 bytes each) from the last EXECUTE that sent them.
    pub types: Option<Vec<u8>>,
    /// The column definitions the client holds for it (MariaDB's metadata cache: from
    /// its PREPARE reply or the last EXECUTE reply that carried them; None: not known).
    pub defs: Option<Defs>,
    /// `SELECT LAST_INSERT_ID()` or `CONNECTION_ID()`: answered by the proxy (column name).
    pub session_function: Option<(super::local::SessionFunction, String)>,
    /// What the statement does to session state (and its class: where its executions are
    /// routed), analysed once at PREPARE and applied at every EXECUTE.
    pub effects: Rc<Effects>,
}

/// A session's statements by the ids it handed out.
#[derive(Debug, Default)]
pub(super) struct Statements {
    pub map: HashMap<u32, Stmt>,
    next: u32,
    /// The statement whose cursor is open, if any.
    pub cursor: Option<u32>,
}

impl Statements {
    pub fn clear(&mut self) {
        self.map.clear();
        self.cursor = None;
    }

    /// The next statement id to hand out (never 0).
    pub fn next_id(&mut self) -> u32 {
        self.next = self.next.wrapping_add(1).max(1);
        self.next
    }

    /// Column definitions a server sent for statement `id` on a connection, as that
    /// connection is to record them: the client's own record when they are the same (one
    /// pointer comparison at EXECUTE then).
    pub fn shared_defs(&self, id: u32, defs: Option<Defs>) -> Option<Defs> {
        let client = self.map.get(&id).and_then(|st| st.defs.as_ref());
        match (defs, client) {
            (Some(d), Some(c)) if metadata::same(&d, c) => Some(c.clone()),
            (d, _) => d,
        }
    }
}

/// The key of a statement in a connection's cache: its text in its schema.
pub(super) fn stmt_hash(schema: Option<&str>, sql: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    schema.hash(&mut h);
    sql.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::scanner::Expect;
    use crate::router::statement::analyse;

    /// The scan of a reply made of `packets` (payloads), as a connection without
    /// CLIENT_DEPRECATE_EOF sends them.
    fn reply(packets: &[&[u8]]) -> Scanner {
        let mut bytes = Vec::new();
        let mut seq = 1;
        for p in packets {
            seq = crate::protocol::packet::write_packet(&mut bytes, seq, p);
        }
        let mut s = Scanner::new(Expect::ResultSets, false);
        s.feed(&bytes).unwrap();
        assert!(s.done());
        s
    }

    /// OK with `affected` rows, `insert_id`, `status` flags and `warnings`.
    fn ok(affected: u8, insert_id: u8, status: u16, warnings: u16) -> Scanner {
        let mut p = vec![0, affected, insert_id];
        p.extend_from_slice(&status.to_le_bytes());
        p.extend_from_slice(&warnings.to_le_bytes());
        reply(&[&p])
    }

    fn err() -> Scanner {
        let mut p = vec![0xFF, 0x7A, 0x04];
        p.extend_from_slice(b"#42S02no such table");
        reply(&[&p])
    }

    const AUTOCOMMIT: u16 = status::AUTOCOMMIT;

    fn run(r: &mut Recorded, sql: &str, reply: &Scanner, conn: &mut State) {
        let fx = analyse(sql.as_bytes());
        r.statement_begins(&fx, false);
        r.apply_statement(&fx, reply, fx.class, Some(conn));
        r.apply_reply(reply, Some(conn));
    }

    #[test]
    fn user_variables_pin_until_the_session_resets() {
        let (mut r, mut c) = (Recorded::default(), State::default());
        run(&mut r, "SET @a = 1", &ok(0, 0, AUTOCOMMIT, 0), &mut c);
        assert!(r.pinned());
        assert_eq!(pin::names(r.pins), ["user variables"]);
        r.reset();
        assert!(!r.pinned());
    }

    #[test]
    fn lock_tables_pins_and_unlock_tables_unpins_only_when_it_succeeds() {
        let (mut r, mut c) = (Recorded::default(), State::default());
        run(&mut r, "LOCK TABLES t WRITE", &ok(0, 0, AUTOCOMMIT, 0), &mut c);
        assert_eq!(r.pins, pin::LOCK_TABLES);
        run(&mut r, "UNLOCK TABLES", &err(), &mut c);
        assert_eq!(r.pins, pin::LOCK_TABLES | pin::WARNINGS, "a failed UNLOCK leaves the tables locked");
        run(&mut r, "UNLOCK TABLES", &ok(0, 0, AUTOCOMMIT, 0), &mut c);
        assert!(!r.pinned());
    }

    #[test]
    fn get_lock_pins_until_all_locks_are_released() {
        let (mut r, mut c) = (Recorded::default(), State::default());
        run(&mut r, "SELECT GET_LOCK('a', 1), GET_LOCK('b', 1)", &ok(0, 0, AUTOCOMMIT, 0), &mut c);
        assert_eq!(r.pins, pin::GET_LOCK);
        run(&mut r, "SELECT RELEASE_LOCK('a'), RELEASE_LOCK('b'), RELEASE_LOCK('c')", &ok(0, 0, AUTOCOMMIT, 0), &mut c);
        assert_eq!(r.pins, pin::GET_LOCK, "a release of a lock not held counts for nothing");
        run(&mut r, "SELECT GET_LOCK(name, 0) FROM locks", &ok(0, 0, AUTOCOMMIT, 0), &mut c);
        run(&mut r, "SELECT RELEASE_LOCK('x')", &ok(0, 0, AUTOCOMMIT, 0), &mut c);
        assert_eq!(r.pins, pin::GET_LOCK, "a GET_LOCK over rows may hold several");
        run(&mut r, "SELECT RELEASE_ALL_LOCKS()", &ok(0, 0, AUTOCOMMIT, 0), &mut c);
        assert_eq!(r.pins, 0);
        run(&mut r, "SELECT RELEASE_ALL_LOCKS(), GET_LOCK('c', 0)", &ok(0, 0, AUTOCOMMIT, 0), &mut c);
        assert_eq!(r.pins, pin::GET_LOCK, "the later call in the text wins");
    }

    #[test]
    fn the_transaction_follows_the_servers_status_flags() {
        let (mut r, mut c) = (Recorded::default(), State::default());
        run(&mut r, "BEGIN", &ok(0, 0, AUTOCOMMIT | status::IN_TRANS, 0), &mut c);
        assert_eq!(r.pins, pin::TRANSACTION);
        assert_eq!(r.status_flags(), AUTOCOMMIT | status::IN_TRANS);
        assert!(r.holds_open_state());
        run(&mut r, "COMMIT", &ok(0, 0, AUTOCOMMIT, 0), &mut c);
        assert!(!r.pinned());
        run(&mut r, "SET autocommit = 0", &ok(0, 0, 0, 0), &mut c);
        assert_eq!(r.pins, pin::AUTOCOMMIT_OFF);
        assert_eq!(r.status_flags(), 0);
    }

    #[test]
    fn assignments_and_schema_are_recorded_on_both_sides_when_they_succeed() {
        let (mut r, mut c) = (Recorded::default(), State::default());
        run(&mut r, "SET sql_mode = 'ANSI'", &ok(0, 0, AUTOCOMMIT, 0), &mut c);
        run(&mut r, "USE shop", &ok(0, 0, AUTOCOMMIT, 0), &mut c);
        assert_eq!((r.vars.get("sql_mode"), c.vars.get("sql_mode")), (Some("'ANSI'"), Some("'ANSI'")));
        assert_eq!((r.schema.as_deref(), c.schema.as_deref()), (Some("shop"), Some("shop")));
        assert!(!r.pinned(), "tracked variables are replayed, not pinned");
        run(&mut r, "SET time_zone = '+01:00'; SELECT * FROM missing", &err(), &mut c);
        assert_eq!(r.vars.get("time_zone"), None, "not recorded: the batch failed");
        assert_eq!(r.pins, pin::UNKNOWN_SET | pin::WARNINGS, "part of the batch may have run");
    }

    #[test]
    fn warnings_keep_the_connection_until_a_statement_that_opens_a_table() {
        let (mut r, mut c) = (Recorded::default(), State::default());
        run(&mut r, "SELECT 1/0", &ok(0, 0, AUTOCOMMIT, 1), &mut c);
        assert_eq!(r.pins, pin::WARNINGS);
        assert!(r.pinned() && !r.holds_open_state());
        r.statement_begins(&analyse(b"SHOW WARNINGS"), false);
        assert_eq!(r.pins, pin::WARNINGS, "reading them leaves them");
        for sql in ["SELECT 1", "SET @@sql_mode = ''", "DO 1", "SELECT 2 FROM DUAL"] {
            run(&mut r, sql, &ok(0, 0, AUTOCOMMIT, 0), &mut c);
            assert_eq!(r.pins, pin::WARNINGS, "{sql} leaves them, as on the server");
        }
        run(&mut r, "SELECT a FROM t", &ok(0, 0, AUTOCOMMIT, 0), &mut c);
        assert!(!r.pinned());
        run(&mut r, "SELECT * FROM missing", &err(), &mut c);
        assert_eq!(r.pins, pin::WARNINGS, "an error is read with SHOW ERRORS");
    }

    #[test]
    fn insert_id_and_row_count_follow_the_last_statement() {
        let (mut r, mut c) = (Recorded::default(), State::default());
        run(&mut r, "INSERT INTO t VALUES (NULL)", &ok(1, 42, AUTOCOMMIT, 0), &mut c);
        assert_eq!((r.last_insert_id, c.last_insert_id, r.row_count), (42, Some(42), 1));
        assert!(r.wrote_within(Duration::from_secs(60)));
        run(&mut r, "UPDATE t SET a = 1", &ok(3, 0, AUTOCOMMIT, 0), &mut c);
        assert_eq!((r.last_insert_id, r.row_count), (42, 3), "an id of 0 does not replace the last one");
        run(&mut r, "SELECT * FROM missing", &err(), &mut c);
        assert_eq!(r.row_count, -1);
    }

    #[test]
    fn a_lost_connection_takes_what_lived_on_it_but_not_dbconnect() {
        let (mut r, mut c) = (Recorded::default(), State::default());
        run(&mut r, "BEGIN", &ok(0, 0, AUTOCOMMIT | status::IN_TRANS, 0), &mut c);
        run(&mut r, "CREATE TEMPORARY TABLE t (a int)", &ok(0, 0, AUTOCOMMIT | status::IN_TRANS, 0), &mut c);
        r.pins |= pin::DBCONNECT;
        let held = r.held_on_connection().unwrap();
        assert!(held.contains("rolled back") && held.contains("temporary table") && held.contains("transaction"));
        r.connection_lost();
        assert_eq!(r.pins, pin::DBCONNECT);
        assert_eq!(r.held_on_connection(), None);
    }

    #[test]
    fn an_open_cursor_keeps_the_connection_and_long_data_is_used_up() {
        let mut r = Recorded::default();
        r.pins |= pin::LONG_DATA;
        let mut eof_cursor = vec![0xFE, 0, 0];
        eof_cursor.extend_from_slice(&(AUTOCOMMIT | status::CURSOR_EXISTS).to_le_bytes());
        let col = b"\x03def\x00\x00\x00\x011\x00\x0c\x3f\x00\x01\x00\x00\x00\x08\x81\x00\x00\x00\x00";
        let opened = reply(&[b"\x01", col, &eof_cursor]);
        r.after_execute(7, &opened);
        assert_eq!((r.pins, r.stmts.cursor), (pin::CURSOR, Some(7)));
    }

    /// An OK whose session tracking reported `sysvars` and, with `state`, a state change.
    fn tracked(sysvars: &[(&str, &str)], state: bool) -> Scanner {
        let mut s = ok(0, 0, AUTOCOMMIT | status::SESSION_STATE_CHANGED, 0);
        s.changes.sysvars = sysvars.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        s.changes.state_changed = state;
        s
    }

    #[test]
    fn the_servers_reports_decide_what_is_replayed() {
        let mut r = Recorded::default();
        let mut conn = State::default();
        // The value the server reports, not the text: sql_mode as the modes 'ansi' stands for.
        let modes = "REAL_AS_FLOAT,PIPES_AS_CONCAT,ANSI_QUOTES,IGNORE_SPACE,ANSI";
        run(&mut r, "SET sql_mode = 'ansi'", &tracked(&[("sql_mode", modes)], true), &mut conn);
        assert_eq!(r.vars.get("sql_mode"), Some(format!("'{modes}'").as_str()));
        assert_eq!(conn.vars, r.vars);
        // An expression: what it came to; without a report, the session keeps the connection.
        run(&mut r, "SET time_zone = @tz", &tracked(&[("time_zone", "+01:00")], true), &mut conn);
        assert_eq!((r.vars.get("time_zone"), r.pins), (Some("'+01:00'"), 0));
        run(&mut r, "SET wait_timeout = 6 * 10", &ok(0, 0, AUTOCOMMIT, 0), &mut conn);
        assert_eq!(r.pins, pin::UNKNOWN_SET);
        // DEFAULT stays DEFAULT (the server may report the value before it).
        let mut r = Recorded::default();
        run(&mut r, "SET timestamp = DEFAULT", &tracked(&[("timestamp", "1000.000000")], true), &mut conn);
        assert_eq!(r.vars.get("timestamp"), Some("DEFAULT"));
    }

    #[test]
    fn what_the_server_reports_on_its_own_is_not_state() {
        let mut r = Recorded::default();
        let mut conn = State::default();
        // Every write reports the connection's last GTID, a temporary table with a state change.
        run(&mut r, "INSERT INTO t VALUES (1)", &tracked(&[("last_gtid", "0-1-5")], false), &mut conn);
        run(&mut r, "CREATE TEMPORARY TABLE tt (a INT)", &tracked(&[("last_gtid", "0-1-6")], true), &mut conn);
        assert!(r.vars.is_empty() && conn.vars.is_empty(), "{:?}", r.vars);
        assert_eq!(r.pins, pin::TEMPORARY_TABLE);
    }

    #[test]
    fn a_state_change_the_analysis_did_not_foresee_pins() {
        let mut r = Recorded::default();
        let mut conn = State::default();
        run(&mut r, "DO f()", &tracked(&[], true), &mut conn);
        assert_eq!(r.pins, pin::UNPREDICTED);
        // A SET the analysis saw explains its own report.
        let mut r = Recorded::default();
        run(&mut r, "SET @a = 1", &tracked(&[], true), &mut conn);
        assert_eq!(r.pins, pin::USER_VARIABLES);
    }
}
