//! Session flows against scripted fake peers ([`crate::net::fake`]): a client and MySQL
//! servers in memory, driven on the test's thread. Each test runs a real [`serve`] from
//! login to hang-up and asserts what the client received, what the servers received, and
//! what the shard's pool holds between commands. The end-to-end tests in `tests/` run the
//! same behaviours against real MariaDB servers.

use std::sync::Arc;

use super::{serve, Doing, ShardState};
use crate::config::testing;
use crate::net::fake::{Answer, Driver, FakeClient, FakeConnector, Received};
use crate::protocol::command as cmd;
use crate::protocol::err::ErrPacket;
use crate::protocol::status;
use crate::status::StatusRegion;

/// A shard of one primary and one user with an empty password, without pipelining (every
/// statement takes the session's own connection), whose servers answer with `script`.
fn shard(script: impl FnMut(&Received) -> Answer + 'static) -> ShardState<FakeConnector> {
    let config = testing::config(&format!("[proxy]\npipeline_depth = 0\n{}", testing::ONE_PRIMARY));
    ShardState::new(Arc::new(config), StatusRegion::create(1).unwrap(), 0, FakeConnector::new(script))
}

/// A logged-in session of user `u` on `shard`, and its client.
fn session<'a>(shard: &'a ShardState<FakeConnector>) -> (Driver<'a>, FakeClient) {
    let client = FakeClient::logging_in_as("u");
    let mut d = Driver::new(&shard.connector, serve(shard, client.clone(), "127.0.0.1:5000".parse().unwrap()));
    settle(&mut d, shard, &client);
    let (_, ok) = client.packets().pop().unwrap();
    assert_eq!(ok[0], 0, "the login ends with OK: {ok:?}");
    (d, client)
}

/// Waits until the session has read all the client sent, answered it, and waits for the
/// next command.
fn settle(d: &mut Driver<'_>, shard: &ShardState<FakeConnector>, client: &FakeClient) {
    d.until("the session to wait for the next command", |_| {
        let mut idle = false;
        shard.each_session(|p| idle = matches!(p.doing.get(), Doing::Idle { .. }));
        client.all_read() && idle
    });
}

/// Sends a COM_QUERY and waits for the session to answer it; returns the last packet the
/// client got.
fn query(d: &mut Driver<'_>, shard: &ShardState<FakeConnector>, client: &FakeClient, sql: &str) -> Vec<u8> {
    client.query(sql);
    settle(d, shard, client);
    client.packets().pop().unwrap().1
}

/// Hangs up and waits for the session to end.
fn hang_up(mut d: Driver<'_>, client: &FakeClient) {
    client.hang_up();
    d.until("the session to end", Driver::finished);
}

/// (open, idle) connections of the primary in the shard's pool.
fn pool(shard: &ShardState<FakeConnector>) -> (usize, usize) {
    let (open, idle, _) = shard.pool.stats(0);
    (open, idle)
}

fn is_ok(packet: &[u8]) -> bool {
    packet.first() == Some(&0)
}

/// The text statements connection `conn` received.
fn texts(connector: &FakeConnector, conn: usize) -> Vec<String> {
    connector
        .received()
        .into_iter()
        .filter(|r| r.conn == conn && r.command == cmd::QUERY)
        .map(|r| r.text().to_string())
        .collect()
}

#[test]
fn user_variables_pin_the_connection_which_is_reset_before_it_goes_back() {
    let shard = shard(|_| Answer::ok());
    let (mut d, client) = session(&shard);
    assert_eq!(pool(&shard), (1, 1), "the login's connection went back to the pool");
    assert!(is_ok(&query(&mut d, &shard, &client, "SET @a = 1")));
    assert_eq!(pool(&shard), (1, 0), "the session keeps the connection that holds @a");
    assert!(is_ok(&query(&mut d, &shard, &client, "SELECT @a")));
    assert_eq!(pool(&shard), (1, 0));
    hang_up(d, &client);
    let resets = shard.connector.received().iter().filter(|r| r.command == cmd::RESET_CONNECTION).count();
    assert_eq!(resets, 1, "the pinned connection is reset before another session gets it");
    assert_eq!(pool(&shard), (1, 1));
}

