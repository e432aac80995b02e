//! A UDP socket's receive queue refilled: each datagram of the image is sent to the restored socket again
//! from its sender's address and port, as a raw packet the kernel loops back and delivers like any other
//! (a packet sent to a local address never meets an input route, so a sender that is not local is
//! delivered too). Then the queue is read without taking anything ([`dormant_sys::udp::peek_all`]) and
//! must hold exactly the image's datagrams, senders and order; anything else fails the restore.
//!
//! A datagram of a socket bound to a wildcard address is sent to the loopback address; a task that reads
//! the destination (`IP_PKTINFO`) sees that one. Ancillary data such as the arrival time is the refill's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use dormant_image::records::UdpDatagram;
use nix::errno::Errno;

use super::raw::owned;
use super::raw::{set_int, sockaddr, Failure};

/// How long the looped-back datagrams may take to reach the socket.
const DELIVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Sends `queued` to `fd` (family `family`, bound to `to`) and checks they are queued, in order.
pub(super) fn refill(
    fd: &OwnedFd,
    family: i32,
    to: ([u8; 16], u16),
    queued: &[UdpDatagram],
) -> Result<(), Failure> {
    let dst = destination(family, to);
    let rcvbuf = make_room(fd, queued)?;
    let mut raw4 = None;
    let mut raw6 = None;
    for d in queued {
        let src = source(family, d.from);
        let (raw, packet, dst) = match (src, dst) {
            (IpAddr::V4(s), dst) => {
                let dst = v4_of(dst).ok_or_else(|| mixed(src, dst))?;
                (
                    raw_socket(&mut raw4, libc::AF_INET)?,
                    ipv4_packet(s, dst, d.from.1, to.1, &d.data),
                    IpAddr::V4(dst),
                )
            }
            (IpAddr::V6(s), IpAddr::V6(dst)) => (
                raw_socket(&mut raw6, libc::AF_INET6)?,
                ipv6_packet(s, dst, d.from.1, to.1, &d.data),
                IpAddr::V6(dst),
            ),
            (src, dst) => return Err(mixed(src, dst)),
        };
        send(raw, &packet, dst)?;
    }
    let waited = wait_queued(fd, queued);
    if let Some(v) = rcvbuf {
        set_int(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            v,
            "SO_RCVBUFFORCE",
        )?;
    }
    waited
}

/// Room for `queued` in `fd`'s receive buffer: raised (`SO_RCVBUFFORCE`) when the default could not hold
/// them; returns the size to put back afterwards (the kernel reports twice what was set).
fn make_room(fd: &OwnedFd, queued: &[UdpDatagram]) -> Result<Option<libc::c_int>, Failure> {
    // A looped-back datagram costs its payload plus the buffers around it; 1 KiB covers those.
    let need: usize = queued.iter().map(|d| d.data.len() + 1024).sum();
    let mut now: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `now` on our stack.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut now as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    super::raw::check(r).map_err(|e| ("getsockopt SO_RCVBUF".to_string(), e))?;
    if need <= now as usize / 2 {
        return Ok(None);
    }
    let want = need.min(i32::MAX as usize) as libc::c_int;
    set_int(
        fd,
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        want,
        "SO_RCVBUFFORCE",
    )?;
    Ok(Some(now / 2))
}

/// Where the datagrams go: the bound address, or loopback for a wildcard one.
fn destination(family: i32, (a, _): ([u8; 16], u16)) -> IpAddr {
    if family == libc::AF_INET {
        let v4 = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
        return IpAddr::V4(if v4.is_unspecified() {
            Ipv4Addr::LOCALHOST
        } else {
            v4
        });
    }
    let v6 = Ipv6Addr::from(a);
    match v6.to_ipv4_mapped() {
        Some(v4) if !v4.is_unspecified() => IpAddr::V4(v4),
        _ if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        _ => IpAddr::V6(v6),
    }
}

/// A sender as the socket saw it: an IPv4 sender of a dual-stack IPv6 socket shows v4-mapped.
fn source(family: i32, (a, _): ([u8; 16], u16)) -> IpAddr {
    if family == libc::AF_INET {
        return IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]));
    }
    let v6 = Ipv6Addr::from(a);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// An IPv4 sender to a wildcard dual-stack socket goes to 127.0.0.1.
fn v4_of(dst: IpAddr) -> Option<Ipv4Addr> {
    match dst {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) if v6 == Ipv6Addr::LOCALHOST => Some(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    }
}

fn mixed(src: IpAddr, dst: IpAddr) -> Failure {
    (
        format!("refilling a UDP queue: a datagram from {src} cannot be sent to {dst}"),
        Errno::EAFNOSUPPORT,
    )
}

/// The raw socket of `family`, opened on first use (`IPPROTO_RAW`: the packet carries its own IP header).
fn raw_socket(slot: &mut Option<OwnedFd>, family: i32) -> Result<&OwnedFd, Failure> {
    if slot.is_none() {
        // SAFETY: socket returns a new fd.
        let fd = owned(unsafe {
            libc::socket(
                family,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::IPPROTO_RAW,
            )
        })
        .map_err(|e| ("opening a raw socket to refill a UDP queue".to_string(), e))?;
        *slot = Some(fd);
    }
    slot.as_ref()
        .ok_or_else(|| ("raw socket".to_string(), Errno::EBADF))
}

