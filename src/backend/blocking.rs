//! A small blocking MySQL client for corelay's own use outside the shards: the master's
//! health checks and `corelay report`. Plain sockets with timeouts; text queries only;
//! results end with EOF packets (the client does not ask for CLIENT_DEPRECATE_EOF).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use thiserror::Error;

use crate::protocol::auth;
use crate::protocol::caps;
use crate::protocol::err::ErrPacket;
use crate::protocol::handshake::{AuthSwitch, Greeting, HandshakeResponse};
use crate::protocol::packet::{write_packet, Header, Reader, HEADER_LEN};
use crate::protocol::ProtocolError;

/// What went wrong talking to a server.
#[derive(Debug, Error)]
pub enum BlockingError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Protocol(#[from] ProtocolError),
    /// The server answered with an error.
    #[error("{} ({})", .0.message, .0.code)]
    Server(ErrPacket),
    #[error("{0}")]
    Unexpected(&'static str),
}

impl BlockingError {
    /// The server's error number, when the server refused.
    pub fn server_code(&self) -> Option<u16> {
        match self {
            BlockingError::Server(e) => Some(e.code),
            _ => None,
        }
    }
}

fn read_packet(s: &mut TcpStream) -> Result<(u8, Vec<u8>), BlockingError> {
    let mut h = [0u8; HEADER_LEN];
    s.read_exact(&mut h)?;
    let h = Header::parse(&h).ok_or(BlockingError::Unexpected("bad header"))?;
    if h.len > 16 << 20 {
        return Err(BlockingError::Unexpected("packet too large for a health check"));
    }
    let mut p = vec![0; h.len];
    s.read_exact(&mut p)?;
    Ok((h.seq, p))
}

fn server_error(p: &[u8]) -> BlockingError {
    match ErrPacket::parse(p) {
        Ok(e) => BlockingError::Server(e),
        Err(e) => BlockingError::Protocol(e),
    }
}

/// Connects to `addr` and logs in as `user` (native password, auth switch, ed25519), with
/// `timeout` for the connect and (at least a second) for every read and write.
pub fn login(addr: SocketAddr, timeout: Duration, user: &str, password: &str) -> Result<TcpStream, BlockingError> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout.max(Duration::from_secs(1))))?;
    s.set_write_timeout(Some(timeout.max(Duration::from_secs(1))))?;
    let _ = s.set_nodelay(true);
    let (_, g) = read_packet(&mut s)?;
    if g.first() == Some(&0xFF) {
        return Err(server_error(&g));
    }
    let g = Greeting::parse(&g)?;
    let plugin =
        if auth::proof_for(&g.auth_plugin, b"", b"").is_ok() { g.auth_plugin.clone() } else { auth::NATIVE.into() };
    let proof = auth::proof_for(&plugin, password.as_bytes(), &g.scramble)?;
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
    s.write_all(&out)?;
    for _ in 0..4 {
        let (seq, p) = read_packet(&mut s)?;
        match p.first() {
            Some(0x00) => return Ok(s),
            Some(0xFE) => {
                let sw = AuthSwitch::parse(&p)?;
                let proof = auth::proof_for(&sw.plugin, password.as_bytes(), &sw.data)?;
                out.clear();
                write_packet(&mut out, seq.wrapping_add(1), &proof);
                s.write_all(&out)?;
            }
            Some(0x01) => continue,
            _ => return Err(server_error(&p)),
        }
    }
    Err(BlockingError::Unexpected("login did not finish"))
}

pub type Rows = Vec<Vec<Option<String>>>;

/// Runs a text query; returns column names and rows (NULL as None). Results end with EOF
/// packets: the health connection does not ask for CLIENT_DEPRECATE_EOF.
pub fn query(s: &mut TcpStream, sql: &str) -> Result<(Vec<String>, Rows), BlockingError> {
    let mut out = Vec::new();
    let mut p = vec![crate::protocol::command::QUERY];
    p.extend_from_slice(sql.as_bytes());
    write_packet(&mut out, 0, &p);
    s.write_all(&out)?;
    let (_, first) = read_packet(s)?;
    match first.first() {
        Some(0xFF) => return Err(server_error(&first)),
        Some(0x00) => return Ok((Vec::new(), Vec::new())),
        _ => {}
    }
    let n = Reader::new(&first).lenenc_int("column count")? as usize;
    let mut names = Vec::with_capacity(n);
    for _ in 0..n {
        let (_, def) = read_packet(s)?;
        let mut r = Reader::new(&def);
        for what in ["catalog", "schema", "table", "org_table"] {
            r.lenenc_bytes(what)?;
        }
        names.push(String::from_utf8_lossy(r.lenenc_bytes("name")?).into_owned());
    }
    read_packet(s)?; // EOF after the column definitions
    let mut rows = Vec::new();
    loop {
        let (_, row) = read_packet(s)?;
        match row.first() {
            Some(0xFE) if row.len() < 9 => return Ok((names, rows)),
            Some(0xFF) => return Err(server_error(&row)),
            _ => {}
        }
        let mut r = Reader::new(&row);
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            if r.clone().u8("value")? == 0xFB {
                r.u8("null")?;
                values.push(None);
            } else {
                values.push(Some(String::from_utf8_lossy(r.lenenc_bytes("value")?).into_owned()));
            }
        }
        rows.push(values);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::code;
    use crate::protocol::err::write_err;

    /// A server that refuses at once (as one with too many connections does) is a typed
    /// server error whose code the caller can test.
    #[test]
    fn a_refusal_carries_the_servers_code() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut out = Vec::new();
            write_err(&mut out, 0, code::CON_COUNT_ERROR, "Too many connections");
            s.write_all(&out).unwrap();
        });
        let e = login(addr, Duration::from_secs(5), "u", "p").unwrap_err();
        server.join().unwrap();
        assert_eq!(e.server_code(), Some(code::CON_COUNT_ERROR.number), "{e}");
        assert_eq!(e.to_string(), "Too many connections (1040)");
    }
}
