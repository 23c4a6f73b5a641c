//! EOF packets: the result-set terminator of clients without CLIENT_DEPRECATE_EOF.

use super::packet::{begin_packet, finish_packet};

/// Appends an EOF packet (pre-DEPRECATE_EOF result set terminator).
pub fn write_eof(out: &mut Vec<u8>, seq: u8, status_flags: u16) {
    let at = begin_packet(out);
    out.push(0xFE);
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&status_flags.to_le_bytes());
    finish_packet(out, at, seq);
}
