//! Moving bytes between the client and the held connection: a command's packets to the
//! server as they arrive (16 MiB and more included), and the reply back to the client as
//! the scanner accounts for it, in the buffer it arrived in.

use std::io::ErrorKind;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::error::{Halt, SessionError, Step};
use super::shard::Abort;
use super::Session;
use crate::net::{Connector, Transport};
use crate::protocol::caps;
use crate::protocol::metadata::StmtDefs;
use crate::protocol::ok::{ClientView, Trackers};
use crate::protocol::packet::{Header, HEADER_LEN};
use crate::protocol::scanner::{Expect, Progress, Scanner};
use crate::status::Slot;

/// The error for a command that needs a connection where none is held: a broken invariant.
pub(super) const NO_CONNECTION: SessionError = SessionError::Internal("no backend connection held");

/// A reply being relayed.
struct Relay {
    scanner: Scanner,
    /// Some of it reached the client.
    forwarded: bool,
    /// For a PREPARE: the server's statement id and the parameter count.
    prepared: Option<(u32, u16)>,
}

impl Relay {
    /// The sequence id of the last packet the client got: the command's, or the reply's
    /// last.
    fn last_seq(&self, request_seq: u8) -> u8 {
        if self.forwarded {
            self.scanner.last_seq
        } else {
            request_seq
        }
    }
}

