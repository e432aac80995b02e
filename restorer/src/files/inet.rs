//! Inet sockets other than established TCP (unbound, bound, listening, connected UDP): a new socket with
//! the dumped options, bound to its address, then listening with its backlog or connected to its peer
//! (after the bind, so the local address and port are the dumped ones, not the ones connect would pick). Also the address and option helpers the
//! established TCP connections (`tcp.rs`) share.

use std::os::fd::{AsRawFd, OwnedFd};

use dormant_image::records::{InetSocket, UdpDatagram};
use nix::errno::Errno;

use super::raw::{check, owned};

/// What was being done, and the errno.
pub(super) type Failure = (String, Errno);

/// A `sockaddr_in`/`sockaddr_in6` for `addr` (IPv4 in the first 4 bytes) and its length.
pub(super) fn sockaddr(
    family: i32,
    (a, port): ([u8; 16], u16),
) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = if family == libc::AF_INET {
        // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in.
        let sin =
            unsafe { &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_port = port.to_be();
        sin.sin_addr.s_addr = u32::from_be_bytes([a[0], a[1], a[2], a[3]]).to_be();
        std::mem::size_of::<libc::sockaddr_in>()
    } else {
        // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in6.
        let sin6 =
            unsafe { &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
        sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sin6.sin6_port = port.to_be();
        sin6.sin6_addr.s6_addr = a;
        std::mem::size_of::<libc::sockaddr_in6>()
    };
    (ss, len as libc::socklen_t)
}

/// `setsockopt` with a plain value of type `T`.
pub(super) fn set_raw<T>(
    fd: &OwnedFd,
    level: i32,
    name: i32,
    v: &T,
    what: &str,
) -> Result<(), Failure> {
    // SAFETY: the kernel reads `size_of_val(v)` bytes from `v`, which is a valid reference.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of_val(v) as libc::socklen_t,
        )
    })
    .map(|_| ())
    .map_err(|e| (format!("setsockopt {what}"), e))
}

/// `setsockopt` with an int.
pub(super) fn set_int(
    fd: &OwnedFd,
    level: i32,
    name: i32,
    v: libc::c_int,
    what: &str,
) -> Result<(), Failure> {
    set_raw(fd, level, name, &v, what)
}

/// Opens `s` (bound, then `queued` sent to it again, then connected or listening).
pub(super) fn open(s: &InetSocket, queued: &[UdpDatagram]) -> Result<OwnedFd, Failure> {
    // SAFETY: socket returns a new fd.
    let fd = owned(unsafe { libc::socket(s.family, s.sock_type | libc::SOCK_CLOEXEC, s.protocol) })
        .map_err(|e| ("socket".to_string(), e))?;
    let sol = libc::SOL_SOCKET;
    set_int(
        &fd,
        sol,
        libc::SO_REUSEADDR,
        s.reuseaddr.into(),
        "SO_REUSEADDR",
    )?;
    set_int(
        &fd,
        sol,
        libc::SO_REUSEPORT,
        s.reuseport.into(),
        "SO_REUSEPORT",
    )?;
    set_int(
        &fd,
        sol,
        libc::SO_KEEPALIVE,
        s.keepalive.into(),
        "SO_KEEPALIVE",
    )?;
    if s.sock_type == libc::SOCK_STREAM {
        let on = s.nodelay.into();
        set_int(&fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, on, "TCP_NODELAY")?;
    }
    if s.family == libc::AF_INET6 {
        let on = s.v6only.into();
        set_int(
            &fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            on,
            "IPV6_V6ONLY",
        )?;
    }
    if let Some(bound) = s.bound {
        let (ss, len) = sockaddr(s.family, bound);
        // SAFETY: bind reads `len` bytes of the address from our stack.
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&ss as *const libc::sockaddr_storage).cast(),
                len,
            )
        })
        .map_err(|e| (format!("bind to port {}", bound.1), e))?;
    }
    // Before the connect: a connected socket takes datagrams from its peer only, and these were queued
    // by whoever sent them.
    if !queued.is_empty() {
        let to = s
            .bound
            .ok_or_else(|| ("refilling an unbound UDP socket".to_string(), Errno::EINVAL))?;
        super::udp_queue::refill(&fd, s.family, to, queued)?;
    }
    if let Some(peer) = s.peer {
        let (ss, len) = sockaddr(s.family, peer);
        // SAFETY: connect reads `len` bytes of the address from our stack.
        check(unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&ss as *const libc::sockaddr_storage).cast(),
                len,
            )
        })
        .map_err(|e| (format!("connect to port {}", peer.1), e))?;
    }
    if let Some(backlog) = s.listen_backlog {
        // SAFETY: listen on our own socket.
        check(unsafe { libc::listen(fd.as_raw_fd(), backlog.min(i32::MAX as u32) as libc::c_int) })
            .map_err(|e| ("listen".to_string(), e))?;
    }
    Ok(fd)
}
