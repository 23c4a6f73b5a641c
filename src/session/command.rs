//! The command phase: read a command, forward it, stream the response back.
//!
//! Only the 4-byte header and the command byte are decoded; command bytes are forwarded
//! in the buffer they arrived in, and response bytes are written to the client as soon as
//! the scanner has accounted for them.

use std::io::ErrorKind;

use super::io::{read_packet, Connector, PacketReadError, Transport};
use super::{Session, SessionError};
use crate::protocol::code;
use crate::protocol::command as cmd;
use crate::protocol::packet::{Header, HEADER_LEN};
use crate::protocol::response::{Expect, Progress, Scanner};
use crate::status::Slot;

/// Message for a client whose idle time ran out (as MySQL 8 words it).
const IDLE_MESSAGE: &str =
    "The client was disconnected by corelay because of inactivity (proxy.client_idle_timeout_s)";

impl<C: Transport, N: Connector> Session<'_, C, N> {
    pub(super) async fn command_loop(&mut self) -> Result<(), SessionError> {
        loop {
            let idle = self.idle_timeout();
            if let Err(e) = self.cbuf.fill_to(&mut self.client, HEADER_LEN, idle).await {
                return match e.kind() {
                    ErrorKind::TimedOut => {
                        self.send_err(1, (4031, "HY000"), IDLE_MESSAGE).await;
                        Err(SessionError::ClientIdle(idle.unwrap_or_default()))
                    }
                    _ => Err(SessionError::ClientGone(e)),
                };
            }
            let Some(h) = Header::parse(self.cbuf.filled()) else {
                continue;
            };
            let reply_seq = h.seq.wrapping_add(1);
            if h.len == 0 {
                self.cbuf.consume(HEADER_LEN);
                self.send_err(
                    reply_seq,
                    code::NET_READ_ERROR,
                    "Got an error reading communication packets: empty command packet",
                )
                .await;
                continue;
            }
            let max = self.config().proxy.max_packet_bytes;
            if h.len as u64 > max {
                return self.too_large(reply_seq, h.len).await;
            }
            self.cbuf
                .fill_to(&mut self.client, HEADER_LEN + 1, idle)
                .await
                .map_err(SessionError::ClientGone)?;
            let command = self.cbuf.filled()[HEADER_LEN];
            Slot::add(&self.ctx.slot().commands, 1);
            let expect = match command {
                cmd::QUERY | cmd::STMT_EXECUTE => Some(Expect::ResultSets),
                cmd::STMT_PREPARE => Some(Expect::Prepare),
                cmd::STMT_FETCH => Some(Expect::Rows),
                cmd::FIELD_LIST => Some(Expect::FieldList),
                cmd::PING
                | cmd::INIT_DB
                | cmd::STATISTICS
                | cmd::RESET_CONNECTION
                | cmd::SET_OPTION
                | cmd::STMT_RESET => Some(Expect::Single),
                cmd::STMT_SEND_LONG_DATA | cmd::STMT_CLOSE => None,
                cmd::QUIT => return Ok(()),
                cmd::CHANGE_USER => {
                    let (seq, payload) = self.read_local_packet(reply_seq).await?;
                    self.change_user(seq, &payload).await?;
                    continue;
                }
                cmd::SHUTDOWN | cmd::PROCESS_KILL => {
                    self.read_local_packet(reply_seq).await?;
                    let msg = format!(
                        "Access denied; {} is not allowed through corelay: connect to the server directly",
                        cmd::name(command)
                    );
                    self.send_err(reply_seq, code::SPECIFIC_ACCESS_DENIED, &msg)
                        .await;
                    continue;
                }
                other => {
                    self.read_local_packet(reply_seq).await?;
                    let msg = format!(
                        "Unknown command 0x{other:02x} ({}): corelay does not forward it",
                        cmd::name(other)
                    );
                    self.send_err(reply_seq, code::UNKNOWN_COM, &msg).await;
                    continue;
                }
            };
            let last_seq = self.forward_packet().await?;
            if let Some(expect) = expect {
                self.relay_response(expect, last_seq).await?;
            }
        }
    }

    /// Reads a whole command the proxy handles itself (bounded by max_packet_bytes).
    async fn read_local_packet(&mut self, reply_seq: u8) -> Result<(u8, Vec<u8>), SessionError> {
        let max = self.config().proxy.max_packet_bytes as usize;
        let idle = self.idle_timeout();
        match read_packet(&mut self.client, &mut self.cbuf, max, idle).await {
            Ok(p) => Ok(p),
            Err(PacketReadError::Io(e)) => Err(SessionError::ClientGone(e)),
            Err(PacketReadError::TooLarge(n)) => self.too_large(reply_seq, n).await,
        }
    }

    async fn too_large<T>(&mut self, seq: u8, len: usize) -> Result<T, SessionError> {
        let max = self.config().proxy.max_packet_bytes;
        let msg = format!("Got a packet bigger than 'max_allowed_packet' bytes: {len} > {max} (proxy.max_packet_bytes)");
        self.send_err(seq, code::NET_PACKET_TOO_LARGE, &msg).await;
        self.discard_input().await;
        Err(SessionError::ClientPacketTooLarge(len))
    }

    /// Before closing on a client that is still sending, read and drop what it sends for a
    /// moment: closing with unread data makes the kernel reset the connection, and the
    /// client would lose the ERR packet just sent.
    async fn discard_input(&mut self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let mut budget = 2 * self.config().proxy.max_packet_bytes as usize + (1 << 20);
        let mut sink = [0u8; 16 * 1024];
        self.cbuf.consume(self.cbuf.len());
        while budget > 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match self.client.read(&mut sink, Some(left)).await {
                Ok(0) | Err(_) => return,
                Ok(n) => budget = budget.saturating_sub(n),
            }
        }
    }

    /// Forwards one logical packet (all its physical packets) from the client to the
    /// backend as its bytes arrive. Returns the sequence id of its last physical packet.
    async fn forward_packet(&mut self) -> Result<u8, SessionError> {
        let max = self.config().proxy.max_packet_bytes as usize;
        let idle = self.idle_timeout();
        let mut total = 0usize;
        loop {
            self.cbuf
                .fill_to(&mut self.client, HEADER_LEN, idle)
                .await
                .map_err(SessionError::ClientGone)?;
            let Some(h) = Header::parse(self.cbuf.filled()) else {
                unreachable!("four bytes are buffered")
            };
            let seq = h.seq;
            total += h.len;
            if total > max {
                // The backend holds half a packet now; it cannot be used again.
                self.set_backend(None);
                return self.too_large(h.seq.wrapping_add(1), total).await;
            }
            let mut left = h.total();
            while left > 0 {
                if self.cbuf.is_empty() {
                    let n = self
                        .cbuf
                        .fill_from(&mut self.client, idle)
                        .await
                        .map_err(SessionError::ClientGone)?;
                    if n == 0 {
                        return Err(SessionError::ClientGone(ErrorKind::UnexpectedEof.into()));
                    }
                }
                let n = left.min(self.cbuf.len());
                let backend = self.backend.as_mut().ok_or_else(no_backend)?;
                if let Err(e) = backend.stream.write_all(&self.cbuf.filled()[..n]).await {
                    let addr = backend.addr;
                    return self
                        .backend_lost(seq.wrapping_add(1), addr, e.to_string())
                        .await;
                }
                Slot::add(&self.ctx.slot().bytes_from_clients, n as u64);
                self.cbuf.consume(n);
                left -= n;
            }
            if !h.continued() {
                return Ok(seq);
            }
        }
    }

    /// Streams the backend's response to the client until the scanner sees its end.
    async fn relay_response(
        &mut self,
        expect: Expect,
        request_seq: u8,
    ) -> Result<(), SessionError> {
        let backend = self.backend.as_ref().ok_or_else(no_backend)?;
        let mut scanner = Scanner::new(expect, backend.deprecate_eof());
        let mut forwarded = false;
        loop {
            if !self.bbuf.is_empty() {
                let (n, progress) = match scanner.feed(self.bbuf.filled()) {
                    Ok(r) => r,
                    Err(e) => {
                        let seq = if forwarded {
                            scanner.last_seq
                        } else {
                            request_seq
                        };
                        let addr = self
                            .backend
                            .as_ref()
                            .map(|b| b.addr)
                            .ok_or_else(no_backend)?;
                        return self
                            .backend_lost(
                                seq.wrapping_add(1),
                                addr,
                                format!("malformed response: {e}"),
                            )
                            .await;
                    }
                };
                if n > 0 {
                    self.client
                        .write_all(&self.bbuf.filled()[..n])
                        .await
                        .map_err(|e| {
                            // The response is half read: the backend connection is unusable.
                            SessionError::ClientGone(e)
                        })?;
                    self.bbuf.consume(n);
                    forwarded = true;
                }
                match progress {
                    Progress::Done => return Ok(()),
                    Progress::LocalInfile => {
                        self.forward_local_infile().await?;
                        continue;
                    }
                    Progress::More => {}
                }
            }
            let backend = self.backend.as_mut().ok_or_else(no_backend)?;
            let addr = backend.addr;
            match self.bbuf.fill_from(&mut backend.stream, None).await {
                Ok(n) if n > 0 => Slot::add(&self.ctx.slot().bytes_from_backends, n as u64),
                result => {
                    let reason = match result {
                        Err(e) => e.to_string(),
                        Ok(_) => "connection closed by the server".into(),
                    };
                    if !scanner.at_boundary() {
                        // The client holds part of a packet: an ERR now would be read as
                        // the rest of it. Closing is the only clear signal left.
                        self.set_backend(None);
                        return Err(SessionError::BackendLost { addr, reason });
                    }
                    let seq = if forwarded {
                        scanner.last_seq
                    } else {
                        request_seq
                    };
                    return self.backend_lost(seq.wrapping_add(1), addr, reason).await;
                }
            }
        }
    }

    /// LOAD DATA LOCAL INFILE: the client sends the file as packets ending with an empty
    /// one; pass them all to the backend.
    async fn forward_local_infile(&mut self) -> Result<(), SessionError> {
        loop {
            let idle = self.idle_timeout();
            self.cbuf
                .fill_to(&mut self.client, HEADER_LEN, idle)
                .await
                .map_err(SessionError::ClientGone)?;
            let Some(h) = Header::parse(self.cbuf.filled()) else {
                unreachable!("four bytes are buffered")
            };
            self.forward_packet().await?;
            if h.len == 0 {
                return Ok(());
            }
        }
    }

    /// Tells the client the backend failed mid-command and ends the session: its state on
    /// the server is gone, so carrying on silently would be wrong.
    async fn backend_lost<T>(
        &mut self,
        seq: u8,
        addr: std::net::SocketAddr,
        reason: String,
    ) -> Result<T, SessionError> {
        self.set_backend(None);
        let msg = format!("Lost connection to db server {addr} during query ({reason}); corelay closed this session");
        self.send_err(seq, code::SERVER_LOST, &msg).await;
        Err(SessionError::BackendLost { addr, reason })
    }
}

fn no_backend() -> SessionError {
    SessionError::BackendLost {
        addr: ([0, 0, 0, 0], 0).into(),
        reason: "no backend connection".into(),
    }
}
