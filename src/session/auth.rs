//! The login exchange with a client, COM_CHANGE_USER, and opening the backend connection
//! for the authenticated user.

use std::time::{Duration, Instant};

use super::{Session, SessionError};
use crate::config::{AuthPlugin, User};
use crate::net::tls::TlsStart;
use crate::net::{read_packet, Connector, PacketReadError, Transport};

use crate::protocol::code::{self, Code};
use crate::protocol::credential::Credential;
use crate::protocol::handshake::{AuthSwitch, ChangeUser, Greeting, HandshakeResponse, SslRequest};
use crate::protocol::ok::write_ok;
use crate::protocol::packet::write_packet;
use crate::protocol::{auth, caps, status};
use crate::router::statement::pin;
use crate::status::guard::Verdict;
use crate::status::Slot;

/// Charset announced in the greeting: utf8mb4_general_ci.
const GREETING_CHARSET: u8 = 45;

/// What a client proved, before limits and the backend are checked.
struct Proven {
    user: usize,
    next_seq: u8,
    /// caching_sha2_password's fast path succeeded: say so before the OK.
    fast_auth_marker: bool,
}

/// What an unknown user's proof is checked against, so that it costs what a known one
/// does.
fn nobody() -> &'static Credential {
    static NOBODY: std::sync::OnceLock<Credential> = std::sync::OnceLock::new();
    NOBODY.get_or_init(|| Credential::plain(&auth::new_scramble()))
}

