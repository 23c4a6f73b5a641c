//! End-of-response detection.
//!
//! [`Scanner`] is fed the bytes a backend sends after a command and says, without copying
//! them, how many bytes belong to the response so far and whether the response is
//! complete. It only looks at the first byte (and, for OK/EOF/ERR and counts, the whole of
//! a small packet); rows and column definitions are skipped by length, so it streams
//! results of any size, including rows of 16 MiB and more.

use std::borrow::Cow;

use super::err::ErrPacket;
use super::metadata::{same, with_defs, ColumnDefs, Defs, StmtDefs};
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
    /// The backend's column-count packets carry MariaDB's "metadata follows" byte.
    meta_byte: bool,
    /// The client wants that byte and the backend does not send it: add it (set).
    add_meta_byte: bool,
    /// The prepared statement an EXECUTE reply belongs to (see [`super::metadata`]).
    stmt: Option<StmtDefs>,
    /// Column definitions being collected (a PREPARE reply's, or those of an EXECUTE
    /// reply of `stmt`).
    collect: Option<ColumnDefs>,
    /// The column definitions the client holds after this reply, when it got any.
    pub client_defs: Option<Defs>,
    /// A PREPARE reply's column definitions (collected on a connection with the byte).
    pub prepared_defs: Option<Defs>,
    /// Definition packets put into the reply so far: later packets' sequence ids move on
    /// by this many.
    seq_shift: u8,
    /// Headers of this feed whose sequence id changes: (where the header starts, the id).
    seq_fixes: Vec<(usize, u8)>,
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
            meta_byte: false,
            add_meta_byte: false,
            stmt: None,
            collect: None,
            client_defs: None,
            prepared_defs: None,
            seq_shift: 0,
            seq_fixes: Vec::new(),
        }
    }

    /// MariaDB's metadata cache: `backend_byte`, the connection has it (its column-count
    /// packets carry the "metadata follows" byte); `client_byte`, the client has it (the
    /// byte is added, set, when the connection does not send it).
    pub fn metadata(mut self, backend_byte: bool, client_byte: bool) -> Scanner {
        self.meta_byte = backend_byte;
        self.add_meta_byte = client_byte && !backend_byte;
        self
    }

    /// The prepared statement an EXECUTE reply belongs to: its definitions are checked
    /// against the client's and recorded (see [`super::metadata`]).
    pub fn statement(mut self, stmt: Option<StmtDefs>) -> Scanner {
        self.stmt = stmt;
        self
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
        let fed: Cow<'a, [u8]> = if self.seq_fixes.is_empty() {
            Cow::Borrowed(fed)
        } else {
            let mut v = fed.to_vec();
            for (at, seq) in self.seq_fixes.drain(..) {
                if let Some(b) = v.get_mut(at + 3) {
                    *b = seq;
                }
            }
            Cow::Owned(v)
        };
        if self.edits.is_empty() {
            return fed;
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
        self.seq_fixes.clear();
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
            self.last_seq = h.seq.wrapping_add(self.seq_shift);
            if self.seq_shift != 0 {
                self.seq_fixes.push((used, self.last_seq));
            }
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
            // Definitions being collected.
            State::Columns(_) | State::PrepareDefs { .. } => self.collecting(),
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
                if let Some(c) = self.collect.as_mut() {
                    c.push(payload);
                }
                self.state = match left {
                    1 if self.deprecate_eof => State::Rows,
                    1 => State::ColumnsEof,
                    n => State::Columns(n - 1),
                };
                if left == 1 {
                    self.executed_defs();
                }
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
                    if let Some(c) = self.collect.as_mut() {
                        c.push(payload);
                    }
                    cols -= 1;
                    if cols == 0 {
                        self.prepared_defs = self.collect.take().map(std::rc::Rc::new);
                    }
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
                let mut r = Reader::new(payload);
                let n = r.lenenc_int("column count")?;
                if n == 0 {
                    return Err(ProtocolError::Malformed("result set with zero columns"));
                }
                let follows = !self.meta_byte || r.u8("metadata follows")? != 0;
                self.result_set = true;
                self.rows = 0;
                if self.add_meta_byte {
                    let mut p = payload.to_vec();
                    p.push(1);
                    self.replace_packet(&p);
                }
                if follows {
                    self.state = State::Columns(n);
                    if self.meta_byte && self.stmt.is_some() {
                        self.collect = Some(ColumnDefs::default());
                    }
                } else {
                    self.state = if self.deprecate_eof { State::Rows } else { State::ColumnsEof };
                    self.cached_defs(n, payload)?;
                }
            }
        }
        Ok(Progress::More)
    }

    /// Whether definition packets are being collected now.
    fn collecting(&self) -> bool {
        match self.state {
            State::Columns(_) => self.collect.is_some(),
            State::PrepareDefs { params: 0, params_eof: false, cols, .. } => cols > 0 && self.collect.is_some(),
            _ => false,
        }
    }

    /// A result set of an EXECUTE whose definitions the server left out (count `n`,
    /// column-count packet `payload`): the ones it last sent for the statement. When the
    /// client holds others, they are put in.
    fn cached_defs(&mut self, n: u64, payload: &[u8]) -> Result<(), ProtocolError> {
        let Some(stmt) = self.stmt.as_mut() else { return Ok(()) };
        if !stmt.to_client {
            return Ok(());
        }
        let sent = stmt.sent.borrow().clone();
        let Some(defs) = sent.filter(|d| d.count == n) else {
            return Err(ProtocolError::Malformed("the server left out column definitions corelay does not have"));
        };
        if stmt.client.as_ref().is_some_and(|c| same(c, &defs)) {
            return Ok(());
        }
        let packets = with_defs(payload, self.last_seq, &defs);
        self.edits.push((self.packet_at, packets));
        self.seq_shift = self.seq_shift.wrapping_add(defs.count as u8);
        stmt.client = Some(defs.clone());
        self.client_defs = Some(defs);
        Ok(())
    }

    /// The last definition of an EXECUTE's result set: what the server sent for the
    /// statement now, and what the client holds.
    fn executed_defs(&mut self) {
        let (Some(stmt), Some(collected)) = (self.stmt.as_mut(), self.collect.take()) else { return };
        let mut defs = std::rc::Rc::new(collected);
        {
            let mut sent = stmt.sent.borrow_mut();
            match sent.as_ref() {
                Some(old) if same(old, &defs) => defs = old.clone(),
                _ => *sent = Some(defs.clone()),
            }
        }
        if stmt.to_client {
            stmt.client = Some(defs.clone());
            self.client_defs = Some(defs);
        }
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
                if self.meta_byte {
                    if cols > 0 {
                        self.collect = Some(ColumnDefs::default());
                    } else {
                        self.prepared_defs = Some(std::rc::Rc::new(ColumnDefs::default()));
                    }
                }
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
mod tests;
