//! Established TCP connections under `--tcp-established`: the socket is switched to repair mode
//! (`TCP_REPAIR`), which freezes it (no segment goes out, timers do not fire) and unlocks reading its
//! sequence numbers, both queues (peeked, nothing consumed), the negotiated options and the windows.
//!
//! Leaving repair mode is the dump's last decision ([`RepairedSockets`]): a dump that leaves the target
//! running (or fails) switches it off again, and the connection carries on; a dump that kills the target
//! keeps it on until the tree is dead and then closes the dumper's copy, and the kernel drops a socket in
//! repair mode without a RST or FIN, so the peer keeps its end for the restore to reattach to.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

use dormant_image::records::{TcpConnection, TcpWindow};

use super::error::FdError;
use super::sys;

/// `setsockopt(IPPROTO_TCP, ...)` numbers from `<linux/tcp.h>`.
const TCP_REPAIR: libc::c_int = 19;
const TCP_REPAIR_QUEUE: libc::c_int = 20;
const TCP_QUEUE_SEQ: libc::c_int = 21;
const TCP_TIMESTAMP: libc::c_int = 24;
const TCP_REPAIR_WINDOW: libc::c_int = 29;
/// Values of `TCP_REPAIR_QUEUE`.
const TCP_NO_QUEUE: libc::c_int = 0;
const TCP_RECV_QUEUE: libc::c_int = 1;
const TCP_SEND_QUEUE: libc::c_int = 2;
/// `SIOCINQ` (= `FIONREAD`) and `SIOCOUTQ` (= `TIOCOUTQ`): bytes in the receive / send queue.
const SIOCINQ: libc::c_ulong = 0x541B;
const SIOCOUTQ: libc::c_ulong = 0x5411;
/// `tcpi_state` of an established connection.
const TCP_ESTABLISHED: u8 = 1;

/// Copies of the dumped sockets that are in repair mode. Dropping the set switches repair mode off on each
/// (the target keeps a working connection); [`RepairedSockets::close_silently`] closes them still in repair
/// mode, once the target is dead.
#[derive(Debug, Default)]
pub struct RepairedSockets {
    fds: Vec<OwnedFd>,
}

impl RepairedSockets {
    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// Closes the copies with repair mode still on. Only once every other holder (the killed tree) is
    /// gone does this close the socket, and the kernel then sends nothing to the peer.
    pub fn close_silently(mut self) {
        let n = self.fds.len();
        self.fds.clear();
        if n > 0 {
            log::info!("{n} established TCP socket(s) closed in repair mode (peer not notified)");
        }
    }
}

impl Drop for RepairedSockets {
    fn drop(&mut self) {
        for fd in self.fds.drain(..) {
            if let Err(e) = sys::set_sockopt_int(&fd, libc::IPPROTO_TCP, TCP_REPAIR, 0) {
                log::warn!(
                    "TCP socket {}: cannot leave repair mode: {e}",
                    fd.as_raw_fd()
                );
            }
        }
    }
}

/// `struct tcp_repair_window` of `<linux/tcp.h>`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct RepairWindow {
    snd_wl1: u32,
    snd_wnd: u32,
    max_window: u32,
    rcv_wnd: u32,
    rcv_wup: u32,
}

/// The first bytes of `struct tcp_info`: state, options and the window-scale nibbles.
fn tcp_info_head(fd: &OwnedFd) -> std::io::Result<[u8; 8]> {
    let mut buf = [0u8; 8];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `buf` on our stack.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(buf)
}

fn repair_window(fd: &OwnedFd) -> std::io::Result<RepairWindow> {
    let mut w = RepairWindow::default();
    let mut len = std::mem::size_of::<RepairWindow>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `w`, a repr(C) struct on our stack.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            TCP_REPAIR_WINDOW,
            (&mut w as *mut RepairWindow).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(w)
}

/// Bytes in a queue (`SIOCINQ`/`SIOCOUTQ`).
fn queue_len(fd: &OwnedFd, req: libc::c_ulong) -> std::io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: the ioctl writes one int into `n` on our stack.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, &mut n) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
}

