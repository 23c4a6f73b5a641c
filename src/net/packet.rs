//! Reading whole MySQL packets off a transport: the small packets of a login and the
//! commands corelay answers itself (everything else is forwarded as it arrives).

use std::io;
use std::time::Duration;

use super::{Buffer, Transport};

/// Reads one whole logical packet (joining continued physical packets) of at most `max`
/// payload bytes, and consumes it from `buf`. Returns the sequence id of its last physical
/// packet and the payload. Used for the small packets of the login exchange and for
/// commands the proxy answers itself.
pub async fn read_packet<T: Transport>(
    t: &mut T,
    buf: &mut Buffer,
    max: usize,
    timeout: Option<Duration>,
) -> Result<(u8, Vec<u8>), PacketReadError> {
    use crate::protocol::packet::{Header, HEADER_LEN};
    let mut payload = Vec::new();
    loop {
        buf.fill_to(t, HEADER_LEN, timeout).await?;
        let h = Header::parse(buf.filled()).ok_or(PacketReadError::Io(io::ErrorKind::UnexpectedEof.into()))?;
        if payload.len() + h.len > max {
            return Err(PacketReadError::TooLarge(payload.len() + h.len));
        }
        buf.fill_to(t, h.total(), timeout).await?;
        payload.extend_from_slice(&buf.filled()[HEADER_LEN..h.total()]);
        buf.consume(h.total());
        if !h.continued() {
            return Ok((h.seq, payload));
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PacketReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("packet of {0} bytes is larger than allowed")]
    TooLarge(usize),
}
