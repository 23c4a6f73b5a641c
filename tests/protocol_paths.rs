//! Protocol paths few client libraries exercise, driven with raw packets: COM_FIELD_LIST,
//! COM_SET_OPTION, server-side cursors with COM_STMT_FETCH, SEND_LONG_DATA, STMT_RESET and
//! STMT_CLOSE (which has no reply), and MariaDB's metadata cache as a client that keeps
//! column definitions sees it.

mod common;

use std::net::TcpStream;

use common::*;
use corelay::protocol::caps;
use corelay::protocol::scanner::{Expect, Progress, Scanner};

/// Reads one whole response and returns its packets' payloads.
fn response(s: &mut TcpStream, expect: Expect) -> Vec<Vec<u8>> {
    response_seq(s, expect, false).into_iter().map(|(_, p)| p).collect()
}

/// [`response`], with each packet's sequence id; `metadata_byte`: the session has MariaDB's
/// metadata cache.
fn response_seq(s: &mut TcpStream, expect: Expect, metadata_byte: bool) -> Vec<(u8, Vec<u8>)> {
    let mut scanner = Scanner::new(expect, true).metadata(metadata_byte, false);
    let mut packets = Vec::new();
    loop {
        let (seq, p) = read_raw_packet(s).unwrap();
        let mut framed = vec![p.len() as u8, (p.len() >> 8) as u8, (p.len() >> 16) as u8, seq];
        framed.extend_from_slice(&p);
        let (n, progress) = scanner.feed(&framed).unwrap();
        assert_eq!(n, framed.len());
        packets.push((seq, p));
        if progress == Progress::Done {
            return packets;
        }
    }
}

fn setup(table: &str) -> (Corelay, TcpStream) {
    let c = Corelay::start(&config_for(shared_mariadb().addr(), &[TestUser::default()], ""), "thread", 1);
    let mut s = raw_login(c.port, "app", "app_pw");
    for sql in [
        "USE app".to_string(),
        format!("DROP TABLE IF EXISTS {table}"),
        format!("CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(20), note TEXT)"),
        format!("INSERT INTO {table} VALUES (1,'a',NULL),(2,'b',NULL),(3,'c',NULL),(4,'d',NULL),(5,'e',NULL)"),
    ] {
        send_command(&mut s, &[&[3u8][..], sql.as_bytes()].concat());
        let r = response(&mut s, Expect::ResultSets);
        assert_eq!(r[0][0], 0, "{sql}: {}", String::from_utf8_lossy(&r[0]));
    }
    (c, s)
}

#[test]
fn field_list_and_set_option() {
    let (c, mut s) = setup("raw_fields");
    send_command(&mut s, b"\x04raw_fields\0");
    let r = response(&mut s, Expect::FieldList);
    assert_eq!(r.len(), 4, "three column definitions and a terminator");
    assert!(r[..3].iter().all(|p| p.starts_with(b"\x03def")));
    // COM_SET_OPTION: multi-statements off, then on.
    send_command(&mut s, &[0x1b, 1, 0]);
    let r = response(&mut s, Expect::Single);
    assert!(r[0][0] == 0xFE || r[0][0] == 0, "{:?}", r[0]);
    send_command(&mut s, &[0x1b, 0, 0]);
    response(&mut s, Expect::Single);
    let mut other = c.connect("app", "app_pw").unwrap();
    assert_alive(&mut other);
}

#[test]
fn cursor_fetch_long_data_reset_close() {
    let (_c, mut s) = setup("raw_cursor");
    send_command(&mut s, b"\x16SELECT id, name FROM raw_cursor WHERE id >= ? ORDER BY id");
    let r = response(&mut s, Expect::Prepare);
    assert_eq!(r[0][0], 0);
    let stmt = u32::from_le_bytes([r[0][1], r[0][2], r[0][3], r[0][4]]);
    // EXECUTE with CURSOR_TYPE_READ_ONLY, one INT parameter = 2.
    let mut exec = vec![0x17];
    exec.extend_from_slice(&stmt.to_le_bytes());
    exec.push(1); // read-only cursor
    exec.extend_from_slice(&1u32.to_le_bytes());
    exec.push(0); // null bitmap
    exec.push(1); // new params bound
    exec.extend_from_slice(&[3, 0]); // MYSQL_TYPE_LONG
    exec.extend_from_slice(&2i32.to_le_bytes());
    send_command(&mut s, &exec);
    let r = response(&mut s, Expect::ResultSets);
    let last = r.last().unwrap();
    assert_eq!(last[0], 0xFE, "metadata ends with EOF/OK when a cursor opens");
    // FETCH 2 rows, then the rest.
    let mut fetched = Vec::new();
    for _ in 0..3 {
        let mut f = vec![0x1c];
        f.extend_from_slice(&stmt.to_le_bytes());
        f.extend_from_slice(&2u32.to_le_bytes());
        send_command(&mut s, &f);
        let r = response(&mut s, Expect::Rows);
        for row in &r[..r.len() - 1] {
            assert_eq!(row[0], 0, "binary row");
            fetched.push(i32::from_le_bytes([row[2], row[3], row[4], row[5]]));
        }
    }
    assert_eq!(fetched, vec![2, 3, 4, 5]);
    // SEND_LONG_DATA (no reply), then RESET (OK), then CLOSE (no reply), then a query.
    let mut long = vec![0x18];
    long.extend_from_slice(&stmt.to_le_bytes());
    long.extend_from_slice(&0u16.to_le_bytes());
    long.extend_from_slice(b"ignored");
    send_command(&mut s, &long);
    let mut reset = vec![0x1a];
    reset.extend_from_slice(&stmt.to_le_bytes());
    send_command(&mut s, &reset);
    assert_eq!(response(&mut s, Expect::Single)[0][0], 0);
    let mut close = vec![0x19];
    close.extend_from_slice(&stmt.to_le_bytes());
    send_command(&mut s, &close);
    send_command(&mut s, b"\x03SELECT COUNT(*) FROM raw_cursor");
    let r = response(&mut s, Expect::ResultSets);
    assert_eq!(r[2], b"\x015", "five rows");
}

