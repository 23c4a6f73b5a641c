//! Connection phase: the server greeting (HandshakeV10), the client's HandshakeResponse41,
//! AuthSwitchRequest, and COM_CHANGE_USER.
//!
//! The proxy plays server to its clients (it builds greetings and parses responses) and
//! client to its backends (it parses greetings and builds responses), so both directions of
//! each message live here.

use super::auth::SCRAMBLE_LEN;
use super::caps;
use super::packet::{begin_packet, finish_packet, put_lenenc_str, Reader};
use super::ProtocolError;

/// The server's first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub server_version: String,
    pub connection_id: u32,
    pub scramble: Vec<u8>,
    pub capabilities: u32,
    /// MariaDB's extended capabilities ([`caps::ext`]); carried only when `capabilities`
    /// lacks CLIENT_MYSQL (`LONG_PASSWORD`), as a MariaDB server's greeting does.
    pub mariadb_capabilities: u32,
    pub charset: u8,
    pub status: u16,
    pub auth_plugin: String,
}

impl Greeting {
    /// Appends the greeting as packet 0.
    pub fn write(&self, out: &mut Vec<u8>) {
        let at = begin_packet(out);
        out.push(10);
        out.extend_from_slice(self.server_version.as_bytes());
        out.push(0);
        out.extend_from_slice(&self.connection_id.to_le_bytes());
        out.extend_from_slice(&self.scramble[..8]);
        out.push(0);
        out.extend_from_slice(&(self.capabilities as u16).to_le_bytes());
        out.push(self.charset);
        out.extend_from_slice(&self.status.to_le_bytes());
        out.extend_from_slice(&((self.capabilities >> 16) as u16).to_le_bytes());
        out.push(SCRAMBLE_LEN as u8 + 1);
        out.extend_from_slice(&[0; 6]);
        out.extend_from_slice(&self.extended_capabilities().to_le_bytes());
        out.extend_from_slice(&self.scramble[8..]);
        out.push(0);
        out.extend_from_slice(self.auth_plugin.as_bytes());
        out.push(0);
        finish_packet(out, at, 0);
    }

    /// MariaDB's extended capabilities as the greeting carries them: none with CLIENT_MYSQL
    /// set.
    pub fn extended_capabilities(&self) -> u32 {
        carried(self.capabilities, self.mariadb_capabilities)
    }

    /// Decodes a greeting payload sent by a backend.
    pub fn parse(payload: &[u8]) -> Result<Greeting, ProtocolError> {
        let mut r = Reader::new(payload);
        let version = r.u8("protocol version")?;
        if version != 10 {
            return Err(ProtocolError::Malformed("greeting protocol version is not 10"));
        }
        let server_version = String::from_utf8_lossy(r.nul_bytes("server version", false)?).into_owned();
        let connection_id = r.u32("connection id")?;
        let mut scramble = r.bytes(8, "scramble part 1")?.to_vec();
        r.u8("filler")?;
        let cap_low = u32::from(r.u16("capabilities")?);
        let mut capabilities = cap_low;
        let mut charset = 0;
        let mut status = 0;
        let mut mariadb_capabilities = 0;
        let mut auth_plugin = String::from(super::auth::NATIVE);
        if !r.is_empty() {
            charset = r.u8("charset")?;
            status = r.u16("status")?;
            capabilities |= u32::from(r.u16("capabilities")?) << 16;
            let data_len = r.u8("auth data length")?;
            let reserved = r.bytes(10, "reserved")?;
            let ext = u32::from_le_bytes([reserved[6], reserved[7], reserved[8], reserved[9]]);
            mariadb_capabilities = carried(capabilities, ext);
            if capabilities & caps::SECURE_CONNECTION != 0 {
                let n = (usize::from(data_len).saturating_sub(8)).max(13);
                let part2 = r.bytes(n.min(r.remaining()), "scramble part 2")?;
                // The last byte of part 2 is a NUL terminator.
                let part2 = part2.strip_suffix(&[0]).unwrap_or(part2);
                scramble.extend_from_slice(part2);
            }
            if capabilities & caps::PLUGIN_AUTH != 0 {
                auth_plugin = String::from_utf8_lossy(r.nul_bytes("auth plugin", true)?).into_owned();
            }
        }
        Ok(Greeting {
            server_version,
            connection_id,
            scramble,
            capabilities,
            mariadb_capabilities,
            charset,
            status,
            auth_plugin,
        })
    }
}