/// Peeks `len` bytes of the selected queue without consuming them.
fn peek(fd: &OwnedFd, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    if len == 0 {
        return Ok(buf);
    }
    // SAFETY: recv writes at most `len` bytes into `buf`, which is `len` bytes long.
    let r = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            len,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

fn addr_bytes(a: SocketAddr) -> ([u8; 16], u16) {
    let mut b = [0u8; 16];
    match a.ip() {
        IpAddr::V4(v4) => b[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => b.copy_from_slice(&v6.octets()),
    }
    (b, a.port())
}

/// Dumps the established connection on `fd` (a copy of the target's socket). Repair mode is switched on
/// and `fd` joins `repaired` right away, so an error afterwards still switches it off again.
pub fn dump(
    fd: OwnedFd,
    family: i32,
    local: SocketAddr,
    peer: SocketAddr,
    repaired: &mut RepairedSockets,
) -> Result<TcpConnection, FdError> {
    let conn = format!("TCP connection {local} -> {peer}");
    let head = tcp_info_head(&fd).map_err(FdError::sys(format!("{conn}: TCP_INFO")))?;
    if head[0] != TCP_ESTABLISHED {
        return Err(FdError::TcpState {
            conn,
            state: head[0],
        });
    }
    let opt = |level, name, what: &str| {
        sys::sockopt_int(&fd, level, name)
            .map_err(FdError::sys(format!("{conn}: getsockopt {what}")))
    };
    let flag = |level, name, what: &str| opt(level, name, what).map(|v| v != 0);
    // Plain options first, before the socket is touched.
    let reuseaddr = flag(libc::SOL_SOCKET, libc::SO_REUSEADDR, "SO_REUSEADDR")?;
    let reuseport = flag(libc::SOL_SOCKET, libc::SO_REUSEPORT, "SO_REUSEPORT")?;
    let keepalive = flag(libc::SOL_SOCKET, libc::SO_KEEPALIVE, "SO_KEEPALIVE")?;
    let nodelay = flag(libc::IPPROTO_TCP, libc::TCP_NODELAY, "TCP_NODELAY")?;
    let sndbuf = opt(libc::SOL_SOCKET, libc::SO_SNDBUF, "SO_SNDBUF")?.max(0) as u32;
    let rcvbuf = opt(libc::SOL_SOCKET, libc::SO_RCVBUF, "SO_RCVBUF")?.max(0) as u32;
    let v6only =
        family == libc::AF_INET6 && flag(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, "IPV6_V6ONLY")?;

    sys::set_sockopt_int(&fd, libc::IPPROTO_TCP, TCP_REPAIR, 1).map_err(FdError::sys(format!(
        "{conn}: TCP_REPAIR on (needs CAP_NET_ADMIN)"
    )))?;
    repaired.fds.push(fd);
    let fd = repaired
        .fds
        .last()
        .ok_or_else(|| FdError::Socket(format!("{conn}: repaired socket vanished")))?;
    let set = |name, v, what: &str| {
        sys::set_sockopt_int(fd, libc::IPPROTO_TCP, name, v)
            .map_err(FdError::sys(format!("{conn}: setsockopt {what}")))
    };
    let get = |name, what: &str| {
        sys::sockopt_int(fd, libc::IPPROTO_TCP, name)
            .map_err(FdError::sys(format!("{conn}: getsockopt {what}")))
    };
    // Each queue: its sequence number (the end of the queue) and its bytes.
    let mut queues = Vec::new();
    for (queue, ioctl, what) in [
        (TCP_SEND_QUEUE, SIOCOUTQ, "send"),
        (TCP_RECV_QUEUE, SIOCINQ, "receive"),
    ] {
        set(TCP_REPAIR_QUEUE, queue, "TCP_REPAIR_QUEUE")?;
        let seq = get(TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ")? as u32;
        let len =
            queue_len(fd, ioctl).map_err(FdError::sys(format!("{conn}: {what} queue size")))?;
        let data = peek(fd, len).map_err(FdError::sys(format!("{conn}: peek {what} queue")))?;
        if data.len() != len {
            return Err(FdError::TcpQueue {
                conn: conn.clone(),
                queue: what,
                len,
                got: data.len(),
            });
        }
        queues.push((seq, data));
    }
    set(TCP_REPAIR_QUEUE, TCP_NO_QUEUE, "TCP_REPAIR_QUEUE")?;
    let missing = |q: &str| FdError::Socket(format!("{conn}: no {q} queue read"));
    let (recv_seq, recv_queue) = queues.pop().ok_or_else(|| missing("receive"))?;
    let (send_seq, send_queue) = queues.pop().ok_or_else(|| missing("send"))?;
    // In repair mode TCP_MAXSEG reports the clamp negotiated with the peer, which restore sets back.
    let mss = get(libc::TCP_MAXSEG, "TCP_MAXSEG")? as u32;
    let timestamp = get(TCP_TIMESTAMP, "TCP_TIMESTAMP")? as u32;
    let w = repair_window(fd).map_err(FdError::sys(format!("{conn}: TCP_REPAIR_WINDOW")))?;
    log::debug!(
        "{conn}: send seq {send_seq} ({} queued), recv seq {recv_seq} ({} queued), mss {mss}",
        send_queue.len(),
        recv_queue.len()
    );
    Ok(TcpConnection {
        family,
        local: addr_bytes(local),
        peer: addr_bytes(peer),
        send_seq,
        recv_seq,
        send_queue,
        recv_queue,
        mss,
        options: head[5],
        snd_wscale: head[6] & 0x0f,
        rcv_wscale: head[6] >> 4,
        timestamp,
        window: TcpWindow {
            snd_wl1: w.snd_wl1,
            snd_wnd: w.snd_wnd,
            max_window: w.max_window,
            rcv_wnd: w.rcv_wnd,
            rcv_wup: w.rcv_wup,
        },
        reuseaddr,
        reuseport,
        keepalive,
        nodelay,
        v6only,
        sndbuf,
        rcvbuf,
    })
}
