//! MariaDB's metadata cache (`MARIADB_CLIENT_CACHE_METADATA`), as corelay keeps track of it.
//!
//! With the capability, every column-count packet carries a "metadata follows" byte, and
//! a server leaves a prepared statement's column definitions out of an EXECUTE reply when
//! they are the ones it last sent for that statement on that connection (the PREPARE
//! reply counts as sent). A client holds the definitions of the replies it got; corelay
//! executes a client's statement on connections that prepared it at other times, whose
//! server may have sent other definitions. So corelay records, per statement on each
//! connection, what the server last sent ([`SentDefs`], kept current in the order the
//! server replies, pipelined connections included) and, per client statement, what the
//! client holds; when a reply leaves the definitions out and the two differ, the
//! connection's definitions are put into the reply ([`with_defs`]).

use std::cell::RefCell;
use std::rc::Rc;

use super::packet::{write_packet, Header, HEADER_LEN};

/// A result set's column definitions, as packets with their headers (sequence ids zero:
/// the same definitions compare equal wherever they came from).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnDefs {
    pub count: u64,
    pub packets: Vec<u8>,
}

impl ColumnDefs {
    /// Adds one definition packet.
    pub fn push(&mut self, payload: &[u8]) {
        write_packet(&mut self.packets, 0, payload);
        self.count += 1;
    }
}

/// Column definitions shared between a client statement and the connections' records.
pub type Defs = Rc<ColumnDefs>;

/// What a server last sent for one statement on one connection (None: not known).
pub type SentDefs = Rc<RefCell<Option<Defs>>>;

/// Whether two records hold the same definitions (the same record, most often).
pub fn same(a: &Defs, b: &Defs) -> bool {
    Rc::ptr_eq(a, b) || a == b
}

/// A new record of what a server sent for a statement: `defs` (from its PREPARE reply).
pub fn sent(defs: Option<Defs>) -> SentDefs {
    Rc::new(RefCell::new(defs))
}

/// The statement an EXECUTE reply belongs to, for its scan.
#[derive(Debug, Clone)]
pub struct StmtDefs {
    /// The connection's record of the statement.
    pub sent: SentDefs,
    /// What the client holds (None: not known, as after a result corelay made itself).
    pub client: Option<Defs>,
    /// The reply goes to the client; false: corelay reads it for itself, and only `sent`
    /// is kept current.
    pub to_client: bool,
}

/// The packets that replace a column-count packet (`count_payload`, sequence id `seq`)
/// whose definitions the server left out: the count with "metadata follows" set, then
/// `defs` numbered on from `seq + 1`.
pub fn with_defs(count_payload: &[u8], seq: u8, defs: &ColumnDefs) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + count_payload.len() + defs.packets.len());
    let mut count = count_payload.to_vec();
    if let Some(last) = count.last_mut() {
        *last = 1;
    }
    let mut seq = write_packet(&mut out, seq, &count);
    let mut at = 0;
    while let Some(h) = Header::parse(&defs.packets[at..]) {
        let end = (at + h.total()).min(defs.packets.len());
        seq = write_packet(&mut out, seq, &defs.packets[at + HEADER_LEN..end]);
        at = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_put_back_numbered_after_the_count() {
        let mut defs = ColumnDefs::default();
        defs.push(b"first");
        defs.push(b"second");
        let out = with_defs(&[2, 0], 1, &defs);
        let mut expected = Vec::new();
        let seq = write_packet(&mut expected, 1, &[2, 1]);
        let seq = write_packet(&mut expected, seq, b"first");
        assert_eq!(write_packet(&mut expected, seq, b"second"), 4);
        assert_eq!(out, expected);
    }

    #[test]
    fn equal_definitions_from_different_places_are_the_same() {
        let mut a = ColumnDefs::default();
        a.push(b"x");
        let mut b = ColumnDefs::default();
        b.push(b"x");
        assert!(same(&Rc::new(a), &Rc::new(b)));
        let mut c = ColumnDefs::default();
        c.push(b"y");
        let c = Rc::new(c);
        assert!(same(&c, &c.clone()));
        assert!(!same(&c, &Rc::new(ColumnDefs::default())));
    }
}

#[cfg(test)]
mod scanning {
    use std::rc::Rc;

    use crate::protocol::metadata::{self, ColumnDefs, Defs, StmtDefs};
    use crate::protocol::packet::write_packet;
    use crate::protocol::scanner::{Expect, Progress, Scanner};

    const INT_COLUMN: &[u8] = b"\x03def\x00\x00\x00\x01a\x00\x0c\x3f\x00\x0b\x00\x00\x00\x03\x00\x00\x00\x00\x00";
    const VARCHAR_COLUMN: &[u8] = b"\x03def\x00\x00\x00\x01a\x00\x0c\x2d\x00\x50\x00\x00\x00\xfd\x00\x00\x00\x00\x00";
    const EOF: &[u8] = b"\xfe\x00\x00\x02\x00";
    const OK_END: &[u8] = b"\xfe\x00\x00\x02\x00\x00\x00";
    const ROW: &[u8] = b"\x00\x00\x2a\x00\x00\x00";

    fn pkts(list: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut seq = 1;
        for p in list {
            seq = write_packet(&mut out, seq, p);
        }
        out
    }

    fn defs(column: &[u8]) -> Defs {
        let mut d = ColumnDefs::default();
        d.push(column);
        Rc::new(d)
    }

    fn stmt(sent: Option<Defs>, client: Option<Defs>) -> Option<StmtDefs> {
        Some(StmtDefs { sent: metadata::sent(sent), client, to_client: true })
    }