/// MariaDB's extended capabilities `ext` as a packet with `capabilities` carries them: only
/// without CLIENT_MYSQL (`LONG_PASSWORD`), which says "MySQL" and leaves the bytes unused.
fn carried(capabilities: u32, ext: u32) -> u32 {
    if capabilities & caps::LONG_PASSWORD == 0 {
        ext
    } else {
        0
    }
}

/// What a client sends in answer to the greeting.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HandshakeResponse {
    pub capabilities: u32,
    /// MariaDB's extended capabilities (the filler's last four bytes), read and written
    /// only without CLIENT_MYSQL (`LONG_PASSWORD`).
    pub mariadb_capabilities: u32,
    pub max_packet: u32,
    pub charset: u8,
    pub user: String,
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    pub auth_plugin: Option<String>,
    /// Raw connection attributes block (without its length prefix), if any.
    pub attributes: Vec<u8>,
}

/// Size of an SSLRequest payload: a HandshakeResponse41 cut after the filler.
pub const SSL_REQUEST_LEN: usize = 32;

/// A client's SSLRequest: the start of a handshake response, sent in the clear before TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SslRequest {
    pub capabilities: u32,
    pub max_packet: u32,
    pub charset: u8,
    /// MariaDB's extended capabilities (the filler's last four bytes).
    pub mariadb_capabilities: u32,
}

impl SslRequest {
    /// Whether a login packet is an SSLRequest: 32 bytes with CLIENT_SSL. None: it is not
    /// one (a handshake response, or garbage the response parser will refuse).
    pub fn parse(payload: &[u8]) -> Option<SslRequest> {
        if payload.len() != SSL_REQUEST_LEN {
            return None;
        }
        let word = |at: usize| u32::from_le_bytes([payload[at], payload[at + 1], payload[at + 2], payload[at + 3]]);
        let r = SslRequest {
            capabilities: word(0),
            max_packet: word(4),
            charset: payload[8],
            mariadb_capabilities: word(28),
        };
        (r.capabilities & caps::SSL != 0).then_some(r)
    }
}

