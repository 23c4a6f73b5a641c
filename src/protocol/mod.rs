//! The MySQL wire protocol, as pure functions from bytes to typed values and back.
//!
//! Nothing in this module performs I/O or knows about the runtime: every function takes a
//! byte slice (or a `Vec<u8>` to append to) and returns a value, so it can be unit-tested
//! from captured bytes and fuzzed. The hot path only needs [`packet::Header`], the
//! command byte and the reply [`scanner`]; the rest (handshake, auth, [`ok`], [`err`],
//! [`eof`], [`resultset`]) is used at connection set-up and when the proxy answers a
//! client itself. Every error corelay sends takes its number and SQLSTATE from [`code`].
//!
//! Invariants:
//! - A physical packet is at most 0xFF_FFFF payload bytes; a payload of exactly that length
//!   is continued by the next physical packet (see [`packet::MAX_PAYLOAD`]).
//! - Sequence ids wrap at 256 and are assigned by whoever writes the packet.

pub mod auth;
pub mod charset;
pub mod code;
pub mod credential;
pub mod eof;
pub mod err;
pub mod handshake;
pub mod metadata;
pub mod ok;
pub mod packet;
pub mod resultset;
pub mod rsa;
pub mod scanner;

use thiserror::Error;

/// Capability flags (`CLIENT_*`) the proxy understands.
pub mod caps {
    pub const LONG_PASSWORD: u32 = 1;
    pub const FOUND_ROWS: u32 = 1 << 1;
    pub const LONG_FLAG: u32 = 1 << 2;
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    pub const NO_SCHEMA: u32 = 1 << 4;
    pub const COMPRESS: u32 = 1 << 5;
    pub const ODBC: u32 = 1 << 6;
    pub const LOCAL_FILES: u32 = 1 << 7;
    pub const IGNORE_SPACE: u32 = 1 << 8;
    pub const PROTOCOL_41: u32 = 1 << 9;
    pub const INTERACTIVE: u32 = 1 << 10;
    pub const SSL: u32 = 1 << 11;
    pub const IGNORE_SIGPIPE: u32 = 1 << 12;
    pub const TRANSACTIONS: u32 = 1 << 13;
    pub const RESERVED: u32 = 1 << 14;
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    pub const MULTI_STATEMENTS: u32 = 1 << 16;
    pub const MULTI_RESULTS: u32 = 1 << 17;
    pub const PS_MULTI_RESULTS: u32 = 1 << 18;
    pub const PLUGIN_AUTH: u32 = 1 << 19;
    pub const CONNECT_ATTRS: u32 = 1 << 20;
    pub const PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 1 << 21;
    pub const CAN_HANDLE_EXPIRED_PASSWORDS: u32 = 1 << 22;
    pub const SESSION_TRACK: u32 = 1 << 23;
    pub const DEPRECATE_EOF: u32 = 1 << 24;

    /// What the proxy offers to clients in its greeting.
    pub const PROXY_SERVER: u32 = LONG_PASSWORD
        | FOUND_ROWS
        | LONG_FLAG
        | CONNECT_WITH_DB
        | NO_SCHEMA
        | ODBC
        | LOCAL_FILES
        | IGNORE_SPACE
        | PROTOCOL_41
        | INTERACTIVE
        | IGNORE_SIGPIPE
        | TRANSACTIONS
        | SECURE_CONNECTION
        | MULTI_STATEMENTS
        | MULTI_RESULTS
        | PS_MULTI_RESULTS
        | PLUGIN_AUTH
        | CONNECT_ATTRS
        | PLUGIN_AUTH_LENENC_CLIENT_DATA
        | SESSION_TRACK
        | DEPRECATE_EOF;

    /// Client flags that change the shape or meaning of results. A backend connection must
    /// be opened with the same values the client negotiated, because its replies are
    /// forwarded byte for byte. (SESSION_TRACK is not one: every backend connection has
    /// it, and what a client did not ask for is taken out of the OK packets.)
    pub const RESULT_SHAPING: u32 = FOUND_ROWS
        | IGNORE_SPACE
        | LOCAL_FILES
        | INTERACTIVE
        | MULTI_STATEMENTS
        | MULTI_RESULTS
        | PS_MULTI_RESULTS
        | DEPRECATE_EOF;

