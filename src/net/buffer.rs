//! The read buffer of every connection (client, backend, admin).

use std::io;
use std::time::Duration;

use super::Transport;

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
