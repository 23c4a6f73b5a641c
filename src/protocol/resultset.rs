//! Result sets the proxy builds itself: text-protocol tables (status queries, the admin
//! port) and the one-BIGINT replies to the session functions corelay answers (text or
//! binary protocol).
//!
//! Every column is a VARCHAR in utf8mb4; values are length-encoded strings of any length
//! (a row longer than one physical packet is split as the protocol requires), NULL is 0xFB.

use super::packet::{begin_packet, finish_packet, put_lenenc_int, put_lenenc_str, write_packet};

/// How the client's result sets are framed: what its capabilities say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Framing {
    /// CLIENT_DEPRECATE_EOF: no EOF after the definitions, an OK (0xFE) at the end.
    pub deprecate_eof: bool,
    /// MariaDB's metadata cache: the column count is followed by "metadata follows" (1).
    pub metadata_byte: bool,
}

impl Framing {
    /// The column-count packet's payload.
    fn column_count(self, out: &mut Vec<u8>, n: usize) {
        put_lenenc_int(out, n as u64);
        if self.metadata_byte {
            out.push(1);
        }
    }
}

/// A result set: column names and rows of optional text values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultSet {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl ResultSet {
    pub fn new(columns: &[&str]) -> ResultSet {
        ResultSet { columns: columns.iter().map(|c| c.to_string()).collect(), rows: Vec::new() }
    }

    /// Appends a row of values (anything displayable).
    pub fn push<I, T>(&mut self, values: I)
    where
        I: IntoIterator<Item = T>,
        T: ToString,
    {
        self.rows.push(values.into_iter().map(|v| Some(v.to_string())).collect());
    }

    /// Appends `self` as the server would send it after a COM_QUERY, starting at sequence
    /// id `seq`. Returns the sequence id that follows.
    pub fn write(&self, out: &mut Vec<u8>, seq: u8, framing: Framing, status_flags: u16) -> u8 {
        let deprecate_eof = framing.deprecate_eof;
        let mut seq = seq;
        let mut p = Vec::with_capacity(64);
        framing.column_count(&mut p, self.columns.len());
        seq = write_packet(out, seq, &p);
        for (i, name) in self.columns.iter().enumerate() {
            p.clear();
            for s in ["def", "", "", ""] {
                put_lenenc_str(&mut p, s.as_bytes());
            }
            put_lenenc_str(&mut p, name.as_bytes());
            put_lenenc_str(&mut p, name.as_bytes());
            p.push(0x0c);
            p.extend_from_slice(&45u16.to_le_bytes()); // utf8mb4_general_ci
            let width = self.rows.iter().filter_map(|r| r.get(i)?.as_ref().map(|v| v.len())).max().unwrap_or(0);
            p.extend_from_slice(&((width.max(1) * 4).min(u32::MAX as usize) as u32).to_le_bytes());
            p.push(0xFD); // MYSQL_TYPE_VAR_STRING
            p.extend_from_slice(&0u16.to_le_bytes());
            p.push(0);
            p.extend_from_slice(&[0, 0]);
            seq = write_packet(out, seq, &p);
        }
        if !deprecate_eof {
            seq = write_packet(out, seq, &eof(status_flags));
        }
        for row in &self.rows {
            p.clear();
            for i in 0..self.columns.len() {
                match row.get(i).and_then(|v| v.as_ref()) {
                    Some(v) => put_lenenc_str(&mut p, v.as_bytes()),
                    None => p.push(0xFB),
                }
            }
            seq = write_packet(out, seq, &p);
        }
        let end = if deprecate_eof {
            // An OK packet with the EOF header byte.
            let mut e = vec![0xFE, 0, 0];
            e.extend_from_slice(&status_flags.to_le_bytes());
            e.extend_from_slice(&0u16.to_le_bytes());
            e
        } else {
            eof(status_flags)
        };
        write_packet(out, seq, &end)
    }
}

fn eof(status_flags: u16) -> Vec<u8> {
    let mut e = vec![0xFE, 0, 0];
    e.extend_from_slice(&status_flags.to_le_bytes());
    e
}

/// A BIGINT value, UNSIGNED or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BigInt {
    Unsigned(u64),
    Signed(i64),
}

