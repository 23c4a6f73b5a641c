//! Server health, checked by the master and published in the status region, so that every
//! shard routes by the same view without each one polling every server.
//!
//! The master stays single-threaded (fork mode needs that), so checks are plain blocking
//! socket calls with short timeouts, run between signal polls: per server, a kept-open
//! login as the cluster's first db user, `SHOW VARIABLES LIKE 'read_only'` and, on
//! replicas, `SHOW SLAVE STATUS` for the lag (neither counts as a `Com_select`).
//! A replica that cannot be reached, or lags more than `max_replication_lag_s` (or does
//! not know its lag because replication is stopped), gets no reads until it is healthy.
//! A primary's state (reachable, read-only) is published for the admin surfaces and logged
//! when it changes; writes go to it whatever it is, so clients see the server's own error.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::config::{Config, Role, Server};
use crate::protocol::auth;
use crate::protocol::caps;
use crate::protocol::handshake::{AuthSwitch, Greeting, HandshakeResponse};
use crate::protocol::packet::{write_packet, Header, Reader, HEADER_LEN};
use crate::protocol::response::ErrPacket;
use crate::status::{health, StatusRegion};

/// Checks every server of every cluster at the cluster's `health_interval_ms`.
#[derive(Default)]
pub struct Checker {
    conns: HashMap<usize, TcpStream>,
    due: HashMap<usize, Instant>,
    warned: std::collections::HashSet<usize>,
}

impl Checker {
    /// Runs the checks that are due.
    pub fn run_due(&mut self, config: &Config, status: &StatusRegion) {
        let now = Instant::now();
        for (ci, cluster) in config.clusters.iter().enumerate() {
            if self.due.get(&ci).is_some_and(|t| now < *t) {
                continue;
            }
            self.due.insert(ci, now + Duration::from_millis(cluster.health_interval_ms));
            let Some(db_user) = config.db_users.iter().find(|d| d.cluster == ci) else { continue };
            for server in &cluster.servers {
                let result = self.check(server, &db_user.name, &db_user.password);
                let Some(h) = status.server_health(server.id) else { continue };
                let (state, lag) = match result {
                    Err(e) => {
                        if h.state.load(Relaxed) != health::DOWN {
                            tracing::warn!(server = %server.address, "health check failed: {e}");
                        }
                        self.conns.remove(&server.id);
                        (health::DOWN, u64::MAX)
                    }
                    Ok((lag, read_only)) => {
                        let was = h.read_only.swap(u32::from(read_only), Relaxed);
                        if server.role == Role::Primary && read_only && was == 0 {
                            tracing::warn!(server = %server.address, "the primary is read_only: writes will fail until it is writable");
                        }
                        let late = lag.is_none_or(|l| l > cluster.max_replication_lag_s);
                        if server.role == Role::Replica && late {
                            if h.state.load(Relaxed) != health::LAGGING {
                                tracing::warn!(server = %server.address, lag = ?lag, "replica lags; no reads until it catches up");
                            }
                            (health::LAGGING, lag.unwrap_or(u64::MAX))
                        } else {
                            (health::UP, lag.unwrap_or(0))
                        }
                    }
                };
                h.state.store(state, Relaxed);
                h.lag_s.store(lag, Relaxed);
                let ms =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
                h.checked_unix_ms.store(ms as u64, Relaxed);
            }
        }
    }

    /// One server: its replication lag in seconds (Some(0) for a primary or a server that
    /// does not replicate; None when replication is stopped or the lag is unknown), and
    /// whether it is read_only.
    fn check(&mut self, server: &Server, user: &str, password: &str) -> Result<(Option<u64>, bool), String> {
        let s = match self.conns.entry(server.id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(login(server, user, password)?),
        };
        let (_, rows) = query(s, "SHOW VARIABLES LIKE 'read_only'")?;
        let read_only = rows.first().and_then(|r| r.get(1).cloned().flatten()).is_some_and(|v| v == "ON");
        if server.role == Role::Primary {
            return Ok((Some(0), read_only));
        }
        let (names, rows) = match query(s, "SHOW SLAVE STATUS") {
            // Without REPLICATION CLIENT / SLAVE MONITOR the lag cannot be read: the replica
            // is judged by reachability alone.
            Err(e) if e.contains("(1227)") => {
                if self.warned.insert(server.id) {
                    tracing::warn!(server = %server.address, "health check cannot read the replication lag ({e}); grant the db user REPLICATION CLIENT (SLAVE MONITOR)");
                }
                return Ok((Some(0), read_only));
            }
            other => other?,
        };
        let Some(row) = rows.first() else { return Ok((Some(0), read_only)) };
        let col = names.iter().position(|n| n == "Seconds_Behind_Master").ok_or("no Seconds_Behind_Master column")?;
        Ok((row.get(col).cloned().flatten().and_then(|v| v.parse().ok()), read_only))
    }
}