/// The type byte of a column definition packet.
fn column_type(def: &[u8]) -> u8 {
    let mut at = 0;
    for _ in 0..6 {
        at += 1 + usize::from(def[at]);
    }
    // 0x0c, character set (2), length (4), then the type.
    def[at + 7]
}

/// An EXECUTE of `stmt` with one INT parameter.
fn execute_int(s: &mut TcpStream, stmt: u32, value: i32) -> Vec<(u8, Vec<u8>)> {
    let mut exec = vec![0x17];
    exec.extend_from_slice(&stmt.to_le_bytes());
    exec.push(0);
    exec.extend_from_slice(&1u32.to_le_bytes());
    exec.extend_from_slice(&[0, 1, 3, 0]); // null bitmap, new params bound, MYSQL_TYPE_LONG
    exec.extend_from_slice(&value.to_le_bytes());
    send_command(s, &exec);
    response_seq(s, Expect::ResultSets, true)
}

/// MariaDB's metadata cache: the server leaves out column definitions it sent before on
/// the same connection (the PREPARE reply's count). Here every statement runs on a new
/// connection (`backend_max_uses = 1`), so the server's "left out" means the definitions
/// of a PREPARE corelay made there itself: the client gets them when they are not the
/// ones it holds (the table changed since its PREPARE), numbered in sequence, and not
/// again once it has them.
#[test]
fn metadata_cache_gives_the_client_the_definitions_it_lacks() {
    let db = shared_mariadb();
    let c = Corelay::start(&config_for(db.addr(), &[TestUser::default()], "backend_max_uses = 1"), "thread", 1);
    let stream = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    let mut s = raw_login_with(stream, "app", "app_pw", caps::ext::CACHE_METADATA);
    for sql in [
        "USE app",
        "DROP TABLE IF EXISTS raw_meta",
        "CREATE TABLE raw_meta (id INT PRIMARY KEY, name VARCHAR(20))",
        "INSERT INTO raw_meta VALUES (3, 'three')",
    ] {
        send_command(&mut s, &[&[3u8][..], sql.as_bytes()].concat());
        let r = response_seq(&mut s, Expect::ResultSets, true);
        assert_eq!(r[0].1[0], 0, "{sql}: {}", String::from_utf8_lossy(&r[0].1));
    }
    // A text result set carries the byte too, always set.
    send_command(&mut s, b"\x03SELECT name FROM raw_meta");
    let r = response_seq(&mut s, Expect::ResultSets, true);
    assert_eq!(r[0].1, [1, 1], "column count, metadata follows");
    assert_eq!(r[2].1, b"\x05three");

    send_command(&mut s, b"\x16SELECT id, name FROM raw_meta WHERE id = ?");
    let r = response_seq(&mut s, Expect::Prepare, true);
    assert_eq!(r[0].1[0], 0, "PREPARE: {}", String::from_utf8_lossy(&r[0].1));
    let stmt = u32::from_le_bytes([r[0].1[1], r[0].1[2], r[0].1[3], r[0].1[4]]);
    // PREPARE_OK, one parameter, two columns (no EOFs: DEPRECATE_EOF).
    assert_eq!(r.len(), 4);
    assert_eq!(column_type(&r[2].1), 3, "id is an INT");

    // On another connection, prepared there by corelay with the same definitions.
    let r = execute_int(&mut s, stmt, 3);
    assert_eq!(r[0].1, [2, 0], "definitions left out: the client has them");
    assert_eq!(r[1].1[..6], [0, 0, 3, 0, 0, 0], "binary row: header, null bitmap, INT 3");

    let mut root = db.root().unwrap();
    use mysql::prelude::Queryable;
    root.query_drop("ALTER TABLE app.raw_meta MODIFY id BIGINT").unwrap();

    let r = execute_int(&mut s, stmt, 3);
    let seqs: Vec<u8> = r.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=r.len() as u8).collect::<Vec<_>>(), "sequence ids run on: {r:?}");
    assert_eq!(r[0].1, [2, 1], "the client's definitions are stale: corelay puts the server's in");
    assert_eq!((column_type(&r[1].1), column_type(&r[2].1)), (8, 253), "id is a BIGINT now");
    assert_eq!(r[3].1[..10], [0, 0, 3, 0, 0, 0, 0, 0, 0, 0], "binary row: BIGINT 3");
    assert_eq!(r[3].1[10..], *b"\x05three");
    assert_eq!(r.len(), 5);

    let r = execute_int(&mut s, stmt, 3);
    assert_eq!(r[0].1, [2, 0], "the client holds these definitions now");
    assert_eq!(r[1].1[..10], [0, 0, 3, 0, 0, 0, 0, 0, 0, 0]);
    let mut other = c.connect("app", "app_pw").unwrap();
    assert_alive(&mut other);
}
