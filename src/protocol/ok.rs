//! OK packets: written for replies corelay makes itself, read for what the server says
//! (affected rows, insert id, status flags, warnings, session-state changes).

use std::rc::Rc;

use super::packet::{begin_packet, finish_packet, put_lenenc_int, put_lenenc_str, Reader};
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
    /// SESSION_TRACK_SYSTEM_VARIABLES: session variables the statement set, as
    /// (lower-case name, value as the server reports it), in the order reported.
    pub sysvars: Vec<(String, String)>,
}

impl SessionChanges {
    /// Adds what a later OK of the same response reported.
    pub fn merge(&mut self, c: SessionChanges) {
        if c.schema.is_some() {
            self.schema = c.schema;
        }
        self.state_changed |= c.state_changed;
        for (name, value) in c.sysvars {
            self.sysvars.retain(|(n, _)| *n != name);
            self.sysvars.push((name, value));
        }
    }
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
            0 => {
                let name = String::from_utf8_lossy(data.lenenc_bytes("variable name")?).to_ascii_lowercase();
                let value = String::from_utf8_lossy(data.lenenc_bytes("variable value")?).into_owned();
                out.sysvars.retain(|(n, _)| *n != name);
                out.sysvars.push((name, value));
            }
            1 => out.schema = Some(String::from_utf8_lossy(data.lenenc_bytes("schema")?).into_owned()),
            // The data is "1" itself (MariaDB and MySQL send it so, not length-encoded).
            2 => out.state_changed |= data.rest() == b"1" || data.rest() == b"\x011",
            _ => {}
        }
    }
    Ok(out)
}

/// The session-state trackers a new connection starts with: the server's global
/// `session_track_*` settings, so what a client connected directly is told of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trackers {
    /// `session_track_system_variables`, lower case; None for `*`.
    pub sysvars: Option<Vec<String>>,
    /// `session_track_schema`.
    pub schema: bool,
    /// `session_track_state_change`.
    pub state_change: bool,
}

impl Default for Trackers {
    /// MariaDB's and MySQL's defaults.
    fn default() -> Trackers {
        Trackers::parse(
            "autocommit,character_set_client,character_set_connection,character_set_results,time_zone",
            "1",
            "0",
        )
    }
}

impl Trackers {
    /// From the values of `@@session_track_system_variables`, `@@session_track_schema` and
    /// `@@session_track_state_change` as a text result set shows them.
    pub fn parse(sysvars: &str, schema: &str, state_change: &str) -> Trackers {
        let on = |v: &str| v == "1" || v.eq_ignore_ascii_case("ON");
        let list: Vec<String> =
            sysvars.split(',').map(|n| n.trim().to_ascii_lowercase()).filter(|n| !n.is_empty()).collect();
        Trackers {
            sysvars: (!list.iter().any(|n| n == "*")).then_some(list),
            schema: on(schema),
            state_change: on(state_change),
        }
    }

    /// Whether a change of system variable `name` is reported.
    pub fn tracks_var(&self, name: &str) -> bool {
        self.sysvars.as_ref().is_none_or(|l| l.iter().any(|n| n.eq_ignore_ascii_case(name)))
    }
}

/// What a client is told of session-state changes on a backend connection that tracks
/// more than the client's own connection would (corelay tracks everything, to know the
/// session's state from the server itself).
#[derive(Debug, Clone)]
pub struct ClientView {
    /// The client negotiated CLIENT_SESSION_TRACK: it is told what `trackers` report;
    /// otherwise nothing.
    pub tracking_client: bool,
    /// The trackers the client's own connection would have (the server's defaults).
    pub trackers: Rc<Trackers>,
    /// An EOF keeps SERVER_SESSION_STATE_CHANGED: MariaDB sets it on the EOFs of a result
    /// set whose statement changed a tracked variable (`SET STATEMENT ... FOR SELECT`),
    /// whatever the client negotiated, and says no more.
    pub eof_flag: bool,
}

