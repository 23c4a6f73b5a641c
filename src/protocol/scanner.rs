//! End-of-response detection.
//!
//! [`Scanner`] is fed the bytes a backend sends after a command and says, without copying
//! them, how many bytes belong to the response so far and whether the response is
//! complete. It only looks at the first byte (and, for OK/EOF/ERR and counts, the whole of
//! a small packet); rows and column definitions are skipped by length, so it streams
//! results of any size, including rows of 16 MiB and more.

use std::borrow::Cow;

use super::err::ErrPacket;
use super::ok::{rewrite_ok, session_changes, ClientView, OkPacket, SessionChanges};
use super::packet::{write_packet, Header, Reader, HEADER_LEN, MAX_PAYLOAD};
use super::{status, ProtocolError};

/// The shape of the response a command gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// COM_QUERY and COM_STMT_EXECUTE: OK, ERR, LOCAL INFILE request, or result sets,
    /// chained by SERVER_MORE_RESULTS_EXISTS.
    ResultSets,
    /// COM_STMT_PREPARE: PREPARE_OK followed by parameter and column definitions.
    Prepare,
    /// COM_STMT_FETCH: rows then a terminator, or ERR.
    Rows,
    /// COM_FIELD_LIST: column definitions then a terminator, or ERR.
    FieldList,
    /// Exactly one packet (COM_PING, COM_STATISTICS, COM_INIT_DB, COM_SET_OPTION, ...).
    Single,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    First,
    Columns(u64),
    ColumnsEof,
    Rows,
    PrepareFirst,
    PrepareDefs { params: u64, params_eof: bool, cols: u64, cols_eof: bool },
    Single,
    Done,
}

/// What the caller should do after feeding bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The response continues; read more from the backend.
    More,
    /// The response is complete.
    Done,
    /// The server asked for a LOCAL INFILE: forward the client's packets up to and
    /// including an empty one, then keep scanning.
    LocalInfile,
}

/// End-of-response detector. See the module documentation.
#[derive(Debug, Clone)]
pub struct Scanner {
    state: State,
    deprecate_eof: bool,
    /// The previous physical packet had the maximum length: this one continues it.
    continuation: bool,
    /// Payload bytes of the current packet still to pass through unexamined.
    skip: usize,
    /// Sequence id of the last packet header seen.
    pub last_seq: u8,
    /// Status flags of the last OK/EOF seen (see [`Scanner::status_seen`]).
    pub status: u16,
    status_seen: bool,
    /// The last OK packet seen, if any.
    pub ok: Option<OkPacket>,
    /// Error code, if the response ended with an ERR packet.
    pub error: Option<u16>,
    /// The last statement's reply was a result set (not an OK).
    result_set: bool,
    /// Rows of the last result set (what `FOUND_ROWS()` returns after a plain SELECT).
    pub rows: u64,
    /// Warnings the last OK or EOF reported (what SHOW WARNINGS would list now).
    pub warnings: u16,
    /// Read session-state changes from OK packets (the connection has CLIENT_SESSION_TRACK).
    session_track: bool,
    /// What the server's session tracking reported, merged over the response.
    pub changes: SessionChanges,
    /// Rewrite OK and EOF packets to what a client with this view would have got from the
    /// server (see [`ClientView`]).
    view: Option<ClientView>,
    /// Where the packet being examined starts in the bytes of this [`Scanner::feed`].
    packet_at: usize,
    /// Packets of this feed to replace: (where the original starts, the replacement with
    /// its header).
    edits: Vec<(usize, Vec<u8>)>,
}

impl Scanner {
    pub fn new(expect: Expect, deprecate_eof: bool) -> Scanner {
        let state = match expect {
            Expect::ResultSets => State::First,
            Expect::Prepare => State::PrepareFirst,
            Expect::Rows | Expect::FieldList => State::Rows,
            Expect::Single => State::Single,
        };
        Scanner {
            state,
            deprecate_eof,
            continuation: false,
            skip: 0,
            last_seq: 0,
            status: 0,
            status_seen: false,
            ok: None,
            result_set: false,
            rows: 0,
            error: None,
            warnings: 0,
            session_track: false,
            changes: SessionChanges::default(),
            view: None,
            packet_at: 0,
            edits: Vec::new(),
        }
    }

