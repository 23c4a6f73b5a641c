//! Routing: which server of a user's cluster a statement goes to, and what a statement
//! does to session state (see [`statement`]).
//!
//! This version routes every session to its cluster's primary; read/write splitting
//! builds on [`target`] and the lexer.

pub mod classify;
pub mod lexer;
pub mod statement;

use crate::config::{Config, Server};

/// The server a session of product user `user` is served by.
pub fn target(config: &Config, user: usize) -> &Server {
    let db_user = &config.db_users[config.users[user].db_user];
    config.clusters[db_user.cluster].primary()
}
