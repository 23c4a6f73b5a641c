//! The scanner's tests: replies as MariaDB and MySQL send them, fed whole and byte by byte.
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

/// MariaDB's metadata cache ([`crate::protocol::metadata`]) as the scanner keeps track of it.
mod metadata_cache {
    use std::rc::Rc;

    use super::{pkts, OK_END};
    use crate::protocol::metadata::{self, ColumnDefs, Defs, StmtDefs};
    use crate::protocol::scanner::{Expect, Progress, Scanner};

    const INT_COLUMN: &[u8] = b"\x03def\x00\x00\x00\x01a\x00\x0c\x3f\x00\x0b\x00\x00\x00\x03\x00\x00\x00\x00\x00";
    const VARCHAR_COLUMN: &[u8] = b"\x03def\x00\x00\x00\x01a\x00\x0c\x2d\x00\x50\x00\x00\x00\xfd\x00\x00\x00\x00\x00";
    use super::EOF_AUTOCOMMIT as EOF;
    const ROW: &[u8] = b"\x00\x00\x2a\x00\x00\x00";

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
