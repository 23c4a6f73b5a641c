//! One connection to the admin port: a MySQL-protocol login checked against the
//! `[[admin_user]]` entries and `proxy.admin_allow`, then admin statements answered from
//! the status region. Any MySQL client works (`mariadb -P6032 -uadmin -p`).
//!
//! Invariants: nothing here touches backends or the query path; every failure ends this
//! connection only, after an ERR packet where the protocol allows one; every read has a
//! timeout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Host, Reply, View};
use crate::config::AdminRole;
use crate::net::tls::TlsStart;
use crate::net::{read_packet, Buffer, PacketReadError, Transport};
use crate::protocol::code::{self, Code};
use crate::protocol::err::write_err;
use crate::protocol::handshake::{AuthSwitch, Greeting, HandshakeResponse, SslRequest};
use crate::protocol::ok::{write_ok, write_ok_info};
use crate::protocol::resultset::Framing;
use crate::protocol::resultset::ResultSet;
use crate::protocol::{auth, caps, command, status};
use crate::session::gate::LoginSlot;
use crate::status::guard::Verdict;
use crate::util::time::unix_ms;

/// Largest admin statement accepted.
const MAX_PACKET: usize = 1 << 16;
/// An admin client idle this long is disconnected.
const IDLE: Duration = Duration::from_secs(3600);

/// Serves one admin client until it quits, fails or idles out.
pub async fn serve<C: Transport, H: Host>(host: &H, mut client: C, peer: SocketAddr, conn_id: u32) {
    let config = host.config();
    let status = host.status();
    let Some(login) = LoginSlot::take(status, host.shard(), &config.proxy, &mut client, peer.ip(), true).await else {
        return;
    };
    let mut s = AdminSession {
        client,
        buf: Buffer::new(),
        out: Vec::new(),
        deprecate_eof: false,
        user: String::new(),
        role: AdminRole::Read,
        peer,
    };
    let view = View { config: &config, status, balance: None };
    let limit = Duration::from_millis(config.proxy.auth_timeout_ms.max(1));
    let timer = async {
        host.sleep(limit + Duration::from_millis(50)).await;
        Err("login not completed within proxy.auth_timeout_ms".to_string())
    };
    let logged_in = futures_lite::future::or(s.login(host, &view, peer, conn_id), timer).await;
    drop(login);
    if let Err(e) = logged_in {
        tracing::info!(peer = %peer, "admin login failed: {e}");
        return;
    }
    tracing::info!(peer = %peer, user = %s.user, role = ?s.role, "admin session opened");
    s.command_loop(host).await;
}

/// How long RELOAD waits for the master, then for the shards to switch.
const RELOAD_WAIT: Duration = Duration::from_secs(30);
const SHARDS_WAIT: Duration = Duration::from_secs(5);

/// Waits for the master's answer to reload request `n`, then for every running shard to
/// switch to the new version.
async fn await_reload<H: Host>(host: &H, n: u64) -> Reply {
    use crate::status::reload::Outcome;
    use std::sync::atomic::Ordering::Relaxed;
    let status = host.status();
    let started = std::time::Instant::now();
    let message = loop {
        match status.reload_outcome(n) {
            Outcome::Pending if started.elapsed() < RELOAD_WAIT => host.sleep(Duration::from_millis(20)).await,
            Outcome::Pending => {
                return Reply::Err(
                    code::LOCK_WAIT_TIMEOUT,
                    "RELOAD: the master did not answer within 30 s; see its log".into(),
                )
            }
            Outcome::Refused(m) => return Reply::Err(code::UNKNOWN_ERROR, m),
            Outcome::Done(m) => break m,
        }
    };
    let version = status.config_version();
    let behind = || {
        (0..status.shards())
            .filter(|&k| {
                let s = status.slot(k);
                s.given_up.load(Relaxed) == 0 && s.pid.load(Relaxed) != 0 && s.config_version.load(Relaxed) < version
            })
            .count()
    };
    let waiting = std::time::Instant::now();
    while behind() > 0 && waiting.elapsed() < SHARDS_WAIT {
        host.sleep(Duration::from_millis(20)).await;
    }
    match behind() {
        0 => Reply::Ok(message),
        n => Reply::Ok(format!("{message} ({n} shard(s) have not switched yet; see SHOW SHARDS)")),
    }
}

