//! The login exchange with a client, COM_CHANGE_USER, and opening the backend connection
//! for the authenticated user.

use std::time::Duration;

use super::{Session, SessionError};
use crate::net::{read_packet, Connector, PacketReadError, Transport};

use crate::protocol::code::{self, Code};
use crate::protocol::handshake::{AuthSwitch, ChangeUser, Greeting, HandshakeResponse, SSL_REQUEST_LEN};
use crate::protocol::ok::write_ok;
use crate::protocol::packet::write_packet;
use crate::protocol::{auth, caps, status};
use crate::router::statement::pin;
use crate::status::Slot;

/// Charset announced in the greeting: utf8mb4_general_ci.
const GREETING_CHARSET: u8 = 45;

/// What a client proved, before limits and the backend are checked.
struct Proven {
    user: usize,
    next_seq: u8,
}

impl<C: Transport, N: Connector> Session<'_, C, N> {
    /// Greets the client, authenticates it, opens its backend connection, answers OK.
    pub(super) async fn login(&mut self) -> Result<(), SessionError> {
        let p = &self.config.proxy;
        let timeout = Some(Duration::from_millis(p.auth_timeout_ms.max(1)));
        Greeting {
            server_version: p.server_version.clone(),
            connection_id: self.conn_id,
            scramble: self.scramble.to_vec(),
            capabilities: caps::PROXY_SERVER,
            charset: GREETING_CHARSET,
            status: status::AUTOCOMMIT,
            auth_plugin: auth::NATIVE.to_string(),
        }
        .write(&mut self.out);
        self.flush().await?;

        let (seq, payload) = self.read_login_packet(0, timeout).await?;
        if payload.len() == SSL_REQUEST_LEN {
            let msg = "Bad handshake: the client asked for TLS, which corelay does not offer on this port";
            return self.refuse_login(seq.wrapping_add(1), code::HANDSHAKE_ERROR, msg.into()).await;
        }
        let hr = match HandshakeResponse::parse(&payload) {
            Ok(hr) => hr,
            Err(e) => {
                let msg = format!("Bad handshake: {e}");
                return self.refuse_login(seq.wrapping_add(1), code::HANDSHAKE_ERROR, msg).await;
            }
        };
        self.caps = hr.capabilities & caps::PROXY_SERVER;
        self.charset = hr.charset;
        let proven = self
            .authenticate(&hr.user, hr.auth_plugin.as_deref(), hr.auth_response, seq.wrapping_add(1), timeout)
            .await?;
        self.check_user_limit(proven.user, proven.next_seq).await?;
        let db_user = &self.config.db_users[self.config.users[proven.user].db_user];
        let database = hr.database.or_else(|| db_user.default_db.clone());
        let seq = self.start_session(proven.user, database, self.charset, proven.next_seq).await?;
        self.counted.set_user(Some(proven.user));
        self.user = Some(proven.user);
        self.finish_auth(proven.user, seq).await
    }

    /// Reads one packet of the login exchange, turning timeouts and oversized packets into
    /// the errors a client should see.
    async fn read_login_packet(
        &mut self,
        last_seq: u8,
        timeout: Option<Duration>,
    ) -> Result<(u8, Vec<u8>), SessionError> {
        match read_packet(&mut self.client, &mut self.cbuf, 1 << 16, timeout).await {
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

    /// Checks a client's credentials for `name`, switching it to the user's plugin first if
    /// needed. On success returns the user and the next sequence id to send.
    async fn authenticate(
        &mut self,
        name: &str,
        client_plugin: Option<&str>,
        mut proof: Vec<u8>,
        mut seq: u8,
        timeout: Option<Duration>,
    ) -> Result<Proven, SessionError> {
        let ip = crate::config::canonical_ip(self.peer.ip());
        let config = self.config.clone();
        let denied = |using: bool| {
            format!("Access denied for user '{name}'@'{ip}' (using password: {})", if using { "YES" } else { "NO" })
        };
        let Some((idx, user)) = config.user(name) else {
            return self.refuse_login(seq, code::ACCESS_DENIED, denied(!proof.is_empty())).await;
        };
        if !user.allows(ip) {
            let msg =
                format!("Host '{ip}' is not allowed to connect to corelay as '{name}' (see the user's allow list)");
            return self.refuse_login(seq, code::HOST_NOT_PRIVILEGED, msg).await;
        }
        let plugin = user.auth.name();
        if client_plugin.unwrap_or(auth::NATIVE) != plugin {
            self.out.clear();
            AuthSwitch { plugin: plugin.to_string(), data: self.scramble.to_vec() }.write(&mut self.out, seq);
            self.flush().await?;
            let (s, p) = self.read_login_packet(seq, timeout).await?;
            proof = p;
            seq = s.wrapping_add(1);
        }
        if !auth::verify(plugin, user.password.as_bytes(), &self.scramble, &proof) {
            return self.refuse_login(seq, code::ACCESS_DENIED, denied(!proof.is_empty())).await;
        }
        Ok(Proven { user: idx, next_seq: seq })
    }

    async fn check_user_limit(&mut self, user: usize, seq: u8) -> Result<(), SessionError> {
        let u = &self.config.users[user];
        let (limit, name) = (u.max_connections, u.name.clone());
        if self.shard.status.user_connections(user) >= u64::from(limit) {
            let msg = format!("User '{name}' has reached the max connection limit ({limit}) of corelay");
            Slot::add(&self.shard.slot().clients_rejected, 1);
            self.send_err(seq, code::TOO_MANY_USER_CONNECTIONS, &msg).await;
            return Err(SessionError::LoginRefused(msg));
        }
        Ok(())
    }

    /// Sends the caching_sha2 fast-path marker where needed, then OK.
    async fn finish_auth(&mut self, user: usize, mut seq: u8) -> Result<(), SessionError> {
        let u = &self.config.users[user];
        self.out.clear();
        if u.auth == crate::config::AuthPlugin::CachingSha2 && !u.password.is_empty() {
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
        let timeout = Some(Duration::from_millis(self.config.proxy.auth_timeout_ms.max(1)));
        let cu = match ChangeUser::parse(payload.get(1..).unwrap_or_default(), self.caps) {
            Ok(cu) => cu,
            Err(e) => {
                let msg = format!("Bad COM_CHANGE_USER packet: {e}");
                return self.refuse_login(seq.wrapping_add(1), code::HANDSHAKE_ERROR, msg).await;
            }
        };
        let proven = self
            .authenticate(&cu.user, cu.auth_plugin.as_deref(), cu.auth_response, seq.wrapping_add(1), timeout)
            .await?;
        if Some(proven.user) != self.user {
            self.check_user_limit(proven.user, proven.next_seq).await?;
        }
        // The old user's connection (reset if it holds state) goes back to the pool.
        self.end_backend().await;
        let charset = cu.charset.map(|c| c as u8).unwrap_or(self.charset);
        self.charset = charset;
        let db_user = &self.config.db_users[self.config.users[proven.user].db_user];
        let database = cu.database.or_else(|| db_user.default_db.clone());
        let seq = self.start_session(proven.user, database, charset, proven.next_seq).await?;
        self.counted.set_user(Some(proven.user));
        self.user = Some(proven.user);
        self.finish_auth(proven.user, seq).await
    }
}
