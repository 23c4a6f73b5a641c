//! A small blocking MySQL client for corelay's own use outside the shards: the master's
//! health checks and `corelay report`. Plain sockets with timeouts; text queries only;
//! results end with EOF packets (the client does not ask for CLIENT_DEPRECATE_EOF).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::protocol::auth;
use crate::protocol::caps;
use crate::protocol::err::ErrPacket;
use crate::protocol::handshake::{AuthSwitch, Greeting, HandshakeResponse};
use crate::protocol::packet::{write_packet, Header, Reader, HEADER_LEN};

fn read_packet(s: &mut TcpStream) -> Result<(u8, Vec<u8>), String> {
    let mut h = [0u8; HEADER_LEN];
    s.read_exact(&mut h).map_err(|e| e.to_string())?;
    let h = Header::parse(&h).ok_or("bad header")?;
    if h.len > 16 << 20 {
        return Err("packet too large for a health check".into());
    }
    let mut p = vec![0; h.len];
    s.read_exact(&mut p).map_err(|e| e.to_string())?;
    Ok((h.seq, p))
}

fn err_text(p: &[u8]) -> String {
    ErrPacket::parse(p).map_or_else(|_| "malformed error".into(), |e| format!("{} ({})", e.message, e.code))
}

/// Connects to `addr` and logs in as `user` (native password, auth switch, ed25519), with
/// `timeout` for the connect and (at least a second) for every read and write.
pub fn login(addr: SocketAddr, timeout: Duration, user: &str, password: &str) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout.max(Duration::from_secs(1)))).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout.max(Duration::from_secs(1)))).map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    let (_, g) = read_packet(&mut s)?;
    if g.first() == Some(&0xFF) {
        return Err(err_text(&g));
    }
    let g = Greeting::parse(&g).map_err(|e| e.to_string())?;
    let plugin =
        if auth::proof_for(&g.auth_plugin, b"", b"").is_ok() { g.auth_plugin.clone() } else { auth::NATIVE.into() };
    let proof = auth::proof_for(&plugin, password.as_bytes(), &g.scramble).map_err(|e| e.to_string())?;
    let hr = HandshakeResponse {
        capabilities: caps::BACKEND_REQUIRED,
        max_packet: 1 << 24,
        charset: 45,
        user: user.into(),
        auth_response: proof,
        database: None,
        auth_plugin: Some(plugin),
        attributes: Vec::new(),
    };
    let mut out = Vec::new();
    hr.write(&mut out, 1);
    s.write_all(&out).map_err(|e| e.to_string())?;
    for _ in 0..4 {
        let (seq, p) = read_packet(&mut s)?;
        match p.first() {
            Some(0x00) => return Ok(s),
            Some(0xFE) => {
                let sw = AuthSwitch::parse(&p).map_err(|e| e.to_string())?;
                let proof = auth::proof_for(&sw.plugin, password.as_bytes(), &sw.data).map_err(|e| e.to_string())?;
                out.clear();
                write_packet(&mut out, seq.wrapping_add(1), &proof);
                s.write_all(&out).map_err(|e| e.to_string())?;
            }
            Some(0x01) => continue,
            _ => return Err(err_text(&p)),
        }
    }
    Err("login did not finish".into())
}

pub type Rows = Vec<Vec<Option<String>>>;

/// Runs a text query; returns column names and rows (NULL as None). Results end with EOF
/// packets: the health connection does not ask for CLIENT_DEPRECATE_EOF.
pub fn query(s: &mut TcpStream, sql: &str) -> Result<(Vec<String>, Rows), String> {
    let mut out = Vec::new();
    let mut p = vec![crate::protocol::command::QUERY];
    p.extend_from_slice(sql.as_bytes());
    write_packet(&mut out, 0, &p);
    s.write_all(&out).map_err(|e| e.to_string())?;
    let (_, first) = read_packet(s)?;
    match first.first() {
        Some(0xFF) => return Err(err_text(&first)),
        Some(0x00) => return Ok((Vec::new(), Vec::new())),
        _ => {}
    }
    let n = Reader::new(&first).lenenc_int("column count").map_err(|e| e.to_string())? as usize;
    let mut names = Vec::with_capacity(n);
    for _ in 0..n {
        let (_, def) = read_packet(s)?;
        let mut r = Reader::new(&def);
        for what in ["catalog", "schema", "table", "org_table"] {
            r.lenenc_bytes(what).map_err(|e| e.to_string())?;
        }
        names.push(String::from_utf8_lossy(r.lenenc_bytes("name").map_err(|e| e.to_string())?).into_owned());
    }
    read_packet(s)?; // EOF after the column definitions
    let mut rows = Vec::new();
    loop {
        let (_, row) = read_packet(s)?;
        match row.first() {
            Some(0xFE) if row.len() < 9 => return Ok((names, rows)),
            Some(0xFF) => return Err(err_text(&row)),
            _ => {}
        }
        let mut r = Reader::new(&row);
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            if r.clone().u8("value").map_err(|e| e.to_string())? == 0xFB {
                r.u8("null").map_err(|e| e.to_string())?;
                values.push(None);
            } else {
                values.push(Some(
                    String::from_utf8_lossy(r.lenenc_bytes("value").map_err(|e| e.to_string())?).into_owned(),
                ));
            }
        }
        rows.push(values);
    }
}
