//! The routing hook: where an embedder's code sees each connection, login, statement and
//! result, and may refuse a connection or login, route a statement or answer it with an
//! error. Every method has a no-op default.
//!
//! corelay's own `[[rule]]` engine ([`super::rules::Rules`]) is one implementation; it
//! runs first. An embedder's hook ([`install`]ed once, before [`crate::cli::main`] starts
//! the shards) runs after it and may change what the rules decided. Hooks run on the
//! shard's thread, in the middle of the statement's path: they must not block, and they
//! see one shard's statements each (the same hook object serves every shard, so shared
//! state in it must be thread-safe and should be per-shard to stay lock-free).
//!
//! ```no_run
//! use corelay::router::hook::{self, Decision, Hook, Refusal, Statement};
//!
//! struct NoDrops;
//!
//! impl Hook for NoDrops {
//!     fn on_statement(&self, s: &Statement<'_>, d: &mut Decision) {
//!         if s.text.windows(4).any(|w| w.eq_ignore_ascii_case(b"DROP")) {
//!             d.error = Some(Refusal::new(1148, "DROP is not allowed through this proxy"));
//!         }
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     hook::install(Box::new(NoDrops)).expect("installed once");
//!     corelay::cli::main()
//! }
//! ```

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use super::classify::Class;

/// A client connected (before its greeting).
#[derive(Debug, Clone, Copy)]
pub struct Connect {
    pub client: IpAddr,
    /// The shard serving it.
    pub shard: usize,
}

/// A client logged in (its password checked).
#[derive(Debug, Clone, Copy)]
pub struct Auth<'a> {
    pub user: &'a str,
    pub client: IpAddr,
    pub schema: Option<&'a str>,
    pub tls: bool,
}

/// A statement about to be routed: COM_QUERY's text, or a prepared statement's text at
/// COM_STMT_EXECUTE.
#[derive(Debug, Clone, Copy)]
pub struct Statement<'a> {
    pub text: &'a [u8],
    pub user: &'a str,
    /// The product user's index in the configuration.
    pub user_index: usize,
    pub schema: Option<&'a str>,
    pub client: IpAddr,
    pub class: Class,
    /// The statement's fingerprint ([`super::digest`]).
    pub fingerprint: u64,
    pub prepared: bool,
    /// The shard running it.
    pub shard: usize,
}

/// How a statement ended.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    pub user: &'a str,
    pub fingerprint: Option<u64>,
    /// The server that answered (None: none did).
    pub server: Option<SocketAddr>,
    /// The server's error code, or 0.
    pub error: u16,
    pub rows_sent: u64,
    pub rows_affected: u64,
    pub warnings: u64,
    /// From the command's first byte to its reply's last (None: commands are not timed).
    pub elapsed: Option<Duration>,
}

/// An error for the client instead of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// A MySQL error code (1000 and up).
    pub code: u16,
    pub message: String,
}

impl Refusal {
    pub fn new(code: u16, message: impl Into<String>) -> Refusal {
        Refusal { code, message: message.into() }
    }
}

/// Where a statement goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Primary,
    Replica,
    /// This server of the session's cluster (ignored when the cluster has no such server).
    Server(SocketAddr),
}

/// What is done with a statement. A session that holds its connection (a transaction,
/// a pin) keeps it whatever `route` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub route: Option<Route>,
    /// Answer the client with this; nothing reaches a server.
    pub error: Option<Refusal>,
    /// KILL QUERY on the server once the statement has run this long.
    pub timeout: Option<Duration>,
    /// The session keeps its connection from this statement on (as `multiplex = false`).
    pub pin: bool,
    /// The statement goes to the query log whatever its threshold.
    pub log: bool,
}

impl Decision {
    /// Whether anything was decided.
    pub fn is_empty(&self) -> bool {
        *self == Decision::default()
    }
}

/// The hook points. Implement the ones needed; the rest do nothing.
pub trait Hook: Send + Sync + 'static {
    /// A client connected: Some refuses it with that error.
    fn on_connect(&self, _c: &Connect) -> Option<Refusal> {
        None
    }

    /// A client logged in: Some refuses the login with that error.
    fn on_auth(&self, _a: &Auth<'_>) -> Option<Refusal> {
        None
    }

    /// A statement is about to be routed; `d` holds what came before (the rules).
    fn on_statement(&self, _s: &Statement<'_>, _d: &mut Decision) {}

    /// A statement's reply went to the client.
    fn on_result(&self, _o: &Outcome<'_>) {}
}

static INSTALLED: OnceLock<Box<dyn Hook>> = OnceLock::new();

/// Installs the embedder's hook, once per process, before the shards start (they are
/// forked or spawned after; every shard then calls it).
pub fn install(hook: Box<dyn Hook>) -> Result<(), &'static str> {
    INSTALLED.set(hook).map_err(|_| "a hook is already installed")
}

/// The installed hook, if any.
#[inline]
pub fn installed() -> Option<&'static dyn Hook> {
    INSTALLED.get().map(|b| &**b)
}