    /// Rewrites the session-state information of OK and EOF packets for a client with
    /// `view` (None: forward them as they are). [`Scanner::edited`] gives the bytes then.
    pub fn client_view(mut self, view: Option<ClientView>) -> Scanner {
        self.view = view;
        self
    }

    /// The bytes the last [`Scanner::feed`] accounted for (`fed`, its first `n` bytes) as
    /// the client must get them: `fed` itself unless a packet among them was rewritten.
    pub fn edited<'a>(&mut self, fed: &'a [u8]) -> Cow<'a, [u8]> {
        if self.edits.is_empty() {
            return Cow::Borrowed(fed);
        }
        let mut out = Vec::with_capacity(fed.len());
        let mut from = 0;
        for (at, packet) in self.edits.drain(..) {
            let original = Header::parse(&fed[at..]).map_or(0, |h| h.total());
            out.extend_from_slice(&fed[from..at]);
            out.extend_from_slice(&packet);
            from = at + original;
        }
        out.extend_from_slice(&fed[from..]);
        Cow::Owned(out)
    }

    /// Replaces the packet being examined with `payload`.
    fn replace_packet(&mut self, payload: &[u8]) {
        let mut packet = Vec::with_capacity(HEADER_LEN + payload.len());
        write_packet(&mut packet, self.last_seq, payload);
        self.edits.push((self.packet_at, packet));
    }

    /// Also reads session-state changes from OK packets (the connection negotiated
    /// CLIENT_SESSION_TRACK).
    pub fn tracking_session(mut self, on: bool) -> Scanner {
        self.session_track = on;
        self
    }

    /// Records an OK packet.
    fn saw_ok(&mut self, payload: &[u8], ok: OkPacket) {
        self.ok = Some(ok);
        self.warnings = ok.warnings;
        if self.session_track && ok.status & status::SESSION_STATE_CHANGED != 0 {
            // A malformed block is ignored: the OK itself was fine.
            if let Ok(c) = session_changes(payload) {
                self.changes.merge(c);
            }
            if let Some(new) = self.view.as_ref().and_then(|v| rewrite_ok(payload, v)) {
                self.replace_packet(&new);
            }
        }
    }

    /// An EOF's status flags as the client must see them (see [`ClientView::eof_flag`]).
    /// SERVER_SESSION_STATE_CHANGED there is all an EOF can say of a state change (a
    /// stored function that set a user variable, say).
    fn saw_eof_status(&mut self, payload: &[u8], flags: u16) {
        if self.session_track && flags & status::SESSION_STATE_CHANGED != 0 {
            self.changes.state_changed = true;
        }
        let keep = self.view.as_ref().is_none_or(|v| v.eof_flag);
        if flags & status::SESSION_STATE_CHANGED != 0 && !keep && payload.len() >= 5 {
            let mut new = payload.to_vec();
            new[3..5].copy_from_slice(&(flags & !status::SESSION_STATE_CHANGED).to_le_bytes());
            self.replace_packet(&new);
        }
    }

    /// What `ROW_COUNT()` returns after this reply: the affected rows of an OK, -1 after a
    /// result set or an error (MariaDB's rules, for the last statement of a batch).
    pub fn row_count(&self) -> i64 {
        match (self.error, self.result_set, self.ok) {
            (None, false, Some(ok)) => i64::try_from(ok.affected_rows).unwrap_or(i64::MAX),
            _ => -1,
        }
    }

    /// The rows of the last statement's result set, when it ended with one.
    pub fn rows_returned(&self) -> Option<u64> {
        (self.error.is_none() && self.result_set).then_some(self.rows)
    }

    /// Whether everything fed so far ends on a packet boundary, so that the proxy could
    /// insert a packet of its own (an ERR) without corrupting the stream.
    pub fn at_boundary(&self) -> bool {
        self.skip == 0 && !self.continuation
    }

    /// Whether the response carried server status flags (an OK or EOF packet).
    pub fn status_seen(&self) -> bool {
        self.status_seen
    }

    /// Whether the response is complete.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Examines `buf` (bytes from the backend not yet consumed) and returns how many bytes
    /// of it belong to the response so far, and what to do next. Bytes past the returned
    /// count are an incomplete packet head that must be fed again with more data.
    pub fn feed(&mut self, buf: &[u8]) -> Result<(usize, Progress), ProtocolError> {
        self.edits.clear();
        let mut used = 0;
        loop {
            if self.skip > 0 {
                let n = self.skip.min(buf.len() - used);
                used += n;
                self.skip -= n;
                if self.skip > 0 {
                    return Ok((used, Progress::More));
                }
            }
            if self.state == State::Done {
                return Ok((used, Progress::Done));
            }
            let Some(h) = Header::parse(&buf[used..]) else {
                return Ok((used, Progress::More));
            };
            self.last_seq = h.seq;
            if self.continuation {
                self.continuation = h.continued();
                used += HEADER_LEN;
                self.skip = h.len;
                continue;
            }
            let avail = buf.len() - used - HEADER_LEN;
            if avail == 0 && h.len > 0 {
                return Ok((used, Progress::More));
            }
            let first = if h.len > 0 { buf[used + HEADER_LEN] } else { 0 };
            if self.needs_whole(first, h.len) && avail < h.len {
                return Ok((used, Progress::More));
            }
            let whole = &buf[used + HEADER_LEN..used + HEADER_LEN + h.len.min(avail)];
            self.packet_at = used;
            let progress = self.step(first, h.len, whole)?;
            used += HEADER_LEN;
            self.skip = h.len;
            self.continuation = h.continued();
            if progress == Progress::LocalInfile {
                // The request (a file name) is used whole: one packet, all of it here.
                if h.continued() || h.len > avail {
                    return Err(ProtocolError::Malformed("LOCAL INFILE request larger than one packet"));
                }
                used += h.len;
                self.skip = 0;
                return Ok((used, progress));
            }
        }
    }

    /// Whether a packet starting with `first` must be buffered whole before it is classified.
    fn needs_whole(&self, first: u8, len: usize) -> bool {
        if len >= MAX_PAYLOAD {
            return false;
        }
        match self.state {
            State::First | State::ColumnsEof | State::PrepareFirst => true,
            // An OK is read whole: its session-state information may need rewriting.
            State::Single => first == 0x00,
            State::Rows => first == 0xFE && self.is_terminator(len),
            _ => false,
        }
    }

    fn is_terminator(&self, len: usize) -> bool {
        if self.deprecate_eof {
            len < MAX_PAYLOAD
        } else {
            len < 9
        }
    }

    /// Status flags of an EOF or terminating OK packet.
    fn terminator_status(&mut self, payload: &[u8]) -> Result<u16, ProtocolError> {
        if self.deprecate_eof && payload.len() > 5 {
            let ok = OkPacket::parse(payload)?;
            self.saw_ok(payload, ok);
            Ok(ok.status)
        } else {
            let mut r = Reader::new(payload);
            r.u8("eof marker")?;
            self.warnings = r.u16("eof warnings")?;
            let flags = r.u16("eof status")?;
            self.saw_eof_status(payload, flags);
            Ok(flags)
        }
    }

    fn end_of_result(&mut self, status_flags: u16) {
        self.status = status_flags;
        self.status_seen = true;
        self.state = if status_flags & status::MORE_RESULTS_EXISTS != 0 { State::First } else { State::Done };
    }

    fn step(&mut self, first: u8, len: usize, payload: &[u8]) -> Result<Progress, ProtocolError> {
        match self.state {
            State::Single => self.single(first, len, payload),
            State::First => return self.first_packet(first, payload),
            State::Columns(left) => {
                self.state = match left {
                    1 if self.deprecate_eof => State::Rows,
                    1 => State::ColumnsEof,
                    n => State::Columns(n - 1),
                };
            }
            State::ColumnsEof => self.columns_end(first, payload)?,
            State::Rows => self.row(first, len, payload)?,
            State::PrepareFirst => self.prepare_ok(first, payload)?,
            State::PrepareDefs { mut params, mut params_eof, mut cols, mut cols_eof } => {
                if params > 0 {
                    params -= 1;
                } else if params_eof {
                    params_eof = false;
                } else if cols > 0 {
                    cols -= 1;
                } else {
                    cols_eof = false;
                }
                self.state = State::PrepareDefs { params, params_eof, cols, cols_eof };
                self.advance_prepare();
            }
            State::Done => {}
        }
        Ok(Progress::More)
    }

    /// The one packet of a single-packet reply.
    fn single(&mut self, first: u8, len: usize, payload: &[u8]) {
        if first == 0xFF {
            self.error = ErrPacket::parse(payload).ok().map(|e| e.code).or(Some(0));
        } else if first == 0x00 && len >= 7 && len == payload.len() {
            if let Ok(ok) = OkPacket::parse(payload) {
                self.saw_ok(payload, ok);
                self.status = ok.status;
                self.status_seen = true;
            }
        }
        self.state = State::Done;
    }

    /// The first packet of a statement's reply: OK, ERR, a LOCAL INFILE request, or a
    /// result set's column count.
    fn first_packet(&mut self, first: u8, payload: &[u8]) -> Result<Progress, ProtocolError> {
        match first {
            0x00 => {
                let ok = OkPacket::parse(payload)?;
                self.saw_ok(payload, ok);
                self.result_set = false;
                self.end_of_result(ok.status);
            }
            0xFF => {
                self.error = Some(ErrPacket::parse(payload)?.code);
                self.state = State::Done;
            }
            0xFB => {
                // After the client's file the server answers OK/ERR like a first packet.
                self.state = State::First;
                return Ok(Progress::LocalInfile);
            }
            _ => {
                let n = Reader::new(payload).lenenc_int("column count")?;
                if n == 0 {
                    return Err(ProtocolError::Malformed("result set with zero columns"));
                }
                self.result_set = true;
                self.rows = 0;
                self.state = State::Columns(n);
            }
        }
        Ok(Progress::More)
    }

    /// The EOF after the column definitions (or an ERR).
    fn columns_end(&mut self, first: u8, payload: &[u8]) -> Result<(), ProtocolError> {
        match first {
            0xFE => {
                let st = self.terminator_status(payload)?;
                self.status = st;
                self.status_seen = true;
                // A cursor was opened: rows come later through COM_STMT_FETCH.
                self.state = if st & status::CURSOR_EXISTS != 0 { State::Done } else { State::Rows };
            }
            0xFF => {
                self.error = Some(ErrPacket::parse(payload)?.code);
                self.state = State::Done;
            }
            _ => return Err(ProtocolError::Malformed("expected EOF after column definitions")),
        }
        Ok(())
    }

    /// A row, or what ends the rows (a terminator or an ERR).
    fn row(&mut self, first: u8, len: usize, payload: &[u8]) -> Result<(), ProtocolError> {
        match first {
            0xFE if self.is_terminator(len) => {
                let st = self.terminator_status(payload)?;
                self.end_of_result(st);
            }
            0xFF => {
                // ERR ends the response; its content is not needed to know that.
                self.error = ErrPacket::parse(payload).ok().map(|e| e.code).or(Some(0));
                self.state = State::Done;
            }
            _ => self.rows += 1,
        }
        Ok(())
    }

    /// PREPARE_OK (or ERR): how many parameter and column definitions follow.
    fn prepare_ok(&mut self, first: u8, payload: &[u8]) -> Result<(), ProtocolError> {
        match first {
            0x00 => {
                let mut r = Reader::new(payload);
                r.u8("prepare ok marker")?;
                r.u32("statement id")?;
                let cols = u64::from(r.u16("column count")?);
                let params = u64::from(r.u16("parameter count")?);
                if r.remaining() >= 3 {
                    r.u8("reserved")?;
                    self.warnings = r.u16("prepare warnings")?;
                }
                let eof = !self.deprecate_eof;
                self.state =
                    State::PrepareDefs { params, params_eof: eof && params > 0, cols, cols_eof: eof && cols > 0 };
                self.advance_prepare();
            }
            0xFF => {
                self.error = Some(ErrPacket::parse(payload)?.code);
                self.state = State::Done;
            }
            _ => return Err(ProtocolError::Malformed("unexpected first packet of a PREPARE response")),
        }
        Ok(())
    }

    fn advance_prepare(&mut self) {
        if let State::PrepareDefs { params: 0, params_eof: false, cols: 0, cols_eof: false } = self.state {
            self.state = State::Done;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::code::Code;
    use crate::protocol::err::write_err;
    use crate::protocol::ok::session_changes;
    use crate::protocol::packet::write_packet;
    use crate::protocol::status;

    fn pkts(list: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut seq = 1;
        for p in list {
            seq = write_packet(&mut out, seq, p);
        }
        out
    }

    fn run(expect: Expect, deprecate: bool, bytes: &[u8]) -> (Scanner, usize, Progress) {
        let mut s = Scanner::new(expect, deprecate);
        let (n, p) = s.feed(bytes).unwrap();
        (s, n, p)
    }

    /// Feeding one byte at a time must give the same answer as feeding all at once.
    fn run_bytewise(expect: Expect, deprecate: bool, bytes: &[u8]) -> (usize, Progress) {
        let mut s = Scanner::new(expect, deprecate);
        let mut buf = Vec::new();
        let mut total = 0;
        for &b in bytes {
            buf.push(b);
            let (n, p) = s.feed(&buf).unwrap();
            buf.drain(..n);
            total += n;
            if p != Progress::More {
                return (total, p);
            }
        }
        (total, Progress::More)
    }

    const NO_SUCH_TABLE: Code = Code::new(1146, "42S02");
    const COLDEF: &[u8] = b"\x03def\x00\x00\x00\x011\x00\x0c\x3f\x00\x01\x00\x00\x00\x08\x81\x00\x00\x00\x00";
    const EOF_AUTOCOMMIT: &[u8] = b"\xfe\x00\x00\x02\x00";
    const EOF_MORE: &[u8] = b"\xfe\x00\x00\x0a\x00";
    const OK_END: &[u8] = b"\xfe\x00\x00\x02\x00\x00\x00";
    const OK_PLAIN: &[u8] = b"\x00\x01\x05\x02\x00\x00\x00";

    #[test]
    fn ok_and_err_are_single() {
        let b = pkts(&[OK_PLAIN]);
        let (s, n, p) = run(Expect::ResultSets, false, &b);
        assert_eq!((n, p), (b.len(), Progress::Done));
        assert_eq!(s.ok.unwrap().last_insert_id, 5);
        let mut e = Vec::new();
        write_err(&mut e, 1, NO_SUCH_TABLE, "Table 'x.y' doesn't exist");
        let (s, n, p) = run(Expect::ResultSets, true, &e);
        assert_eq!((n, p, s.error), (e.len(), Progress::Done, Some(1146)));
    }

    #[test]
    fn row_count_follows_the_last_statement() {
        // OK_PLAIN: one affected row.
        assert_eq!(run(Expect::ResultSets, false, &pkts(&[OK_PLAIN])).0.row_count(), 1);
        let rows = pkts(&[b"\x01", COLDEF, EOF_AUTOCOMMIT, b"\x011", EOF_AUTOCOMMIT]);
        assert_eq!(run(Expect::ResultSets, false, &rows).0.row_count(), -1);
        let rows_deprecate = pkts(&[b"\x01", COLDEF, b"\x011", OK_END]);
        assert_eq!(run(Expect::ResultSets, true, &rows_deprecate).0.row_count(), -1);
        // Three rows inserted (more results follow), then a result set: -1; the other way: 3.
        let ok_more: &[u8] = b"\x00\x03\x00\x0a\x00\x00\x00";
        let b = pkts(&[ok_more, b"\x01", COLDEF, EOF_AUTOCOMMIT, b"\x011", EOF_AUTOCOMMIT]);
        assert_eq!(run(Expect::ResultSets, false, &b).0.row_count(), -1);
        let b = pkts(&[b"\x01", COLDEF, EOF_MORE, b"\x011", EOF_MORE, b"\x00\x03\x00\x02\x00\x00\x00"]);
        assert_eq!(run(Expect::ResultSets, false, &b).0.row_count(), 3);
        let mut e = Vec::new();
        write_err(&mut e, 1, NO_SUCH_TABLE, "Table 'x.y' doesn't exist");
        assert_eq!(run(Expect::ResultSets, true, &e).0.row_count(), -1);
    }

    #[test]
    fn text_result_with_eof() {
        let b = pkts(&[b"\x01", COLDEF, EOF_AUTOCOMMIT, b"\x011", b"\x012", EOF_AUTOCOMMIT]);
        assert_eq!(run(Expect::ResultSets, false, &b).1, b.len());
        assert_eq!(run(Expect::ResultSets, false, &b).2, Progress::Done);
        assert_eq!(run_bytewise(Expect::ResultSets, false, &b), (b.len(), Progress::Done));
        // Cut one byte short: not done.
        assert_eq!(run(Expect::ResultSets, false, &b[..b.len() - 1]).2, Progress::More);
    }

    #[test]
    fn text_result_deprecate_eof() {
        let b = pkts(&[b"\x02", COLDEF, COLDEF, b"\x011\x012", OK_END]);
        assert_eq!(run_bytewise(Expect::ResultSets, true, &b), (b.len(), Progress::Done));
    }

    #[test]
    fn row_starting_with_fe_is_not_a_terminator() {
        // A text row whose first value has an 8-byte length prefix is at least 9 bytes.
        let row: &[u8] = b"\xfe\x01\x00\x00\x00\x00\x00\x00\x00x";
        let b = pkts(&[b"\x01", COLDEF, EOF_AUTOCOMMIT, row, EOF_AUTOCOMMIT]);
        assert_eq!(run_bytewise(Expect::ResultSets, false, &b), (b.len(), Progress::Done));
    }

    #[test]
    fn multi_results_chain() {
        let b = pkts(&[b"\x01", COLDEF, EOF_AUTOCOMMIT, b"\x011", EOF_MORE, b"\x00\x00\x00\x02\x00\x00\x00"]);
        let (s, n, p) = run(Expect::ResultSets, false, &b);
        assert_eq!((n, p), (b.len(), Progress::Done));
        assert_eq!(s.status, 2);
        // OK with MORE_RESULTS followed by a result set.
        let b = pkts(&[b"\x00\x01\x00\x0a\x00\x00\x00", b"\x01", COLDEF, b"\x011", OK_END]);
        assert_eq!(run_bytewise(Expect::ResultSets, true, &b), (b.len(), Progress::Done));
        // Stopping after the first result of a chain is not done.
        let b = pkts(&[b"\x00\x01\x00\x0a\x00\x00\x00"]);
        assert_eq!(run(Expect::ResultSets, true, &b).2, Progress::More);
    }

    #[test]
    fn error_mid_rows_ends_response() {
        let mut b = pkts(&[b"\x01", COLDEF, EOF_AUTOCOMMIT, b"\x011"]);
        write_err(&mut b, 5, crate::protocol::code::QUERY_INTERRUPTED, "Query execution was interrupted");
        let (s, n, p) = run(Expect::ResultSets, false, &b);
        assert_eq!((n, p, s.error), (b.len(), Progress::Done, Some(1317)));
    }

    #[test]
    fn local_infile_then_ok() {
        let b = pkts(&[b"\xfb/tmp/data.csv"]);
        let mut s = Scanner::new(Expect::ResultSets, true);
        assert_eq!(s.feed(&b).unwrap(), (b.len(), Progress::LocalInfile));
        let ok = pkts(&[b"\x00\x03\x00\x02\x00\x00\x00"]);
        assert_eq!(s.feed(&ok).unwrap(), (ok.len(), Progress::Done));
        assert_eq!(s.ok.unwrap().affected_rows, 3);
    }

    #[test]
    fn binary_rows_and_cursor() {
        let b = pkts(&[b"\x01", COLDEF, EOF_AUTOCOMMIT, b"\x00\x00\x01\x00\x00\x00", EOF_AUTOCOMMIT]);
        assert_eq!(run(Expect::ResultSets, false, &b).2, Progress::Done);
        // Cursor opened: columns then EOF with CURSOR_EXISTS and no rows.
        let b = pkts(&[b"\x01", COLDEF, b"\xfe\x00\x00\x42\x00"]);
        let (s, n, p) = run(Expect::ResultSets, false, &b);
        assert_eq!((n, p), (b.len(), Progress::Done));
        assert!(s.status & status::CURSOR_EXISTS != 0);
        // Fetch: rows then EOF with LAST_ROW_SENT.
        let b = pkts(&[b"\x00\x00\x01\x00\x00\x00", b"\x00\x00\x02\x00\x00\x00", b"\xfe\x00\x00\xc2\x00"]);
        assert_eq!(run_bytewise(Expect::Rows, false, &b), (b.len(), Progress::Done));
    }

    #[test]
    fn prepare_ok_with_params_and_columns() {
        // stmt 1, 1 column, 2 params.
        let prep: &[u8] = b"\x00\x01\x00\x00\x00\x01\x00\x02\x00\x00\x00\x00";
        let b = pkts(&[prep, COLDEF, COLDEF, EOF_AUTOCOMMIT, COLDEF, EOF_AUTOCOMMIT]);
        assert_eq!(run_bytewise(Expect::Prepare, false, &b), (b.len(), Progress::Done));
        let b = pkts(&[prep, COLDEF, COLDEF, COLDEF]);
        assert_eq!(run_bytewise(Expect::Prepare, true, &b), (b.len(), Progress::Done));
        let none: &[u8] = b"\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
        let b = pkts(&[none]);
        assert_eq!(run(Expect::Prepare, false, &b).2, Progress::Done);
    }

    #[test]
    fn field_list_and_single() {
        let b = pkts(&[COLDEF, COLDEF, EOF_AUTOCOMMIT]);
        assert_eq!(run_bytewise(Expect::FieldList, false, &b), (b.len(), Progress::Done));
        let b = pkts(&[b"Uptime: 10  Threads: 1  Questions: 3"]);
        assert_eq!(run(Expect::Single, true, &b).2, Progress::Done);
    }

    #[test]
    fn huge_row_is_streamed_in_pieces() {
        let big = vec![b'x'; MAX_PAYLOAD + 100];
        let mut row = vec![0xFE];
        row.extend_from_slice(&((big.len()) as u64).to_le_bytes());
        row.extend_from_slice(&big);
        let b = pkts(&[b"\x01", COLDEF, &row, OK_END]);
        let mut s = Scanner::new(Expect::ResultSets, true);
        let mut total = 0;
        let mut last = Progress::More;
        // Feed in 64 KiB chunks, the way a socket would deliver it.
        let mut pending: Vec<u8> = Vec::new();
        for chunk in b.chunks(65536) {
            pending.extend_from_slice(chunk);
            let (n, p) = s.feed(&pending).unwrap();
            assert!(pending.len() - n < 65536 + 16, "the scanner must not hold back row data");
            pending.drain(..n);
            total += n;
            last = p;
        }
        assert_eq!((total, last), (b.len(), Progress::Done));
    }

    #[test]
    fn ok_and_eof_packets_are_rewritten_for_the_clients_view() {
        use crate::protocol::ok::{ClientView, Trackers};
        let view = |eof_flag| {
            Some(ClientView { tracking_client: false, trackers: std::rc::Rc::new(Trackers::default()), eof_flag })
        };
        // A result set (EOF protocol) whose EOFs carry SESSION_STATE_CHANGED, then an OK
        // with session-state information: none of it is for a client without tracking.
        let flagged = (status::AUTOCOMMIT | status::SESSION_STATE_CHANGED).to_le_bytes();
        let eof = [0xFE, 0, 0, flagged[0], flagged[1]];
        let mut ok = vec![0x00, 0, 0, flagged[0], flagged[1], 0, 0];
        ok.extend_from_slice(b"\x00\x03\x02\x011");
        let bytes = pkts(&[&[1], b"\x03def", &eof, b"\x011", &eof]);
        let mut s = Scanner::new(Expect::ResultSets, false).tracking_session(true).client_view(view(false));
        let (n, progress) = s.feed(&bytes).unwrap();
        assert_eq!((n, progress), (bytes.len(), Progress::Done));
        let plain = [0xFE, 0, 0, status::AUTOCOMMIT as u8, 0];
        let want = pkts(&[&[1], b"\x03def", &plain, b"\x011", &plain]);
        assert!(matches!(s.edited(&bytes), Cow::Owned(v) if v == want));
        // SET STATEMENT of a variable the client's trackers report: the EOF keeps its flag.
        let mut s = Scanner::new(Expect::ResultSets, false).tracking_session(true).client_view(view(true));
        s.feed(&bytes).unwrap();
        assert!(matches!(s.edited(&bytes), Cow::Borrowed(b) if b == &bytes[..]));
        let bytes = pkts(&[&ok]);
        let mut s = Scanner::new(Expect::ResultSets, false).tracking_session(true).client_view(view(false));
        s.feed(&bytes).unwrap();
        assert!(s.changes.state_changed);
        let want = pkts(&[&[0x00, 0, 0, status::AUTOCOMMIT as u8, 0, 0, 0]]);
        assert!(matches!(s.edited(&bytes), Cow::Owned(v) if v == want));
        // Without a view the bytes go as they are.
        let mut s = Scanner::new(Expect::ResultSets, false).tracking_session(true);
        s.feed(&bytes).unwrap();
        assert!(matches!(s.edited(&bytes), Cow::Borrowed(b) if b == &bytes[..]));
    }

    #[test]
    fn session_state_changes_are_read() {
        // OK with SESSION_STATE_CHANGED: schema "shop" and a state change.
        let mut p = vec![0x00, 0, 0];
        p.extend_from_slice(&(status::AUTOCOMMIT | status::SESSION_STATE_CHANGED).to_le_bytes());
        p.extend_from_slice(&[0, 0]);
        p.push(0); // empty info
        let block: Vec<u8> = [&[1u8, 5, 4][..], b"shop", &[2, 1], b"1", &[0, 4, 1], b"a", &[1], b"b"].concat();
        p.push(block.len() as u8);
        p.extend_from_slice(&block);
        let c = session_changes(&p).unwrap();
        assert_eq!(c.schema.as_deref(), Some("shop"));
        assert!(c.state_changed);
        let b = pkts(&[&p]);
        let mut s = Scanner::new(Expect::ResultSets, true).tracking_session(true);
        assert_eq!(s.feed(&b).unwrap().1, Progress::Done);
        assert_eq!(s.changes.schema.as_deref(), Some("shop"));
        // Without tracking negotiated, the block is not read.
        let mut s = Scanner::new(Expect::ResultSets, true);
        s.feed(&b).unwrap();
        assert_eq!(s.changes, SessionChanges::default());
        // Truncated blocks are errors, not panics.
        assert!(session_changes(&p[..p.len() - 2]).is_err());
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let b = pkts(&[b"\xff"]);
        assert!(Scanner::new(Expect::ResultSets, false).feed(&b).is_err());
        let b = pkts(&[b"\x01", COLDEF, b"\x05"]);
        assert!(Scanner::new(Expect::ResultSets, false).feed(&b).is_err());
    }
}

#[cfg(test)]
mod fuzz_regressions {
    use super::*;

    /// Found by the packet_framing fuzz target: the scanner claimed more bytes than it was
    /// given, which would have sliced past the end of the read buffer.
    #[test]
    fn never_accounts_for_more_than_it_was_fed() {
        let crash: &[u8] = &[
            0x2a, 0x0, 0x0, 0x2, 0x0, 0x0, 0x0, 0xfa, 0x0, 0x0, 0x0, 0x3, 0x0, 0x0, 0x5, 0xfa, 0xfa, 0xfa, 0x3f, 0xfa,
            0xfa, 0x2, 0x0, 0x0, 0x0, 0x2, 0x20, 0x0, 0x0, 0x0, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0x2,
            0xfb, 0x2, 0x0, 0x0, 0x29, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0, 0xfb, 0x2, 0x0, 0x1, 0xff, 0x0,
        ];
        for expect in [Expect::ResultSets, Expect::Prepare, Expect::Rows, Expect::FieldList, Expect::Single] {
            for deprecate_eof in [false, true] {
                let split = crash[0] as usize % (crash.len() + 1);
                let mut s = Scanner::new(expect, deprecate_eof).tracking_session(true);
                if let Ok((n, _)) = s.feed(&crash[..split]) {
                    assert!(n <= split, "{expect:?} {deprecate_eof}: {n} of {split}");
                    if let Ok((m, _)) = s.feed(&crash[n..]) {
                        assert!(
                            m <= crash.len() - n,
                            "{expect:?} {deprecate_eof}: second feed {m} of {}",
                            crash.len() - n
                        );
                    }
                }
            }
        }
    }
}
