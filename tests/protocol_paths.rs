//! Protocol paths few client libraries exercise, driven with raw packets: COM_FIELD_LIST,
//! COM_SET_OPTION, server-side cursors with COM_STMT_FETCH, SEND_LONG_DATA, STMT_RESET and
//! STMT_CLOSE (which has no reply).

mod common;

use std::net::TcpStream;

use common::*;
use corelay::protocol::scanner::{Expect, Progress, Scanner};

/// Reads one whole response and returns its packets' payloads.
fn response(s: &mut TcpStream, expect: Expect) -> Vec<Vec<u8>> {
    let mut scanner = Scanner::new(expect, true);
    let mut packets = Vec::new();
    loop {
        let (seq, p) = read_raw_packet(s).unwrap();
        let mut framed = vec![p.len() as u8, (p.len() >> 8) as u8, (p.len() >> 16) as u8, seq];
        framed.extend_from_slice(&p);
        let (n, progress) = scanner.feed(&framed).unwrap();
        assert_eq!(n, framed.len());
        packets.push(p);
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