    /// MariaDB's extended capabilities: a second word of flags (bit `n` here is bit
    /// `32 + n` of MariaDB's 64-bit flags), carried in the greeting's and the handshake
    /// response's filler when CLIENT_MYSQL (`LONG_PASSWORD`) is clear.
    pub mod ext {
        /// `MARIADB_CLIENT_CACHE_METADATA`: every column-count packet carries a "metadata
        /// follows" byte, and an EXECUTE reply leaves out column definitions that have not
        /// changed since the connection last sent them for the statement.
        pub const CACHE_METADATA: u32 = 1 << 4;
    }

    /// Flags the proxy always asks a backend for.
    pub const BACKEND_REQUIRED: u32 = LONG_PASSWORD
        | LONG_FLAG
        | PROTOCOL_41
        | TRANSACTIONS
        | SECURE_CONNECTION
        | PLUGIN_AUTH
        | PLUGIN_AUTH_LENENC_CLIENT_DATA;
}

/// Server status flags (`SERVER_*`) carried by OK and EOF packets.
pub mod status {
    pub const IN_TRANS: u16 = 0x0001;
    pub const AUTOCOMMIT: u16 = 0x0002;
    pub const MORE_RESULTS_EXISTS: u16 = 0x0008;
    pub const CURSOR_EXISTS: u16 = 0x0040;
    pub const LAST_ROW_SENT: u16 = 0x0080;
    pub const SESSION_STATE_CHANGED: u16 = 0x4000;
}

/// Command bytes (`COM_*`).
pub mod command {
    pub const SLEEP: u8 = 0x00;
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const FIELD_LIST: u8 = 0x04;
    pub const CREATE_DB: u8 = 0x05;
    pub const DROP_DB: u8 = 0x06;
    pub const REFRESH: u8 = 0x07;
    pub const SHUTDOWN: u8 = 0x08;
    pub const STATISTICS: u8 = 0x09;
    pub const PROCESS_INFO: u8 = 0x0a;
    pub const CONNECT: u8 = 0x0b;
    pub const PROCESS_KILL: u8 = 0x0c;
    pub const DEBUG: u8 = 0x0d;
    pub const PING: u8 = 0x0e;
    pub const CHANGE_USER: u8 = 0x11;
    pub const BINLOG_DUMP: u8 = 0x12;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_RESET: u8 = 0x1a;
    pub const SET_OPTION: u8 = 0x1b;
    pub const STMT_FETCH: u8 = 0x1c;
    pub const RESET_CONNECTION: u8 = 0x1f;

    /// A readable name for logs and errors.
    pub fn name(cmd: u8) -> &'static str {
        match cmd {
            SLEEP => "COM_SLEEP",
            QUIT => "COM_QUIT",
            INIT_DB => "COM_INIT_DB",
            QUERY => "COM_QUERY",
            FIELD_LIST => "COM_FIELD_LIST",
            CREATE_DB => "COM_CREATE_DB",
            DROP_DB => "COM_DROP_DB",
            REFRESH => "COM_REFRESH",
            SHUTDOWN => "COM_SHUTDOWN",
            STATISTICS => "COM_STATISTICS",
            PROCESS_INFO => "COM_PROCESS_INFO",
            CONNECT => "COM_CONNECT",
            PROCESS_KILL => "COM_PROCESS_KILL",
            DEBUG => "COM_DEBUG",
            PING => "COM_PING",
            CHANGE_USER => "COM_CHANGE_USER",
            BINLOG_DUMP => "COM_BINLOG_DUMP",
            STMT_PREPARE => "COM_STMT_PREPARE",
            STMT_EXECUTE => "COM_STMT_EXECUTE",
            STMT_SEND_LONG_DATA => "COM_STMT_SEND_LONG_DATA",
            STMT_CLOSE => "COM_STMT_CLOSE",
            STMT_RESET => "COM_STMT_RESET",
            SET_OPTION => "COM_SET_OPTION",
            STMT_FETCH => "COM_STMT_FETCH",
            RESET_CONNECTION => "COM_RESET_CONNECTION",
            _ => "COM_UNKNOWN",
        }
    }
}

/// What can be wrong with bytes handed to this module.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("packet truncated while reading {0}")]
    Truncated(&'static str),
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    #[error("client does not speak protocol 4.1 (CLIENT_PROTOCOL_41 not set)")]
    OldClient,
    #[error("unsupported authentication plugin {0:?}")]
    UnsupportedPlugin(String),
}
