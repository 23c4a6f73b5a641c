//! What the client is told when something fails under a command, and what the session
//! does then: a lost or interrupted backend connection (the session goes on with another,
//! told what was lost), no connection to be had, a packet over `max_packet_bytes`.
//!
//! Only a client in the middle of a reply packet cannot be told (an ERR packet there would
//! corrupt the stream): the session ends then.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::error::{Halt, SessionError, Step};
use super::held::{AcquireError, CONNECT_ATTEMPTS};
use super::shard::Abort;
use super::Session;
use crate::backend::BackendError;
use crate::net::{Connector, Transport};
use crate::protocol::code;
use crate::status::Slot;

impl<C: Transport, N: Connector> Session<'_, C, N> {
    /// The held connection failed mid-command. The client gets 1927 saying what was lost,
    /// and the session goes on with another connection next time: whatever lived on the
    /// dead connection (an open transaction, temporary tables, user variables, locks,
    /// cursors) is gone, which the message says, and the session's pins are cleared.
    pub(super) async fn backend_lost<T>(
        &mut self,
        seq: u8,
        addr: SocketAddr,
        reason: String,
        at_boundary: bool,
    ) -> Step<T> {
        self.drop_backend();
        if !at_boundary {
            return Err(SessionError::BackendLost { addr: Some(addr), reason }.into());
        }
        let msg = match self.recorded.held_on_connection() {
            None => {
                format!("Lost connection to db server {addr} during query ({reason}); the statement may not have run")
            }
            Some(held) => format!(
                "Lost connection to db server {addr} during query ({reason}); what lived on that connection is gone \
({held}); this session can go on"
            ),
        };
        self.send_err(seq, code::BACKEND_LOST, &msg).await;
        self.recorded.connection_lost();
        Err(Halt::failed(Some(addr), reason))
    }

    /// The shard interrupted the wait for the server's reply: the statement ran past
    /// `query_timeout_ms` (the client gets 1969 and the session goes on), was KILLed (1317),
    /// or the drain time is over (1053, and the session ends). The connection, with a
    /// statement still running or a reply half read, is closed.
    pub(super) async fn interrupted<T>(&mut self, why: Abort, seq: u8, addr: SocketAddr, at_boundary: bool) -> Step<T> {
        self.presence.abort.set(if why == Abort::Stop { Some(why) } else { None });
        self.drop_backend();
        let timeout_ms = self.config.proxy.query_timeout_ms;
        let reason = match why {
            Abort::Timeout => format!("no reply within query_timeout_ms ({timeout_ms} ms)"),
            Abort::Killed => "the statement was killed".into(),
            _ => "corelay's drain time is over".into(),
        };
        if !at_boundary {
            return Err(SessionError::BackendLost { addr: Some(addr), reason }.into());
        }
        let lost = self
            .recorded
            .held_on_connection()
            .map_or_else(String::new, |held| format!("; what lived on that connection is gone ({held})"));
        self.recorded.connection_lost();
        match why {
            Abort::Timeout => {
                let msg = format!(
                    "Query execution was interrupted: no reply from {addr} within query_timeout_ms ({timeout_ms} ms); the connection was closed{lost}"
                );
                self.send_err(seq, code::STATEMENT_TIMEOUT, &msg).await;
                Err(Halt::failed(Some(addr), reason))
            }
            Abort::Killed => {
                self.send_err(seq, code::QUERY_INTERRUPTED, "Query execution was interrupted").await;
                Err(Halt::failed(Some(addr), reason))
            }
            Abort::Drain | Abort::Stop => {
                let msg = format!(
                    "Server shutdown in progress: corelay's drain time (proxy.drain_timeout_s) is over{lost}; reconnect"
                );
                self.send_err(seq, code::SERVER_SHUTDOWN, &msg).await;
                Err(Halt::End(SessionError::Shutdown))
            }
        }
    }

    /// Tells the client corelay is stopping (1053, as a server that shuts down does) and
    /// ends the session. Sent as the reply to the command the client sends next.
    pub(super) async fn shutting_down(&mut self, why: Abort) -> SessionError {
        let msg = match self.recorded.held_on_connection() {
            Some(held) if why == Abort::Stop => format!(
                "Server shutdown in progress: corelay's drain time (proxy.drain_timeout_s) is over; what this session held is gone ({held}); reconnect"
            ),
            _ => "Server shutdown in progress: corelay is stopping; reconnect".to_string(),
        };
        self.send_err(1, code::SERVER_SHUTDOWN, &msg).await;
        SessionError::Shutdown
    }

    /// Tells the client why no connection could be had (sequence id `seq`).
    pub(super) async fn report_acquire_error(&mut self, seq: u8, e: AcquireError) {
        match e {
            AcquireError::Connect(BackendError::Refused { err, .. }) | AcquireError::Replay(err) => {
                self.send_server_err(seq, &err).await;
            }
            AcquireError::Connect(tls @ BackendError::Tls { .. }) => {
                self.send_err(seq, code::BACKEND_UNREACHABLE, &format!("corelay: {tls}")).await;
            }
            AcquireError::Connect(other) => {
                let msg = format!("corelay {other}; check that the server is up and reachable");
                self.send_err(seq, code::BACKEND_UNREACHABLE, &msg).await;
            }
            AcquireError::Down { server, seconds } => {
                let msg = format!(
                    "corelay can't connect to db server {server}: it failed {CONNECT_ATTEMPTS} connection attempts and is skipped for another {seconds} s (reconnect_interval_s)"
                );
                self.send_err(seq, code::BACKEND_UNREACHABLE, &msg).await;
            }
            AcquireError::Removed { server } => {
                let msg = format!(
                    "corelay: db server {server} was removed from the configuration; the statement was not sent, run it again"
                );
                self.send_err(seq, code::BACKEND_UNREACHABLE, &msg).await;
            }
            AcquireError::Timeout { server, waited, limit } => {
                let msg = format!(
                    "corelay: no connection to {server} became free within {} ms (this shard's share of max_connections is {limit}); \
raise the server's max_connections or proxy.pool_wait_timeout_ms",
                    waited.as_millis()
                );
                Slot::add(&self.shard.slot().clients_rejected, 1);
                self.send_err(seq, code::CON_COUNT_ERROR, &msg).await;
            }
        }
    }

    /// A command arrived for which no connection could be had: its packet is read and
    /// dropped, the client told why, and the session goes on.
    pub(super) async fn refuse_command(&mut self, reply_seq: u8, e: AcquireError) -> Step {
        self.read_local_packet(reply_seq).await?;
        self.report_acquire_error(reply_seq, e).await;
        Ok(())
    }

    /// The client sent a packet over `max_packet_bytes`: told (1153), and the session ends.
    pub(super) async fn too_large(&mut self, seq: u8, len: usize) -> SessionError {
        let max = self.config.proxy.max_packet_bytes;
        let msg =
            format!("Got a packet bigger than 'max_allowed_packet' bytes: {len} > {max} (proxy.max_packet_bytes)");
        self.send_err(seq, code::NET_PACKET_TOO_LARGE, &msg).await;
        self.discard_input().await;
        SessionError::ClientPacketTooLarge(len)
    }

    /// Before closing on a client that is still sending, read and drop what it sends for a
    /// moment: closing with unread data makes the kernel reset the connection, and the
    /// client would lose the ERR packet just sent.
    async fn discard_input(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut budget = 2 * self.config.proxy.max_packet_bytes as usize + (1 << 20);
        let mut sink = [0u8; 16 * 1024];
        self.cbuf.consume(self.cbuf.len());
        while budget > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match self.client.read(&mut sink, Some(left)).await {
                Ok(0) | Err(_) => return,
                Ok(n) => budget = budget.saturating_sub(n),
            }
        }
    }
}
