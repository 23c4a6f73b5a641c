//! TLS, both sides, with rustls (aws-lc-rs): the configurations corelay builds from its keys, and
//! [`TlsLayer`], the record layer over any async byte stream.
//!
//! - [`server_config`] loads `proxy.tls_cert` / `tls_key` (clients and the admin port);
//! - [`client_config`] builds what a backend connection verifies, by a server's `tls` mode;
//! - [`TlsLayer`] reads and writes through one `rustls::Connection`, with its own raw
//!   buffers allocated once per connection: a statement costs no allocation here beyond
//!   rustls' own record buffers.
//!
//! Invariant: ciphertext read from the socket is handed to rustls only when the plaintext
//! it gave before has been read, so rustls' plaintext buffer never refuses input.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
pub use rustls::ServerConfig;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

/// Raw bytes read from the socket at once.
const RAW_READ: usize = 18 * 1024;

/// How to start TLS on a connected stream.
pub enum TlsStart {
    /// corelay is the server (a client or admin connection).
    Server(Arc<ServerConfig>),
    /// corelay is the client (a backend connection), expecting `name`.
    Client(Arc<ClientConfig>, ServerName<'static>),
}

/// What a TLS connection negotiated, as MariaDB's `Ssl_version` / `Ssl_cipher` name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFacts {
    pub version: &'static str,
    pub cipher: String,
}

/// A TLS error, as loading keys or negotiating reports it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

/// aws-lc-rs's suites and key exchanges (post-quantum hybrid included).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The protocol versions from `tls_min_version` ("1.2" or "1.3"; "TLSv1.2" too).
pub fn versions(min: &str) -> Result<&'static [&'static rustls::SupportedProtocolVersion], String> {
    static BOTH: [&rustls::SupportedProtocolVersion; 2] = [&rustls::version::TLS13, &rustls::version::TLS12];
    static ONLY_13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    match min.trim().trim_start_matches("TLSv").trim_start_matches("tlsv") {
        "" | "1.2" => Ok(&BOTH),
        "1.3" => Ok(&ONLY_13),
        other => Err(format!("tls_min_version {other:?}: use \"1.2\" or \"1.3\"")),
    }
}

fn read(path: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(Path::new(path))
        .map_err(|e| TlsError::File { path: path.to_string(), message: format!("cannot read: {e}") })
}

fn certs_in(pem: &[u8], path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_err = |message: String| TlsError::File { path: path.to_string(), message };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(file_err("holds no PEM certificate".into()));
    }
    Ok(certs)
}

fn key_in(pem: &[u8], path: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| TlsError::File { path: path.to_string(), message: format!("no PEM private key read: {e}") })
}

fn certs(path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certs_in(&read(path)?, path)
}

fn key(path: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    key_in(&read(path)?, path)
}

/// The server side (clients and the admin port): the certificate chain and key files.
pub fn server_config(cert: &str, key_file: &str, min_version: &str) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_pem(&read(cert)?, &read(key_file)?, min_version)
}

/// The server side from PEM text (the files' contents).
pub fn server_config_pem(cert: &[u8], key: &[u8], min_version: &str) -> Result<Arc<ServerConfig>, TlsError> {
    let versions = versions(min_version).map_err(|m| TlsError::File { path: "tls_min_version".into(), message: m })?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_single_cert(certs_in(cert, "tls_cert")?, key_in(key, "tls_key")?)?;
    Ok(Arc::new(config))
}

/// How a backend connection uses TLS (`[[cluster.server]] tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendTls {
    /// Never (the default): a server that requires TLS refuses the login.
    #[default]
    Disabled,
    /// When the server offers it, without checking its certificate.
    Preferred,
    /// Always, without checking the certificate: a server without TLS is an error.
    Required,
    /// Always, and the certificate must chain to `tls_ca` and name the server's host.
    Verify,
}

/// The client side for one backend server.
pub fn client_config(
    mode: BackendTls,
    ca: &str,
    cert: &str,
    key_file: &str,
) -> Result<Option<Arc<ClientConfig>>, TlsError> {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_protocol_versions(versions("1.2").unwrap_or(&[]))?;
    let builder = match mode {
        BackendTls::Disabled => return Ok(None),
        BackendTls::Verify => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(ca)? {
                roots.add(c).map_err(|e| TlsError::File { path: ca.to_string(), message: e.to_string() })?;
            }
            builder.with_root_certificates(roots)
        }
        BackendTls::Preferred | BackendTls::Required => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(Unverified(provider())))
        }
    };
    let config = if cert.is_empty() {
        builder.with_no_client_auth()
    } else {
        builder.with_client_auth_cert(certs(cert)?, key(key_file)?)?
    };
    Ok(Some(Arc::new(config)))
}

