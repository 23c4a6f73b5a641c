//! Spreads new clients over the shards by load instead of by address hash.
//!
//! SO_REUSEPORT alone hands each connection to the listener its 4-tuple hashes to, so 64
//! clients on two shards split 28/36 as often as 32/32, and the busier shard sets the
//! tail latency of every client on it. Here a small reuseport eBPF program (attached to
//! the listeners' group with `SO_ATTACH_REUSEPORT_EBPF`) chooses the listener instead:
//! it picks two shards at random (always both when there are two) and gives the
//! connection to the one with fewer sessions — the "power of two choices", which keeps
//! the most loaded shard within a few sessions of the mean without reading every count.
//!
//! The counts live in a BPF array map that corelay also maps into memory: the program
//! adds one when it gives a shard a connection, the shard subtracts one when that session
//! ends, and a shard whose accepts and count stood still for a second writes its true
//! session count back (a connection whose handshake never completed was counted but never
//! accepted). Each
//! shard writes only its own count; nothing on the query path touches the map.
//!
//! Loading a BPF program needs CAP_BPF (or root). Without it, or on a kernel without
//! reuseport programs, corelay says so once and the kernel's hash spreads clients as
//! before.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The shards' session counts, as the eBPF program sees them.
pub struct Balancer {
    counts: memmap2::MmapRaw,
    shards: usize,
    // The program stays attached to the group while a listener lives; the descriptors
    // are kept so the maps outlive a shard restart.
    _counts_map: OwnedFd,
    _sockets_map: OwnedFd,
    _program: OwnedFd,
}

impl Balancer {
    /// Loads the program and attaches it to the reuseport group of `listeners` (shard
    /// `i`'s listener at index `i`). Needs at least two listeners.
    pub fn attach(listeners: &[RawFd]) -> io::Result<Balancer> {
        let shards = listeners.len();
        if shards < 2 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "one shard: nothing to balance"));
        }
        let n = u32::try_from(shards).map_err(|_| io::Error::other("too many shards"))?;
        let counts_map = map_create(MAP_TYPE_ARRAY, 8, n, MAP_F_MMAPABLE, "corelay_load")?;
        let sockets_map = map_create(MAP_TYPE_REUSEPORT_SOCKARRAY, 8, n, 0, "corelay_socks")?;
        for (i, fd) in listeners.iter().enumerate() {
            let key = i as u32;
            let value = *fd as u64;
            map_update(sockets_map.as_raw_fd(), &key, &value)?;
        }
        let program = prog_load(&program(n, counts_map.as_raw_fd(), sockets_map.as_raw_fd()))?;
        let len = (shards * 8).next_multiple_of(crate::util::host::page_size());
        let counts = memmap2::MmapOptions::new().len(len).map_raw(counts_map.as_raw_fd())?;
        let fd = program.as_raw_fd();
        // SAFETY: setsockopt with a pointer to a local int of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                listeners[0],
                libc::SOL_SOCKET,
                SO_ATTACH_REUSEPORT_EBPF,
                (&fd as *const RawFd).cast(),
                std::mem::size_of::<RawFd>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Balancer { counts, shards, _counts_map: counts_map, _sockets_map: sockets_map, _program: program })
    }

    fn count(&self, shard: usize) -> &AtomicU64 {
        assert!(shard < self.shards);
        // SAFETY: the mapping holds `shards` 8-byte-aligned u64 slots (page-aligned
        // start, array map values are 8 bytes apart) and lives as long as `self`; the
        // kernel updates them atomically too.
        unsafe { &*(self.counts.as_ptr().add(shard * 8) as *const AtomicU64) }
    }

    /// A shard ended: its sessions went with it, and nobody is left to count them down.
    /// (Connections still queued on its socket wait for its successor and are not counted
    /// again; the successor writes its true count back once it has accepted them.)
    pub fn forget(&self, shard: usize) {
        self.count(shard).store(0, Ordering::Relaxed);
    }

    /// Every shard's count, in shard order.
    pub fn counts(&self) -> Vec<u64> {
        (0..self.shards).map(|i| self.count(i).load(Ordering::Relaxed)).collect()
    }
}

/// One shard's handle on its own count.
#[derive(Clone)]
pub struct Share {
    balancer: Arc<Balancer>,
    shard: usize,
}