impl<C: Transport, N: Connector> Session<'_, C, N> {
    /// What the client is told of session-state changes on a connection with capabilities
    /// `backend_caps` whose direct equivalent has `trackers` (`tracks_all`: corelay's
    /// trackers are in force there), for a statement that sets `statement_vars` for its own
    /// length; None: the server's packets as they are (the connection does not track, or
    /// tracks what the client's own connection would).
    pub(super) fn client_view(
        &self,
        backend_caps: u32,
        trackers: &Rc<Trackers>,
        tracks_all: bool,
        statement_vars: &[String],
    ) -> Option<ClientView> {
        let tracking_client = self.caps & caps::SESSION_TRACK != 0;
        if backend_caps & caps::SESSION_TRACK == 0 || (tracking_client && (self.recorded.own_trackers || !tracks_all)) {
            return None;
        }
        let eof_flag = statement_vars.iter().any(|n| trackers.tracks_var(n));
        Some(ClientView { tracking_client, trackers: trackers.clone(), eof_flag })
    }

    /// Writes bytes the proxy built (a rewritten command) to the held connection.
    pub(super) async fn send_to_backend(&mut self, bytes: &[u8], seq: u8) -> Step {
        self.held.clean = false;
        let b = self.held.conn.as_mut().ok_or(NO_CONNECTION)?;
        let (server, thread, addr) = (b.key.server, b.thread_id, b.addr);
        let written = b.stream.write_all(bytes).await;
        self.trace_server(server, thread);
        if let Err(e) = written {
            return self.backend_lost(seq.wrapping_add(1), addr, e.to_string(), true).await;
        }
        Slot::add(&self.shard.slot().bytes_from_clients, bytes.len() as u64);
        self.trace_sent();
        Ok(())
    }

    /// Writes a statement kept whole in the client buffer (its first `len` bytes), or
    /// `rewritten` in its place, to the held connection. The buffer keeps it for a second
    /// attempt: a failure to write is [`Halt::Retry`] (nothing reached the server whole).
    pub(super) async fn send_buffered(&mut self, len: usize, rewritten: Option<&[u8]>) -> Step {
        let Some(b) = self.held.conn.as_mut() else {
            self.drop_backend();
            return Err(Halt::Retry);
        };
        let bytes = rewritten.unwrap_or(&self.cbuf.filled()[..len]);
        let (server, thread, sent_len) = (b.key.server, b.thread_id, bytes.len());
        let sent = b.stream.write_all(bytes).await.is_ok();
        self.trace_server(server, thread);
        if !sent {
            self.drop_backend();
            return Err(Halt::Retry);
        }
        Slot::add(&self.shard.slot().bytes_from_clients, sent_len as u64);
        self.trace_sent();
        Ok(())
    }

    /// Forwards one logical packet (all its physical packets) from the client to the
    /// backend as its bytes arrive. Returns the sequence id of its last physical packet.
    pub(super) async fn forward_packet(&mut self) -> Step<u8> {
        let max = self.config.proxy.max_packet_bytes as usize;
        let idle = self.idle_timeout();
        let mut total = 0usize;
        loop {
            let h = self.client_header(idle).await?;
            total += h.len;
            if total > max {
                // The backend holds half a packet now; it cannot be used again.
                self.drop_backend();
                return Err(self.too_large(h.seq.wrapping_add(1), total).await.into());
            }
            let mut left = h.total();
            while left > 0 {
                self.need_client_bytes(idle).await?;
                let n = left.min(self.cbuf.len());
                let b = self.held.conn.as_mut().ok_or(NO_CONNECTION)?;
                let (server, thread, addr) = (b.key.server, b.thread_id, b.addr);
                let written = b.stream.write_all(&self.cbuf.filled()[..n]).await;
                self.trace_server(server, thread);
                if let Err(e) = written {
                    // The rest of this command is still on its way: it must not be read
                    // as the next command.
                    self.skip_client_bytes(left, h.continued()).await?;
                    return self.backend_lost(h.seq.wrapping_add(1), addr, e.to_string(), true).await;
                }
                Slot::add(&self.shard.slot().bytes_from_clients, n as u64);
                self.cbuf.consume(n);
                left -= n;
            }
            if !h.continued() {
                self.trace_sent();
                return Ok(h.seq);
            }
        }
    }

    /// Reads until a packet header from the client is buffered, and parses it.
    async fn client_header(&mut self, idle: Option<Duration>) -> Result<Header, SessionError> {
        self.cbuf.fill_to(&mut self.client, HEADER_LEN, idle).await.map_err(SessionError::ClientGone)?;
        Header::parse(self.cbuf.filled()).ok_or(SessionError::Internal("four buffered bytes are not a header"))
    }

    /// Makes sure at least one byte from the client is buffered.
    async fn need_client_bytes(&mut self, idle: Option<Duration>) -> Result<(), SessionError> {
        if self.cbuf.is_empty() {
            let n = self.cbuf.fill_from(&mut self.client, idle).await.map_err(SessionError::ClientGone)?;
            if n == 0 {
                return Err(SessionError::ClientGone(ErrorKind::UnexpectedEof.into()));
            }
        }
        Ok(())
    }

    /// Reads and drops `left` bytes of the current physical packet and, if it is
    /// continued, the packets that follow it.
    async fn skip_client_bytes(&mut self, mut left: usize, mut continued: bool) -> Result<(), SessionError> {
        let idle = self.idle_timeout();
        loop {
            while left > 0 {
                self.need_client_bytes(idle).await?;
                let n = left.min(self.cbuf.len());
                self.cbuf.consume(n);
                left -= n;
            }
            if !continued {
                return Ok(());
            }
            let h = self.client_header(idle).await?;
            left = h.total();
            continued = h.continued();
        }
    }

    /// Streams the backend's response to the client until the scanner sees its end. With
    /// `stmt_id`, the response is a PREPARE_OK whose statement id is replaced by it; the
    /// server's id and the parameter count are returned. `stmt`: the statement of an
    /// EXECUTE (its column definitions are checked and recorded).
    pub(super) async fn relay_response(
        &mut self,
        expect: Expect,
        request_seq: u8,
        stmt_id: Option<u32>,
        stmt: Option<StmtDefs>,
    ) -> Step<(Scanner, Option<(u32, u16)>)> {
        let b = self.held.conn.as_ref().ok_or(NO_CONNECTION)?;
        let tracking = b.caps & caps::SESSION_TRACK != 0;
        let view = self.client_view(b.caps, &b.trackers, b.tracks_all, &self.cmd.statement_vars);
        let scanner = Scanner::new(expect, b.deprecate_eof())
            .tracking_session(tracking)
            .client_view(view)
            .metadata(b.cache_metadata, b.key.cache_metadata)
            .statement(stmt);
        let mut relay = Relay { scanner, forwarded: false, prepared: None };
        loop {
            if !self.held.buf.is_empty() {
                match self.pass_on(&mut relay, request_seq, stmt_id).await? {
                    Progress::Done => {
                        self.held.clean = true;
                        return Ok((relay.scanner, relay.prepared));
                    }
                    Progress::LocalInfile => {
                        self.forward_local_infile().await?;
                        continue;
                    }
                    Progress::More => {}
                }
            }
            self.read_reply(&relay, request_seq).await?;
        }
    }

    /// Passes what the scanner accounts for of the buffered reply on to the client.
    async fn pass_on(&mut self, relay: &mut Relay, request_seq: u8, stmt_id: Option<u32>) -> Step<Progress> {
        let (n, progress) = match relay.scanner.feed(self.held.buf.filled()) {
            Ok(r) => r,
            Err(e) => {
                let seq = relay.last_seq(request_seq).wrapping_add(1);
                let addr = self.held.conn.as_ref().map(|b| b.addr).ok_or(NO_CONNECTION)?;
                let reason = format!("malformed response: {e}");
                return self.backend_lost(seq, addr, reason, relay.scanner.at_boundary()).await;
            }
        };
        if n == 0 {
            return Ok(progress);
        }
        if let (Some(id), false) = (stmt_id, relay.forwarded) {
            let out = self.held.buf.filled_mut();
            if n >= HEADER_LEN + 9 && out[HEADER_LEN] == 0 {
                let p = &mut out[HEADER_LEN..];
                let server_id = u32::from_le_bytes([p[1], p[2], p[3], p[4]]);
                let params = u16::from_le_bytes([p[7], p[8]]);
                p[1..5].copy_from_slice(&id.to_le_bytes());
                relay.prepared = Some((server_id, params));
            }
        }
        // The response is half read if this fails: the connection is unusable.
        let out = relay.scanner.edited(&self.held.buf.filled()[..n]);
        self.client.write_all(&out).await.map_err(SessionError::ClientGone)?;
        self.held.buf.consume(n);
        self.cmd.trace.bytes += n as u64;
        relay.forwarded = true;
        Ok(progress)
    }

    /// Reads more of the reply from the held connection, or gives up when the shard
    /// interrupts the session. A connection that dies before any byte of the reply
    /// reached the client, while a retry is armed, is [`Halt::Retry`].
    async fn read_reply(&mut self, relay: &Relay, request_seq: u8) -> Step {
        let b = self.held.conn.as_mut().ok_or(NO_CONNECTION)?;
        let addr = b.addr;
        let presence = self.presence.clone();
        let read = async { Ok(self.held.buf.fill_from(&mut b.stream, None).await) };
        let interrupted = async { Err(presence.aborted().await) };
        let read = match futures_lite::future::or(read, interrupted).await {
            Ok(r) => r,
            Err(Abort::Drain) => {
                // Drains reach idle sessions only; this one is busy.
                presence.abort.set(None);
                return Ok(());
            }
            Err(why) => {
                let seq = relay.last_seq(request_seq).wrapping_add(1);
                return self.interrupted(why, seq, addr, relay.scanner.at_boundary()).await;
            }
        };
        let reason = match read {
            Ok(n) if n > 0 => {
                Slot::add(&self.shard.slot().bytes_from_backends, n as u64);
                if self.shard.log().on && self.cmd.trace.first_byte.is_none() {
                    self.cmd.trace.first_byte = Some(Instant::now());
                }
                return Ok(());
            }
            Err(e) => e.to_string(),
            Ok(_) => "connection closed by the server".into(),
        };
        if self.held.retry_armed && !relay.forwarded {
            self.drop_backend();
            return Err(Halt::Retry);
        }
        let seq = relay.last_seq(request_seq).wrapping_add(1);
        self.backend_lost(seq, addr, reason, relay.scanner.at_boundary()).await
    }

    /// LOAD DATA LOCAL INFILE: the client sends the file as packets ending with an empty
    /// one; pass them all to the backend.
    async fn forward_local_infile(&mut self) -> Step {
        loop {
            let h = self.client_header(self.idle_timeout()).await?;
            self.forward_packet().await?;
            if h.len == 0 {
                return Ok(());
            }
        }
    }
}
