//! Routing: which server of a user's cluster a statement goes to.
//!
//! This version routes every session to its cluster's primary; statement classification
//! and read/write splitting build on [`target`].

use crate::config::{Config, Server};

/// The server a session of product user `user` is served by.
pub fn target(config: &Config, user: usize) -> &Server {
    let db_user = &config.db_users[config.users[user].db_user];
    config.clusters[db_user.cluster].primary()
}
