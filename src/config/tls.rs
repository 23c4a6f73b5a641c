//! The TLS keys: the client-side certificate (`proxy.tls_cert` / `tls_key`) and the RSA
//! key of caching_sha2's exchange (`tls_rsa_key`), loaded when the configuration is; and
//! each server's `tls` mode with its CA and client certificate.
//!
//! A reload whose client-side certificate does not load keeps the running one (logged):
//! a bad file never takes TLS away from new clients. At start it is an error.

use std::sync::Arc;

use rustls::pki_types::ServerName;

use super::validate::Check;
use super::{Config, ConfigError, Proxy, ServerFile};
use crate::net::tls::{self, BackendTls};
use crate::protocol::rsa::RsaKey;

/// A server's TLS, ready for its connections.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub mode: BackendTls,
    pub config: Arc<rustls::ClientConfig>,
    /// What its certificate must name (`verify`): the host of its address.
    pub name: ServerName<'static>,
}

impl Check<'_> {
    /// `proxy.tls_cert`, `tls_key`, `tls_min_version`.
    pub fn client_tls(
        &self,
        p: &Proxy,
        old: Option<&Config>,
    ) -> Result<Option<Arc<rustls::ServerConfig>>, ConfigError> {
        tls::versions(&p.tls_min_version).map_err(|m| self.bad("proxy.tls_min_version", m))?;
        match (p.tls_cert.trim(), p.tls_key.trim()) {
            ("", "") => Ok(None),
            ("", _) => Err(self.bad("proxy.tls_cert", "tls_key is set: set tls_cert to its certificate too")),
            (_, "") => Err(self.bad("proxy.tls_key", "tls_cert is set: set tls_key to its private key too")),
            (cert, key) => match tls::server_config(cert, key, &p.tls_min_version) {
                Ok(c) => Ok(Some(c)),
                Err(e) => match old.and_then(|o| o.tls.clone()) {
                    Some(running) => {
                        tracing::warn!("proxy.tls_cert: {e}; new clients keep the running certificate");
                        Ok(Some(running))
                    }
                    None => Err(self.bad("proxy.tls_cert", e.to_string())),
                },
            },
        }
    }

    /// `proxy.tls_rsa_key`: a bad file on reload keeps the running key.
    pub fn rsa_key(&self, p: &Proxy, old: Option<&Config>) -> Result<Option<Arc<RsaKey>>, ConfigError> {
        let path = p.tls_rsa_key.trim();
        if path.is_empty() {
            return Ok(None);
        }
        let loaded = std::fs::read(path)
            .map_err(|e| format!("{path}: cannot read: {e}"))
            .and_then(|pem| RsaKey::from_pem(&pem).map_err(|e| format!("{path}: {e}")));
        match loaded {
            Ok(k) => Ok(Some(Arc::new(k))),
            Err(e) => match old.and_then(|o| o.rsa.clone()) {
                Some(running) => {
                    tracing::warn!("proxy.tls_rsa_key: {e}; keeping the running key");
                    Ok(Some(running))
                }
                None => Err(self.bad("proxy.tls_rsa_key", e)),
            },
        }
    }

    /// A server's `tls`, `tls_ca`, `tls_cert`, `tls_key` (keys under `skey`).
    pub fn server_tls(&self, skey: &str, s: &ServerFile) -> Result<Option<ServerTls>, ConfigError> {
        if s.tls == BackendTls::Verify && s.tls_ca.trim().is_empty() {
            return Err(self.bad(
                format!("{skey}.tls_ca"),
                "tls = \"verify\" needs the CA certificate(s) the server's certificate chains to",
            ));
        }
        if s.tls_cert.trim().is_empty() != s.tls_key.trim().is_empty() {
            return Err(self.bad(format!("{skey}.tls_cert"), "set both tls_cert and tls_key, or neither"));
        }
        let config = tls::client_config(s.tls, s.tls_ca.trim(), s.tls_cert.trim(), s.tls_key.trim())
            .map_err(|e| self.bad(format!("{skey}.tls"), e.to_string()))?;
        let Some(config) = config else { return Ok(None) };
        let host = host_of(&s.address);
        let name = tls::server_name(host).map_err(|m| self.bad(format!("{skey}.address"), m))?;
        Ok(Some(ServerTls { mode: s.tls, config, name }))
    }
}

/// The host part of `host:port` (brackets of an IPv6 address removed).
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("db1.example:3306"), "db1.example");
        assert_eq!(host_of("127.0.0.1:3306"), "127.0.0.1");
        assert_eq!(host_of("[::1]:3306"), "::1");
    }
}
