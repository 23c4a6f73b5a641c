//! The transport layer: what sessions, backends, pools and the admin port need from the
//! runtime, and the runtime-free pieces built on it.
//!
//! - [`Transport`] (a byte stream with timeouts) and [`Connector`] (open a connection,
//!   sleep, run a task) are all the session, backend, pool and admin code know of I/O;
//! - [`Buffer`] is the read buffer every connection uses; [`packet`] reads whole packets;
//! - [`listen`] creates the shards' listening sockets (SO_REUSEPORT) and checks nobody
//!   else shares the port;
//! - [`glommio`] implements the traits on glommio's sockets: the only code outside
//!   `shard/` that knows the runtime;
//! - `fake` (tests only) has scripted peers: a client and MySQL servers in memory, so that
//!   session flows are tested in milliseconds without a runtime or a real server.

mod buffer;
#[cfg(test)]
pub mod fake;
pub mod glommio;
pub mod listen;
pub mod packet;
pub mod tls;

pub use buffer::Buffer;
pub use packet::{read_packet, PacketReadError};

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// A connected byte stream.
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// Reads at least one byte into `dst`, or returns 0 at end of stream. With a timeout,
    /// fails with `ErrorKind::TimedOut` when nothing arrives in time.
    async fn read(&mut self, dst: &mut [u8], timeout: Option<Duration>) -> io::Result<usize>;
    /// Writes all of `src`.
    async fn write_all(&mut self, src: &[u8]) -> io::Result<()>;
    /// Whether the peer closed the connection or sent something unasked (checked without
    /// waiting). An idle pooled backend connection for which this is true is unusable.
    fn peer_closed(&self) -> bool;
    /// Switches the stream to TLS and runs the handshake. `early` holds bytes already
    /// read past the last plaintext packet (the start of the TLS handshake); each read of
    /// the handshake waits at most `timeout`.
    async fn start_tls(&mut self, _start: tls::TlsStart, _early: &[u8], _timeout: Option<Duration>) -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "this transport has no TLS"))
    }
    /// What TLS negotiated, when the stream is encrypted.
    fn tls(&self) -> Option<tls::TlsFacts> {
        None
    }
}

/// Switches `t` to TLS: the bytes `buf` holds past the last plaintext packet (a peer may
/// send its first handshake bytes together with the SSLRequest) go to TLS first.
pub async fn upgrade<T: Transport>(
    t: &mut T,
    buf: &mut Buffer,
    start: tls::TlsStart,
    timeout: Option<Duration>,
) -> io::Result<()> {
    let early = buf.filled().to_vec();
    buf.consume(early.len());
    t.start_tls(start, &early, timeout).await
}

/// Opens backend connections.
#[allow(async_fn_in_trait)]
pub trait Connector {
    type Conn: Transport + 'static;
    async fn connect(&self, addr: SocketAddr, timeout: Duration) -> io::Result<Self::Conn>;
    /// Sleeps for `d` (used for waits with a deadline).
    async fn sleep(&self, d: Duration);
    /// Runs `task` on the shard beside the sessions (a pipelined connection's driver). The
    /// runtime may poll it once before this returns.
    fn spawn(&self, task: impl std::future::Future<Output = ()> + 'static);
}
