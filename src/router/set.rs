//! `SET ...`: which assignments a session can replay on another connection (with the value
//! written, or the one the server's session tracking reports for an expression), and which
//! keep its connection (user variables, variables that describe the connection only, the
//! session's own `session_track_*`, `SET TRANSACTION` for the next transaction only).

use super::lexer::Token;
use super::statement::{pin, Assignment, Effects};

/// Variables that cannot be replayed on another connection: they change the protocol,
/// or describe this connection only.
const NOT_REPLAYABLE: &[&str] = &[
    "last_gtid",
    "session_track_schema",
    "session_track_state_change",
    "session_track_system_variables",
    "session_track_transaction_info",
    "pseudo_thread_id",
    "insert_id",
    "last_insert_id",
    "identity",
    "rand_seed1",
    "rand_seed2",
    "gtid_seq_no",
    "gtid_domain_id",
    "gtid_next",
    "server_id",
    "in_transaction",
    "warning_count",
    "error_count",
    "profiling",
];

/// Variables the server's session tracking reports although no statement set them: they
/// describe what the connection did (the GTID of its last write). Never replayed.
const REPORTED_IMPLICITLY: &[&str] = &["last_gtid"];

/// Whether the server reports `name` (lower case) changed on its own, not because a
/// statement set it.
pub fn reported_implicitly(name: &str) -> bool {
    REPORTED_IMPLICITLY.contains(&name)
}

/// Whether session variable `name` (lower case) can be replayed on another connection.
pub fn replayable(name: &str) -> bool {
    !NOT_REPLAYABLE.contains(&name) && !name.starts_with("session_track")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Session,
    Global,
}

