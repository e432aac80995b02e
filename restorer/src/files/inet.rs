//! Inet sockets other than established TCP (unbound, bound, listening, connected UDP): a new socket with
//! the dumped options, bound to its address, then listening with its backlog or connected to its peer
//! (after the bind, so the local address and port are the dumped ones, not the ones connect would pick). Also the address and option helpers the
//! established TCP connections (`tcp.rs`) share.

use std::os::fd::{AsRawFd, OwnedFd};

use dormant_image::records::{InetSocket, UdpDatagram};
use nix::errno::Errno;

use super::raw::{check, owned, set_int, sockaddr, Failure};

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
