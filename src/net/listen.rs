//! Listening sockets: each shard accepts on its own SO_REUSEPORT socket, which the master
//! creates (and keeps a copy of) before any shard runs. Also the checks that corelay is
//! alone on its port: SO_REUSEPORT would otherwise let a second corelay of the same user
//! silently share it.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};

use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;

#[derive(Debug, Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct ListenError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Fails if something already listens on `addr`, even with SO_REUSEPORT (another corelay
/// would otherwise silently share the port): a plain bind without SO_REUSEPORT is refused
/// then.
pub fn check_free(addr: SocketAddr) -> Result<(), ListenError> {
    let err = |source| ListenError { addr, source };
    let domain = if addr.is_ipv6() { Domain::IPV6 } else { Domain::IPV4 };
    let sock = Socket::new(domain, Type::STREAM.cloexec(), Some(Protocol::TCP)).map_err(err)?;
    sock.set_reuse_address(true).map_err(err)?;
    sock.bind(&addr.into()).map_err(err)?;
    Ok(())
}

/// After binding: fails if a socket other than `ours` listens on `addr`. SO_REUSEPORT lets
/// a process of the same user join the port between [`check_free`] and the bind (two
/// corelays started at once); the kernel's table of sockets (`/proc/net/tcp`, `tcp6`)
/// shows it then, by an inode that is none of ours.
pub fn check_alone(addr: SocketAddr, ours: &[&OwnedFd]) -> Result<(), ListenError> {
    use std::os::fd::AsRawFd;
    let inodes: Vec<u64> =
        ours.iter().map(|fd| nix::sys::stat::fstat(fd.as_raw_fd()).map(|st| st.st_ino).unwrap_or(0)).collect();
    let (table, local) = match addr {
        SocketAddr::V4(a) => ("/proc/net/tcp", format!("{:08X}:{:04X}", u32::from_ne_bytes(a.ip().octets()), a.port())),
        SocketAddr::V6(a) => {
            let o = a.ip().octets();
            let words: String =
                o.chunks(4).map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))).collect();
            ("/proc/net/tcp6", format!("{words}:{:04X}", a.port()))
        }
    };
    // No table (no /proc): nothing more to learn than check_free did.
    let Ok(text) = std::fs::read_to_string(table) else { return Ok(()) };
    let foreign = text.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let inode = f.get(9).and_then(|i| i.parse::<u64>().ok());
        f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"0A") && inode.is_some_and(|i| !inodes.contains(&i))
    });
    if foreign {
        let source = std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "another process listens there too (SO_REUSEPORT); stop it or choose another address",
        );
        return Err(ListenError { addr, source });
    }
    Ok(())
}

/// Creates one shard's listening socket: SO_REUSEADDR + SO_REUSEPORT, the configured
/// backlog, non-blocking, close-on-exec. The master creates these before spawning shards
/// and keeps a copy, so connections queued on a shard that dies wait for its successor.
pub fn bind_listener(addr: SocketAddr, backlog: u32) -> Result<OwnedFd, ListenError> {
    let err = |source| ListenError { addr, source };
    let domain = if addr.is_ipv6() { Domain::IPV6 } else { Domain::IPV4 };
    let sock = Socket::new(domain, Type::STREAM.cloexec(), Some(Protocol::TCP)).map_err(err)?;
    sock.set_reuse_address(true).map_err(err)?;
    sock.set_reuse_port(true).map_err(err)?;
    sock.set_nonblocking(true).map_err(err)?;
    sock.bind(&addr.into()).map_err(err)?;
    sock.listen(backlog.min(i32::MAX as u32) as i32).map_err(err)?;
    // SAFETY: into_raw_fd hands over ownership of a valid descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(sock.into_raw_fd()) })
}

/// Accepted and connected sockets are not close-on-exec by default in glommio.
pub fn set_cloexec(fd: &impl std::os::fd::AsRawFd) {
    // SAFETY: fcntl on a descriptor we own; failure only means the flag stays unset.
    unsafe {
        let raw = fd.as_raw_fd();
        let flags = libc::fcntl(raw, libc::F_GETFD);
        if flags >= 0 {
            libc::fcntl(raw, libc::F_SETFD, flags | libc::FD_CLOEXEC);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that joined the port through SO_REUSEPORT is found by its inode, for IPv4
    /// and IPv6 addresses alike.
    #[test]
    fn another_listener_sharing_the_port_is_found() {
        for local in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(ours) = bind_listener(local.parse().unwrap(), 16) else {
                assert!(local.starts_with('['), "binding {local}");
                continue; // no IPv6 on this host
            };
            let addr = std::net::TcpListener::from(ours.try_clone().unwrap()).local_addr().unwrap();
            assert!(check_alone(addr, &[&ours]).is_ok(), "{addr}: alone");
            let theirs = bind_listener(addr, 16).unwrap();
            let e = check_alone(addr, &[&ours]).unwrap_err().to_string();
            assert!(e.contains("another process listens there too"), "{addr}: {e}");
            assert!(check_alone(addr, &[&ours, &theirs]).is_ok(), "{addr}: both ours");
        }
    }
}
