//! The one retry loop, for text statements and EXECUTE alike.
//!
//! A read that holds nothing of the session on its connection is kept whole in the client
//! buffer while it is sent. If the connection dies before any byte of the reply reached the
//! client, the statement is sent once more on another connection (for an EXECUTE, prepared
//! there first): the client never sees the failure. A second failure is reported.
//! Everything else is sent once.

use super::error::{Halt, SessionError, Step};
use super::execute::Execute;
use super::Session;
use crate::net::{Connector, Transport};
use crate::protocol::code;
use crate::protocol::packet::Header;
use crate::protocol::scanner::Scanner;
use crate::router::statement::Effects;
use crate::status::Slot;

/// A statement on its way to the server.
#[derive(Clone, Copy)]
pub(super) enum Outgoing {
    /// COM_QUERY.
    Text(Header),
    /// COM_STMT_EXECUTE.
    Prepared(Execute),
}

impl Outgoing {
    fn header(&self) -> Header {
        match self {
            Outgoing::Text(h) => *h,
            Outgoing::Prepared(e) => e.h,
        }
    }
}

impl<C: Transport, N: Connector> Session<'_, C, N> {
    /// Whether a statement may be sent again after its connection died before replying:
    /// one that only reads (SELECT, SHOW, ...: sending it twice does no harm) and leaves
    /// nothing behind, from a session that holds nothing on a connection, in one packet
    /// (whole in the client buffer while it is sent).
    pub(super) fn retryable(&self, fx: &Effects, h: Header) -> bool {
        fx.reads_only && fx.pin == 0 && !self.recorded.pinned() && !h.continued()
    }

    /// Sends `what` on the held connection and relays its reply (see the module
    /// documentation for `retryable`). Returns the reply's scan, or None when the client
    /// got an error instead (an EXECUTE whose statement could not be prepared). A
    /// retryable statement's packet is consumed from the client buffer here, whatever
    /// happens.
    pub(super) async fn send_statement(&mut self, what: Outgoing, retryable: bool) -> Step<Option<Scanner>> {
        let h = what.header();
        let reply_seq = h.seq.wrapping_add(1);
        let mut attempt = 0;
        loop {
            self.held.retry_armed = retryable && attempt == 0;
            let result = match what {
                Outgoing::Text(h) => self.query_once(h, retryable).await.map(Some),
                Outgoing::Prepared(exec) => self.execute_once(&exec, retryable).await,
            };
            self.held.retry_armed = false;
            match result {
                Err(Halt::Retry) if !retryable => {
                    return Err(SessionError::Internal("a statement sent once was to be sent again").into())
                }
                Err(Halt::Retry) if attempt == 0 => {
                    attempt += 1;
                    Slot::add(&self.shard.slot().retries, 1);
                    // The server may be gone altogether: a replica that cannot be had gives
                    // way to the primary, as for any read.
                    if let Err(e) = self.ensure_routed().await {
                        self.cbuf.consume(h.total());
                        self.report_acquire_error(reply_seq, e).await;
                        return Err(Halt::failed(None, "no connection for the retry"));
                    }
                }
                Err(Halt::Retry) => {
                    self.cbuf.consume(h.total());
                    let msg = "Lost connection to db server during query, twice; the statement did not complete";
                    self.send_err(reply_seq, code::BACKEND_LOST, msg).await;
                    return Err(Halt::failed(None, msg));
                }
                other => {
                    if retryable {
                        self.cbuf.consume(h.total());
                    }
                    return other;
                }
            }
        }
    }
}