fn send(raw: &OwnedFd, packet: &[u8], dst: IpAddr) -> Result<(), Failure> {
    let (family, bytes) = match dst {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.octets());
            (libc::AF_INET, b)
        }
        IpAddr::V6(v6) => (libc::AF_INET6, v6.octets()),
    };
    let (ss, len) = sockaddr(family, (bytes, 0));
    // SAFETY: sendto reads `packet` and `len` bytes of the address, all ours.
    let n = unsafe {
        libc::sendto(
            raw.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (&ss as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if n != packet.len() as isize {
        return Err((
            format!(
                "sending a {} byte UDP datagram again to {dst}",
                packet.len()
            ),
            Errno::last(),
        ));
    }
    Ok(())
}

/// UDP header and payload behind an IPv4 header; the kernel fills the id and the header checksum, the
/// UDP checksum is left 0 (none, allowed for IPv4).
fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + data.len();
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, 64, libc::IPPROTO_UDP as u8, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&udp_header(sport, dport, data.len(), 0));
    p.extend_from_slice(data);
    p
}

/// UDP header and payload behind an IPv6 header, with the UDP checksum IPv6 requires.
fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let udp_len = 8 + data.len();
    let mut p = Vec::with_capacity(40 + udp_len);
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[libc::IPPROTO_UDP as u8, 64]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let mut sum = 0u32;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(udp_len as u32).to_be_bytes());
    add(&[0, 0, 0, libc::IPPROTO_UDP as u8]);
    add(&udp_header(sport, dport, data.len(), 0));
    add(data);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let check = match !(sum as u16) {
        0 => 0xffff,
        c => c,
    };
    p.extend_from_slice(&udp_header(sport, dport, data.len(), check));
    p.extend_from_slice(data);
    p
}

fn udp_header(sport: u16, dport: u16, len: usize, check: u16) -> [u8; 8] {
    let mut h = [0u8; 8];
    h[..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..6].copy_from_slice(&((8 + len) as u16).to_be_bytes());
    h[6..].copy_from_slice(&check.to_be_bytes());
    h
}

/// Waits until the socket holds exactly `queued`; fails naming what it holds instead.
fn wait_queued(fd: &OwnedFd, queued: &[UdpDatagram]) -> Result<(), Failure> {
    let deadline = std::time::Instant::now() + DELIVERY;
    loop {
        let now = dormant_sys::udp::peek_all(fd.as_fd())
            .map_err(|e| ("reading the refilled UDP queue".to_string(), e))?;
        let same = now.len() == queued.len()
            && now
                .iter()
                .zip(queued)
                .all(|(n, q)| n.data == q.data && sender_as_shown(n.from) == q.from);
        if same {
            return Ok(());
        }
        if now.len() >= queued.len() || std::time::Instant::now() >= deadline {
            return Err((
                format!(
                    "refilling a UDP queue: {} of {} datagrams arrived as dumped",
                    now.iter()
                        .zip(queued)
                        .take_while(|(n, q)| n.data == q.data)
                        .count(),
                    queued.len()
                ),
                Errno::EIO,
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A sender address as the image packs it (what the dump recorded from the same socket family).
fn sender_as_shown(a: SocketAddr) -> ([u8; 16], u16) {
    let mut b = [0u8; 16];
    match a.ip() {
        IpAddr::V4(v4) => b[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => b.copy_from_slice(&v6.octets()),
    }
    (b, a.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    fn packed(a: SocketAddr) -> ([u8; 16], u16) {
        sender_as_shown(a)
    }

    fn refill_and_read(
        s: &UdpSocket,
        family: i32,
        queued: &[UdpDatagram],
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        let fd = s.as_fd().try_clone_to_owned().unwrap();
        refill(&fd, family, packed(s.local_addr().unwrap()), queued).unwrap();
        let mut out = Vec::new();
        s.set_nonblocking(true).unwrap();
        let mut buf = vec![0u8; 70_000];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            out.push((from, buf[..n].to_vec()));
        }
        out
    }

    /// Datagrams from a local port, from an address this machine does not have, and empty, come back
    /// with their senders, in order (IPv4).
    #[test]
    fn ipv4_senders_and_payloads() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let senders: [SocketAddr; 3] = [
            "127.0.0.1:4242".parse().unwrap(),
            "10.9.8.7:53".parse().unwrap(),
            "127.0.0.1:4242".parse().unwrap(),
        ];
        let payloads: [Vec<u8>; 3] = [b"one".to_vec(), vec![9u8; 40_000], Vec::new()];
        let queued: Vec<UdpDatagram> = senders
            .iter()
            .zip(&payloads)
            .map(|(f, d)| UdpDatagram {
                from: packed(*f),
                data: d.clone(),
            })
            .collect();
        let got = refill_and_read(&s, libc::AF_INET, &queued);
        let want: Vec<(SocketAddr, Vec<u8>)> = senders
            .iter()
            .copied()
            .zip(payloads.iter().cloned())
            .collect();
        assert!(
            got == want,
            "got {} datagrams from {:?}",
            got.len(),
            got.iter().map(|g| g.0).collect::<Vec<_>>()
        );
    }

    /// The same for IPv6 (checksummed), and an IPv4 sender of a dual-stack socket bound to `::`.
    #[test]
    fn ipv6_and_dual_stack_senders() {
        let s = UdpSocket::bind("[::1]:0").unwrap();
        let from: SocketAddr = "[2001:db8::5]:777".parse().unwrap();
        let q = [UdpDatagram {
            from: packed(from),
            data: b"six".to_vec(),
        }];
        assert_eq!(
            refill_and_read(&s, libc::AF_INET6, &q),
            vec![(from, b"six".to_vec())]
        );
        let s = UdpSocket::bind("[::]:0").unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:999".parse().unwrap();
        let q = [UdpDatagram {
            from: packed(mapped),
            data: b"four".to_vec(),
        }];
        assert_eq!(
            refill_and_read(&s, libc::AF_INET6, &q),
            vec![(mapped, b"four".to_vec())]
        );
    }
}