#[test]
fn lock_tables_pins_until_unlock_tables_and_then_the_connection_goes_back() {
    let shard = shard(|_| Answer::ok());
    let (mut d, client) = session(&shard);
    assert!(is_ok(&query(&mut d, &shard, &client, "LOCK TABLES t WRITE")));
    assert_eq!(pool(&shard), (1, 0));
    assert!(is_ok(&query(&mut d, &shard, &client, "UNLOCK TABLES")));
    assert_eq!(pool(&shard), (1, 1), "nothing pins it any more");
    hang_up(d, &client);
    assert!(shard.connector.received().iter().all(|r| r.command != cmd::RESET_CONNECTION), "nothing to reset");
}

#[test]
fn a_read_whose_connection_dies_before_replying_is_sent_again_on_another() {
    let shard = shard(|r| match (r.conn, r.text()) {
        (1, "SELECT v FROM t") => Answer::Close,
        (_, "SELECT v FROM t") => Answer::rows("v", &["42"]),
        _ => Answer::ok(),
    });
    let (mut d, client) = session(&shard);
    let before = client.packets().len();
    let last = query(&mut d, &shard, &client, "SELECT v FROM t");
    let reply: Vec<Vec<u8>> = client.packets().into_iter().skip(before).map(|(_, p)| p).collect();
    assert_eq!(reply.len(), 5, "column count, definition, EOF, row, EOF: {reply:?}");
    assert_eq!(reply[3], b"\x0242", "the row the second connection sent");
    assert_eq!(last[0], 0xFE);
    assert_eq!(texts(&shard.connector, 1), ["SELECT v FROM t"]);
    assert_eq!(texts(&shard.connector, 2), ["SELECT v FROM t"]);
    assert_eq!(shard.slot().retries.load(std::sync::atomic::Ordering::Relaxed), 1);
    hang_up(d, &client);
}

#[test]
fn a_write_whose_connection_dies_is_not_sent_again_and_the_session_goes_on() {
    let shard = shard(|r| match (r.conn, r.text()) {
        (1, "UPDATE t SET v = 1") => Answer::Close,
        _ => Answer::ok(),
    });
    let (mut d, client) = session(&shard);
    let e = ErrPacket::parse(&query(&mut d, &shard, &client, "UPDATE t SET v = 1")).unwrap();
    assert_eq!((e.code, e.sql_state.as_str()), (1927, "70100"));
    assert!(e.message.contains("the statement may not have run"), "{}", e.message);
    let updates = shard.connector.received().iter().filter(|r| r.text() == "UPDATE t SET v = 1").count();
    assert_eq!(updates, 1, "a write is sent once");
    assert_eq!(pool(&shard), (0, 0), "the dead connection left the pool");
    assert!(is_ok(&query(&mut d, &shard, &client, "SELECT 1")), "the session goes on");
    assert_eq!(texts(&shard.connector, 2), ["SELECT 1"]);
    hang_up(d, &client);
}

#[test]
fn a_lost_transaction_is_reported_with_what_it_held_and_the_session_starts_afresh() {
    let in_trans = status::AUTOCOMMIT | status::IN_TRANS;
    let shard = shard(move |r| match (r.conn, r.text()) {
        (_, "BEGIN") => Answer::ok_with(in_trans),
        (_, "CREATE TEMPORARY TABLE tmp (a int)") => Answer::ok_with(in_trans),
        (1, "INSERT INTO t VALUES (1)") => Answer::Close,
        _ => Answer::ok(),
    });
    let (mut d, client) = session(&shard);
    assert!(is_ok(&query(&mut d, &shard, &client, "BEGIN")));
    assert!(is_ok(&query(&mut d, &shard, &client, "CREATE TEMPORARY TABLE tmp (a int)")));
    assert_eq!(pool(&shard), (1, 0), "the transaction keeps the connection");
    let e = ErrPacket::parse(&query(&mut d, &shard, &client, "INSERT INTO t VALUES (1)")).unwrap();
    assert_eq!(e.code, 1927);
    assert!(
        e.message.contains("the open transaction was rolled back; temporary table, transaction")
            && e.message.contains("this session can go on"),
        "{}",
        e.message
    );
    assert!(is_ok(&query(&mut d, &shard, &client, "SELECT 1")));
    assert_eq!(pool(&shard), (1, 1), "nothing of the lost connection pins the new one");
    hang_up(d, &client);
    assert!(shard.connector.received().iter().all(|r| r.command != cmd::RESET_CONNECTION));
}