/// `SET ...` after the SET keyword.
pub(super) fn set_statement(t: &[Token<'_>], fx: &mut Effects) {
    let mut scope = Scope::Session;
    let mut assignments = Vec::new();
    // SET [scope] TRANSACTION ... uses commas between its own characteristics.
    let is_transaction = t.iter().take(2).any(|x| x.is_word("TRANSACTION"));
    let parts: Vec<&[Token<'_>]> = if is_transaction { vec![t] } else { split_top_level(t) };
    for part in parts {
        match assignment(part, &mut scope) {
            Parsed::Tracked(a) => assignments.extend(a),
            Parsed::NoEffect => {}
            Parsed::UserVariable => fx.pin(pin::USER_VARIABLES),
            Parsed::Trackers => {
                fx.sets_trackers = true;
                fx.pin(pin::UNKNOWN_SET);
            }
            Parsed::ServerValue(name) => fx.server_values.push(name),
            Parsed::Unknown => {
                fx.pin(pin::UNKNOWN_SET);
                return;
            }
        }
    }
    fx.assignments.extend(assignments);
}

/// Tokens split at the commas outside parentheses.
pub(super) fn split_top_level<'t, 'a>(t: &'t [Token<'a>]) -> Vec<&'t [Token<'a>]> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, x) in t.iter().enumerate() {
        match x {
            Token::Punct(b'(') => depth += 1,
            Token::Punct(b')') => depth = depth.saturating_sub(1),
            Token::Punct(b',') if depth == 0 => {
                parts.push(&t[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&t[start..]);
    parts
}

enum Parsed {
    Tracked(Vec<Assignment>),
    NoEffect,
    UserVariable,
    /// `session_track_*`: not replayable, and the client's own settings from then on.
    Trackers,
    /// A variable set to an expression: its value is what the server reports.
    ServerValue(String),
    Unknown,
}

fn assignment(mut t: &[Token<'_>], scope: &mut Scope) -> Parsed {
    // Scope keywords carry over to the following assignments.
    let mut explicit = false;
    if let Some(first) = t.first() {
        if first.is_word("GLOBAL") || first.is_word("PERSIST") || first.is_word("PERSIST_ONLY") {
            *scope = Scope::Global;
            explicit = true;
            t = &t[1..];
        } else if first.is_word("SESSION") || first.is_word("LOCAL") {
            *scope = Scope::Session;
            explicit = true;
            t = &t[1..];
        }
    }
    let Some(head) = t.first() else {
        return Parsed::Unknown;
    };
    if head.is_word("NAMES") {
        return names(&t[1..]);
    }
    if head.is_word("PASSWORD") {
        // An account's password: stored by the server, nothing of the session.
        return Parsed::NoEffect;
    }
    if head.is_word("CHARSET") || (head.is_word("CHARACTER") && t.get(1).is_some_and(|x| x.is_word("SET"))) {
        let rest = if head.is_word("CHARSET") { &t[1..] } else { &t[2..] };
        return match rest {
            [v] if literal(v).is_some() => tracked("character set", literal(v).unwrap_or_default()),
            _ => Parsed::Unknown,
        };
    }
    if head.is_word("TRANSACTION") {
        // Without a scope it applies to the next transaction only: keep the connection.
        return match (*scope, explicit) {
            (Scope::Global, _) => Parsed::NoEffect,
            (Scope::Session, true) => transaction(&t[1..]),
            (Scope::Session, false) => Parsed::Unknown,
        };
    }
    let (name, value) = match t {
        [Token::UserVar(_), ..] => return Parsed::UserVariable,
        [Token::SysVar(v), Token::Punct(b'='), value @ ..] => {
            let v = String::from_utf8_lossy(v).to_ascii_lowercase();
            let (var_scope, name) = match v.split_once('.') {
                Some(("global", n)) => (Scope::Global, n.to_string()),
                Some(("session" | "local", n)) => (Scope::Session, n.to_string()),
                Some(_) => return Parsed::Unknown,
                None => (Scope::Session, v),
            };
            if var_scope == Scope::Global {
                return Parsed::NoEffect;
            }
            (name, value)
        }
        [Token::Word(n), Token::Punct(b'='), value @ ..]
        | [Token::Word(n), Token::Punct(b':'), Token::Punct(b'='), value @ ..] => {
            if *scope == Scope::Global {
                return Parsed::NoEffect;
            }
            (String::from_utf8_lossy(n).to_ascii_lowercase(), value)
        }
        _ => return Parsed::Unknown,
    };
    if name.starts_with("session_track") {
        return Parsed::Trackers;
    }
    if NOT_REPLAYABLE.contains(&name.as_str()) {
        return Parsed::Unknown;
    }
    let value = match value {
        [v] => literal(v),
        [Token::Punct(b'-'), Token::Number(n)] => Some(format!("-{}", String::from_utf8_lossy(n))),
        _ => None,
    };
    match value {
        Some(v) => tracked(&name, v),
        // An expression: the server's session tracking says what it came to.
        None if !value_is_empty(t) => Parsed::ServerValue(name),
        None => Parsed::Unknown,
    }
}

/// Whether an assignment's tokens end at its `=` (nothing to evaluate).
fn value_is_empty(t: &[Token<'_>]) -> bool {
    t.last().is_some_and(|x| *x == Token::Punct(b'='))
}

fn tracked(name: &str, value: String) -> Parsed {
    Parsed::Tracked(vec![Assignment { name: name.to_string(), value }])
}

/// A literal value as it should be written back: numbers, strings, keywords (ON, OFF,
/// DEFAULT, TRUE, ...), and bare identifiers (e.g. a charset name).
fn literal(t: &Token<'_>) -> Option<String> {
    match t {
        Token::Number(n) | Token::Str(n) | Token::Word(n) => Some(String::from_utf8_lossy(n).into_owned()),
        Token::QuotedIdent(n) => Some(format!("`{}`", String::from_utf8_lossy(n))),
        _ => None,
    }
}

/// `NAMES charset [COLLATE collation]` or `NAMES DEFAULT`.
fn names(t: &[Token<'_>]) -> Parsed {
    let value = match t {
        [cs] => literal(cs),
        [cs, kw, coll] if kw.is_word("COLLATE") => match (literal(cs), literal(coll)) {
            (Some(a), Some(b)) => Some(format!("{a} COLLATE {b}")),
            _ => None,
        },
        _ => None,
    };
    match value {
        Some(v) => tracked("names", v),
        None => Parsed::Unknown,
    }
}

/// `TRANSACTION ISOLATION LEVEL ... [, READ ONLY | READ WRITE]` with SESSION scope.
fn transaction(t: &[Token<'_>]) -> Parsed {
    let words: Vec<String> = t
        .iter()
        .filter_map(|x| match x {
            Token::Word(w) => Some(String::from_utf8_lossy(w).to_ascii_uppercase()),
            _ => None,
        })
        .collect();
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let level = match w.as_slice() {
        ["ISOLATION", "LEVEL", "READ", "UNCOMMITTED", ..] => "'READ-UNCOMMITTED'",
        ["ISOLATION", "LEVEL", "READ", "COMMITTED", ..] => "'READ-COMMITTED'",
        ["ISOLATION", "LEVEL", "REPEATABLE", "READ", ..] => "'REPEATABLE-READ'",
        ["ISOLATION", "LEVEL", "SERIALIZABLE", ..] => "'SERIALIZABLE'",
        ["READ", "ONLY"] => return tracked("transaction_read_only", "1".into()),
        ["READ", "WRITE"] => return tracked("transaction_read_only", "0".into()),
        _ => return Parsed::Unknown,
    };
    let mut out = vec![Assignment { name: "transaction_isolation".into(), value: level.into() }];
    match w.get(w.len().saturating_sub(2)..) {
        Some(["READ", "ONLY"]) => out.push(Assignment { name: "transaction_read_only".into(), value: "1".into() }),
        Some(["READ", "WRITE"]) => out.push(Assignment { name: "transaction_read_only".into(), value: "0".into() }),
        _ => {}
    }
    Parsed::Tracked(out)
}
