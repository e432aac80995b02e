//! A UDP socket's receive queue read without taking anything from it: every datagram with its sender, in
//! the order `recv` would return them. The dump reads a frozen task's queue this way, and the restore reads
//! the refilled queue the same way to check it.
//!
//! `MSG_PEEK` alone only ever shows the first datagram; with `SO_PEEK_OFF` set, each peek starts where the
//! last one ended, so one peek per datagram walks the queue. The socket's own `SO_PEEK_OFF` is put back.
//! The head is peeked without an offset: with one, the kernel skips an empty datagram it has shown before
//! (`skb->peeked`), and a task may well have peeked at its head. An empty datagram further on that was
//! peeked at with an offset before (the task's own `SO_PEEK_OFF`, or an earlier walk of this socket) is
//! skipped all the same and not seen; the dump refuses a socket with the task's `SO_PEEK_OFF` set.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

/// The largest datagram a UDP socket can hold (a 64 KiB IP packet).
const MAX_DATAGRAM: usize = 65_536;

/// One datagram waiting in a receive queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub from: SocketAddr,
    pub data: Vec<u8>,
}

/// Every datagram waiting in `fd`'s receive queue, which stays as it was. Fails with the errno of the
/// first call that fails (`EOPNOTSUPP` from a kernel without `SO_PEEK_OFF` for UDP), having put the
/// socket's peek offset back whenever it could.
pub fn peek_all(fd: BorrowedFd<'_>) -> Result<Vec<Queued>, Errno> {
    let old = peek_offset(fd)?;
    set_int(fd, libc::SO_PEEK_OFF, -1)?;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let walked = match peek(fd, &mut buf) {
        Ok(Some(head)) => set_int(fd, libc::SO_PEEK_OFF, head.data.len() as libc::c_int)
            .and_then(|()| walk(fd, &mut buf, vec![head])),
        Ok(None) => Ok(Vec::new()),
        Err(e) => Err(e),
    };
    let reset = set_int(fd, libc::SO_PEEK_OFF, old);
    let out = walked?;
    reset?;
    Ok(out)
}

/// The socket's peek offset (`SO_PEEK_OFF`); -1 when it peeks at the head.
pub fn peek_offset(fd: BorrowedFd<'_>) -> Result<libc::c_int, Errno> {
    get_int(fd, libc::SO_PEEK_OFF)
}

fn walk(fd: BorrowedFd<'_>, buf: &mut [u8], mut out: Vec<Queued>) -> Result<Vec<Queued>, Errno> {
    while let Some(d) = peek(fd, buf)? {
        out.push(d);
    }
    Ok(out)
}

/// One `MSG_PEEK`; `None` when nothing (more) is queued.
fn peek(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<Option<Queued>, Errno> {
    {
        // SAFETY: sockaddr_storage is plain data; all-zero is valid.
        let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf` and `len` bytes into `from`.
        let n = unsafe {
            libc::recvfrom(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
                (&mut from as *mut libc::sockaddr_storage).cast(),
                &mut len,
            )
        };
        if n < 0 {
            return match Errno::last() {
                Errno::EAGAIN => Ok(None),
                e => Err(e),
            };
        }
        let from = socket_addr(&from).ok_or(Errno::EAFNOSUPPORT)?;
        Ok(Some(Queued {
            from,
            data: buf[..n as usize].to_vec(),
        }))
    }
}

/// The inet address and port in `ss` (a `sockaddr_in`/`sockaddr_in6`), if it holds one.
pub fn socket_addr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
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
            // SAFETY: as above, for sockaddr_in6.
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

fn get_int(fd: BorrowedFd<'_>, name: libc::c_int) -> Result<libc::c_int, Errno> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `v` on our stack.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    Errno::result(r).map(|_| v)
}

fn set_int(fd: BorrowedFd<'_>, name: libc::c_int, v: libc::c_int) -> Result<(), Errno> {
    // SAFETY: the kernel reads one int from our stack.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    Errno::result(r).map(drop)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (project rule)
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    /// Three datagrams from two senders are all seen, in order, and are all still there afterwards (a
    /// second walk misses the empty one that is not at the head: the kernel skips a peeked empty datagram).
    #[test]
    fn walks_the_queue_and_leaves_it() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.send_to(b"one", s.local_addr().unwrap()).unwrap();
        b.send_to(&[7u8; 3000], s.local_addr().unwrap()).unwrap();
        a.send_to(b"", s.local_addr().unwrap()).unwrap();
        let q = peek_all(s.as_fd()).unwrap();
        let got: Vec<(SocketAddr, usize)> = q.iter().map(|d| (d.from, d.data.len())).collect();
        let (pa, pb) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        assert_eq!(got, vec![(pa, 3), (pb, 3000), (pa, 0)]);
        assert_eq!(q[0].data, b"one");
        assert!(q[1].data.iter().all(|&b| b == 7));
        let again = peek_all(s.as_fd()).unwrap();
        assert!(
            again[..] == q[..2],
            "a second walk saw {} datagrams",
            again.len()
        );
        assert_eq!(get_int(s.as_fd(), libc::SO_PEEK_OFF).unwrap(), -1);
        let mut buf = [0u8; 8];
        assert_eq!(s.recv_from(&mut buf).unwrap(), (3, pa));
    }

    /// An empty datagram at the head that the task peeked at is still seen.
    #[test]
    fn a_peeked_empty_head_is_seen() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.send_to(b"", s.local_addr().unwrap()).unwrap();
        a.send_to(b"x", s.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(s.peek_from(&mut buf).unwrap().0, 0);
        let q = peek_all(s.as_fd()).unwrap();
        let lens: Vec<usize> = q.iter().map(|d| d.data.len()).collect();
        assert_eq!(lens, vec![0, 1]);
    }
}
