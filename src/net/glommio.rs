//! The thin adapter between glommio's sockets and the runtime-agnostic
//! [`Transport`]/[`Connector`] traits the session code uses. glommio is dormant upstream:
//! keeping it here and in `shard/` keeps it replaceable.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use super::listen::set_cloexec;
use super::tls::{TlsFacts, TlsLayer, TlsStart};
use super::{Connector, Transport};

/// A glommio TCP stream with per-call read timeouts, encrypted once TLS starts.
pub struct Conn {
    stream: TcpStream,
    read_timeout: Option<Duration>,
    tls: Option<Box<TlsLayer>>,
}

impl Conn {
    pub fn new(stream: TcpStream, write_timeout: Option<Duration>) -> Conn {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(write_timeout);
        Conn { stream, read_timeout: None, tls: None }
    }
}

impl Transport for Conn {
    async fn read(&mut self, dst: &mut [u8], timeout: Option<Duration>) -> io::Result<usize> {
        if timeout != self.read_timeout {
            self.stream.set_read_timeout(timeout).map_err(|e| io::Error::other(e.to_string()))?;
            self.read_timeout = timeout;
        }
        match &mut self.tls {
            Some(tls) => tls.read(&mut self.stream, dst).await,
            None => self.stream.read(dst).await,
        }
    }

    async fn write_all(&mut self, src: &[u8]) -> io::Result<()> {
        match &mut self.tls {
            Some(tls) => tls.write_all(&mut self.stream, src).await,
            None => self.stream.write_all(src).await,
        }
    }

    async fn start_tls(&mut self, start: TlsStart, early: &[u8], timeout: Option<Duration>) -> io::Result<()> {
        if timeout != self.read_timeout {
            self.stream.set_read_timeout(timeout).map_err(|e| io::Error::other(e.to_string()))?;
            self.read_timeout = timeout;
        }
        let mut tls = Box::new(TlsLayer::new(start, early)?);
        tls.handshake(&mut self.stream).await?;
        self.tls = Some(tls);
        Ok(())
    }

    fn tls(&self) -> Option<TlsFacts> {
        self.tls.as_ref().and_then(|t| t.facts())
    }

    fn peer_closed(&self) -> bool {
        use std::os::fd::AsRawFd;
        let mut b = [0u8; 1];
        // SAFETY: a non-blocking peek into a local buffer on a descriptor we own.
        let n = unsafe {
            libc::recv(self.stream.as_raw_fd(), b.as_mut_ptr().cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT)
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::Interrupted;
        }
        // 0: closed; >0: unsolicited bytes (e.g. an error before the server hung up).
        true
    }
}

/// Opens backend connections from the current shard.
pub struct GlommioConnector {
    pub write_timeout: Option<Duration>,
}

impl Connector for GlommioConnector {
    type Conn = Conn;

    async fn connect(&self, addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(addr, timeout).await.map_err(|e| match e {
            glommio::GlommioError::IoError(io) => io,
            glommio::GlommioError::TimedOut(_) => io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
            other => io::Error::other(other.to_string()),
        })?;
        set_cloexec(&stream);
        // SAFETY: borrowing the descriptor of a live stream for the duration of this call.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(std::os::fd::AsRawFd::as_raw_fd(&stream)) };
        let sock = socket2::SockRef::from(&fd);
        let _ = sock.set_keepalive(true);
        let _ = sock.set_tcp_keepalive(
            &socket2::TcpKeepalive::new().with_time(Duration::from_secs(60)).with_interval(Duration::from_secs(10)),
        );
        Ok(Conn::new(stream, self.write_timeout))
    }

    async fn sleep(&self, d: Duration) {
        glommio::timer::sleep(d).await;
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + 'static) {
        glommio::spawn_local(task).detach();
    }
}
