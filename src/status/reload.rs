//! The reload channel: the master publishes each new configuration here for the shards,
//! and admin RELOAD asks the master for one and reads back what came of it.
//!
//! The configuration text lives in one buffer guarded by a sequence number (odd while the
//! master writes); a shard copies it out and keeps the copy only if the number did not
//! move meanwhile. It is stored as words of `AtomicU64`, so readers and the writer never
//! race on plain memory. Requests and answers are counters: RELOAD takes a request
//! number, the master answers every request up to the one it handled with one outcome
//! and a message.

use std::sync::atomic::{fence, AtomicU64, Ordering};

use super::StatusRegion;

/// Largest configuration the master can publish (as TOML).
pub const CONFIG_BYTES: usize = 2 << 20;
/// Longest reload outcome message kept for RELOAD.
const MESSAGE_BYTES: usize = 1024;

/// One text buffer and its sequence number.
#[repr(C, align(64))]
struct Text<const WORDS: usize> {
    seq: AtomicU64,
    len: AtomicU64,
    words: [AtomicU64; WORDS],
}

impl<const WORDS: usize> Text<WORDS> {
    fn write(&self, text: &str) -> Result<(), String> {
        let bytes = text.as_bytes();
        if bytes.len() > WORDS * 8 {
            return Err(format!("{} bytes, more than the {} the status region holds", bytes.len(), WORDS * 8));
        }
        self.seq.fetch_add(1, Ordering::AcqRel);
        fence(Ordering::Release);
        for (w, chunk) in self.words.iter().zip(bytes.chunks(8)) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            w.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        self.len.store(bytes.len() as u64, Ordering::Relaxed);
        self.seq.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// The text, or None while it is being written.
    fn read(&self) -> Option<String> {
        let before = self.seq.load(Ordering::Acquire);
        if before % 2 == 1 {
            return None;
        }
        let len = (self.len.load(Ordering::Relaxed) as usize).min(WORDS * 8);
        let mut out = Vec::with_capacity(len);
        for w in self.words.iter().take(len.div_ceil(8)) {
            out.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
        out.truncate(len);
        fence(Ordering::Acquire);
        if self.seq.load(Ordering::Relaxed) != before {
            return None;
        }
        String::from_utf8(out).ok()
    }
}

/// The area after the health table.
#[repr(C, align(64))]
pub struct ReloadArea {
    /// Taken by RELOAD (fetch_add): the latest request.
    requests: AtomicU64,
    /// The latest request the master handled, and whether it failed (1) or not (0).
    answered: AtomicU64,
    failed: AtomicU64,
    message: Text<{ MESSAGE_BYTES / 8 }>,
    config: Text<{ CONFIG_BYTES / 8 }>,
}

/// What came of a reload request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pending,
    Done(String),
    Refused(String),
}

impl StatusRegion {
    /// Asks the master for a reload; returns the request number to wait on.
    pub fn request_reload(&self) -> u64 {
        self.reload_area().requests.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The latest request not yet answered, if any (for the master).
    pub fn pending_reload(&self) -> Option<u64> {
        let a = self.reload_area();
        let r = a.requests.load(Ordering::Acquire);
        (r > a.answered.load(Ordering::Acquire)).then_some(r)
    }

    /// The master answers every request up to `request`.
    pub fn answer_reload(&self, request: u64, ok: bool, message: &str) {
        let a = self.reload_area();
        let mut m = message.to_string();
        if m.len() > MESSAGE_BYTES {
            let mut cut = MESSAGE_BYTES - 3;
            while !m.is_char_boundary(cut) {
                cut -= 1;
            }
            m.truncate(cut);
            m.push_str("...");
        }
        let _ = a.message.write(&m);
        a.failed.store(u64::from(!ok), Ordering::Relaxed);
        a.answered.store(request, Ordering::Release);
    }

    /// What came of request `request` (a later answer covers it too).
    pub fn reload_outcome(&self, request: u64) -> Outcome {
        let a = self.reload_area();
        if a.answered.load(Ordering::Acquire) < request {
            return Outcome::Pending;
        }
        let message = a.message.read().unwrap_or_default();
        match a.failed.load(Ordering::Relaxed) {
            0 => Outcome::Done(message),
            _ => Outcome::Refused(message),
        }
    }

    /// Publishes configuration `version` (the text of [`crate::config::Published`]).
    pub fn publish_config(&self, version: u64, text: &str) -> Result<(), String> {
        self.reload_area().config.write(text)?;
        self.header().config_version.store(version, Ordering::Release);
        Ok(())
    }

    /// The version of the configuration published last.
    pub fn config_version(&self) -> u64 {
        self.header().config_version.load(Ordering::Acquire)
    }

    /// The configuration published last (None while the master is writing it).
    pub fn published_config(&self) -> Option<String> {
        self.reload_area().config.read()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_round_trip_and_requests_are_answered() {
        let r = StatusRegion::create(1).unwrap();
        assert_eq!(r.pending_reload(), None);
        let n = r.request_reload();
        assert_eq!(r.pending_reload(), Some(n));
        assert_eq!(r.reload_outcome(n), Outcome::Pending);
        r.answer_reload(n, false, "proxy.listen: bad");
        assert_eq!(r.reload_outcome(n), Outcome::Refused("proxy.listen: bad".into()));
        assert_eq!(r.pending_reload(), None);
        let text = "version = 7\nsource = \"é\"\n".repeat(1000);
        r.publish_config(7, &text).unwrap();
        assert_eq!(r.config_version(), 7);
        assert_eq!(r.published_config().as_deref(), Some(text.as_str()));
        assert!(r.publish_config(8, &"x".repeat(CONFIG_BYTES + 1)).is_err());
        assert_eq!(r.config_version(), 7, "a refused text does not bump the version");
    }
}