fn read_packet(s: &mut TcpStream) -> Result<(u8, Vec<u8>), String> {
    let mut h = [0u8; HEADER_LEN];
    s.read_exact(&mut h).map_err(|e| e.to_string())?;
    let h = Header::parse(&h).ok_or("bad header")?;
    if h.len > 16 << 20 {
        return Err("packet too large for a health check".into());
    }
    let mut p = vec![0; h.len];
    s.read_exact(&mut p).map_err(|e| e.to_string())?;
    Ok((h.seq, p))
}

fn err_text(p: &[u8]) -> String {
    ErrPacket::parse(p).map_or_else(|_| "malformed error".into(), |e| format!("{} ({})", e.message, e.code))
}

fn login(server: &Server, user: &str, password: &str) -> Result<TcpStream, String> {
    let timeout = Duration::from_millis(server.connect_timeout_ms);
    let mut s = TcpStream::connect_timeout(&server.addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout.max(Duration::from_secs(1)))).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout.max(Duration::from_secs(1)))).map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    let (_, g) = read_packet(&mut s)?;
    if g.first() == Some(&0xFF) {
        return Err(err_text(&g));
    }
    let g = Greeting::parse(&g).map_err(|e| e.to_string())?;
    let plugin =
        if auth::proof_for(&g.auth_plugin, b"", b"").is_ok() { g.auth_plugin.clone() } else { auth::NATIVE.into() };
    let proof = auth::proof_for(&plugin, password.as_bytes(), &g.scramble).map_err(|e| e.to_string())?;
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
    s.write_all(&out).map_err(|e| e.to_string())?;
    for _ in 0..4 {
        let (seq, p) = read_packet(&mut s)?;
        match p.first() {
            Some(0x00) => return Ok(s),
            Some(0xFE) => {
                let sw = AuthSwitch::parse(&p).map_err(|e| e.to_string())?;
                let proof = auth::proof_for(&sw.plugin, password.as_bytes(), &sw.data).map_err(|e| e.to_string())?;
                out.clear();
                write_packet(&mut out, seq.wrapping_add(1), &proof);
                s.write_all(&out).map_err(|e| e.to_string())?;
            }
            Some(0x01) => continue,
            _ => return Err(err_text(&p)),
        }
    }
    Err("login did not finish".into())
}

type Rows = Vec<Vec<Option<String>>>;

/// Runs a text query; returns column names and rows (NULL as None). Results end with EOF
/// packets: the health connection does not ask for CLIENT_DEPRECATE_EOF.
fn query(s: &mut TcpStream, sql: &str) -> Result<(Vec<String>, Rows), String> {
    let mut out = Vec::new();
    let mut p = vec![crate::protocol::command::QUERY];
    p.extend_from_slice(sql.as_bytes());
    write_packet(&mut out, 0, &p);
    s.write_all(&out).map_err(|e| e.to_string())?;
    let (_, first) = read_packet(s)?;
    match first.first() {
        Some(0xFF) => return Err(err_text(&first)),
        Some(0x00) => return Ok((Vec::new(), Vec::new())),
        _ => {}
    }
    let n = Reader::new(&first).lenenc_int("column count").map_err(|e| e.to_string())? as usize;
    let mut names = Vec::with_capacity(n);
    for _ in 0..n {
        let (_, def) = read_packet(s)?;
        let mut r = Reader::new(&def);
        for what in ["catalog", "schema", "table", "org_table"] {
            r.lenenc_bytes(what).map_err(|e| e.to_string())?;
        }
        names.push(String::from_utf8_lossy(r.lenenc_bytes("name").map_err(|e| e.to_string())?).into_owned());
    }
    read_packet(s)?; // EOF after the column definitions
    let mut rows = Vec::new();
    loop {
        let (_, row) = read_packet(s)?;
        match row.first() {
            Some(0xFE) if row.len() < 9 => return Ok((names, rows)),
            Some(0xFF) => return Err(err_text(&row)),
            _ => {}
        }
        let mut r = Reader::new(&row);
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            if r.clone().u8("value").map_err(|e| e.to_string())? == 0xFB {
                r.u8("null").map_err(|e| e.to_string())?;
                values.push(None);
            } else {
                values.push(Some(
                    String::from_utf8_lossy(r.lenenc_bytes("value").map_err(|e| e.to_string())?).into_owned(),
                ));
            }
        }
        rows.push(values);
    }
}
