//! One connection to the admin port: a MySQL-protocol login checked against the
//! `[[admin_user]]` entries and `proxy.admin_allow`, then admin statements answered from
//! the status region. Any MySQL client works (`mariadb -P6032 -uadmin -p`).
//!
//! Invariants: nothing here touches backends or the query path; every failure ends this
//! connection only, after an ERR packet where the protocol allows one; every read has a
//! timeout.

use std::net::SocketAddr;
use std::time::Duration;

use super::{Host, Reply, View};
use crate::net::{read_packet, Buffer, PacketReadError, Transport};
use crate::protocol::code::{self, Code};
use crate::protocol::err::write_err;
use crate::protocol::handshake::{AuthSwitch, Greeting, HandshakeResponse, SSL_REQUEST_LEN};
use crate::protocol::ok::{write_ok, write_ok_info};
use crate::protocol::resultset::ResultSet;
use crate::protocol::{auth, caps, command, status};

/// Largest admin statement accepted.
const MAX_PACKET: usize = 1 << 16;
/// An admin client idle this long is disconnected.
const IDLE: Duration = Duration::from_secs(3600);

/// Serves one admin client until it quits, fails or idles out.
pub async fn serve<C: Transport, H: Host>(host: &H, client: C, peer: SocketAddr, conn_id: u32) {
    let mut s = AdminSession { client, buf: Buffer::new(), out: Vec::new(), deprecate_eof: false };
    let config = host.config();
    let view = View { config: &config, status: host.status(), balance: None };
    if let Err(e) = s.login(&view, peer, conn_id).await {
        tracing::info!(peer = %peer, "admin login failed: {e}");
        return;
    }
    tracing::info!(peer = %peer, "admin session opened");
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

    async fn login(&mut self, view: &View<'_>, peer: SocketAddr, conn_id: u32) -> Result<(), String> {
        let scramble = auth::new_scramble();
        let timeout = Duration::from_millis(view.config.proxy.auth_timeout_ms.max(1));
        Greeting {
            server_version: format!("{}-admin", view.config.proxy.server_version),
            connection_id: conn_id,
            scramble: scramble.to_vec(),
            capabilities: caps::PROXY_SERVER,
            charset: 45,
            status: status::AUTOCOMMIT,
            auth_plugin: auth::NATIVE.to_string(),
        }
        .write(&mut self.out);
        self.flush().await?;
        let ip = crate::config::canonical_ip(peer.ip());
        let (seq, payload) = self.read(timeout).await?;
        let next = seq.wrapping_add(1);
        if !view.config.admin_allow.iter().any(|n| n.contains(&ip)) {
            let msg = format!("Host '{ip}' is not allowed to connect to corelay's admin port (proxy.admin_allow)");
            self.err(next, code::HOST_NOT_PRIVILEGED, &msg).await;
            return Err(msg);
        }
        if payload.len() == SSL_REQUEST_LEN {
            let msg = "Bad handshake: the admin port does not offer TLS";
            self.err(next, code::HANDSHAKE_ERROR, msg).await;
            return Err(msg.into());
        }
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
        if hr.auth_plugin.as_deref().unwrap_or(auth::NATIVE) != auth::NATIVE {
            AuthSwitch { plugin: auth::NATIVE.into(), data: scramble.to_vec() }.write(&mut self.out, seq);
            self.flush().await?;
            let (s, p) = self.read(timeout).await?;
            proof = p;
            seq = s.wrapping_add(1);
        }
        let user = view.config.admin_users.iter().find(|a| a.name == hr.user);
        if !user.is_some_and(|u| auth::verify(auth::NATIVE, u.password.as_bytes(), &scramble, &proof)) {
            let using = if proof.is_empty() { "NO" } else { "YES" };
            let msg = format!("Access denied for admin user '{}'@'{ip}' (using password: {using})", hr.user);
            self.err(seq, code::ACCESS_DENIED, &msg).await;
            return Err(msg);
        }
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
                command::QUERY => answer(view, &String::from_utf8_lossy(body)),
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
                    rs.write(&mut self.out, reply_seq, self.deprecate_eof, status::AUTOCOMMIT);
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

/// An admin statement's reply; also answers what MySQL clients send on their own when they
/// connect (`SELECT @@version_comment`, `SET NAMES`, ...).
fn answer(view: &View, sql: &str) -> Reply {
    let w = super::words(sql);
    match w.first().map(String::as_str) {
        Some("SELECT") if w.iter().any(|x| x.contains("@@VERSION_COMMENT")) => {
            let mut rs = ResultSet::new(&["@@version_comment"]);
            rs.push(["corelay admin"]);
            Reply::Rows(rs)
        }
        Some("SET") | Some("USE") => Reply::Ok(String::new()),
        _ => super::run(view, sql),
    }
}
