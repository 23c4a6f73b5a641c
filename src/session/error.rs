//! How a session ends, and how a command stops short of its reply.
//!
//! Two kinds of thing, kept apart: [`SessionError`] is a failure that ends the session
//! (the client went away, the login was refused, a backend died in the middle of a packet);
//! [`Halt`] is control flow inside one command — the statement failed and the client was
//! told ([`Halt::Failed`]), or it may be sent again ([`Halt::Retry`]) — and only its
//! [`Halt::End`] carries a `SessionError` out of the command loop.

use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;

/// Why a session ended. The session has already told the client what it could.
#[derive(Debug, Error)]
pub enum SessionError {
    #[error("client went away: {0}")]
    ClientGone(#[source] std::io::Error),
    #[error("client idle for longer than {0:?}")]
    ClientIdle(Duration),
    #[error("client sent a packet of {0} bytes, more than max_packet_bytes")]
    ClientPacketTooLarge(usize),
    #[error("login refused: {0}")]
    LoginRefused(String),
    /// KILL CONNECTION of this session, from another session.
    #[error("killed")]
    Killed,
    /// A backend connection died where the client could not be told (in the middle of a
    /// packet); `addr` is None when no connection was held.
    #[error("lost backend {} mid-command: {reason}", addr.map_or_else(|| "(none)".to_string(), |a| a.to_string()))]
    BackendLost { addr: Option<SocketAddr>, reason: String },
    /// corelay is stopping; the client was told.
    #[error("corelay is shutting down")]
    Shutdown,
    /// A broken invariant of corelay's own: the session ends rather than guess.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// Whose doing an ending was, for the shard's counters and the log's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client went away, idled out, or quit.
    Client,
    /// A backend (or reaching one) failed.
    Backend,
    /// corelay itself: stopping, KILL, a refused login, a broken invariant.
    Proxy,
}

impl SessionError {
    pub fn side(&self) -> Side {
        match self {
            SessionError::ClientGone(_) | SessionError::ClientIdle(_) | SessionError::ClientPacketTooLarge(_) => {
                Side::Client
            }
            SessionError::BackendLost { .. } => Side::Backend,
            SessionError::LoginRefused(_)
            | SessionError::Killed
            | SessionError::Shutdown
            | SessionError::Internal(_) => Side::Proxy,
        }
    }
}

/// Why a command did not end with the reply it asked for.
#[derive(Debug)]
pub(super) enum Halt {
    /// The statement failed; the client got an ERR packet and the session goes on.
    Failed(Failure),
    /// The connection died before any byte of the reply reached the client: the statement
    /// may be sent again on another connection (only ever returned while a retry is armed).
    Retry,
    /// The session ends.
    End(SessionError),
}

impl From<SessionError> for Halt {
    fn from(e: SessionError) -> Halt {
        Halt::End(e)
    }
}

/// A command's result: its value, or why it stopped short.
pub(super) type Step<T = ()> = Result<T, Halt>;

/// A statement that failed while the session goes on: on which server and why, for the
/// log.
#[derive(Debug)]
pub(super) struct Failure {
    pub server: Option<SocketAddr>,
    pub reason: String,
}

impl Halt {
    /// The statement failed on `server` for `reason`; the client was told.
    pub fn failed(server: Option<SocketAddr>, reason: impl Into<String>) -> Halt {
        Halt::Failed(Failure { server, reason: reason.into() })
    }
}