/// `preferred` and `required`: encrypts, checks the handshake's signatures, but takes any
/// certificate (as the MySQL clients' `--ssl-mode=REQUIRED` do).
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The name a backend's certificate must carry: the host of its address.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string()).map_err(|e| format!("{host:?} is not a TLS server name: {e}"))
}

/// The record layer of one connection.
pub struct TlsLayer {
    conn: rustls::Connection,
    /// Ciphertext read from the socket; `raw[at..end]` not yet given to rustls.
    raw: Box<[u8]>,
    at: usize,
    end: usize,
    /// Ciphertext to write.
    out: Vec<u8>,
}

fn invalid(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}"))
}

impl TlsLayer {
    /// Starts a connection; `early` holds bytes the peer sent already (a ClientHello read
    /// together with the SSLRequest).
    pub fn new(start: TlsStart, early: &[u8]) -> io::Result<TlsLayer> {
        let conn: rustls::Connection = match start {
            TlsStart::Server(config) => rustls::ServerConnection::new(config).map_err(invalid)?.into(),
            TlsStart::Client(config, name) => rustls::ClientConnection::new(config, name).map_err(invalid)?.into(),
        };
        let mut raw = vec![0; RAW_READ.max(early.len())].into_boxed_slice();
        raw[..early.len()].copy_from_slice(early);
        Ok(TlsLayer { conn, raw, at: 0, end: early.len(), out: Vec::new() })
    }

    /// Runs the handshake to its end.
    pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(&mut self, s: &mut S) -> io::Result<()> {
        while self.conn.is_handshaking() {
            self.flush(s).await?;
            if self.conn.is_handshaking() && self.conn.wants_read() && self.feed(s).await? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "TLS: peer closed during the handshake"));
            }
        }
        self.flush(s).await
    }

    /// Reads plaintext: at least one byte, or 0 at the end of the stream.
    pub async fn read<S: AsyncRead + AsyncWrite + Unpin>(&mut self, s: &mut S, dst: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(dst) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: the end, as a plain socket says it.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.feed(s).await? == 0 {
                return Ok(0);
            }
            // Alerts and key updates rustls answers.
            self.flush(s).await?;
        }
    }

    /// Writes all of `src` as records.
    pub async fn write_all<S: AsyncWrite + Unpin>(&mut self, s: &mut S, mut src: &[u8]) -> io::Result<()> {
        while !src.is_empty() {
            let n = self.conn.writer().write(src)?;
            src = &src[n..];
            self.flush(s).await?;
        }
        Ok(())
    }

    /// Gives rustls ciphertext: what is buffered, else one read from the socket. Returns
    /// the bytes given (0: the socket is at its end).
    async fn feed<S: AsyncRead + Unpin>(&mut self, s: &mut S) -> io::Result<usize> {
        if self.at == self.end {
            // (Both set only once the read is done: a read given up half way changes
            // nothing.)
            let n = s.read(&mut self.raw).await?;
            (self.at, self.end) = (0, n);
            if n == 0 {
                // Tells rustls of the end, so a later read says whether it was clean.
                let _ = self.conn.read_tls(&mut io::empty());
                return Ok(0);
            }
        }
        let mut pending = &self.raw[self.at..self.end];
        let before = pending.len();
        self.conn.read_tls(&mut pending)?;
        self.at += before - pending.len();
        self.conn.process_new_packets().map_err(invalid)?;
        Ok(before - pending.len())
    }

    async fn flush<S: AsyncWrite + Unpin>(&mut self, s: &mut S) -> io::Result<()> {
        while self.conn.wants_write() {
            self.out.clear();
            self.conn.write_tls(&mut self.out)?;
            s.write_all(&self.out).await?;
        }
        Ok(())
    }

    /// The negotiated version and cipher, named as MariaDB (OpenSSL) names them.
    pub fn facts(&self) -> Option<TlsFacts> {
        let suite = self.conn.negotiated_cipher_suite()?;
        let version = match suite.version().version {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            _ => "TLSv1.2",
        };
        Some(TlsFacts { version, cipher: openssl_name(suite.suite()) })
    }
}

