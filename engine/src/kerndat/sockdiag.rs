//! Socket diagnostics probes: a NETLINK_SOCK_DIAG dump for AF_UNIX and for AF_INET (TCP) must list a
//! socket the probe just created, by inode. The engine uses these dumps to find socket peers and
//! states that /proc does not show.

use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::errno::Errno;
use nix::sys::socket::{self, sockopt, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};
use nix::sys::time::TimeVal;

use super::error::ProbeError;
use super::Found;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
const UDIAG_SHOW_NAME: u32 = 0x1;
const TCP_LISTEN: u32 = 10;
/// Offset of the inode in `struct unix_diag_msg` and in `struct inet_diag_msg`.
const UNIX_MSG_INODE: usize = 4;
const INET_MSG_INODE: usize = 68;
/// Upper bound on dump reads, so a busy host cannot keep the probe reading forever.
const MAX_READS: usize = 4096;

/// Which diag family a request is for.
#[derive(Debug, Clone, Copy)]
enum Family {
    Unix,
    Inet,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Unix => "UNIX_DIAG",
            Family::Inet => "INET_DIAG",
        }
    }

    /// nlmsghdr + unix_diag_req or inet_diag_req_v2, dumping every socket of the family.
    fn request(self) -> Vec<u8> {
        let mut payload = Vec::new();
        match self {
            Family::Unix => {
                payload.push(libc::AF_UNIX as u8); // sdiag_family
                payload.push(0); // sdiag_protocol
                payload.extend_from_slice(&0u16.to_ne_bytes()); // pad
                payload.extend_from_slice(&u32::MAX.to_ne_bytes()); // udiag_states: all
                payload.extend_from_slice(&0u32.to_ne_bytes()); // udiag_ino
                payload.extend_from_slice(&UDIAG_SHOW_NAME.to_ne_bytes()); // udiag_show
                payload.extend_from_slice(&[0xff; 8]); // udiag_cookie: none
            }
            Family::Inet => {
                payload.push(libc::AF_INET as u8); // sdiag_family
                payload.push(libc::IPPROTO_TCP as u8); // sdiag_protocol
                payload.push(0); // idiag_ext
                payload.push(0); // pad
                payload.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes()); // idiag_states
                payload.extend_from_slice(&[0u8; 48]); // inet_diag_sockid: any
            }
        }
        let len = (NLMSG_HDRLEN + payload.len()) as u32;
        let mut msg = Vec::with_capacity(len as usize);
        msg.extend_from_slice(&len.to_ne_bytes());
        msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
        msg.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
        msg.extend(payload);
        msg
    }

    fn inode_offset(self) -> usize {
        match self {
            Family::Unix => UNIX_MSG_INODE,
            Family::Inet => INET_MSG_INODE,
        }
    }
}

fn u32_at(buf: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(off..off + 4)?.try_into().ok()?))
}

fn u16_at(buf: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(buf.get(off..off + 2)?.try_into().ok()?))
}

fn inode_of(fd: BorrowedFd<'_>) -> Result<u64, ProbeError> {
    nix::sys::stat::fstat(fd)
        .map(|st| st.st_ino)
        .map_err(|e| ProbeError::sys("fstat of the probe socket", e))
}

/// Sends a dump request for `family` and reads the answer until NLMSG_DONE; returns whether a socket
/// with `inode` was listed and how many sockets were.
fn dump_finds(family: Family, inode: u64) -> Result<(bool, usize), ProbeError> {
    let name = family.name();
    let sock: OwnedFd = socket::socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .map_err(|e| ProbeError::sys("socket(AF_NETLINK, NETLINK_SOCK_DIAG)", e))?;
    socket::setsockopt(&sock, sockopt::ReceiveTimeout, &TimeVal::new(1, 0))
        .map_err(|e| ProbeError::sys("setsockopt(SO_RCVTIMEO)", e))?;
    socket::send(sock.as_raw_fd(), &family.request(), MsgFlags::empty())
        .map_err(|e| ProbeError::sys("send of the sock_diag request", e))?;
    let mut buf = vec![0u8; 32 * 1024];
    let (mut found, mut listed) = (false, 0usize);
    for _ in 0..MAX_READS {
        let n = match socket::recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(ProbeError::sys("recv of the sock_diag reply", e)),
        };
        let mut off = 0;
        while off + NLMSG_HDRLEN <= n {
            let len = u32_at(&buf, off).unwrap_or(0) as usize;
            let kind = u16_at(&buf, off + 4).unwrap_or(0);
            if len < NLMSG_HDRLEN || off + len > n {
                return Err(ProbeError::unexpected(format!(
                    "{name}: malformed netlink message"
                )));
            }
            let payload = &buf[off + NLMSG_HDRLEN..off + len];
            match kind {
                NLMSG_DONE => return Ok((found, listed)),
                NLMSG_ERROR => {
                    let code = u32_at(payload, 0).map(|c| c as i32).unwrap_or(0);
                    return Err(ProbeError::sys("sock_diag dump", Errno::from_raw(-code)));
                }
                SOCK_DIAG_BY_FAMILY => {
                    listed += 1;
                    if u32_at(payload, family.inode_offset()).map(u64::from) == Some(inode) {
                        found = true;
                    }
                }
                _ => {}
            }
            off += (len + 3) & !3;
        }
    }
    Err(ProbeError::unexpected(format!(
        "{name}: the dump did not end"
    )))
}

/// UNIX_DIAG: a socketpair just created must appear in the AF_UNIX dump.
pub(crate) fn unix_diag() -> Result<Found, ProbeError> {
    let (one, _other) = UnixStream::pair().map_err(|e| ProbeError::io("socketpair(AF_UNIX)", e))?;
    let inode = inode_of(one.as_fd())?;
    match dump_finds(Family::Unix, inode)? {
        (true, listed) => Ok(Found::detail(format!(
            "the AF_UNIX dump ({listed} sockets) lists the probe's socket {inode}"
        ))),
        (false, listed) => Err(ProbeError::unexpected(format!(
            "the AF_UNIX dump ({listed} sockets) misses the probe's socket {inode}"
        ))),
    }
}

/// INET_DIAG: a TCP listener just created must appear in the AF_INET listening-socket dump.
pub(crate) fn inet_diag() -> Result<Found, ProbeError> {
    let listener = TcpListener::bind("0.0.0.0:0")
        .map_err(|e| ProbeError::io("binding a TCP listener to 0.0.0.0:0", e))?;
    let inode = inode_of(listener.as_fd())?;
    match dump_finds(Family::Inet, inode)? {
        (true, listed) => Ok(Found::detail(format!(
            "the TCP listener dump ({listed} sockets) lists the probe's socket {inode}"
        ))),
        (false, listed) => Err(ProbeError::unexpected(format!(
            "the TCP listener dump ({listed} sockets) misses the probe's socket {inode}"
        ))),
    }
}