impl<C: Transport, N: Connector> Session<'_, C, N> {
    /// Greets the client, authenticates it, opens its backend connection, answers OK. The
    /// exchange with the client, TLS handshake included, has `proxy.auth_timeout_ms` in
    /// all: every read waits only for what is left of it, and a client still not done at
    /// the end is closed.
    pub(super) async fn login(&mut self) -> Result<(), SessionError> {
        let limit = Duration::from_millis(self.config.proxy.auth_timeout_ms.max(1));
        let deadline = Instant::now() + limit;
        let shard = self.shard;
        let timer = async move {
            shard.connector.sleep(limit + Duration::from_millis(50)).await;
            Err(SessionError::LoginRefused("login not completed within proxy.auth_timeout_ms".into()))
        };
        let proven = futures_lite::future::or(self.prove(deadline), timer).await;
        // Proven (or refused): no longer one of the address's unfinished logins.
        self.login_slot = None;
        let (proven, database) = proven?;
        self.claim_user(proven.user, proven.next_seq).await?;
        self.hook_auth(proven.user, database.as_deref(), proven.next_seq).await?;
        let db_user = &self.config.db_users[self.config.users[proven.user].db_user];
        let database = database.or_else(|| db_user.default_db.clone());
        let seq = self.start_session(proven.user, database, self.charset, proven.next_seq).await?;
        self.user = Some(proven.user);
        self.finish_auth(&proven, seq).await
    }

    /// The client's part of the login: greeting, TLS when asked, the handshake response
    /// and the proof. Returns who it proved to be and the schema it asked for.
    async fn prove(&mut self, deadline: Instant) -> Result<(Proven, Option<String>), SessionError> {
        let p = &self.config.proxy;
        let tls = self.config.tls.clone();
        let ssl = if tls.is_some() { caps::SSL } else { 0 };
        // Offering MariaDB's extended capabilities means clearing CLIENT_MYSQL, as a
        // MariaDB server's greeting does.
        let (mysql, ext) = if p.cache_metadata { (0, caps::ext::CACHE_METADATA) } else { (caps::LONG_PASSWORD, 0) };
        Greeting {
            server_version: p.server_version.clone(),
            connection_id: self.conn_id,
            scramble: self.scramble.to_vec(),
            capabilities: (caps::PROXY_SERVER & !caps::LONG_PASSWORD) | mysql | ssl,
            mariadb_capabilities: ext,
            charset: GREETING_CHARSET,
            status: status::AUTOCOMMIT,
            auth_plugin: auth::NATIVE.to_string(),
        }
        .write(&mut self.out);
        self.flush().await?;

        let (mut seq, mut payload) = self.read_login_packet(0, deadline).await?;
        if SslRequest::parse(&payload).is_some() {
            let Some(tls) = tls else {
                let msg = "Bad handshake: the client asked for TLS, which this corelay does not offer (set proxy.tls_cert and proxy.tls_key)";
                return self.refuse_login(seq.wrapping_add(1), code::HANDSHAKE_ERROR, msg.into()).await;
            };
            self.start_tls(tls, deadline).await?;
            (seq, payload) = self.read_login_packet(seq, deadline).await?;
        }
        let hr = match HandshakeResponse::parse(&payload) {
            Ok(hr) => hr,
            Err(e) => {
                let msg = format!("Bad handshake: {e}");
                return self.refuse_login(seq.wrapping_add(1), code::HANDSHAKE_ERROR, msg).await;
            }
        };
        self.caps = hr.capabilities & caps::PROXY_SERVER;
        self.cache_metadata = ext & hr.mariadb_capabilities & caps::ext::CACHE_METADATA != 0;
        self.charset = hr.charset;
        let proven = self
            .authenticate(&hr.user, hr.auth_plugin.as_deref(), hr.auth_response, seq.wrapping_add(1), deadline)
            .await?;
        Ok((proven, hr.database))
    }

    /// Switches the client connection to TLS (after its SSLRequest).
    async fn start_tls(
        &mut self,
        tls: std::sync::Arc<rustls::ServerConfig>,
        deadline: Instant,
    ) -> Result<(), SessionError> {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let slot = self.shard.slot();
        match crate::net::upgrade(&mut self.client, &mut self.cbuf, TlsStart::Server(tls), Some(left)).await {
            Ok(()) => {
                Slot::add(&slot.tls_handshakes, 1);
                Ok(())
            }
            Err(e) => {
                Slot::add(&slot.tls_failures, 1);
                Slot::add(&slot.auth_failures, 1);
                Err(SessionError::LoginRefused(format!("TLS handshake failed: {e}")))
            }
        }
    }

    /// Reads one packet of the login exchange before `deadline`, turning timeouts and
    /// oversized packets into the errors a client should see.
    async fn read_login_packet(&mut self, last_seq: u8, deadline: Instant) -> Result<(u8, Vec<u8>), SessionError> {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        match read_packet(&mut self.client, &mut self.cbuf, 1 << 16, Some(left)).await {
            Ok(p) => Ok(p),
            Err(PacketReadError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                let msg = "Got timeout reading communication packets: login not completed within proxy.auth_timeout_ms";
                self.send_err(last_seq.wrapping_add(1), code::NET_READ_INTERRUPTED, msg).await;
                Err(SessionError::LoginRefused("login timed out".into()))
            }
            Err(PacketReadError::Io(e)) => Err(SessionError::ClientGone(e)),
            Err(PacketReadError::TooLarge(_)) => {
                let msg = "Bad handshake: login packet larger than 64 KiB";
                self.send_err(last_seq.wrapping_add(1), code::HANDSHAKE_ERROR, msg).await;
                Err(SessionError::LoginRefused(msg.into()))
            }
        }
    }

    async fn refuse_login<T>(&mut self, seq: u8, code: Code, message: String) -> Result<T, SessionError> {
        Slot::add(&self.shard.slot().auth_failures, 1);
        self.send_err(seq, code, &message).await;
        Err(SessionError::LoginRefused(message))
    }

    /// A wrong user, password or address: counted against the client's address (see
    /// `proxy.login_failures_before_delay`).
    async fn login_failed<T>(&mut self, seq: u8, message: String) -> Result<T, SessionError> {
        let ip = crate::config::canonical_ip(self.peer.ip());
        self.shard.status.guard(self.shard.index).failed(ip, crate::util::time::unix_ms());
        self.refuse_login(seq, code::ACCESS_DENIED, message).await
    }

    /// Checks a client's credentials for `name`, switching it to the user's plugin first if
    /// needed. On success returns the user and the next sequence id to send. An unknown
    /// user and a user not allowed from the client's address get the same answer, after
    /// the same work.
    async fn authenticate(
        &mut self,
        name: &str,
        client_plugin: Option<&str>,
        mut proof: Vec<u8>,
        mut seq: u8,
        deadline: Instant,
    ) -> Result<Proven, SessionError> {
        let ip = crate::config::canonical_ip(self.peer.ip());
        let config = self.config.clone();
        self.throttle(ip, seq).await?;
        let denied = |using: bool| {
            format!("Access denied for user '{name}'@'{ip}' (using password: {})", if using { "YES" } else { "NO" })
        };
        let found = config.user(name).filter(|(_, u)| u.allows(ip));
        let plugin = found.map_or(auth::NATIVE, |(_, u)| u.auth.name());
        if client_plugin.unwrap_or(auth::NATIVE) != plugin {
            self.out.clear();
            AuthSwitch { plugin: plugin.to_string(), data: self.scramble.to_vec() }.write(&mut self.out, seq);
            self.flush().await?;
            let (s, p) = self.read_login_packet(seq, deadline).await?;
            proof = p;
            seq = s.wrapping_add(1);
        }
        let Some((idx, user)) = found else {
            let _ = nobody().check_native(&self.scramble, &proof);
            return self.login_failed(seq, denied(!proof.is_empty())).await;
        };
        let using = !proof.is_empty();
        let fast_auth_marker = match user.auth {
            AuthPlugin::Native => {
                if !user.credential.check_native(&self.scramble, &proof) {
                    return self.login_failed(seq, denied(using)).await;
                }
                false
            }
            AuthPlugin::CachingSha2 => {
                let cached = self.shard.sha2_cached(user.credential.cache_key());
                if user.credential.has_fast_path(cached) {
                    if !user.credential.check_sha2_fast(cached, &self.scramble, &proof) {
                        return self.login_failed(seq, denied(using)).await;
                    }
                    !user.credential.empty
                } else {
                    seq = self.full_authentication(user, seq, deadline).await?;
                    false
                }
            }
        };
        if user.require_tls && self.client.tls().is_none() {
            let msg = format!(
                "Access denied for user '{name}'@'{ip}': this user must connect over TLS (require_tls = true); connect with --ssl"
            );
            return self.refuse_login(seq, code::ACCESS_DENIED, msg).await;
        }
        self.shard.status.guard(self.shard.index).succeeded(
            ip,
            crate::util::time::unix_ms(),
            config.proxy.login_policy().forget_ms(),
        );
        Ok(Proven { user: idx, next_seq: seq, fast_auth_marker })
    }

    /// Delays or refuses a login from an address with recent failures.
    async fn throttle(&mut self, ip: std::net::IpAddr, seq: u8) -> Result<(), SessionError> {
        let p = &self.config.proxy;
        let standing = self.shard.status.login_standing(ip);
        match standing.verdict(&p.login_policy(), crate::util::time::unix_ms()) {
            Verdict::Go => Ok(()),
            Verdict::Delay(d) => {
                Slot::add(&self.shard.slot().logins_delayed, 1);
                self.shard.connector.sleep(d).await;
                Ok(())
            }
            Verdict::Blocked(left) => {
                Slot::add(&self.shard.slot().logins_blocked, 1);
                let msg = super::gate::blocked(ip, standing.failures, left);
                self.refuse_login(seq, code::HOST_IS_BLOCKED, msg).await
            }
        }
    }

    /// caching_sha2_password's full authentication, for a user whose password corelay holds
    /// only in MySQL's stored form and whose fast-path hash this shard has not seen yet: the
    /// client sends its password, in the clear over TLS, else encrypted with corelay's RSA
    /// public key (which it may ask for first). Returns the next sequence id.
    async fn full_authentication(&mut self, user: &User, seq: u8, deadline: Instant) -> Result<u8, SessionError> {
        const PERFORM_FULL_AUTHENTICATION: [u8; 2] = [0x01, 0x04];
        const REQUEST_PUBLIC_KEY: [u8; 1] = [0x02];
        self.out.clear();
        write_packet(&mut self.out, seq, &PERFORM_FULL_AUTHENTICATION);
        self.flush().await?;
        let (mut s, mut payload) = self.read_login_packet(seq, deadline).await?;
        let password = if self.client.tls().is_some() {
            payload.strip_suffix(&[0]).unwrap_or(&payload).to_vec()
        } else {
            let Some(rsa) = self.config.rsa.clone().or_else(crate::protocol::rsa::generated) else {
                let msg = format!(
                    "Access denied for user '{}': caching_sha2_password needs this password sent once over TLS (corelay holds only its hash): connect with --ssl",
                    user.name
                );
                return self.refuse_login(s.wrapping_add(1), code::ACCESS_DENIED, msg).await;
            };
            if payload == REQUEST_PUBLIC_KEY {
                let mut more = vec![0x01];
                more.extend_from_slice(rsa.public_pem().as_bytes());
                self.out.clear();
                write_packet(&mut self.out, s.wrapping_add(1), &more);
                self.flush().await?;
                (s, payload) = self.read_login_packet(s.wrapping_add(1), deadline).await?;
            }
            rsa.decrypt_password(&payload, &self.scramble).unwrap_or_default()
        };
        let next = s.wrapping_add(1);
        match user.credential.check_cleartext(&password) {
            Some(stage2) if !password.is_empty() || user.credential.empty => {
                self.shard.cache_sha2(user.credential.cache_key(), stage2);
                Ok(next)
            }
            _ => {
                let ip = crate::config::canonical_ip(self.peer.ip());
                self.login_failed(next, format!("Access denied for user '{}'@'{ip}' (using password: YES)", user.name))
                    .await
            }
        }
    }

    /// Counts the session as `user`'s, then checks the user's limit: two logins at once
    /// cannot both pass it.
    async fn claim_user(&mut self, user: usize, seq: u8) -> Result<(), SessionError> {
        self.counted.set_user(Some(user));
        let u = &self.config.users[user];
        let (limit, name) = (u.max_connections, u.name.clone());
        if self.shard.status.user_connections(user) > u64::from(limit) {
            self.counted.set_user(None);
            let msg = format!("User '{name}' has reached the max connection limit ({limit}) of corelay");
            Slot::add(&self.shard.slot().clients_rejected, 1);
            self.send_err(seq, code::TOO_MANY_USER_CONNECTIONS, &msg).await;
            return Err(SessionError::LoginRefused(msg));
        }
        Ok(())
    }

    /// Sends the caching_sha2 fast-path marker where needed, then OK.
    async fn finish_auth(&mut self, proven: &Proven, mut seq: u8) -> Result<(), SessionError> {
        self.out.clear();
        if proven.fast_auth_marker {
            seq = write_packet(&mut self.out, seq, &[0x01, 0x03]);
        }
        write_ok(&mut self.out, seq, 0, 0, status::AUTOCOMMIT);
        self.flush().await
    }

    /// Starts the session of `user` in `database`: borrows a connection (which checks
    /// that the server is reachable and the schema exists) and gives it back. On failure
    /// tells the client (with sequence id `seq`) and returns the error; on success `seq`.
    pub(super) async fn start_session(
        &mut self,
        user: usize,
        database: Option<String>,
        charset: u8,
        seq: u8,
    ) -> Result<u8, SessionError> {
        self.key = Some(self.key_for(user, charset));
        self.held.route = None;
        self.held.side = None;
        self.held.fallback_read = false;
        self.recorded.schema = database;
        self.recorded.reset();
        self.recorded.pins &= !pin::NO_MULTIPLEX;
        if !self.config.users[user].multiplex {
            self.recorded.pins |= pin::NO_MULTIPLEX;
        }
        if let Err(e) = self.ensure_backend().await {
            let reason = format!("{e:?}");
            self.report_acquire_error(seq, e).await;
            self.drop_backend();
            return Err(SessionError::LoginRefused(reason));
        }
        self.release_if_unpinned();
        Ok(seq)
    }

    /// COM_CHANGE_USER: authenticate the new user here, then log the backend connection in
    /// again as that user's db user. A failure ends the session, as it does on a server.
    pub(super) async fn change_user(&mut self, seq: u8, payload: &[u8]) -> Result<(), SessionError> {
        let deadline = Instant::now() + Duration::from_millis(self.config.proxy.auth_timeout_ms.max(1));
        let cu = match ChangeUser::parse(payload.get(1..).unwrap_or_default(), self.caps) {
            Ok(cu) => cu,
            Err(e) => {
                let msg = format!("Bad COM_CHANGE_USER packet: {e}");
                return self.refuse_login(seq.wrapping_add(1), code::HANDSHAKE_ERROR, msg).await;
            }
        };
        let proven = self
            .authenticate(&cu.user, cu.auth_plugin.as_deref(), cu.auth_response, seq.wrapping_add(1), deadline)
            .await?;
        if Some(proven.user) != self.user {
            self.claim_user(proven.user, proven.next_seq).await?;
        }
        // The old user's connection (reset if it holds state) goes back to the pool.
        self.end_backend().await;
        let charset = cu.charset.map(|c| c as u8).unwrap_or(self.charset);
        self.charset = charset;
        let db_user = &self.config.db_users[self.config.users[proven.user].db_user];
        let database = cu.database.or_else(|| db_user.default_db.clone());
        let seq = self.start_session(proven.user, database, charset, proven.next_seq).await?;
        self.user = Some(proven.user);
        self.finish_auth(&proven, seq).await
    }
}
