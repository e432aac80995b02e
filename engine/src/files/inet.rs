//! TCP and UDP sockets: unbound, bound, listening, or (UDP) connected, with their common options.
//! Established TCP is refused with an error naming the connection, except with `--tcp-established`: the
//! socket is put in repair mode and its queues, sequence numbers, options and windows are read (see
//! [`RepairedSockets`] for how repair mode is left). A UDP socket's receive queue is read without taking
//! anything from it ([`dormant_sys::udp::peek_all`]) and carried (`udp-queues`): restore sends each
//! datagram again from its sender's address. Refused: bytes held back in the send queue by
//! `UDP_CORK`/`MSG_MORE` (not readable at all), a queue on a socket that peeks with an offset of its own
//! (`SO_PEEK_OFF`: the kernel then hides empty datagrams it showed), an empty datagram behind others (a
//! walk marks it peeked and a later walk no longer sees it), and a queue on a `SO_REUSEPORT` socket (a
//! datagram sent again could reach another socket of its group).

use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;

use dormant_image::records::{DescKind, InetSocket, UdpDatagram};

use super::error::FdError;
use super::sys;
use super::tcp::RepairedSockets;

/// Address and port of a `sockaddr_in`/`sockaddr_in6`.
pub(super) fn addr_of(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    dormant_sys::udp::socket_addr(ss)
}

/// The description of an inet socket, or why it cannot be dumped.
/// With `tcp_established`, an established TCP socket is dumped in repair mode and a copy of `dup` joins
/// `repaired`, which keeps repair mode on until the dump decides how the target ends.
pub fn dump(
    dup: &OwnedFd,
    family: i32,
    tcp_established: bool,
    repaired: &mut RepairedSockets,
    queued: &mut Vec<UdpDatagram>,
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
    let peer = sys::sock_name(dup, true).ok();
    if let Some((peer, _)) = peer.filter(|_| sock_type == libc::SOCK_STREAM) {
        let peer = addr_of(&peer)
            .ok_or_else(|| FdError::Socket("getpeername gave no inet address".into()))?;
        if tcp_established {
            let copy = dup.try_clone().map_err(FdError::sys("dup"))?;
            return super::tcp::dump(copy, family, local, peer, repaired)
                .map(DescKind::TcpEstablished);
        }
        return Err(FdError::Connected {
            what: "established TCP connection",
            local: local.to_string(),
            peer: peer.to_string(),
        });
    }
    let peer = match peer {
        Some((ss, _)) => Some(udp_peer(&ss)?),
        None => None,
    };
    let reuseport = opt(libc::SOL_SOCKET, libc::SO_REUSEPORT, "SO_REUSEPORT")? != 0;
    if sock_type == libc::SOCK_DGRAM {
        *queued = udp_queues(dup, local, peer, reuseport)?;
    }
    let listening = opt(libc::SOL_SOCKET, libc::SO_ACCEPTCONN, "SO_ACCEPTCONN")? != 0;
    let bound = (local.port() != 0 || !local.ip().is_unspecified()).then(|| packed(local));
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
        peer: peer.map(packed),
        // The kernel does not report a listener's backlog through a socket option; restore uses the
        // system maximum (the kernel clamps it to somaxconn).
        listen_backlog: listening.then_some(libc::SOMAXCONN as u32),
        reuseaddr: flag(libc::SOL_SOCKET, libc::SO_REUSEADDR, "SO_REUSEADDR")?,
        reuseport,
        keepalive: flag(libc::SOL_SOCKET, libc::SO_KEEPALIVE, "SO_KEEPALIVE")?,
        nodelay,
        v6only,
    }))
}