impl HandshakeResponse {
    /// Decodes a client's HandshakeResponse41.
    pub fn parse(payload: &[u8]) -> Result<HandshakeResponse, ProtocolError> {
        let mut r = Reader::new(payload);
        let capabilities = r.u32("capabilities")?;
        if capabilities & caps::PROTOCOL_41 == 0 {
            return Err(ProtocolError::OldClient);
        }
        let max_packet = r.u32("max packet size")?;
        let charset = r.u8("charset")?;
        let filler = r.bytes(23, "filler")?;
        let ext = u32::from_le_bytes([filler[19], filler[20], filler[21], filler[22]]);
        let mariadb_capabilities = carried(capabilities, ext);
        let user = String::from_utf8_lossy(r.nul_bytes("user name", false)?).into_owned();
        let auth_response = if capabilities & caps::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            r.lenenc_bytes("auth response")?.to_vec()
        } else if capabilities & caps::SECURE_CONNECTION != 0 {
            let n = r.u8("auth response length")?;
            r.bytes(usize::from(n), "auth response")?.to_vec()
        } else {
            r.nul_bytes("auth response", true)?.to_vec()
        };
        let mut database = None;
        if capabilities & caps::CONNECT_WITH_DB != 0 && !r.is_empty() {
            let db = r.nul_bytes("database", true)?;
            if !db.is_empty() {
                database = Some(String::from_utf8_lossy(db).into_owned());
            }
        }
        let mut auth_plugin = None;
        if capabilities & caps::PLUGIN_AUTH != 0 && !r.is_empty() {
            auth_plugin = Some(String::from_utf8_lossy(r.nul_bytes("auth plugin", true)?).into_owned());
        }
        let mut attributes = Vec::new();
        if capabilities & caps::CONNECT_ATTRS != 0 && !r.is_empty() {
            attributes = r.lenenc_bytes("connection attributes")?.to_vec();
        }
        Ok(HandshakeResponse {
            capabilities,
            mariadb_capabilities,
            max_packet,
            charset,
            user,
            auth_response,
            database,
            auth_plugin,
            attributes,
        })
    }

    /// The capability flags the response carries: `capabilities`, with CONNECT_WITH_DB and
    /// CONNECT_ATTRS as the database and attributes say. An SSLRequest must carry the same:
    /// the server reads them there.
    pub fn wire_capabilities(&self) -> u32 {
        let mut capabilities = self.capabilities;
        if self.database.is_some() {
            capabilities |= caps::CONNECT_WITH_DB;
        } else {
            capabilities &= !caps::CONNECT_WITH_DB;
        }
        if self.attributes.is_empty() {
            capabilities &= !caps::CONNECT_ATTRS;
        }
        capabilities
    }

    /// The SSLRequest that goes before this response on a TLS login (CLIENT_SSL set).
    pub fn ssl_request(&self) -> [u8; SSL_REQUEST_LEN] {
        let mut p = [0u8; SSL_REQUEST_LEN];
        p[..4].copy_from_slice(&(self.wire_capabilities() | caps::SSL).to_le_bytes());
        p[4..8].copy_from_slice(&self.max_packet.to_le_bytes());
        p[8] = self.charset;
        p[28..].copy_from_slice(&self.wire_mariadb_capabilities().to_le_bytes());
        p
    }

    /// The extended capabilities as the filler carries them: none with CLIENT_MYSQL set.
    fn wire_mariadb_capabilities(&self) -> u32 {
        carried(self.capabilities, self.mariadb_capabilities)
    }

    /// Appends the response as packet `seq` (1 normally; 2 after an SSLRequest).
    pub fn write(&self, out: &mut Vec<u8>, seq: u8) {
        let at = begin_packet(out);
        let capabilities = self.wire_capabilities();
        out.extend_from_slice(&capabilities.to_le_bytes());
        out.extend_from_slice(&self.max_packet.to_le_bytes());
        out.push(self.charset);
        out.extend_from_slice(&[0; 19]);
        out.extend_from_slice(&self.wire_mariadb_capabilities().to_le_bytes());
        out.extend_from_slice(self.user.as_bytes());
        out.push(0);
        if capabilities & caps::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            put_lenenc_str(out, &self.auth_response);
        } else {
            out.push(self.auth_response.len() as u8);
            out.extend_from_slice(&self.auth_response);
        }
        if let Some(db) = &self.database {
            out.extend_from_slice(db.as_bytes());
            out.push(0);
        }
        if capabilities & caps::PLUGIN_AUTH != 0 {
            out.extend_from_slice(self.auth_plugin.as_deref().unwrap_or(super::auth::NATIVE).as_bytes());
            out.push(0);
        }
        if capabilities & caps::CONNECT_ATTRS != 0 {
            put_lenenc_str(out, &self.attributes);
        }
        finish_packet(out, at, seq);
    }
}

/// A server's request to restart authentication with another plugin (`0xFE`), or the
/// `0x01`-prefixed "more data" packet some plugins use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSwitch {
    pub plugin: String,
    pub data: Vec<u8>,
}

impl AuthSwitch {
    pub fn parse(payload: &[u8]) -> Result<AuthSwitch, ProtocolError> {
        let mut r = Reader::new(payload);
        if r.u8("auth switch marker")? != 0xFE {
            return Err(ProtocolError::Malformed("auth switch request does not start with 0xFE"));
        }
        let plugin = String::from_utf8_lossy(r.nul_bytes("auth plugin", true)?).into_owned();
        let data = r.rest();
        let data = data.strip_suffix(&[0]).unwrap_or(data).to_vec();
        Ok(AuthSwitch { plugin, data })
    }

    pub fn write(&self, out: &mut Vec<u8>, seq: u8) {
        let at = begin_packet(out);
        out.push(0xFE);
        out.extend_from_slice(self.plugin.as_bytes());
        out.push(0);
        out.extend_from_slice(&self.data);
        out.push(0);
        finish_packet(out, at, seq);
    }
}

/// COM_CHANGE_USER as sent by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeUser {
    pub user: String,
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    pub charset: Option<u16>,
    pub auth_plugin: Option<String>,
}