    /// An EXECUTE reply of one row, with (Some) or without the definition packet.
    fn execute_reply(column: Option<&[u8]>, deprecate: bool) -> Vec<u8> {
        let mut list: Vec<&[u8]> = vec![if column.is_some() { b"\x01\x01" } else { b"\x01\x00" }];
        list.extend(column);
        if !deprecate {
            list.push(EOF);
        }
        list.push(ROW);
        list.push(if deprecate { OK_END } else { EOF });
        pkts(&list)
    }

    /// Feeds `bytes` one at a time; returns what the client gets and how it ended.
    fn scan_bytewise(s: &mut Scanner, bytes: &[u8]) -> (Vec<u8>, Progress) {
        let (mut buf, mut out) = (Vec::new(), Vec::new());
        for &b in bytes {
            buf.push(b);
            let (n, p) = s.feed(&buf).unwrap();
            out.extend_from_slice(&s.edited(&buf[..n]));
            buf.drain(..n);
            if p != Progress::More {
                return (out, p);
            }
        }
        (out, Progress::More)
    }

    #[test]
    fn left_out_definitions_pass_when_the_client_holds_them() {
        for deprecate in [false, true] {
            let held = defs(INT_COLUMN);
            let reply = execute_reply(None, deprecate);
            let mut s = Scanner::new(Expect::ResultSets, deprecate)
                .metadata(true, true)
                .statement(stmt(Some(defs(INT_COLUMN)), Some(held)));
            assert_eq!(scan_bytewise(&mut s, &reply), (reply.clone(), Progress::Done));
            assert_eq!((s.rows, s.client_defs.is_none()), (1, true));
        }
    }

    #[test]
    fn definitions_the_client_lacks_are_put_in_and_later_packets_renumbered() {
        for deprecate in [false, true] {
            let connection = defs(VARCHAR_COLUMN);
            let reply = execute_reply(None, deprecate);
            let mut s = Scanner::new(Expect::ResultSets, deprecate)
                .metadata(true, true)
                .statement(stmt(Some(connection.clone()), Some(defs(INT_COLUMN))));
            let (out, progress) = scan_bytewise(&mut s, &reply);
            assert_eq!(progress, Progress::Done);
            assert_eq!(out, execute_reply(Some(VARCHAR_COLUMN), deprecate), "deprecate_eof = {deprecate}");
            assert!(s.client_defs.as_ref().is_some_and(|d| Rc::ptr_eq(d, &connection)));
            // The client's scan of what it got.
            let mut client = Scanner::new(Expect::ResultSets, deprecate).metadata(true, false);
            assert_eq!(client.feed(&out).unwrap(), (out.len(), Progress::Done));
            assert_eq!(client.last_seq, s.last_seq);
            // Unknown definitions (none recorded, or another column count) are refused.
            let mut s = Scanner::new(Expect::ResultSets, deprecate).metadata(true, true).statement(stmt(None, None));
            assert!(s.feed(&reply).is_err());
        }
    }

    #[test]
    fn definitions_the_server_sends_are_recorded_for_both_sides() {
        let track = stmt(Some(defs(INT_COLUMN)), Some(defs(INT_COLUMN)));
        let sent = track.as_ref().map(|t| t.sent.clone()).unwrap();
        let reply = execute_reply(Some(VARCHAR_COLUMN), false);
        let mut s = Scanner::new(Expect::ResultSets, false).metadata(true, true).statement(track);
        assert_eq!(scan_bytewise(&mut s, &reply), (reply.clone(), Progress::Done));
        let now = sent.borrow().clone().unwrap();
        assert_eq!(*now, *defs(VARCHAR_COLUMN));
        assert!(s.client_defs.as_ref().is_some_and(|d| Rc::ptr_eq(d, &now)));
        // A reply corelay reads for itself keeps the record current and checks nothing.
        let mut own = Scanner::new(Expect::ResultSets, false).metadata(true, false).statement(Some(StmtDefs {
            sent: sent.clone(),
            client: None,
            to_client: false,
        }));
        let reply = execute_reply(Some(INT_COLUMN), false);
        assert_eq!(own.feed(&reply).unwrap(), (reply.len(), Progress::Done));
        assert_eq!(**sent.borrow().as_ref().unwrap(), *defs(INT_COLUMN));
        assert!(own.client_defs.is_none());
    }

    #[test]
    fn the_byte_is_added_for_a_client_whose_connection_lacks_it() {
        let reply = pkts(&[b"\x01", INT_COLUMN, EOF, ROW, EOF]);
        let mut s = Scanner::new(Expect::ResultSets, false).metadata(false, true);
        let (out, progress) = scan_bytewise(&mut s, &reply);
        assert_eq!((out, progress), (execute_reply(Some(INT_COLUMN), false), Progress::Done));
    }

    #[test]
    fn a_prepare_reply_gives_its_column_definitions() {
        // PREPARE_OK: statement 7, one column, one parameter.
        let ok: &[u8] = b"\x00\x07\x00\x00\x00\x01\x00\x01\x00\x00\x00\x00";
        let reply = pkts(&[ok, VARCHAR_COLUMN, EOF, INT_COLUMN, EOF]);
        let mut s = Scanner::new(Expect::Prepare, false).metadata(true, true);
        assert_eq!(scan_bytewise(&mut s, &reply), (reply.clone(), Progress::Done));
        assert_eq!(s.prepared_defs.as_deref(), Some(&*defs(INT_COLUMN)));
        let mut s = Scanner::new(Expect::Prepare, false);
        assert_eq!(s.feed(&reply).unwrap(), (reply.len(), Progress::Done));
        assert!(s.prepared_defs.is_none(), "nothing to record without the metadata cache");
    }
}
