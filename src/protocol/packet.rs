//! Packet framing: the 4-byte header, length-encoded integers and strings, and a small
//! cursor for decoding payloads.
//!
//! A logical packet of 16 MiB or more is sent as a chain of physical packets whose payload
//! is exactly [`MAX_PAYLOAD`] bytes, ended by a shorter one (possibly empty). The proxy
//! forwards physical packets as they come; only the first physical packet of a logical
//! packet carries a command byte or a response marker.

use super::ProtocolError;

/// Largest payload of one physical packet; a payload of this size is continued.
pub const MAX_PAYLOAD: usize = 0xFF_FFFF;
/// Size of the packet header.
pub const HEADER_LEN: usize = 4;

/// The 4-byte header in front of every physical packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub len: usize,
    pub seq: u8,
}

impl Header {
    /// Decodes a header from the first four bytes of `buf`, if present.
    #[inline]
    pub fn parse(buf: &[u8]) -> Option<Header> {
        if buf.len() < HEADER_LEN {
            return None;
        }
        Some(Header { len: usize::from(buf[0]) | usize::from(buf[1]) << 8 | usize::from(buf[2]) << 16, seq: buf[3] })
    }

    /// Whether another physical packet continues this one.
    #[inline]
    pub fn continued(&self) -> bool {
        self.len == MAX_PAYLOAD
    }

    /// Header plus payload.
    #[inline]
    pub fn total(&self) -> usize {
        HEADER_LEN + self.len
    }
}

/// Writes a header for a payload of `len` bytes (which must be at most [`MAX_PAYLOAD`]).
#[inline]
pub fn write_header(out: &mut Vec<u8>, len: usize, seq: u8) {
    debug_assert!(len <= MAX_PAYLOAD);
    out.extend_from_slice(&[len as u8, (len >> 8) as u8, (len >> 16) as u8, seq]);
}

/// Appends `payload` as one logical packet starting at sequence `seq`, splitting it into
/// physical packets where needed. Returns the sequence id that follows.
pub fn write_packet(out: &mut Vec<u8>, seq: u8, payload: &[u8]) -> u8 {
    let mut seq = seq;
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_PAYLOAD);
        write_header(out, n, seq);
        out.extend_from_slice(&rest[..n]);
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_PAYLOAD {
            return seq;
        }
    }
}

/// Appends a command packet (sequence 0): the command byte, then `body` (a statement's
/// text, a schema name, ...).
pub fn write_command(out: &mut Vec<u8>, command: u8, body: &[u8]) {
    if body.len() + 1 < MAX_PAYLOAD {
        // (A payload of exactly MAX_PAYLOAD needs the empty packet after it: write_packet.)
        write_header(out, body.len() + 1, 0);
        out.push(command);
        out.extend_from_slice(body);
    } else {
        let mut payload = Vec::with_capacity(body.len() + 1);
        payload.push(command);
        payload.extend_from_slice(body);
        write_packet(out, 0, &payload);
    }
}

/// Starts a packet in `out` whose header is filled in by [`finish_packet`]; for small
/// packets the proxy builds itself (OK, ERR, handshake, result sets).
pub fn begin_packet(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    at
}

/// Fills in the header of a packet begun with [`begin_packet`].
pub fn finish_packet(out: &mut [u8], at: usize, seq: u8) {
    let len = out.len() - at - HEADER_LEN;
    debug_assert!(len < MAX_PAYLOAD, "use write_packet for large payloads");
    out[at] = len as u8;
    out[at + 1] = (len >> 8) as u8;
    out[at + 2] = (len >> 16) as u8;
    out[at + 3] = seq;
}