struct AdminSession<C> {
    client: C,
    buf: Buffer,
    out: Vec<u8>,
    deprecate_eof: bool,
    /// Who logged in, with what role, from where.
    user: String,
    role: AdminRole,
    peer: SocketAddr,
}

impl<C: Transport> AdminSession<C> {
    async fn read(&mut self, timeout: Duration) -> Result<(u8, Vec<u8>), String> {
        match read_packet(&mut self.client, &mut self.buf, MAX_PACKET, Some(timeout)).await {
            Ok(p) => Ok(p),
            Err(PacketReadError::TooLarge(n)) => {
                self.err(0, code::NET_PACKET_TOO_LARGE, &format!("admin packet of {n} bytes is too large")).await;
                Err("packet too large".into())
            }
            Err(PacketReadError::Io(e)) => Err(e.to_string()),
        }
    }

    async fn flush(&mut self) -> Result<(), String> {
        let r = self.client.write_all(&self.out).await;
        self.out.clear();
        r.map_err(|e| e.to_string())
    }

    async fn err(&mut self, seq: u8, code: Code, message: &str) {
        self.out.clear();
        write_err(&mut self.out, seq, code, message);
        let _ = self.flush().await;
    }

    /// The login, all of it within `proxy.auth_timeout_ms`: greeting, TLS when the client
    /// asks (with the proxy port's certificate), native password check. Failed logins
    /// count against the address as on the proxy port.
    async fn login<H: Host>(
        &mut self,
        host: &H,
        view: &View<'_>,
        peer: SocketAddr,
        conn_id: u32,
    ) -> Result<(), String> {
        let scramble = auth::new_scramble();
        let p = &view.config.proxy;
        let deadline = Instant::now() + Duration::from_millis(p.auth_timeout_ms.max(1));
        let left = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let tls = view.config.tls.clone();
        Greeting {
            server_version: format!("{}-admin", p.server_version),
            connection_id: conn_id,
            scramble: scramble.to_vec(),
            capabilities: caps::PROXY_SERVER | if tls.is_some() { caps::SSL } else { 0 },
            mariadb_capabilities: 0,
            charset: 45,
            status: status::AUTOCOMMIT,
            auth_plugin: auth::NATIVE.to_string(),
        }
        .write(&mut self.out);
        self.flush().await?;
        let ip = crate::config::canonical_ip(peer.ip());
        let (mut seq, mut payload) = self.read(left()).await?;
        if !view.config.admin_allow.iter().any(|n| n.contains(&ip)) {
            let msg = format!("Host '{ip}' is not allowed to connect to corelay's admin port (proxy.admin_allow)");
            self.err(seq.wrapping_add(1), code::HOST_NOT_PRIVILEGED, &msg).await;
            return Err(msg);
        }
        if SslRequest::parse(&payload).is_some() {
            let Some(tls) = tls else {
                let msg = "Bad handshake: the admin port offers no TLS (set proxy.tls_cert and proxy.tls_key)";
                self.err(seq.wrapping_add(1), code::HANDSHAKE_ERROR, msg).await;
                return Err(msg.into());
            };
            crate::net::upgrade(&mut self.client, &mut self.buf, TlsStart::Server(tls), Some(left()))
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            (seq, payload) = self.read(left()).await?;
        }
        let next = seq.wrapping_add(1);
        let hr = match HandshakeResponse::parse(&payload) {
            Ok(hr) => hr,
            Err(e) => {
                let msg = format!("Bad handshake: {e}");
                self.err(next, code::HANDSHAKE_ERROR, &msg).await;
                return Err(msg);
            }
        };
        self.deprecate_eof = hr.capabilities & caps::PROXY_SERVER & caps::DEPRECATE_EOF != 0;
        let (mut proof, mut seq) = (hr.auth_response, next);
        let standing = view.status.login_standing(ip);
        match standing.verdict(&p.login_policy(), unix_ms()) {
            Verdict::Go => {}
            Verdict::Delay(d) => host.sleep(d).await,
            Verdict::Blocked(left) => {
                let msg = crate::session::gate::blocked(ip, standing.failures, left);
                self.err(seq, code::HOST_IS_BLOCKED, &msg).await;
                return Err(msg);
            }
        }
        if hr.auth_plugin.as_deref().unwrap_or(auth::NATIVE) != auth::NATIVE {
            AuthSwitch { plugin: auth::NATIVE.into(), data: scramble.to_vec() }.write(&mut self.out, seq);
            self.flush().await?;
            let (s, p) = self.read(left()).await?;
            proof = p;
            seq = s.wrapping_add(1);
        }
        let user = view.config.admin_users.iter().find(|a| a.name == hr.user);
        if !user.is_some_and(|u| u.credential.check_native(&scramble, &proof)) {
            view.status.guard(host.shard()).failed(ip, unix_ms());
            let using = if proof.is_empty() { "NO" } else { "YES" };
            let msg = format!("Access denied for admin user '{}'@'{ip}' (using password: {using})", hr.user);
            self.err(seq, code::ACCESS_DENIED, &msg).await;
            return Err(msg);
        }
        view.status.guard(host.shard()).succeeded(ip, unix_ms(), p.login_policy().forget_ms());
        self.user = hr.user;
        self.role = user.map_or(AdminRole::Read, |u| u.role);
        write_ok(&mut self.out, seq, 0, 0, status::AUTOCOMMIT);
        self.flush().await
    }

