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