impl ChangeUser {
    /// Decodes the payload after the command byte.
    pub fn parse(body: &[u8], client_caps: u32) -> Result<ChangeUser, ProtocolError> {
        let mut r = Reader::new(body);
        let user = String::from_utf8_lossy(r.nul_bytes("user name", false)?).into_owned();
        let auth_response = if client_caps & caps::SECURE_CONNECTION != 0 {
            let n = r.u8("auth response length")?;
            r.bytes(usize::from(n), "auth response")?.to_vec()
        } else {
            r.nul_bytes("auth response", false)?.to_vec()
        };
        let db = r.nul_bytes("database", true)?;
        let database = (!db.is_empty()).then(|| String::from_utf8_lossy(db).into_owned());
        let charset = if r.remaining() >= 2 { Some(r.u16("charset")?) } else { None };
        let mut auth_plugin = None;
        if client_caps & caps::PLUGIN_AUTH != 0 && !r.is_empty() {
            auth_plugin = Some(String::from_utf8_lossy(r.nul_bytes("auth plugin", true)?).into_owned());
        }
        Ok(ChangeUser { user, auth_response, database, charset, auth_plugin })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::packet::Header;

    // A MariaDB 10.11 greeting as captured on the wire (payload only).
    const MARIADB_GREETING: &[u8] = b"\x0a5.5.5-10.11.19-MariaDB-0+deb12u1\x00\x08\x00\x00\x00\
2?%;9KM#\x00\xfe\xf7-\x02\x00\xff\x81\x15\x00\x00\x00\x00\x00\x00\x1d\x00\x00\x00\
aCga0h??^<O[\x00mysql_native_password\x00";

    #[test]
    fn parses_mariadb_greeting() {
        let g = Greeting::parse(MARIADB_GREETING).unwrap();
        assert_eq!(g.server_version, "5.5.5-10.11.19-MariaDB-0+deb12u1");
        assert_eq!(g.connection_id, 8);
        assert_eq!(g.scramble, b"2?%;9KM#aCga0h??^<O[");
        assert_eq!(g.charset, 0x2d);
        assert_eq!(g.auth_plugin, "mysql_native_password");
        assert!(g.capabilities & caps::PROTOCOL_41 != 0);
        assert!(g.capabilities & caps::DEPRECATE_EOF != 0);
    }

    #[test]
    fn greeting_roundtrip() {
        let g = Greeting {
            server_version: "5.5.5-10.11.99-MariaDB-corelay".into(),
            connection_id: 42,
            scramble: b"abcdefghijklmnopqrst".to_vec(),
            capabilities: caps::PROXY_SERVER,
            mariadb_capabilities: 0,
            charset: 45,
            status: 2,
            auth_plugin: "mysql_native_password".into(),
        };
        let mut out = Vec::new();
        g.write(&mut out);
        let h = Header::parse(&out).unwrap();
        assert_eq!(h.seq, 0);
        assert_eq!(h.total(), out.len());
        assert_eq!(Greeting::parse(&out[4..]).unwrap(), g);
        // As a MariaDB server: CLIENT_MYSQL clear, the extended flags in the filler.
        let mariadb = Greeting {
            capabilities: caps::PROXY_SERVER & !caps::LONG_PASSWORD,
            mariadb_capabilities: caps::ext::CACHE_METADATA,
            ..g
        };
        out.clear();
        mariadb.write(&mut out);
        assert_eq!(Greeting::parse(&out[4..]).unwrap(), mariadb);
    }

    #[test]
    fn extended_capabilities_travel_only_without_client_mysql() {
        let mut hr = HandshakeResponse {
            capabilities: caps::BACKEND_REQUIRED & !caps::LONG_PASSWORD,
            mariadb_capabilities: caps::ext::CACHE_METADATA,
            user: "u".into(),
            ..Default::default()
        };
        let mut out = Vec::new();
        hr.write(&mut out, 1);
        assert_eq!(HandshakeResponse::parse(&out[4..]).unwrap().mariadb_capabilities, caps::ext::CACHE_METADATA);
        assert_eq!(u32::from_le_bytes(hr.ssl_request()[28..].try_into().unwrap()), caps::ext::CACHE_METADATA);
        hr.capabilities |= caps::LONG_PASSWORD;
        out.clear();
        hr.write(&mut out, 1);
        assert_eq!(HandshakeResponse::parse(&out[4..]).unwrap().mariadb_capabilities, 0, "a MySQL client's filler");
        assert_eq!(&hr.ssl_request()[28..], &[0; 4]);
    }

    #[test]
    fn handshake_response_roundtrip() {
        let hr = HandshakeResponse {
            capabilities: caps::BACKEND_REQUIRED | caps::CONNECT_ATTRS | caps::DEPRECATE_EOF,
            mariadb_capabilities: 0,
            max_packet: 1 << 30,
            charset: 45,
            user: "app_db".into(),
            auth_response: vec![1; 20],
            database: Some("test".into()),
            auth_plugin: Some("mysql_native_password".into()),
            attributes: b"\x04_pid\x0512345".to_vec(),
        };
        let mut out = Vec::new();
        hr.write(&mut out, 1);
        let parsed = HandshakeResponse::parse(&out[4..]).unwrap();
        assert_eq!(parsed.user, "app_db");
        assert_eq!(parsed.database.as_deref(), Some("test"));
        assert_eq!(parsed.auth_response, vec![1; 20]);
        assert_eq!(parsed.attributes, hr.attributes);
        assert!(parsed.capabilities & caps::CONNECT_WITH_DB != 0);
    }

    #[test]
    fn an_ssl_request_announces_what_the_response_after_it_carries() {
        let hr = HandshakeResponse {
            capabilities: caps::PROTOCOL_41 | caps::SECURE_CONNECTION | caps::CONNECT_ATTRS,
            max_packet: 1 << 24,
            charset: 45,
            user: "u".into(),
            database: Some("db".into()),
            ..Default::default()
        };
        let req = SslRequest::parse(&hr.ssl_request()).expect("an SSLRequest");
        assert_eq!(req.capabilities & caps::CONNECT_WITH_DB, caps::CONNECT_WITH_DB, "the schema follows");
        assert_eq!(req.capabilities & caps::CONNECT_ATTRS, 0, "no attributes follow");
        assert_eq!(req.capabilities & !caps::SSL, hr.wire_capabilities());
        assert_eq!((req.max_packet, req.charset), (1 << 24, 45));
        assert!(SslRequest::parse(&[0u8; 32]).is_none(), "no CLIENT_SSL, not an SSLRequest");
        assert!(SslRequest::parse(&hr.ssl_request()[..31]).is_none());
    }

    #[test]
    fn parses_pymysql_style_response() {
        // SECURE_CONNECTION with a one-byte length, no lenenc, no attributes.
        let mut p = Vec::new();
        let c = caps::PROTOCOL_41 | caps::SECURE_CONNECTION | caps::PLUGIN_AUTH | caps::CONNECT_WITH_DB;
        p.extend_from_slice(&c.to_le_bytes());
        p.extend_from_slice(&16777216u32.to_le_bytes());
        p.push(33);
        p.extend_from_slice(&[0; 23]);
        p.extend_from_slice(b"app\0");
        p.push(3);
        p.extend_from_slice(b"xyz");
        p.extend_from_slice(b"db1\0caching_sha2_password\0");
        let hr = HandshakeResponse::parse(&p).unwrap();
        assert_eq!(hr.user, "app");
        assert_eq!(hr.auth_response, b"xyz");
        assert_eq!(hr.database.as_deref(), Some("db1"));
        assert_eq!(hr.auth_plugin.as_deref(), Some("caching_sha2_password"));
    }

    #[test]
    fn rejects_truncated_and_old_clients() {
        assert_eq!(HandshakeResponse::parse(&[0; 3]), Err(ProtocolError::Truncated("capabilities")));
        assert_eq!(HandshakeResponse::parse(&[0; 40]), Err(ProtocolError::OldClient));
        let mut p = (caps::PROTOCOL_41 | caps::SECURE_CONNECTION).to_le_bytes().to_vec();
        p.extend_from_slice(&[0; 28]);
        p.extend_from_slice(b"u\0");
        p.push(20); // claims 20 bytes of auth data, has none
        assert!(HandshakeResponse::parse(&p).is_err());
    }

    #[test]
    fn auth_switch_roundtrip() {
        let s = AuthSwitch { plugin: "caching_sha2_password".into(), data: b"01234567890123456789".to_vec() };
        let mut out = Vec::new();
        s.write(&mut out, 2);
        assert_eq!(out[3], 2);
        assert_eq!(AuthSwitch::parse(&out[4..]).unwrap(), s);
    }

    #[test]
    fn change_user_parse() {
        let mut body = b"bob\0".to_vec();
        body.push(2);
        body.extend_from_slice(b"pw");
        body.extend_from_slice(b"shop\0");
        body.extend_from_slice(&45u16.to_le_bytes());
        body.extend_from_slice(b"mysql_native_password\0");
        let cu = ChangeUser::parse(&body, caps::SECURE_CONNECTION | caps::PLUGIN_AUTH).unwrap();
        assert_eq!(cu.user, "bob");
        assert_eq!(cu.auth_response, b"pw");
        assert_eq!(cu.database.as_deref(), Some("shop"));
        assert_eq!(cu.charset, Some(45));
        assert_eq!(cu.auth_plugin.as_deref(), Some("mysql_native_password"));
    }
}
