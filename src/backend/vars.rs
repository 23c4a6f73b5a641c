//! Session variables that must follow a client from one backend connection to the next:
//! the variables it SET, in the order it set them, and the SET statement that brings a
//! connection's variables in line with a session's (the state replay).

use crate::router::statement::Assignment;

/// Variables that NAMES / CHARACTER SET replace as a group.
const CHARSET_VARS: &[&str] = &[
    "names",
    "character set",
    "character_set_client",
    "character_set_connection",
    "character_set_results",
    "collation_connection",
];

/// Whether `name` is one of the character set variables that NAMES sets as a group.
pub fn is_charset_var(name: &str) -> bool {
    CHARSET_VARS.contains(&name)
}

/// The name a variable is recorded under: MariaDB reports the transaction
/// characteristics under its own names (before 11.1).
pub fn canonical_name(name: &str) -> &str {
    match name {
        "tx_isolation" => "transaction_isolation",
        "tx_read_only" => "transaction_read_only",
        n => n,
    }
}

/// A value as the server's session tracking reports it, written as an SQL literal that
/// sets it again: numbers bare, anything else quoted. None for a value no literal writes
/// the same way under every `sql_mode` (a backslash).
pub fn server_literal(name: &str, value: &str) -> Option<String> {
    if value.contains('\\') {
        return None;
    }
    if value.is_empty() && name.starts_with("character_set_") {
        // character_set_results = NULL reports as nothing.
        return Some("NULL".into());
    }
    let digits = value.strip_prefix('-').unwrap_or(value);
    let numeric = !digits.is_empty()
        && digits.split_once('.').map_or(digits.bytes().all(|b| b.is_ascii_digit()), |(i, f)| {
            !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()) && f.bytes().all(|b| b.is_ascii_digit())
        });
    if numeric {
        return Some(value.to_string());
    }
    Some(format!("'{}'", value.replace('\'', "''")))
}

/// Session variables as (name, literal value), oldest first. Equality is exact: two
/// connections with equal `Vars` behave the same for the variables the proxy tracks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars {
    entries: Vec<(String, String)>,
}