/// The OK packet (payload including the marker) a client with `view` would have got from
/// the server, or None when it is the one given. The server's is from a connection that
/// negotiated CLIENT_SESSION_TRACK.
pub fn rewrite_ok(payload: &[u8], view: &ClientView) -> Option<Vec<u8>> {
    let mut r = Reader::new(payload);
    r.u8("ok marker").ok()?;
    r.lenenc_int("affected rows").ok()?;
    r.lenenc_int("last insert id").ok()?;
    let head = payload.len() - r.remaining();
    let status_flags = r.u16("status flags").ok()?;
    let warnings = r.u16("warnings").ok()?;
    if status_flags & status::SESSION_STATE_CHANGED == 0 {
        return None;
    }
    let info = if r.is_empty() { &[][..] } else { r.lenenc_bytes("info").ok()? };
    let block = if r.is_empty() { &[][..] } else { r.lenenc_bytes("session state").ok()? };
    let mut kept = Vec::new();
    let mut entries = Reader::new(block);
    while !entries.is_empty() {
        let start = block.len() - entries.remaining();
        let kind = entries.u8("session state type").ok()?;
        let data = entries.lenenc_bytes("session state data").ok()?;
        let end = block.len() - entries.remaining();
        let told = view.tracking_client
            && match kind {
                0 => Reader::new(data)
                    .lenenc_bytes("variable name")
                    .is_ok_and(|n| view.trackers.tracks_var(&String::from_utf8_lossy(n))),
                1 => view.trackers.schema,
                2 => view.trackers.state_change,
                _ => true,
            };
        if told {
            kept.extend_from_slice(&block[start..end]);
        }
    }
    let mut out = Vec::with_capacity(payload.len());
    out.extend_from_slice(&payload[..head]);
    let flags = if kept.is_empty() { status_flags & !status::SESSION_STATE_CHANGED } else { status_flags };
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&warnings.to_le_bytes());
    if !kept.is_empty() || !info.is_empty() {
        put_lenenc_str(&mut out, info);
    }
    if !kept.is_empty() {
        put_lenenc_str(&mut out, &kept);
    }
    (out != payload).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An OK as MariaDB 10.11 sends it on a connection tracking everything, after
    /// `SET time_zone = '+01:00'` (bytes read off the server).
    fn time_zone_ok() -> Vec<u8> {
        let mut p = vec![0x00, 0, 0, 0x02, 0x40, 0, 0];
        p.extend_from_slice(b"\x00\x16\x00\x11\ttime_zone\x06+01:00\x02\x011");
        p
    }

    fn view(tracking_client: bool, trackers: Trackers) -> ClientView {
        ClientView { tracking_client, trackers: Rc::new(trackers), eof_flag: false }
    }

    #[test]
    fn the_servers_session_state_is_read() {
        let c = session_changes(&time_zone_ok()).unwrap();
        assert_eq!(c.sysvars, vec![("time_zone".to_string(), "+01:00".to_string())]);
        assert!(c.state_changed);
        assert_eq!(c.schema, None);
        // USE mysql: schema, then state change.
        let mut p = vec![0x00, 0, 0, 0x02, 0x40, 0, 0];
        p.extend_from_slice(b"\x00\x0b\x01\x06\x05mysql\x02\x011");
        let c = session_changes(&p).unwrap();
        assert_eq!(c.schema.as_deref(), Some("mysql"));
        assert!(c.state_changed);
    }

    #[test]
    fn a_client_is_told_what_its_own_trackers_report() {
        let ok = time_zone_ok();
        // Without CLIENT_SESSION_TRACK: no flag, no block (what the server sends then).
        assert_eq!(rewrite_ok(&ok, &view(false, Trackers::default())).unwrap(), vec![0x00, 0, 0, 0x02, 0, 0, 0]);
        // With the defaults: time_zone, but not the state change.
        let mut want = vec![0x00, 0, 0, 0x02, 0x40, 0, 0];
        want.extend_from_slice(b"\x00\x13\x00\x11\ttime_zone\x06+01:00");
        assert_eq!(rewrite_ok(&ok, &view(true, Trackers::default())).unwrap(), want);
        // With everything tracked: as it is.
        assert_eq!(rewrite_ok(&ok, &view(true, Trackers::parse("*", "1", "1"))), None);
        // Nothing left: the flag goes, and so does the empty info.
        let none = Trackers::parse("", "0", "0");
        assert_eq!(rewrite_ok(&ok, &view(true, none)).unwrap(), vec![0x00, 0, 0, 0x02, 0, 0, 0]);
        // An info message stays, for every client.
        let mut with_info = vec![0x00, 1, 0, 0x02, 0x40, 0, 0, 2, b'h', b'i'];
        with_info.extend_from_slice(b"\x03\x02\x011");
        assert_eq!(
            rewrite_ok(&with_info, &view(false, Trackers::default())).unwrap(),
            vec![0x00, 1, 0, 0x02, 0, 0, 0, 2, b'h', b'i']
        );
        // No state change flag: nothing to do.
        assert_eq!(rewrite_ok(&[0x00, 0, 0, 0x02, 0, 0, 0], &view(false, Trackers::default())), None);
    }

    #[test]
    fn trackers_read_the_servers_settings() {
        let t = Trackers::default();
        assert!(t.tracks_var("time_zone") && t.tracks_var("AUTOCOMMIT") && !t.tracks_var("sql_mode"));
        assert!(t.schema && !t.state_change);
        let all = Trackers::parse("*", "ON", "ON");
        assert!(all.tracks_var("sql_mode") && all.state_change);
    }
}
