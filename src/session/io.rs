//! What a session needs from the runtime: a byte stream with timeouts, a way to open a
//! backend connection, and a way to run a task of its own. `shard::net` implements them with glommio; the
//! session, backend and pool code only see these traits.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// A connected byte stream.
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// Reads at least one byte into `dst`, or returns 0 at end of stream. With a timeout,
    /// fails with `ErrorKind::TimedOut` when nothing arrives in time.
    async fn read(&mut self, dst: &mut [u8], timeout: Option<Duration>) -> io::Result<usize>;
    /// Writes all of `src`.
    async fn write_all(&mut self, src: &[u8]) -> io::Result<()>;
    /// Whether the peer closed the connection or sent something unasked (checked without
    /// waiting). An idle pooled backend connection for which this is true is unusable.
    fn peer_closed(&self) -> bool;
}

/// Opens backend connections.
#[allow(async_fn_in_trait)]
pub trait Connector {
    type Conn: Transport + 'static;
    async fn connect(&self, addr: SocketAddr, timeout: Duration) -> io::Result<Self::Conn>;
    /// Sleeps for `d` (used for waits with a deadline).
    async fn sleep(&self, d: Duration);
    /// Runs `task` on the shard beside the sessions (a pipelined connection's driver). The
    /// runtime may poll it once before this returns.
    fn spawn(&self, task: impl std::future::Future<Output = ()> + 'static);
}

/// A read buffer: bytes received but not yet consumed sit in `data[start..end]`.
///
/// It allocates nothing until the first read, reads 4 KiB at a time at first and doubles
/// its read size (up to [`MAX_READ`]) whenever a read fills all the space it offered, so an
/// idle client costs little and a large result set is read in large pieces.
#[derive(Debug)]
pub struct Buffer {
    data: Vec<u8>,
    start: usize,
    end: usize,
    read_size: usize,
}

impl Default for Buffer {
    fn default() -> Self {
        Buffer::new()
    }
}

/// First read size, and what the read size goes back to when the buffer shrinks.
const MIN_READ: usize = 4 * 1024;
/// Largest single read.
const MAX_READ: usize = 256 * 1024;
/// A buffer grown past this is given back when it empties.
const SHRINK_ABOVE: usize = 1 << 20;

impl Buffer {
    pub fn new() -> Buffer {
        Buffer { data: Vec::new(), start: 0, end: 0, read_size: MIN_READ }
    }

    pub fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub fn filled_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Bytes allocated.
    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.data.len() > SHRINK_ABOVE {
                self.data = Vec::new();
                self.read_size = MIN_READ;
            }
        }
    }

    /// Free space at the end, at least `min` bytes (moving or growing the data if needed).
    fn spare(&mut self, min: usize) -> &mut [u8] {
        if self.data.len() - self.end < min {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.data.len() - self.end < min {
                let want = (self.end + min).next_power_of_two();
                self.data.resize(want, 0);
            }
        }
        &mut self.data[self.end..]
    }

    /// Reads once from `t` into the buffer; returns the bytes read (0 = end of stream).
    pub async fn fill_from<T: Transport>(&mut self, t: &mut T, timeout: Option<Duration>) -> io::Result<usize> {
        let want = self.read_size;
        let dst = self.spare(want);
        let offered = dst.len();
        let n = t.read(dst, timeout).await?;
        self.end += n;
        if n == offered && self.read_size < MAX_READ {
            self.read_size *= 2;
        }
        Ok(n)
    }

    /// Reads until at least `n` bytes are buffered. End of stream is `UnexpectedEof`.
    pub async fn fill_to<T: Transport>(&mut self, t: &mut T, n: usize, timeout: Option<Duration>) -> io::Result<()> {
        while self.len() < n {
            let want = n - self.len();
            let dst = self.spare(want.max(MIN_READ));
            let got = t.read(dst, timeout).await?;
            if got == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.end += got;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_compacts_and_grows() {
        let mut b = Buffer::new();
        assert_eq!(b.capacity(), 0, "nothing allocated before the first read");
        let s = b.spare(10);
        s[..5].copy_from_slice(b"hello");
        b.end += 5;
        b.consume(2);
        assert_eq!(b.filled(), b"llo");
        let cap = b.data.len();
        b.spare(cap);
        assert_eq!(b.filled(), b"llo");
        assert!(b.data.len() >= cap + 3);
        b.consume(3);
        assert!(b.is_empty());
    }
}

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