/// An address as the image packs it: 16 bytes (IPv4 in the first 4) and the port.
fn packed(a: SocketAddr) -> ([u8; 16], u16) {
    let mut b = [0u8; 16];
    match a.ip() {
        IpAddr::V4(v4) => b[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => b.copy_from_slice(&v6.octets()),
    }
    (b, a.port())
}

/// The peer of a connected UDP socket; refused when it is an IPv6 address with a scope (link-local: the
/// image does not carry the interface).
fn udp_peer(ss: &libc::sockaddr_storage) -> Result<SocketAddr, FdError> {
    let peer =
        addr_of(ss).ok_or_else(|| FdError::Socket("getpeername gave no inet address".into()))?;
    if let SocketAddr::V6(_) = peer {
        // SAFETY: addr_of saw AF_INET6, so the storage holds a sockaddr_in6.
        let sin6 = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
        if sin6.sin6_scope_id != 0 {
            return Err(FdError::Socket(format!(
                "UDP socket connected to {peer} on interface {} (a scoped IPv6 peer is not supported)",
                sin6.sin6_scope_id
            )));
        }
    }
    Ok(peer)
}

/// How long a UDP send queue may take to drain before it counts as held back (sent datagrams stay charged
/// to the socket until the device or the receiver frees them).
const UDP_DRAIN: std::time::Duration = std::time::Duration::from_millis(200);

/// The datagrams waiting in a UDP socket's receive queue; refuses bytes held back in its send queue and
/// the queues the module docs name.
fn udp_queues(
    dup: &OwnedFd,
    local: SocketAddr,
    peer: Option<SocketAddr>,
    reuseport: bool,
) -> Result<Vec<UdpDatagram>, FdError> {
    use std::os::fd::AsFd;
    let me = match peer {
        Some(p) => format!("UDP socket {local} -> {p}"),
        None => format!("UDP socket {local}"),
    };
    send_queue_drained(dup, &me)?;
    let fd = dup.as_fd();
    let offset = dormant_sys::udp::peek_offset(fd)
        .map_err(|e| FdError::sys("getsockopt SO_PEEK_OFF")(e.into()))?;
    let first = peek_first(dup)?;
    let Some((n, sender)) = first else {
        return Ok(Vec::new());
    };
    let refuse = |why: &str| {
        Err(FdError::Socket(format!(
            "{me}: its receive queue holds datagrams (the first: {n} bytes from {sender}) and {why}"
        )))
    };
    if offset >= 0 {
        return refuse("it peeks with an offset (SO_PEEK_OFF), which hides datagrams it has seen");
    }
    if reuseport {
        return refuse(
            "it is in a SO_REUSEPORT group, where a datagram sent again may reach another member",
        );
    }
    let queue = dormant_sys::udp::peek_all(fd)
        .map_err(|e| FdError::sys("peeking the UDP receive queue")(e.into()))?;
    if queue.iter().skip(1).any(|d| d.data.is_empty()) {
        return refuse(
            "an empty datagram waits behind another (a later read of the queue could miss it)",
        );
    }
    Ok(queue
        .into_iter()
        .map(|d| UdpDatagram {
            from: packed(d.from),
            data: d.data,
        })
        .collect())
}

/// The size and sender of the first datagram waiting, if any.
fn peek_first(dup: &OwnedFd) -> Result<Option<(isize, String)>, FdError> {
    use std::os::fd::AsRawFd;
    let mut byte = 0u8;
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: the kernel writes at most 1 byte into `byte` and `len` bytes into `from`, both on our stack;
    // MSG_PEEK leaves the datagram queued, MSG_TRUNC returns its whole length.
    let n = unsafe {
        libc::recvfrom(
            dup.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            (&mut from as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if n >= 0 {
        let sender = addr_of(&from).map_or("?".to_string(), |a| a.to_string());
        return Ok(Some((n, sender)));
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EAGAIN) {
        return Err(FdError::sys("peeking the UDP receive queue")(e));
    }
    Ok(None)
}

/// Waits a moment for the send queue to drain; refuses bytes held back in it.
fn send_queue_drained(dup: &OwnedFd, me: &str) -> Result<(), FdError> {
    use std::os::fd::AsRawFd;
    let deadline = std::time::Instant::now() + UDP_DRAIN;
    loop {
        let mut out: libc::c_int = 0;
        // SAFETY: SIOCOUTQ writes one int into `out` on our stack.
        if unsafe { libc::ioctl(dup.as_raw_fd(), libc::TIOCOUTQ, &mut out) } != 0 {
            return Err(FdError::last_os("SIOCOUTQ"));
        }
        if out <= 0 {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(FdError::Socket(format!(
                "{me}: {out} byte(s) are held in its send queue (UDP_CORK or MSG_MORE), which cannot be \
                 read back"
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    fn dump_udp(s: &UdpSocket, family: i32) -> Result<(DescKind, Vec<UdpDatagram>), FdError> {
        let dup = std::os::fd::AsFd::as_fd(s).try_clone_to_owned().unwrap();
        let mut queued = Vec::new();
        let kind = dump(
            &dup,
            family,
            false,
            &mut RepairedSockets::default(),
            &mut queued,
        )?;
        Ok((kind, queued))
    }

    /// A connected UDP socket carries its local address and its peer, and the datagrams waiting with
    /// their senders; nothing is consumed. An empty datagram behind another is refused.
    #[test]
    fn connected_udp_and_queued_datagrams() {
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let other = UdpSocket::bind("127.0.0.1:0").unwrap();
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        other.send_to(b"before", s.local_addr().unwrap()).unwrap();
        s.connect(peer.local_addr().unwrap()).unwrap();
        peer.send_to(b"queued", s.local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (got, queued) = dump_udp(&s, libc::AF_INET).unwrap();
        let DescKind::Inet(i) = got else {
            panic!("{got:?}")
        };
        assert_eq!(i.bound, Some(packed(s.local_addr().unwrap())));
        assert_eq!(i.peer, Some(packed(peer.local_addr().unwrap())));
        let want = vec![
            UdpDatagram {
                from: packed(other.local_addr().unwrap()),
                data: b"before".to_vec(),
            },
            UdpDatagram {
                from: packed(peer.local_addr().unwrap()),
                data: b"queued".to_vec(),
            },
        ];
        assert_eq!(queued, want);
        peer.send_to(b"", s.local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let err = dump_udp(&s, libc::AF_INET).unwrap_err().to_string();
        assert!(err.contains("an empty datagram waits behind"), "{err}");
        let mut buf = [0u8; 16];
        assert_eq!(s.recv(&mut buf).unwrap(), 6, "nothing was consumed");
    }
}
