//! Statements prepared on one backend connection, found by their text and schema.
//!
//! MySQL statement ids belong to one connection. Sessions keep their own (proxy) ids; when
//! a session executes on a connection, it looks the statement up here and prepares it
//! first if the connection has not seen it.

use std::collections::HashMap;
use std::rc::Rc;

use crate::protocol::metadata::SentDefs;

#[derive(Debug, Clone)]
pub struct CachedStmt {
    pub sql: Rc<[u8]>,
    pub schema: Option<Rc<str>>,
    /// The server's statement id on this connection.
    pub id: u32,
    /// The parameter types this connection last got for the statement (empty: none yet).
    /// The server decodes an EXECUTE that leaves them out with these, whichever session
    /// sent them, so a session whose own differ must put its own in.
    pub types: Vec<u8>,
    /// The column definitions the server last sent for it on this connection (MariaDB's
    /// metadata cache; see [`crate::protocol::metadata`]).
    pub defs: SentDefs,
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

    /// Records a statement; returns the server id of one to close, if the cache holds more
    /// than `cap` (least recently used first) or the same text was prepared again.
    /// `defs`: the record of the column definitions its server sent (those of its PREPARE
    /// reply, where the connection has MariaDB's metadata cache).
    pub fn insert(
        &mut self,
        hash: u64,
        sql: Rc<[u8]>,
        schema: Option<Rc<str>>,
        id: u32,
        defs: SentDefs,
        cap: usize,
    ) -> Option<u32> {
        self.clock += 1;
        let entry = CachedStmt { sql, schema, id, types: Vec::new(), defs, last_used: self.clock };
        if let Some(old) = self.map.insert(hash, entry) {
            return Some(old.id);
        }
        if self.map.len() > cap.max(1) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::metadata;

    #[test]
    fn least_recently_used_statement_is_closed_beyond_the_cap() {
        let mut c = StmtCache::default();
        let sql = |s: &str| -> Rc<[u8]> { Rc::from(s.as_bytes()) };
        assert_eq!(c.insert(1, sql("a"), None, 10, metadata::sent(None), 2), None);
        assert_eq!(c.insert(2, sql("b"), None, 20, metadata::sent(None), 2), None);
        // Use "a" so that "b" is the least recently used.
        assert_eq!(c.get(1, b"a", None).map(|s| s.id), Some(10));
        assert_eq!(c.insert(3, sql("c"), None, 30, metadata::sent(None), 2), Some(20));
        assert!(c.get(2, b"b", None).is_none());
        // Same text prepared again: the old server id is to be closed.
        assert_eq!(c.insert(1, sql("a"), None, 11, metadata::sent(None), 2), Some(10));
        // A different text or schema under the same hash is not a hit.
        assert!(c.get(1, b"x", None).is_none());
        assert!(c.get(1, b"a", Some("db")).is_none());
        assert_eq!(c.len(), 2);
    }
}