impl Share {
    pub fn new(balancer: Arc<Balancer>, shard: usize) -> Share {
        Share { balancer, shard }
    }

    /// A session of this shard ended (the program counted it when it chose the shard).
    pub fn closed(&self) {
        let _ =
            self.balancer.count(self.shard).fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| c.checked_sub(1));
    }

    /// Writes back the true number of sessions, if the count is still `seen` (the program
    /// did not count a new connection meanwhile).
    pub fn settle(&self, seen: u64, sessions: u64) {
        let _ = self.balancer.count(self.shard).compare_exchange(seen, sessions, Ordering::Relaxed, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.balancer.count(self.shard).load(Ordering::Relaxed)
    }

    /// Every shard's count (what the admin port shows).
    pub fn all(&self) -> Vec<u64> {
        self.balancer.counts()
    }
}

/// Connections waiting in a listening socket's accept queue (TCP_INFO's `tcpi_unacked` on
/// a listener); None if the kernel does not say.
pub fn accept_queue(listener: &impl AsRawFd) -> Option<u32> {
    // SAFETY: all-zero is a valid tcp_info (plain integers).
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt into a local struct of the length passed.
    let rc = unsafe {
        libc::getsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(info.tcpi_unacked)
}

// Kernel ABI numbers (include/uapi/linux/bpf.h, asm-generic/socket.h).
const SO_ATTACH_REUSEPORT_EBPF: libc::c_int = 52;
const CMD_MAP_CREATE: libc::c_long = 0;
const CMD_MAP_UPDATE_ELEM: libc::c_long = 2;
const CMD_PROG_LOAD: libc::c_long = 5;
const MAP_TYPE_ARRAY: u32 = 2;
const MAP_TYPE_REUSEPORT_SOCKARRAY: u32 = 20;
const MAP_F_MMAPABLE: u32 = 1 << 10;
const PROG_TYPE_SK_REUSEPORT: u32 = 21;
const ATTACH_SK_REUSEPORT_SELECT: u32 = 39;
const FN_MAP_LOOKUP_ELEM: i32 = 1;
const FN_GET_PRANDOM_U32: i32 = 7;
const FN_SK_SELECT_REUSEPORT: i32 = 82;
const SK_PASS: i32 = 1;

/// `union bpf_attr`, large enough for the commands used here; the kernel wants the
/// bytes it does not know to be zero.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }

    fn u32(&mut self, at: usize, v: u32) -> &mut Attr {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }

    fn u64(&mut self, at: usize, v: u64) -> &mut Attr {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }

    fn name(&mut self, at: usize, name: &str) -> &mut Attr {
        let b = name.as_bytes();
        let n = b.len().min(15);
        self.0[at..at + n].copy_from_slice(&b[..n]);
        self
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: the bpf syscall with a zero-padded attribute block of the size passed;
    // every pointer in it refers to memory that outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut Attr, std::mem::size_of::<Attr>()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

fn owned(fd: libc::c_long) -> io::Result<OwnedFd> {
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::other("bpf returned a bad descriptor"))?;
    // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn map_create(kind: u32, value_size: u32, entries: u32, flags: u32, name: &str) -> io::Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, kind).u32(4, 4).u32(8, value_size).u32(12, entries).u32(16, flags).name(28, name);
    owned(bpf(CMD_MAP_CREATE, &mut a)?)
}

fn map_update(map: RawFd, key: &u32, value: &u64) -> io::Result<()> {
    let mut a = Attr::new();
    a.u32(0, map as u32).u64(8, key as *const u32 as u64).u64(16, value as *const u64 as u64);
    bpf(CMD_MAP_UPDATE_ELEM, &mut a).map(|_| ())
}

/// Loads the program; when the kernel refuses it, loads it again with the verifier's log
/// on (a log that does not fit would itself fail a load) to say why.
fn prog_load(insns: &[[u8; 8]]) -> io::Result<OwnedFd> {
    let license = c"Apache-2.0";
    let attempt = |log: &mut [u8]| {
        let mut a = Attr::new();
        a.u32(0, PROG_TYPE_SK_REUSEPORT)
            .u32(4, insns.len() as u32)
            .u64(8, insns.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .name(48, "corelay_accept")
            .u32(68, ATTACH_SK_REUSEPORT_SELECT);
        if !log.is_empty() {
            a.u32(24, 1).u32(28, log.len() as u32).u64(32, log.as_mut_ptr() as u64);
        }
        bpf(CMD_PROG_LOAD, &mut a).and_then(owned)
    };
    attempt(&mut []).map_err(|e| {
        let mut log = vec![0u8; 256 * 1024];
        let _ = attempt(&mut log);
        let text = String::from_utf8_lossy(&log[..log.iter().position(|&b| b == 0).unwrap_or(0)]).into_owned();
        // The last line is the verifier's statistics; the one before says what it refused.
        match text.lines().rev().find(|l| !l.trim().is_empty() && !l.starts_with("processed ")) {
            Some(last) => io::Error::new(e.kind(), format!("{e} (verifier: {last})")),
            None => e,
        }
    })
}

/// One BPF instruction: opcode, registers, offset, immediate.
fn ins(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = code;
    b[1] = (src << 4) | (dst & 0x0f);
    b[2..4].copy_from_slice(&off.to_le_bytes());
    b[4..8].copy_from_slice(&imm.to_le_bytes());
    b
}

/// `dst = map` (a 64-bit immediate load the kernel resolves from the map descriptor).
fn ld_map(dst: u8, map: RawFd) -> [[u8; 8]; 2] {
    const PSEUDO_MAP_FD: u8 = 1;
    [ins(0x18, dst, PSEUDO_MAP_FD, 0, map), ins(0, 0, 0, 0, 0)]
}

/// The program, for `n` shards:
///
/// ```text
///     i = rand % n;  j = (i + 1 + (rand / n) % (n - 1)) % n     // two different shards
///     a = &counts[i];  b = &counts[j]                           // (lookups, null-checked)
///     if *b < *a { a = b; i = j }
///     *a += 1 (atomic);  sk_select_reuseport(ctx, sockets, &i, 0)
///     return SK_PASS        // without a selection the kernel falls back to its hash
/// ```
fn program(n: u32, counts: RawFd, sockets: RawFd) -> Vec<[u8; 8]> {
    const MOV_REG: u8 = 0xbf;
    const MOV_IMM: u8 = 0xb7;
    const ADD_IMM: u8 = 0x07;
    const ADD_REG: u8 = 0x0f;
    const DIV_IMM: u8 = 0x37;
    const MOD_IMM: u8 = 0x97;
    const STX_W: u8 = 0x63;
    const LDX_DW: u8 = 0x79;
    const ATOMIC_ADD_DW: u8 = 0xdb;
    const CALL: u8 = 0x85;
    const JEQ_IMM: u8 = 0x15;
    const JGE_REG: u8 = 0x3d;
    const EXIT: u8 = 0x95;
    let n = n as i32;
    let mut p = vec![
        ins(MOV_REG, 6, 1, 0, 0), // r6 = ctx
        ins(CALL, 0, 0, 0, FN_GET_PRANDOM_U32),
        ins(MOV_REG, 7, 0, 0, 0),
        ins(MOD_IMM, 7, 0, 0, n), // r7 = i
        ins(MOV_REG, 8, 0, 0, 0),
        ins(DIV_IMM, 8, 0, 0, n),
        ins(MOD_IMM, 8, 0, 0, n - 1),
        ins(ADD_IMM, 8, 0, 0, 1),
        ins(ADD_REG, 8, 7, 0, 0),
        ins(MOD_IMM, 8, 0, 0, n), // r8 = j
        ins(STX_W, 10, 7, -4, 0),
        ins(STX_W, 10, 8, -8, 0),
        ins(MOV_REG, 2, 10, 0, 0),
        ins(ADD_IMM, 2, 0, 0, -4),
    ];
    p.extend(ld_map(1, counts));
    p.push(ins(CALL, 0, 0, 0, FN_MAP_LOOKUP_ELEM));
    let null_i = p.len();
    p.push(ins(JEQ_IMM, 0, 0, 0, 0)); // patched: to PASS
    p.extend([ins(MOV_REG, 9, 0, 0, 0), ins(MOV_REG, 2, 10, 0, 0), ins(ADD_IMM, 2, 0, 0, -8)]);
    p.extend(ld_map(1, counts));
    p.push(ins(CALL, 0, 0, 0, FN_MAP_LOOKUP_ELEM));
    let null_j = p.len();
    p.push(ins(JEQ_IMM, 0, 0, 0, 0)); // patched: to PASS
    p.extend([
        ins(LDX_DW, 1, 9, 0, 0),
        ins(LDX_DW, 2, 0, 0, 0),
        ins(JGE_REG, 2, 1, 2, 0), // counts[j] >= counts[i]: keep i
        ins(MOV_REG, 9, 0, 0, 0),
        ins(STX_W, 10, 8, -4, 0),
        ins(MOV_IMM, 1, 0, 0, 1),
        ins(ATOMIC_ADD_DW, 9, 1, 0, 0),
        ins(MOV_REG, 1, 6, 0, 0),
    ]);
    p.extend(ld_map(2, sockets));
    p.extend([
        ins(MOV_REG, 3, 10, 0, 0),
        ins(ADD_IMM, 3, 0, 0, -4),
        ins(MOV_IMM, 4, 0, 0, 0),
        ins(CALL, 0, 0, 0, FN_SK_SELECT_REUSEPORT),
    ]);
    let pass = p.len();
    p.extend([ins(MOV_IMM, 0, 0, 0, SK_PASS), ins(EXIT, 0, 0, 0, 0)]);
    for at in [null_i, null_j] {
        p[at][2..4].copy_from_slice(&((pass - at - 1) as i16).to_le_bytes());
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpListener, TcpStream};

    fn privileged() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    /// Two listeners on one port; 64 connections must split 32/32 whatever their
    /// addresses hash to, and a closed session must lower its shard's count.
    #[test]
    fn connections_go_to_the_shard_with_fewer_sessions() {
        let first = crate::net::listen::bind_listener("127.0.0.1:0".parse().unwrap(), 1024).unwrap();
        let addr: SocketAddr = {
            let l = TcpListener::from(first.try_clone().unwrap());
            l.local_addr().unwrap()
        };
        let second = crate::net::listen::bind_listener(addr, 1024).unwrap();
        let balancer = match Balancer::attach(&[first.as_raw_fd(), second.as_raw_fd()]) {
            Ok(b) => Arc::new(b),
            Err(e) if !privileged() && e.kind() == io::ErrorKind::PermissionDenied => {
                eprintln!("not root: loading a BPF program is refused here ({e}); the fallback is the kernel hash");
                return;
            }
            Err(e) => panic!("attach: {e}"),
        };
        let clients: Vec<TcpStream> = (0..64).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let accepted = |fd: &OwnedFd| {
            let l = TcpListener::from(fd.try_clone().unwrap());
            l.set_nonblocking(true).unwrap();
            std::iter::from_fn(|| l.accept().ok()).count()
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!((accept_queue(&first), accept_queue(&second)), (Some(32), Some(32)));
        let (a, b) = (accepted(&first), accepted(&second));
        assert_eq!((a, b), (32, 32), "accept queues");
        assert_eq!(balancer.counts(), vec![32, 32]);
        let share = Share::new(balancer.clone(), 1);
        share.closed();
        assert_eq!(balancer.counts(), vec![32, 31]);
        share.settle(5, 0);
        assert_eq!(balancer.counts(), vec![32, 31], "settles only from the value it saw");
        share.settle(31, 0);
        drop(clients);
        let _next = TcpStream::connect(addr).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!((accepted(&first), accepted(&second)), (0, 1), "the emptier shard gets the next client");
    }

    #[test]
    fn a_program_the_verifier_refuses_says_why() {
        // Returns without setting r0.
        let e = prog_load(&[ins(0x95, 0, 0, 0, 0)]).map(|_| ()).unwrap_err();
        if privileged() {
            assert!(e.to_string().contains("verifier: R0"), "{e}");
        } else {
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        }
    }

    #[test]
    fn the_program_jumps_stay_inside_it() {
        let p = program(3, 5, 6);
        for (at, i) in p.iter().enumerate() {
            if i[0] & 0x07 == 0x05 && i[0] != 0x85 && i[0] != 0x95 {
                let off = i16::from_le_bytes([i[2], i[3]]) as isize;
                let to = at as isize + 1 + off;
                assert!(to > at as isize && (to as usize) < p.len(), "jump at {at} to {to}");
            }
        }
        assert_eq!(p.last().map(|i| i[0]), Some(0x95));
    }
}
