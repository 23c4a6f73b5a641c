//! The MySQL errors corelay itself sends, each with its SQLSTATE: the one table every ERR
//! packet corelay writes takes its code from.
//!
//! What corelay says about its backends uses server error codes: MariaDB's client library
//! takes an ERR packet carrying a client code such as 2003 or 2013 for a broken packet and
//! reports 2027 (malformed packet) instead of the message.

/// A MySQL error number and its SQLSTATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    pub number: u16,
    pub state: &'static str,
}

impl Code {
    pub const fn new(number: u16, state: &'static str) -> Code {
        Code { number, state }
    }
}

/// ER_CON_COUNT_ERROR: too many connections (corelay's, a user's pool wait).
pub const CON_COUNT_ERROR: Code = Code::new(1040, "08004");
/// ER_HANDSHAKE_ERROR: a login packet corelay cannot read.
pub const HANDSHAKE_ERROR: Code = Code::new(1043, "08S01");
/// ER_ACCESS_DENIED_ERROR: wrong user or password.
pub const ACCESS_DENIED: Code = Code::new(1045, "28000");
/// ER_UNKNOWN_COM_ERROR: a command corelay does not forward.
pub const UNKNOWN_COM: Code = Code::new(1047, "08S01");
/// ER_BAD_DB_ERROR: unknown schema.
pub const BAD_DB: Code = Code::new(1049, "42000");
/// ER_SERVER_SHUTDOWN: corelay is stopping.
pub const SERVER_SHUTDOWN: Code = Code::new(1053, "08S01");
/// ER_PARSE_ERROR: a statement corelay answers itself, in a form it does not know.
pub const PARSE_ERROR: Code = Code::new(1064, "42000");
/// ER_NO_SUCH_THREAD: KILL of an unknown connection id.
pub const NO_SUCH_THREAD: Code = Code::new(1094, "HY000");
/// ER_KILL_DENIED_ERROR: KILL of another user's session.
pub const KILL_DENIED: Code = Code::new(1095, "HY000");
/// ER_UNKNOWN_ERROR: a statement corelay answers itself cannot be done (the message says why).
pub const UNKNOWN_ERROR: Code = Code::new(1105, "HY000");
/// ER_HOST_IS_BLOCKED: too many failed logins from the client's address.
pub const HOST_IS_BLOCKED: Code = Code::new(1129, "HY000");
/// ER_HOST_NOT_PRIVILEGED: the client's address is not on the allow list.
pub const HOST_NOT_PRIVILEGED: Code = Code::new(1130, "HY000");
/// ER_NET_PACKET_TOO_LARGE: a packet over `max_packet_bytes`.
pub const NET_PACKET_TOO_LARGE: Code = Code::new(1153, "08S01");
/// ER_NET_READ_ERROR: a packet corelay cannot make sense of.
pub const NET_READ_ERROR: Code = Code::new(1158, "08S01");
/// ER_NET_READ_INTERRUPTED: the client was too slow (the login timeout).
pub const NET_READ_INTERRUPTED: Code = Code::new(1159, "08S01");
/// ER_TOO_MANY_USER_CONNECTIONS: a user's `max_connections` is reached.
pub const TOO_MANY_USER_CONNECTIONS: Code = Code::new(1203, "42000");
/// ER_LOCK_WAIT_TIMEOUT: corelay waited too long for an answer (admin RELOAD).
pub const LOCK_WAIT_TIMEOUT: Code = Code::new(1205, "HY000");
/// ER_WRONG_ARGUMENTS: a statement command too short to name its statement.
pub const WRONG_ARGUMENTS: Code = Code::new(1210, "HY000");
/// ER_USER_LIMIT_REACHED.
pub const USER_LIMIT_REACHED: Code = Code::new(1226, "42000");
/// ER_SPECIFIC_ACCESS_DENIED_ERROR: a command or statement corelay does not allow.
pub const SPECIFIC_ACCESS_DENIED: Code = Code::new(1227, "42000");
/// ER_UNKNOWN_STMT_HANDLER: a statement id the session never got.
pub const UNKNOWN_STMT_HANDLER: Code = Code::new(1243, "HY000");
/// ER_MAX_PREPARED_STMT_COUNT_REACHED.
pub const MAX_PREPARED_STMT_COUNT_REACHED: Code = Code::new(1461, "42000");
/// ER_NOT_SUPPORTED_AUTH_MODE.
pub const NOT_SUPPORTED_AUTH_MODE: Code = Code::new(1251, "08004");
/// ER_QUERY_INTERRUPTED: KILL QUERY stopped the statement.
pub const QUERY_INTERRUPTED: Code = Code::new(1317, "70100");
/// ER_STMT_HAS_NO_OPEN_CURSOR: COM_STMT_FETCH without a cursor.
pub const NO_OPEN_CURSOR: Code = Code::new(1421, "HY000");
/// ER_CONNECT_TO_FOREIGN_DATA_SOURCE: corelay cannot reach the db server.
pub const BACKEND_UNREACHABLE: Code = Code::new(1429, "HY000");
/// ER_CONNECTION_KILLED: the session was KILLed.
pub const CONNECTION_KILLED: Code = Code::new(1927, "70100");
/// ER_CONNECTION_KILLED, as corelay reports a db server connection that died under a
/// statement.
pub const BACKEND_LOST: Code = CONNECTION_KILLED;
/// ER_STATEMENT_TIMEOUT: no reply within `query_timeout_ms`.
pub const STATEMENT_TIMEOUT: Code = Code::new(1969, "70100");
/// ER_CLIENT_INTERACTION_TIMEOUT: the client was idle longer than `client_idle_timeout_s`.
pub const CLIENT_INTERACTION_TIMEOUT: Code = Code::new(4031, "HY000");
