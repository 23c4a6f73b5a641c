//! Statements prepared on one backend connection, found by their text and schema.
//!
//! MySQL statement ids belong to one connection. Sessions keep their own (proxy) ids; when
//! a session executes on a connection, it looks the statement up here and prepares it
//! first if the connection has not seen it.

use std::collections::HashMap;
use std::rc::Rc;

/// Most statements kept prepared per connection; beyond it the least recently used is
/// closed on the server.
pub const MAX_PER_CONNECTION: usize = 256;

#[derive(Debug, Clone)]
pub struct CachedStmt {
    pub sql: Rc<[u8]>,
    pub schema: Option<Rc<str>>,
    /// The server's statement id on this connection.
    pub id: u32,
    /// Whether parameter types were sent on this connection (later executes may omit them).
    pub types_sent: bool,
    last_used: u64,
}

#[derive(Debug, Default)]
pub struct StmtCache {
    map: HashMap<u64, CachedStmt>,
    clock: u64,
}

impl StmtCache {
    /// The statement with this text and schema, if prepared here.
    pub fn get(&mut self, hash: u64, sql: &[u8], schema: Option<&str>) -> Option<&mut CachedStmt> {
        self.clock += 1;
        let clock = self.clock;
        let s = self.map.get_mut(&hash)?;
        if &*s.sql != sql || s.schema.as_deref() != schema {
            return None;
        }
        s.last_used = clock;
        Some(s)
    }

    /// Records a statement; returns the server id of one to close, if the cache was full
    /// or the same text was prepared again.
    pub fn insert(&mut self, hash: u64, sql: Rc<[u8]>, schema: Option<Rc<str>>, id: u32) -> Option<u32> {
        self.clock += 1;
        let entry = CachedStmt { sql, schema, id, types_sent: false, last_used: self.clock };
        if let Some(old) = self.map.insert(hash, entry) {
            return Some(old.id);
        }
        if self.map.len() > MAX_PER_CONNECTION {
            let oldest = self.map.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| *k)?;
            return self.map.remove(&oldest).map(|s| s.id);
        }
        None
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
