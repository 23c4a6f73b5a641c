//! The client side of a session: packets corelay writes to the client itself (errors, OK)
//! and commands it reads whole because it handles them itself.

use super::error::{SessionError, Step};
use super::Session;
use crate::net::{read_packet, Connector, PacketReadError, Transport};
use crate::protocol::code::Code;
use crate::protocol::err::{write_err, ErrPacket};
use crate::protocol::ok::write_ok;
use crate::protocol::resultset::Framing;

impl<C: Transport, N: Connector> Session<'_, C, N> {
    /// Sends an ERR packet to the client. A failure to send is not reported: the session
    /// is ending anyway or the next read will notice.
    pub(super) async fn send_err(&mut self, seq: u8, code: Code, message: &str) {
        self.out.clear();
        write_err(&mut self.out, seq, code, message);
        let _ = self.client.write_all(&self.out).await;
    }

    /// Passes a server's error on to the client (as [`Session::send_err`]).
    pub(super) async fn send_server_err(&mut self, seq: u8, err: &ErrPacket) {
        self.out.clear();
        err.write(&mut self.out, seq);
        let _ = self.client.write_all(&self.out).await;
    }

    /// A result set corelay answers itself, with the session's status flags.
    pub(super) async fn send_rows(&mut self, seq: u8, rs: &crate::protocol::resultset::ResultSet) -> Step {
        let flags = self.recorded.status_flags();
        let framing = self.framing();
        self.out.clear();
        rs.write(&mut self.out, seq, framing, flags);
        Ok(self.flush().await?)
    }

    /// How result sets corelay makes itself are framed for this client.
    pub(super) fn framing(&self) -> Framing {
        Framing {
            deprecate_eof: self.caps & crate::protocol::caps::DEPRECATE_EOF != 0,
            metadata_byte: self.cache_metadata,
        }
    }

    /// Sends the buffered output packets.
    pub(super) async fn flush(&mut self) -> Result<(), SessionError> {
        let r = self.client.write_all(&self.out).await;
        self.out.clear();
        r.map_err(SessionError::ClientGone)
    }

    /// An OK packet corelay answers itself, with the session's status flags.
    pub(super) async fn ok_reply(&mut self, seq: u8) -> Step {
        let flags = self.recorded.status_flags();
        self.out.clear();
        write_ok(&mut self.out, seq, 0, 0, flags);
        Ok(self.flush().await?)
    }

    /// Reads a whole command the proxy handles itself (bounded by max_packet_bytes).
    pub(super) async fn read_local_packet(&mut self, reply_seq: u8) -> Result<(u8, Vec<u8>), SessionError> {
        let max = self.config.proxy.max_packet_bytes as usize;
        let idle = self.idle_timeout();
        match read_packet(&mut self.client, &mut self.cbuf, max, idle).await {
            Ok(p) => Ok(p),
            Err(PacketReadError::Io(e)) => Err(SessionError::ClientGone(e)),
            Err(PacketReadError::TooLarge(n)) => Err(self.too_large(reply_seq, n).await),
        }
    }
}