    async fn command_loop<H: Host>(&mut self, host: &H) {
        loop {
            let config = host.config();
            let view = &View { config: &config, status: host.status(), balance: host.balance_counts() };
            let Ok((seq, payload)) = self.read(IDLE).await else { return };
            let reply_seq = seq.wrapping_add(1);
            let Some((&cmd, body)) = payload.split_first() else { return };
            let reply = match cmd {
                command::QUIT => return,
                command::PING | command::INIT_DB | command::RESET_CONNECTION => Reply::Ok(String::new()),
                command::QUERY => self.answer(view, &String::from_utf8_lossy(body)),
                other => Reply::Err(
                    code::UNKNOWN_COM,
                    format!("The admin port answers text statements only, not {}", command::name(other)),
                ),
            };
            let reply = match reply {
                Reply::AwaitReload(n) => await_reload(host, n).await,
                r => r,
            };
            self.out.clear();
            match reply {
                Reply::Rows(rs) => {
                    let framing = Framing { deprecate_eof: self.deprecate_eof, metadata_byte: false };
                    rs.write(&mut self.out, reply_seq, framing, status::AUTOCOMMIT);
                }
                Reply::Ok(m) if m.is_empty() => write_ok(&mut self.out, reply_seq, 0, 0, status::AUTOCOMMIT),
                Reply::Ok(m) => write_ok_info(&mut self.out, reply_seq, status::AUTOCOMMIT, &m),
                Reply::Err(code, msg) => write_err(&mut self.out, reply_seq, code, &msg),
                Reply::AwaitReload(_) => write_ok(&mut self.out, reply_seq, 0, 0, status::AUTOCOMMIT),
            }
            if self.flush().await.is_err() {
                return;
            }
        }
    }
}

impl<C> AdminSession<C> {
    /// An admin statement's reply; also answers what MySQL clients send on their own when
    /// they connect (`SELECT @@version_comment`, `SET NAMES`, ...). A statement that changes
    /// corelay's state is logged with who asked and what came of it.
    fn answer(&self, view: &View, sql: &str) -> Reply {
        let w = super::words(sql);
        match w.first().map(String::as_str) {
            Some("SELECT") if w.iter().any(|x| x.contains("@@VERSION_COMMENT")) => {
                let mut rs = ResultSet::new(&["@@version_comment"]);
                rs.push(["corelay admin"]);
                Reply::Rows(rs)
            }
            Some("SET") | Some("USE") => Reply::Ok(String::new()),
            _ => {
                let reply = super::run_as(view, sql, self.role, &self.user);
                if let Some(name) = super::changing(sql) {
                    let outcome = match &reply {
                        Reply::Err(_, m) => format!("refused: {m}"),
                        _ => "accepted".to_string(),
                    };
                    let (user, peer, role) = (&self.user, self.peer, self.role);
                    tracing::warn!(admin_user = %user, %peer, ?role, "admin command {name}: {outcome}");
                }
                reply
            }
        }
    }
}
