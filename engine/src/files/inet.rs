//! TCP and UDP sockets that are not connected: unbound, bound, or listening, with their common options.
//! Connected sockets (established TCP, connected UDP) are refused with an error naming the connection,
//! except established TCP with `--tcp-established`: the socket is put in repair mode and its queues,
//! sequence numbers, options and windows are read (see [`RepairedSockets`] for how repair mode is left).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;

use dormant_image::records::{DescKind, InetSocket};

use super::error::FdError;
use super::sys;
use super::tcp::RepairedSockets;

/// Address and port of a `sockaddr_in`/`sockaddr_in6`.
pub(super) fn addr_of(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large enough for.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))),
                u16::from_be(sin.sin_port),
            ))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6, which it is large enough for.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)),
                u16::from_be(sin6.sin6_port),
            ))
        }
        _ => None,
    }
}

/// The description of an inet socket, or why it cannot be dumped.
/// With `tcp_established`, an established TCP socket is dumped in repair mode and a copy of `dup` joins
/// `repaired`, which keeps repair mode on until the dump decides how the target ends.
pub fn dump(
    dup: &OwnedFd,
    family: i32,
    tcp_established: bool,
    repaired: &mut RepairedSockets,
) -> Result<DescKind, FdError> {
    let opt = |level, name, what: &str| {
        sys::sockopt_int(dup, level, name).map_err(FdError::sys(format!("getsockopt {what}")))
    };
    let sock_type = opt(libc::SOL_SOCKET, libc::SO_TYPE, "SO_TYPE")?;
    let protocol = opt(libc::SOL_SOCKET, libc::SO_PROTOCOL, "SO_PROTOCOL")?;
    if sock_type != libc::SOCK_STREAM && sock_type != libc::SOCK_DGRAM {
        return Err(FdError::Socket(format!(
            "inet socket of type {sock_type} is not supported"
        )));
    }
    let (local, _) = sys::sock_name(dup, false).map_err(FdError::sys("getsockname"))?;
    let local = addr_of(&local)
        .ok_or_else(|| FdError::Socket("getsockname gave no inet address".into()))?;
    if let Ok((peer, _)) = sys::sock_name(dup, true) {
        if tcp_established && sock_type == libc::SOCK_STREAM {
            let peer = addr_of(&peer)
                .ok_or_else(|| FdError::Socket("getpeername gave no inet address".into()))?;
            let copy = dup.try_clone().map_err(FdError::sys("dup"))?;
            return super::tcp::dump(copy, family, local, peer, repaired)
                .map(DescKind::TcpEstablished);
        }
        let what = if sock_type == libc::SOCK_STREAM {
            "established TCP connection"
        } else {
            "connected UDP socket"
        };
        let peer = addr_of(&peer).map_or("?".to_string(), |p| p.to_string());
        return Err(FdError::Connected {
            what,
            local: local.to_string(),
            peer,
        });
    }
    let listening = opt(libc::SOL_SOCKET, libc::SO_ACCEPTCONN, "SO_ACCEPTCONN")? != 0;
    let bound = (local.port() != 0 || !local.ip().is_unspecified()).then(|| {
        let mut a = [0u8; 16];
        match local.ip() {
            IpAddr::V4(v4) => a[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => a.copy_from_slice(&v6.octets()),
        }
        (a, local.port())
    });
    let flag = |level, name, what: &str| opt(level, name, what).map(|v| v != 0);
    let nodelay = if sock_type == libc::SOCK_STREAM {
        flag(libc::IPPROTO_TCP, libc::TCP_NODELAY, "TCP_NODELAY")?
    } else {
        false
    };
    let v6only = if family == libc::AF_INET6 {
        flag(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, "IPV6_V6ONLY")?
    } else {
        false
    };
    Ok(DescKind::Inet(InetSocket {
        family,
        sock_type,
        protocol,
        bound,
        // The kernel does not report a listener's backlog through a socket option; restore uses the
        // system maximum (the kernel clamps it to somaxconn).
        listen_backlog: listening.then_some(libc::SOMAXCONN as u32),
        reuseaddr: flag(libc::SOL_SOCKET, libc::SO_REUSEADDR, "SO_REUSEADDR")?,
        reuseport: flag(libc::SOL_SOCKET, libc::SO_REUSEPORT, "SO_REUSEPORT")?,
        keepalive: flag(libc::SOL_SOCKET, libc::SO_KEEPALIVE, "SO_KEEPALIVE")?,
        nodelay,
        v6only,
    }))
}