impl Vars {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Records an assignment that succeeded.
    pub fn set(&mut self, a: &Assignment) {
        if a.name == "names" || a.name == "character set" {
            self.entries.retain(|(n, _)| !is_charset_var(n));
        } else {
            self.entries.retain(|(n, _)| *n != a.name);
        }
        self.entries.push((a.name.clone(), a.value.clone()));
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The state of a connection after COM_RESET_CONNECTION: variables at their defaults,
    /// but the character set not known for sure, so that the next borrower sets it.
    pub fn after_reset() -> Vars {
        Vars { entries: vec![("names".into(), "\0unknown".into())] }
    }

    /// The SET statement that turns a connection whose tracked variables are `from` into
    /// one whose are `self`, or None when they already agree. `baseline_charset` is the
    /// character set the connection was opened with (what "never set" means for NAMES).
    /// `mariadb` picks MariaDB's names for the transaction characteristics.
    pub fn replay_sql(&self, from: &Vars, baseline_charset: &str, mariadb: bool) -> Option<String> {
        if self == from {
            return None;
        }
        let mut parts: Vec<String> = Vec::new();
        // Plain variables the connection has and the session does not: back to default.
        for (name, _) in &from.entries {
            if !is_charset_var(name) && self.get(name).is_none() {
                parts.push(render(name, "DEFAULT", mariadb));
            }
        }
        // The character set group is replayed as a whole, in order.
        let mine: Vec<&(String, String)> = self.entries.iter().filter(|(n, _)| is_charset_var(n)).collect();
        let theirs: Vec<&(String, String)> = from.entries.iter().filter(|(n, _)| is_charset_var(n)).collect();
        if mine != theirs {
            let starts_with_names = mine.first().is_some_and(|(n, _)| n == "names" || n == "character set");
            if !starts_with_names {
                parts.push(format!("NAMES {baseline_charset}"));
            }
            for (name, value) in mine {
                parts.push(render(name, value, mariadb));
            }
        }
        // Some variables change others (max_join_size resets sql_big_selects, ...): from the
        // first one that differs on, replay everything in the order the client set it.
        let mut replaying = false;
        for (name, value) in &self.entries {
            if is_charset_var(name) {
                continue;
            }
            replaying |= from.get(name) != Some(value.as_str());
            if replaying {
                parts.push(render(name, value, mariadb));
            }
        }
        Some(format!("SET {}", parts.join(", ")))
    }
}

fn render(name: &str, value: &str, mariadb: bool) -> String {
    match name {
        "names" => format!("NAMES {value}"),
        "character set" => format!("CHARACTER SET {value}"),
        // SET SESSION TRANSACTION ... is recorded under MySQL 8's names; MariaDB (before
        // 11.1 only) knows them as tx_isolation and tx_read_only.
        "transaction_isolation" if mariadb => format!("tx_isolation = {value}"),
        "transaction_read_only" if mariadb => format!("tx_read_only = {value}"),
        _ => format!("{name} = {value}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(name: &str, value: &str) -> Assignment {
        Assignment { name: name.into(), value: value.into() }
    }

    #[test]
    fn replay_brings_a_connection_in_line() {
        let mut want = Vars::default();
        want.set(&a("sql_mode", "'ANSI'"));
        want.set(&a("names", "latin1"));
        want.set(&a("character_set_results", "NULL"));
        let fresh = Vars::default();
        assert_eq!(
            want.replay_sql(&fresh, "utf8mb4", false).unwrap(),
            "SET NAMES latin1, character_set_results = NULL, sql_mode = 'ANSI'"
        );
        assert_eq!(want.replay_sql(&want, "utf8mb4", false), None);

        let mut other = Vars::default();
        other.set(&a("time_zone", "'+01:00'"));
        other.set(&a("sql_mode", "'ANSI'"));
        other.set(&a("names", "utf8"));
        let sql = want.replay_sql(&other, "utf8mb4", false).unwrap();
        assert_eq!(sql, "SET time_zone = DEFAULT, NAMES latin1, character_set_results = NULL");
        // Going back to a clean session resets NAMES to the connection's own charset.
        assert_eq!(
            fresh.replay_sql(&other, "utf8mb4", false).unwrap(),
            "SET time_zone = DEFAULT, sql_mode = DEFAULT, NAMES utf8mb4"
        );
    }

    #[test]
    fn transaction_characteristics_use_the_server_dialect() {
        let mut v = Vars::default();
        v.set(&a("transaction_isolation", "'READ-COMMITTED'"));
        v.set(&a("transaction_read_only", "1"));
        let fresh = Vars::default();
        assert_eq!(
            v.replay_sql(&fresh, "utf8mb4", true).unwrap(),
            "SET tx_isolation = 'READ-COMMITTED', tx_read_only = 1"
        );
        assert_eq!(
            v.replay_sql(&fresh, "utf8mb4", false).unwrap(),
            "SET transaction_isolation = 'READ-COMMITTED', transaction_read_only = 1"
        );
    }

    #[test]
    fn a_variable_going_back_to_default_uses_the_server_dialect_too() {
        let mut v = Vars::default();
        v.set(&a("transaction_isolation", "'READ-COMMITTED'"));
        assert_eq!(Vars::default().replay_sql(&v, "utf8mb4", true).unwrap(), "SET tx_isolation = DEFAULT");
    }

    #[test]
    fn after_reset_the_charset_is_always_set_again() {
        let reset = Vars::after_reset();
        assert_eq!(Vars::default().replay_sql(&reset, "latin1", true).unwrap(), "SET NAMES latin1");
        let mut v = Vars::default();
        v.set(&a("names", "utf8mb4"));
        assert_eq!(v.replay_sql(&reset, "latin1", true).unwrap(), "SET NAMES utf8mb4");
    }

    #[test]
    fn names_replaces_the_charset_group() {
        let mut v = Vars::default();
        v.set(&a("character_set_client", "latin1"));
        v.set(&a("wait_timeout", "10"));
        v.set(&a("names", "utf8mb4"));
        v.set(&a("wait_timeout", "20"));
        assert_eq!(v.entries, vec![("names".into(), "utf8mb4".into()), ("wait_timeout".into(), "20".into())]);
    }
}
