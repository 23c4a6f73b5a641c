//! OK packets: written for replies corelay makes itself, read for what the server says
//! (affected rows, insert id, status flags, warnings, session-state changes).

use super::packet::{begin_packet, finish_packet, put_lenenc_int, Reader};
use super::{status, ProtocolError};

/// Appends an OK packet.
pub fn write_ok(out: &mut Vec<u8>, seq: u8, affected: u64, insert_id: u64, status_flags: u16) {
    let at = begin_packet(out);
    out.push(0x00);
    put_lenenc_int(out, affected);
    put_lenenc_int(out, insert_id);
    out.extend_from_slice(&status_flags.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    finish_packet(out, at, seq);
}

/// Appends an OK packet carrying a human-readable info message (what `mysql_info()` and
/// the CLI show), length-encoded as MariaDB sends it.
pub fn write_ok_info(out: &mut Vec<u8>, seq: u8, status_flags: u16, info: &str) {
    let at = begin_packet(out);
    out.push(0x00);
    put_lenenc_int(out, 0);
    put_lenenc_int(out, 0);
    out.extend_from_slice(&status_flags.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    put_lenenc_int(out, info.len() as u64);
    out.extend_from_slice(info.as_bytes());
    finish_packet(out, at, seq);
}

/// The parts of an OK packet the proxy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OkPacket {
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
}

impl OkPacket {
    /// Decodes an OK packet (marker 0x00, or 0xFE when it ends a result set under
    /// CLIENT_DEPRECATE_EOF).
    pub fn parse(payload: &[u8]) -> Result<OkPacket, ProtocolError> {
        let mut r = Reader::new(payload);
        let marker = r.u8("ok marker")?;
        if marker != 0x00 && marker != 0xFE {
            return Err(ProtocolError::Malformed("OK packet does not start with 0x00 or 0xFE"));
        }
        let affected_rows = r.lenenc_int("affected rows")?;
        let last_insert_id = r.lenenc_int("last insert id")?;
        let status = r.u16("status flags")?;
        let warnings = if r.remaining() >= 2 { r.u16("warnings")? } else { 0 };
        Ok(OkPacket { affected_rows, last_insert_id, status, warnings })
    }
}

/// What the server's session-state tracking (CLIENT_SESSION_TRACK) reported in an OK
/// packet, as far as the proxy uses it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionChanges {
    /// SESSION_TRACK_SCHEMA: the session's new schema.
    pub schema: Option<String>,
    /// SESSION_TRACK_STATE_CHANGE: the session has state a replay cannot rebuild.
    pub state_changed: bool,
}

/// Reads the session-state block of an OK packet (payload including the marker), present
/// when the connection negotiated CLIENT_SESSION_TRACK and the status has
/// SERVER_SESSION_STATE_CHANGED.
pub fn session_changes(payload: &[u8]) -> Result<SessionChanges, ProtocolError> {
    let mut r = Reader::new(payload);
    r.u8("ok marker")?;
    r.lenenc_int("affected rows")?;
    r.lenenc_int("last insert id")?;
    let status_flags = r.u16("status flags")?;
    r.u16("warnings")?;
    let mut out = SessionChanges::default();
    if status_flags & status::SESSION_STATE_CHANGED == 0 || r.is_empty() {
        return Ok(out);
    }
    r.lenenc_bytes("info")?;
    let mut block = Reader::new(r.lenenc_bytes("session state")?);
    while !block.is_empty() {
        let kind = block.u8("session state type")?;
        let mut data = Reader::new(block.lenenc_bytes("session state data")?);
        match kind {
            1 => out.schema = Some(String::from_utf8_lossy(data.lenenc_bytes("schema")?).into_owned()),
            2 => out.state_changed |= data.lenenc_bytes("state change")? == b"1",
            _ => {}
        }
    }
    Ok(out)
}