/// OpenSSL's name of a cipher suite (what `Ssl_cipher` shows on a server).
fn openssl_name(suite: rustls::CipherSuite) -> String {
    use rustls::CipherSuite as S;
    let name = match suite {
        S::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        S::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        S::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-ECDSA-CHACHA20-POLY1305",
        S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        other => return format!("{other:?}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_version_names() {
        assert_eq!(versions("1.2").map(|v| v.len()), Ok(2));
        assert_eq!(versions("TLSv1.3").map(|v| v.len()), Ok(1));
        assert_eq!(versions("").map(|v| v.len()), Ok(2));
        assert!(versions("1.1").is_err());
    }

    #[test]
    fn suites_named_as_openssl_does() {
        assert_eq!(openssl_name(rustls::CipherSuite::TLS13_AES_256_GCM_SHA384), "TLS_AES_256_GCM_SHA384");
        assert_eq!(
            openssl_name(rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
            "ECDHE-RSA-AES128-GCM-SHA256"
        );
    }

    /// An in-memory duplex: reads come from `input` (pending when it is used up), writes
    /// go to `output`.
    pub struct Duplex {
        pub input: Vec<u8>,
        pub at: usize,
        pub output: Vec<u8>,
    }

    impl AsyncRead for Duplex {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let n = buf.len().min(self.input.len() - self.at);
            if n == 0 {
                return std::task::Poll::Pending;
            }
            buf[..n].copy_from_slice(&self.input[self.at..self.at + n]);
            self.at += n;
            std::task::Poll::Ready(Ok(n))
        }
    }

    impl AsyncWrite for Duplex {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            self.output.extend_from_slice(buf);
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// Runs a client and a server layer against each other, passing each side's output to
    /// the other, the ClientHello as `early` bytes (as it arrives with the SSLRequest).
    #[test]
    fn both_layers_handshake_and_carry_data() {
        let server_config = server_config_pem(
            include_bytes!("../../tests/data/tls-cert.pem"),
            include_bytes!("../../tests/data/tls-key.pem"),
            "1.2",
        )
        .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for c in certs_in(include_bytes!("../../tests/data/tls-ca.pem"), "ca").unwrap() {
            roots.add(c).unwrap();
        }
        let client_config = Arc::new(
            ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(versions("1.2").unwrap())
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let name = server_name("localhost").unwrap();
        fn step<F: std::future::Future>(f: F) -> Option<F::Output> {
            futures_lite::future::block_on(futures_lite::future::poll_once(f))
        }
        let mut client = TlsLayer::new(TlsStart::Client(client_config, name), &[]).unwrap();
        let mut to_server = Duplex { input: Vec::new(), at: 0, output: Vec::new() };
        // ClientHello: the client's first flight, then it waits.
        assert!(step(client.handshake(&mut to_server)).is_none());
        let hello = std::mem::take(&mut to_server.output);
        let mut server = TlsLayer::new(TlsStart::Server(server_config), &hello).unwrap();
        let mut to_client = Duplex { input: Vec::new(), at: 0, output: Vec::new() };
        let _ = step(server.handshake(&mut to_client));
        // Back and forth until both are done.
        for _ in 0..4 {
            let mut c_io = Duplex { input: std::mem::take(&mut to_client.output), at: 0, output: Vec::new() };
            if let Some(Err(e)) = step(client.handshake(&mut c_io)) {
                panic!("client: {e}");
            }
            let mut s_io = Duplex { input: c_io.output, at: 0, output: Vec::new() };
            if let Some(Err(e)) = step(server.handshake(&mut s_io)) {
                panic!("server: {e}");
            }
            to_client.output = s_io.output;
        }
        assert!(!client.conn.is_handshaking(), "client");
        assert!(!server.conn.is_handshaking(), "server");
        assert_eq!(server.facts().map(|f| f.version), Some("TLSv1.3"));
        let mut wire = Duplex { input: Vec::new(), at: 0, output: Vec::new() };
        futures_lite::future::block_on(client.write_all(&mut wire, b"SELECT 1")).unwrap();
        assert!(!wire.output.windows(8).any(|w| w == b"SELECT 1"), "encrypted on the wire");
        let mut wire = Duplex { input: wire.output, at: 0, output: Vec::new() };
        let mut got = [0u8; 64];
        let n = futures_lite::future::block_on(server.read(&mut wire, &mut got)).unwrap();
        assert_eq!(&got[..n], b"SELECT 1");
    }

    #[test]
    fn missing_files_are_named() {
        let e = server_config("/nonexistent/cert.pem", "/nonexistent/key.pem", "1.2").err().map(|e| e.to_string());
        assert!(e.is_some_and(|m| m.contains("/nonexistent/cert.pem")));
    }
}
