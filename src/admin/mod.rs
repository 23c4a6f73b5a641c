//! Operator surfaces: the admin port and `/metrics` (the in-band status queries,
//! `checkproxystatus`, are answered on the proxy port: [`crate::session::local`]). They only read the status region (and, for PAUSE/RESUME/RELOAD/SHUTDOWN,
//! set a flag in its header or signal the master); they never take part in the query path,
//! so any shard can answer them for all shards.
//!
//! Admin commands are one file each under [`commands`], behind the small [`Command`]
//! trait; [`run`] finds the one a statement names.

pub mod commands;
pub mod metrics;
pub mod page;
pub mod session;

use crate::config::{AdminRole, Config};
use crate::protocol::code::{self, Code};
use crate::protocol::resultset::ResultSet;
use crate::status::StatusRegion;

/// What an admin command needs: the running configuration and the status region, and
/// (admin port only) the accept balancer's count per shard, when new clients are balanced.
pub struct View<'a> {
    pub config: &'a Config,
    pub status: &'a StatusRegion,
    pub balance: Option<Vec<u64>>,
}

/// What the admin port's sessions need from the shard serving them: its configuration as
/// of now (a reload changes it between commands), the status region, and a timer.
#[allow(async_fn_in_trait)]
pub trait Host {
    fn config(&self) -> std::sync::Arc<Config>;
    fn status(&self) -> &StatusRegion;
    async fn sleep(&self, d: std::time::Duration);
    /// The serving shard's index.
    fn shard(&self) -> usize;
    /// The accept balancer's count per shard (None: the kernel hash spreads clients).
    fn balance_counts(&self) -> Option<Vec<u64>> {
        None
    }
}

/// What an admin command answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Rows(ResultSet),
    /// OK, with an info message.
    Ok(String),
    /// ERR: code and message.
    Err(Code, String),
    /// The answer comes from the master: wait for reload request `n`.
    AwaitReload(u64),
}

/// One admin command.
pub trait Command: Sync {
    /// The words that name it, upper case (`["SHOW", "SHARDS"]`).
    fn words(&self) -> &'static [&'static str];
    /// One line for `SHOW COMMANDS` and error messages.
    fn help(&self) -> &'static str;
    /// Runs it; `args` are the words after its name.
    fn run(&self, view: &View, args: &[String]) -> Reply;
    /// It changes what corelay does (a read-only admin may not run it, and every run is
    /// logged with who asked).
    fn changes_state(&self) -> bool {
        false
    }
}

/// Splits an admin statement into upper-cased words (a trailing `;` and surrounding
/// whitespace are ignored).
pub fn words(sql: &str) -> Vec<String> {
    sql.trim().trim_end_matches(';').split_whitespace().map(|w| w.to_ascii_uppercase()).collect()
}

/// The command `w` (an admin statement's words) names.
fn find(w: &[String]) -> Option<&'static dyn Command> {
    commands::ALL
        .iter()
        .copied()
        .filter(|c| c.words().len() <= w.len() && c.words().iter().zip(w).all(|(a, b)| a == b))
        .max_by_key(|c| c.words().len())
}

/// The name of the command `sql` runs when it changes corelay's state (RELOAD, PAUSE,
/// RESUME, SHUTDOWN).
pub fn changing(sql: &str) -> Option<String> {
    find(&words(sql)).filter(|c| c.changes_state()).map(|c| c.words().join(" "))
}

/// Runs the admin statement `sql` for an admin of `role`.
pub fn run_as(view: &View, sql: &str, role: AdminRole, user: &str) -> Reply {
    match changing(sql) {
        Some(name) if role == AdminRole::Read => Reply::Err(
            code::SPECIFIC_ACCESS_DENIED,
            format!("Access denied: admin user '{user}' has role = \"read\"; {name} needs role = \"full\""),
        ),
        _ => run(view, sql),
    }
}

/// Runs the admin statement `sql`.
pub fn run(view: &View, sql: &str) -> Reply {
    let w = words(sql);
    match find(&w) {
        Some(c) => c.run(view, &w[c.words().len()..]),
        None => {
            let known: Vec<String> = commands::ALL.iter().map(|c| c.words().join(" ")).collect();
            Reply::Err(
                code::PARSE_ERROR,
                format!("Unknown admin command {:?}; corelay's admin port knows: {}", sql.trim(), known.join(", ")),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_found_by_their_words() {
        let config = Config::new(Config::embedded(), "t".into()).unwrap();
        let status = StatusRegion::create(2).unwrap();
        let view = View { config: &config, status: &status, balance: None };
        assert!(matches!(run(&view, "show shards;"), Reply::Rows(r) if r.rows.len() == 2));
        assert!(matches!(run(&view, "SHOW NONSENSE"), Reply::Err(code::PARSE_ERROR, _)));
        for c in commands::ALL {
            assert!(!c.help().is_empty());
        }
    }
}
