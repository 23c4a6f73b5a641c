//! Reading whole MySQL packets off a transport: the small packets of a login and the
//! commands corelay answers itself (everything else is forwarded as it arrives).

use std::io;
use std::time::{Duration, Instant};

use super::{Buffer, Transport};

/// Reads one whole logical packet (joining continued physical packets) of at most `max`
/// payload bytes, and consumes it from `buf`. Returns the sequence id of its last physical
/// packet and the payload. Used for the small packets of the login exchange and for
/// commands the proxy answers itself. `timeout` bounds the whole packet, not each read: a
/// peer sending a byte at a time gets no more time than one sending it at once.
pub async fn read_packet<T: Transport>(
    t: &mut T,
    buf: &mut Buffer,
    max: usize,
    timeout: Option<Duration>,
) -> Result<(u8, Vec<u8>), PacketReadError> {
    use crate::protocol::packet::{Header, HEADER_LEN};
    let deadline = timeout.map(|d| Instant::now() + d);
    let mut payload = Vec::new();
    loop {
        fill_before(t, buf, HEADER_LEN, deadline).await?;
        let h = Header::parse(buf.filled()).ok_or(PacketReadError::Io(io::ErrorKind::UnexpectedEof.into()))?;
        if payload.len() + h.len > max {
            return Err(PacketReadError::TooLarge(payload.len() + h.len));
        }
        fill_before(t, buf, h.total(), deadline).await?;
        payload.extend_from_slice(&buf.filled()[HEADER_LEN..h.total()]);
        buf.consume(h.total());
        if !h.continued() {
            return Ok((h.seq, payload));
        }
    }
}

/// Buffers at least `n` bytes, all before `deadline`.
async fn fill_before<T: Transport>(t: &mut T, buf: &mut Buffer, n: usize, deadline: Option<Instant>) -> io::Result<()> {
    while buf.len() < n {
        let left = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Err(io::ErrorKind::TimedOut.into()),
            },
            None => None,
        };
        if buf.fill_from(t, left).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum PacketReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("packet of {0} bytes is larger than allowed")]
    TooLarge(usize),
}