/// Appends a length-encoded integer.
pub fn put_lenenc_int(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=250 => out.push(v as u8),
        251..=0xFFFF => {
            out.push(0xFC);
            out.extend_from_slice(&(v as u16).to_le_bytes());
        }
        0x1_0000..=0xFF_FFFF => {
            out.push(0xFD);
            out.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xFE);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// Appends a length-encoded string.
pub fn put_lenenc_str(out: &mut Vec<u8>, s: &[u8]) {
    put_lenenc_int(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// A read cursor over one payload. Every read checks bounds and reports what it was
/// reading when the payload ran out.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let r = &self.buf[self.pos..];
        self.pos = self.buf.len();
        r
    }

    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ProtocolError> {
        if self.remaining() < n {
            return Err(ProtocolError::Truncated(what));
        }
        let r = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(r)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, ProtocolError> {
        Ok(self.bytes(1, what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, ProtocolError> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, ProtocolError> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn lenenc_int(&mut self, what: &'static str) -> Result<u64, ProtocolError> {
        let first = self.u8(what)?;
        Ok(match first {
            0..=0xFA => u64::from(first),
            0xFC => u64::from(self.u16(what)?),
            0xFD => {
                let b = self.bytes(3, what)?;
                u64::from(b[0]) | u64::from(b[1]) << 8 | u64::from(b[2]) << 16
            }
            0xFE => {
                let b = self.bytes(8, what)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                u64::from_le_bytes(a)
            }
            _ => return Err(ProtocolError::Malformed(what)),
        })
    }

    pub fn lenenc_bytes(&mut self, what: &'static str) -> Result<&'a [u8], ProtocolError> {
        let n = self.lenenc_int(what)?;
        let n = usize::try_from(n).map_err(|_| ProtocolError::Malformed(what))?;
        self.bytes(n, what)
    }

    /// A NUL-terminated string; the NUL is consumed. Missing NUL at the end of the payload
    /// is tolerated when `lenient` (some clients omit it on the last field).
    pub fn nul_bytes(&mut self, what: &'static str, lenient: bool) -> Result<&'a [u8], ProtocolError> {
        let rest = &self.buf[self.pos..];
        match rest.iter().position(|&b| b == 0) {
            Some(i) => {
                self.pos += i + 1;
                Ok(&rest[..i])
            }
            None if lenient => {
                self.pos = self.buf.len();
                Ok(rest)
            }
            None => Err(ProtocolError::Truncated(what)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_packet_is_the_command_byte_then_the_body_at_any_size() {
        let mut small = Vec::new();
        write_command(&mut small, 3, b"SELECT 1");
        assert_eq!(small, b"\x09\x00\x00\x00\x03SELECT 1");
        for len in [MAX_PAYLOAD - 1, MAX_PAYLOAD, MAX_PAYLOAD + 5] {
            let body = vec![b'x'; len];
            let (mut got, mut want) = (Vec::new(), Vec::new());
            write_command(&mut got, 3, &body);
            let mut payload = vec![3];
            payload.extend_from_slice(&body);
            write_packet(&mut want, 0, &payload);
            assert!(got == want, "body of {len} bytes");
        }
    }

    #[test]
    fn header_roundtrip() {
        let mut out = Vec::new();
        write_header(&mut out, 0x01_0203, 7);
        assert_eq!(out, [0x03, 0x02, 0x01, 7]);
        let h = Header::parse(&out).unwrap();
        assert_eq!(h, Header { len: 0x01_0203, seq: 7 });
        assert!(!h.continued());
        assert!(Header::parse(&out[..3]).is_none());
    }

    #[test]
    fn large_payload_splits_into_continued_packets() {
        let payload = vec![0xAB; MAX_PAYLOAD * 2 + 10];
        let mut out = Vec::new();
        let next = write_packet(&mut out, 3, &payload);
        assert_eq!(next, 6);
        let h1 = Header::parse(&out).unwrap();
        assert!(h1.continued());
        assert_eq!(h1.seq, 3);
        let h2 = Header::parse(&out[h1.total()..]).unwrap();
        assert!(h2.continued());
        assert_eq!(h2.seq, 4);
        let h3 = Header::parse(&out[h1.total() + h2.total()..]).unwrap();
        assert_eq!(h3.len, 10);
        assert_eq!(h3.seq, 5);
        assert_eq!(out.len(), payload.len() + 3 * HEADER_LEN);
    }

    #[test]
    fn exact_multiple_ends_with_empty_packet() {
        let payload = vec![1u8; MAX_PAYLOAD];
        let mut out = Vec::new();
        assert_eq!(write_packet(&mut out, 0, &payload), 2);
        let tail = Header::parse(&out[MAX_PAYLOAD + HEADER_LEN..]).unwrap();
        assert_eq!(tail, Header { len: 0, seq: 1 });
    }

    #[test]
    fn lenenc_roundtrip() {
        for v in [0u64, 250, 251, 0xFFFF, 0x1_0000, 0xFF_FFFF, 0x100_0000, u64::MAX] {
            let mut out = Vec::new();
            put_lenenc_int(&mut out, v);
            assert_eq!(Reader::new(&out).lenenc_int("v").unwrap(), v, "value {v}");
        }
        assert_eq!(Reader::new(&[0xFF]).lenenc_int("v"), Err(ProtocolError::Malformed("v")));
        assert_eq!(Reader::new(&[0xFC, 1]).lenenc_int("v"), Err(ProtocolError::Truncated("v")));
    }

    #[test]
    fn reader_nul_strings() {
        let mut r = Reader::new(b"abc\0de");
        assert_eq!(r.nul_bytes("a", false).unwrap(), b"abc");
        assert!(r.clone().nul_bytes("b", false).is_err());
        assert_eq!(r.nul_bytes("b", true).unwrap(), b"de");
        assert!(r.is_empty());
    }
}