#[test]
fn a_prepared_statement_is_prepared_again_on_the_connection_that_executes_it() {
    let shard = shard(|r| match (r.conn, r.command) {
        // The first connection dies right after the PREPARE, while idle in the pool.
        (1, cmd::STMT_PREPARE) => {
            let Answer::Reply(p) = Answer::prepared(7, 1) else { unreachable!() };
            Answer::ReplyThenClose(p)
        }
        (_, cmd::STMT_PREPARE) => Answer::prepared(9, 1),
        (_, cmd::STMT_EXECUTE) if r.stmt_id() == Some(9) => Answer::binary_row(5),
        (_, cmd::STMT_EXECUTE) => Answer::error(1243, "HY000", "Unknown prepared statement handler"),
        _ => Answer::ok(),
    });
    let (mut d, client) = session(&shard);
    client.send(cmd::STMT_PREPARE, b"SELECT ?");
    settle(&mut d, &shard, &client);
    let prepare_ok = client.packets().into_iter().find(|(_, p)| p.len() == 12 && p[0] == 0).unwrap().1;
    let id = u32::from_le_bytes([prepare_ok[1], prepare_ok[2], prepare_ok[3], prepare_ok[4]]);
    assert_ne!(id, 7, "the client gets corelay's statement id, not the server's");
    let before = client.packets().len();
    client.execute(id, Some(5));
    settle(&mut d, &shard, &client);
    let reply: Vec<Vec<u8>> = client.packets().into_iter().skip(before).map(|(_, p)| p).collect();
    assert!(reply.iter().all(|p| p[0] != 0xFF), "no error: {reply:?}");
    assert!(reply.iter().any(|p| p.starts_with(&[0, 0, 5])), "the row: {reply:?}");
    let second: Vec<(u8, Option<u32>, String)> = shard
        .connector
        .received()
        .into_iter()
        .filter(|r| r.conn == 2)
        .map(|r| (r.command, r.stmt_id(), r.text().to_string()))
        .collect();
    assert_eq!(second[0].0, cmd::STMT_PREPARE);
    assert_eq!(second[0].2, "SELECT ?");
    assert_eq!((second[1].0, second[1].1), (cmd::STMT_EXECUTE, Some(9)), "executed with the new id");
    hang_up(d, &client);
}

#[test]
fn an_execute_whose_connection_dies_before_replying_is_prepared_and_sent_again() {
    let shard = shard(|r| match (r.conn, r.command) {
        (_, cmd::STMT_PREPARE) => Answer::prepared(r.conn as u32, 0),
        (1, cmd::STMT_EXECUTE) => Answer::Close,
        (2, cmd::STMT_EXECUTE) if r.stmt_id() == Some(2) => Answer::binary_row(8),
        _ => Answer::ok(),
    });
    let (mut d, client) = session(&shard);
    client.send(cmd::STMT_PREPARE, b"SELECT v FROM t");
    settle(&mut d, &shard, &client);
    let before = client.packets().len();
    client.execute(1, None);
    settle(&mut d, &shard, &client);
    let reply: Vec<Vec<u8>> = client.packets().into_iter().skip(before).map(|(_, p)| p).collect();
    assert!(reply.iter().any(|p| p.starts_with(&[0, 0, 8])), "the second connection's row: {reply:?}");
    assert!(reply.iter().all(|p| p[0] != 0xFF));
    assert_eq!(shard.connector.opened(), 2);
    hang_up(d, &client);
}

#[test]
fn an_executed_statement_applies_its_effects_as_a_text_statement_does() {
    let shard = shard(|r| match r.command {
        cmd::STMT_PREPARE => Answer::prepared(3, 1),
        _ => Answer::ok(),
    });
    let (mut d, client) = session(&shard);
    client.send(cmd::STMT_PREPARE, b"SET @v = ?");
    settle(&mut d, &shard, &client);
    assert_eq!(pool(&shard), (1, 1), "preparing sets nothing");
    client.execute(1, Some(5));
    settle(&mut d, &shard, &client);
    assert!(is_ok(&client.packets().pop().unwrap().1));
    assert_eq!(pool(&shard), (1, 0), "the connection holding @v is the session's until it ends");
    hang_up(d, &client);
    assert_eq!(shard.connector.received().iter().filter(|r| r.command == cmd::RESET_CONNECTION).count(), 1);
}
