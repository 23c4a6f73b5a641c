//! `SHOW [SESSION] STATUS LIKE 'Ssl_cipher'` (and `'Ssl_version'`): what the client's own
//! connection to corelay negotiated, as a server answers it for a direct client. (Through
//! corelay the server would describe its connection to corelay instead; a query of
//! `information_schema.SESSION_STATUS` still asks the server.)

use super::super::error::Step;
use super::super::Session;
use crate::net::{Connector, Transport};
use crate::protocol::resultset::ResultSet;

/// Which status variable a statement asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsStatus {
    Cipher,
    Version,
}

/// Recognises `SHOW [SESSION|LOCAL] STATUS LIKE 'Ssl_cipher'` or `'Ssl_version'`.
pub fn parse(sql: &[u8]) -> Option<TlsStatus> {
    let text = std::str::from_utf8(sql).ok()?;
    let w: Vec<String> = text.trim().trim_end_matches(';').split_whitespace().map(|w| w.to_ascii_uppercase()).collect();
    let rest = match w.as_slice() {
        [show, status, rest @ ..] if show == "SHOW" && status == "STATUS" => rest,
        [show, scope, status, rest @ ..]
            if show == "SHOW" && (scope == "SESSION" || scope == "LOCAL") && status == "STATUS" =>
        {
            rest
        }
        _ => return None,
    };
    match rest {
        [like, name] if like == "LIKE" => match name.trim_matches(|c| c == '\'' || c == '"') {
            "SSL_CIPHER" => Some(TlsStatus::Cipher),
            "SSL_VERSION" => Some(TlsStatus::Version),
            _ => None,
        },
        _ => None,
    }
}

impl<C: Transport, N: Connector> Session<'_, C, N> {
    /// Answers from the client connection's TLS (empty values without TLS, as a server's).
    pub(in crate::session) async fn tls_status(&mut self, seq: u8, which: TlsStatus) -> Step {
        let facts = self.client.tls();
        let (name, value) = match which {
            TlsStatus::Cipher => ("Ssl_cipher", facts.map(|f| f.cipher).unwrap_or_default()),
            TlsStatus::Version => ("Ssl_version", facts.map(|f| f.version.to_string()).unwrap_or_default()),
        };
        let mut rs = ResultSet::new(&["Variable_name", "Value"]);
        rs.push([name, value.as_str()]);
        self.send_rows(seq, &rs).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_two_exact_forms() {
        assert_eq!(parse(b"SHOW STATUS LIKE 'Ssl_cipher'"), Some(TlsStatus::Cipher));
        assert_eq!(parse(b"show session status like \"ssl_version\";"), Some(TlsStatus::Version));
        assert_eq!(parse(b"SHOW GLOBAL STATUS LIKE 'Ssl_cipher'"), None);
        assert_eq!(parse(b"SHOW STATUS LIKE 'Ssl%'"), None);
        assert_eq!(parse(b"SHOW STATUS"), None);
    }
}
