//! A small blocking MySQL client for corelay's own use outside the shards: the master's
//! health checks and `corelay report`. Sockets with timeouts, TLS as the server's `tls`
//! mode says; text queries only; results end with EOF packets (the client does not ask
//! for CLIENT_DEPRECATE_EOF).

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

/// A logged-in connection: a socket, or TLS over one.
pub trait Link: Read + Write + Send {}
impl<T: Read + Write + Send> Link for T {}

fn read_packet(s: &mut dyn Link) -> Result<(u8, Vec<u8>), BlockingError> {
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
/// `timeout` for the connect and (at least a second) for every read and write; over TLS
/// when `tls` says so (as the shards' connections to that server are).
pub fn login(
    addr: SocketAddr,
    timeout: Duration,
    user: &str,
    password: &str,
    tls: Option<&crate::config::ServerTls>,
) -> Result<Box<dyn Link>, BlockingError> {
    let mut tcp = TcpStream::connect_timeout(&addr, timeout)?;
    tcp.set_read_timeout(Some(timeout.max(Duration::from_secs(1))))?;
    tcp.set_write_timeout(Some(timeout.max(Duration::from_secs(1))))?;
    let _ = tcp.set_nodelay(true);
    let (_, g) = read_packet(&mut tcp)?;
    if g.first() == Some(&0xFF) {
        return Err(server_error(&g));
    }
    let g = Greeting::parse(&g)?;
    let plugin =
        if auth::proof_for(&g.auth_plugin, b"", b"").is_ok() { g.auth_plugin.clone() } else { auth::NATIVE.into() };
    let proof = auth::proof_for(&plugin, password.as_bytes(), &g.scramble)?;
    let mut hr = HandshakeResponse {
        capabilities: caps::BACKEND_REQUIRED,
        mariadb_capabilities: 0,
        max_packet: 1 << 24,
        charset: 45,
        user: user.into(),
        auth_response: proof,
        database: None,
        auth_plugin: Some(plugin),
        attributes: Vec::new(),
    };
    let mut seq = 1;
    let mut s: Box<dyn Link> = match tls {
        Some(t) if g.capabilities & caps::SSL != 0 => {
            hr.capabilities |= caps::SSL;
            let mut out = Vec::new();
            write_packet(&mut out, 1, &hr.ssl_request());
            tcp.write_all(&out)?;
            seq = 2;
            let conn = rustls::ClientConnection::new(t.config.clone(), t.name.clone())
                .map_err(|e| std::io::Error::other(format!("TLS: {e}")))?;
            Box::new(rustls::StreamOwned::new(conn, tcp))
        }
        Some(t) if t.mode != crate::net::tls::BackendTls::Preferred => {
            return Err(BlockingError::Unexpected("the server offers no TLS, and its tls mode requires it"))
        }
        _ => Box::new(tcp),
    };
    let capabilities = hr.capabilities;
    let mut out = Vec::new();
    hr.write(&mut out, seq);
    s.write_all(&out)?;
    let mut scramble = g.scramble.clone();
    for _ in 0..6 {
        let (seq, p) = read_packet(&mut *s)?;
        match p.first() {
            Some(0x00) => return Ok(s),
            Some(0xFE) => {
                let sw = AuthSwitch::parse(&p)?;
                let proof = auth::proof_for(&sw.plugin, password.as_bytes(), &sw.data)?;
                out.clear();
                write_packet(&mut out, seq.wrapping_add(1), &proof);
                s.write_all(&out)?;
                scramble = sw.data;
            }
            // caching_sha2 full authentication: the password, over TLS only.
            Some(0x01) if p.get(1) == Some(&4) && capabilities & caps::SSL != 0 => {
                let mut pw = password.as_bytes().to_vec();
                pw.push(0);
                out.clear();
                write_packet(&mut out, seq.wrapping_add(1), &pw);
                s.write_all(&out)?;
            }
            // Without TLS: ask for the server's RSA key, then send the password sealed with it.
            Some(0x01) if p.get(1) == Some(&4) => {
                out.clear();
                write_packet(&mut out, seq.wrapping_add(1), &[0x02]);
                s.write_all(&out)?;
            }
            Some(0x01) if p.get(1) == Some(&b'-') => {
                let scramble = scramble.strip_suffix(&[0]).unwrap_or(&scramble);
                let sealed = crate::protocol::rsa::encrypt_password(&p[1..], password.as_bytes(), scramble)
                    .map_err(|_| BlockingError::Unexpected("the server's RSA public key is unusable"))?;
                out.clear();
                write_packet(&mut out, seq.wrapping_add(1), &sealed);
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
pub fn query(s: &mut dyn Link, sql: &str) -> Result<(Vec<String>, Rows), BlockingError> {
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
        let e = login(addr, Duration::from_secs(5), "u", "p", None).err().expect("refused");
        server.join().unwrap();
        assert_eq!(e.server_code(), Some(code::CON_COUNT_ERROR.number), "{e}");
        assert_eq!(e.to_string(), "Too many connections (1040)");
    }
}