/// Appends a result set of one BIGINT column named `name` and one row holding `value`, as
/// the server would send it: binary protocol (the reply to COM_STMT_EXECUTE) when
/// `binary`, text otherwise. Returns the next sequence id.
pub fn write_single_bigint(
    out: &mut Vec<u8>,
    seq: u8,
    name: &str,
    value: BigInt,
    framing: Framing,
    status_flags: u16,
    binary: bool,
) -> u8 {
    let deprecate_eof = framing.deprecate_eof;
    // NOT_NULL | BINARY, and UNSIGNED for an unsigned value.
    let (flags, bytes, text) = match value {
        BigInt::Unsigned(v) => (0xA1u16, v.to_le_bytes(), v.to_string()),
        BigInt::Signed(v) => (0x81u16, v.to_le_bytes(), v.to_string()),
    };
    let mut seq = seq;
    let mut packet = |out: &mut Vec<u8>, body: &dyn Fn(&mut Vec<u8>)| {
        let at = begin_packet(out);
        body(out);
        finish_packet(out, at, seq);
        seq = seq.wrapping_add(1);
    };
    packet(out, &|o| framing.column_count(o, 1));
    packet(out, &|o| {
        for s in ["def", "", "", "", name, ""] {
            put_lenenc_str(o, s.as_bytes());
        }
        o.push(0x0c);
        o.extend_from_slice(&63u16.to_le_bytes()); // binary collation
        o.extend_from_slice(&20u32.to_le_bytes()); // display length
        o.push(0x08); // MYSQL_TYPE_LONGLONG
        o.extend_from_slice(&flags.to_le_bytes());
        o.push(0);
        o.extend_from_slice(&[0, 0]);
    });
    if !deprecate_eof {
        packet(out, &|o| {
            o.push(0xFE);
            o.extend_from_slice(&0u16.to_le_bytes());
            o.extend_from_slice(&status_flags.to_le_bytes());
        });
    }
    packet(out, &|o| {
        if binary {
            // Row header, NULL bitmap (offset 2, one column), the value.
            o.extend_from_slice(&[0x00, 0x00]);
            o.extend_from_slice(&bytes);
        } else {
            put_lenenc_str(o, text.as_bytes());
        }
    });
    packet(out, &|o| {
        o.push(0xFE);
        if deprecate_eof {
            o.extend_from_slice(&[0, 0]);
        } else {
            o.extend_from_slice(&0u16.to_le_bytes());
        }
        o.extend_from_slice(&status_flags.to_le_bytes());
        if deprecate_eof {
            o.extend_from_slice(&0u16.to_le_bytes());
        }
    });
    seq
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::scanner::{Expect, Progress, Scanner};
    use crate::protocol::status;

    #[test]
    fn the_scanner_reads_it_as_one_complete_result() {
        let mut rs = ResultSet::new(&["a", "b"]);
        rs.push(["x", "y"]);
        rs.rows.push(vec![Some("z".repeat(300)), None]);
        rs.rows.push(vec![Some("w".repeat(70_000)), Some(String::new())]);
        for deprecate in [false, true] {
            let mut out = Vec::new();
            let next = rs.write(&mut out, 1, Framing { deprecate_eof: deprecate, metadata_byte: false }, 2);
            let mut sc = Scanner::new(Expect::ResultSets, deprecate);
            let (n, progress) = sc.feed(&out).unwrap();
            assert_eq!(n, out.len());
            assert!(matches!(progress, Progress::Done));
            assert_eq!(next, if deprecate { 8 } else { 9 });
        }
    }

    #[test]
    fn proxy_made_result_sets_are_well_formed() {
        for deprecate in [false, true] {
            let mut out = Vec::new();
            let next = write_single_bigint(
                &mut out,
                1,
                "LAST_INSERT_ID()",
                BigInt::Unsigned(42),
                Framing { deprecate_eof: deprecate, metadata_byte: false },
                status::AUTOCOMMIT,
                false,
            );
            assert_eq!(next, if deprecate { 5 } else { 6 });
            let mut s = Scanner::new(Expect::ResultSets, deprecate);
            assert_eq!(s.feed(&out).unwrap(), (out.len(), Progress::Done), "deprecate_eof = {deprecate}");
            assert_eq!(s.status, status::AUTOCOMMIT);
            assert!(out.windows(3).any(|w| w == b"\x0242"), "the row holds the value");
            let mut out = Vec::new();
            let framing = Framing { deprecate_eof: deprecate, metadata_byte: false };
            write_single_bigint(&mut out, 1, "id", BigInt::Unsigned(42), framing, 0, true);
            let mut s = Scanner::new(Expect::ResultSets, deprecate);
            assert_eq!(s.feed(&out).unwrap(), (out.len(), Progress::Done));
            assert!(out.windows(10).any(|w| w == [0, 0, 42, 0, 0, 0, 0, 0, 0, 0]), "binary row");
        }
    }
}
