//! Rebuilding an established TCP connection (`--tcp-established`) in repair mode: a new socket gets the
//! dumped sequence numbers, is bound to the old local address and "connected" to the old peer without a
//! handshake, gets the negotiated options, its queues and windows back, and leaves repair mode. The peer
//! still holds its end of the connection and sees nothing but, at most, a window probe.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

use dormant_image::records::TcpConnection;
use nix::errno::Errno;

use super::raw::{check, owned};
use super::raw::{set_int, set_raw, sockaddr, Failure};

/// `setsockopt(IPPROTO_TCP, ...)` numbers from `<linux/tcp.h>`.
const TCP_REPAIR: libc::c_int = 19;
const TCP_REPAIR_QUEUE: libc::c_int = 20;
const TCP_QUEUE_SEQ: libc::c_int = 21;
const TCP_REPAIR_OPTIONS: libc::c_int = 22;
const TCP_TIMESTAMP: libc::c_int = 24;
const TCP_REPAIR_WINDOW: libc::c_int = 29;
/// Values of `TCP_REPAIR` and `TCP_REPAIR_QUEUE`.
const REPAIR_ON: libc::c_int = 1;
const REPAIR_OFF: libc::c_int = 0;
const TCP_RECV_QUEUE: libc::c_int = 1;
const TCP_SEND_QUEUE: libc::c_int = 2;
/// Option codes of `TCP_REPAIR_OPTIONS` (the TCP header option kinds).
const TCPOPT_MAXSEG: u32 = 2;
const TCPOPT_WINDOW: u32 = 3;
const TCPOPT_SACK_PERM: u32 = 4;
const TCPOPT_TIMESTAMP: u32 = 8;
/// Bits of `tcpi_options`.
const TCPI_OPT_TIMESTAMPS: u8 = 1;
const TCPI_OPT_SACK: u8 = 2;
const TCPI_OPT_WSCALE: u8 = 4;
/// Bytes handed to the kernel per `send` when refilling a queue.
const CHUNK: usize = 64 * 1024;

/// `struct tcp_repair_opt`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct RepairOpt {
    code: u32,
    val: u32,
}

/// `struct tcp_repair_window`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct RepairWindow {
    snd_wl1: u32,
    snd_wnd: u32,
    max_window: u32,
    rcv_wnd: u32,
    rcv_wup: u32,
}

/// `SO_SNDBUFFORCE` / `SO_RCVBUFFORCE`: buffer sizes beyond the sysctl limits (CAP_NET_ADMIN).
const SO_SNDBUFFORCE: libc::c_int = 32;
const SO_RCVBUFFORCE: libc::c_int = 33;

/// A buffer size (as the kernel reports it, doubled) with room for `queued` bytes plus their overhead.
fn room(dumped: u32, queued: usize) -> u32 {
    let need = (queued as u64).saturating_mul(2).saturating_add(64 * 1024);
    u64::from(dumped).max(need).min(i32::MAX as u64) as u32
}

/// Sets a socket buffer to `size` as the kernel reports it (the kernel doubles what it is given).
fn set_buffer(fd: &OwnedFd, opt: i32, size: u32, what: &str) -> Result<(), Failure> {
    if size == 0 {
        return Ok(());
    }
    set_int(fd, libc::SOL_SOCKET, opt, (size / 2) as libc::c_int, what)
}

fn socket_addr(family: i32, (a, port): ([u8; 16], u16)) -> SocketAddr {
    if family == libc::AF_INET {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])), port)
    } else {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), port)
    }
}

/// `local -> peer`, for messages.
pub fn shown(c: &TcpConnection) -> String {
    format!(
        "TCP connection {} -> {}",
        socket_addr(c.family, c.local),
        socket_addr(c.family, c.peer)
    )
}

/// Sends `data` into the queue selected with `TCP_REPAIR_QUEUE` (in repair mode nothing goes out).
fn refill(fd: &OwnedFd, data: &[u8], what: &str) -> Result<(), Failure> {
    for chunk in data.chunks(CHUNK) {
        let mut rest = chunk;
        while !rest.is_empty() {
            // SAFETY: send reads `rest.len()` bytes from `rest`.
            let r = unsafe {
                libc::send(
                    fd.as_raw_fd(),
                    rest.as_ptr().cast(),
                    rest.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if r < 0 {
                let e = Errno::last();
                if e == Errno::EINTR {
                    continue;
                }
                return Err((format!("refill the {what} queue ({} bytes)", data.len()), e));
            }
            rest = &rest[r as usize..];
        }
    }
    Ok(())
}

/// Rebuilds connection `c`; the socket is still in repair mode when this returns (see [`finish`]).
pub fn open(c: &TcpConnection) -> Result<OwnedFd, Failure> {
    let tcp = libc::IPPROTO_TCP;
    // SAFETY: socket returns a new fd.
    let fd = owned(unsafe {
        libc::socket(
            c.family,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            libc::IPPROTO_TCP,
        )
    })
    .map_err(|e| ("socket".to_string(), e))?;
    set_int(&fd, tcp, TCP_REPAIR, REPAIR_ON, "TCP_REPAIR on")?;
    // Sequence numbers of the queues' starts: refilling a queue advances them to the dumped ends.
    let send_start = c.send_seq.wrapping_sub(c.send_queue.len() as u32);
    let recv_start = c.recv_seq.wrapping_sub(c.recv_queue.len() as u32);
    for (queue, seq, what) in [
        (TCP_SEND_QUEUE, send_start, "TCP_QUEUE_SEQ (send)"),
        (TCP_RECV_QUEUE, recv_start, "TCP_QUEUE_SEQ (receive)"),
    ] {
        set_int(&fd, tcp, TCP_REPAIR_QUEUE, queue, "TCP_REPAIR_QUEUE")?;
        set_int(&fd, tcp, TCP_QUEUE_SEQ, seq as libc::c_int, what)?;
    }
    if c.family == libc::AF_INET6 {
        set_int(
            &fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            c.v6only.into(),
            "IPV6_V6ONLY",
        )?;
    }
    // Repair mode forces address reuse, so the bind shares the port with the restored listener the
    // connection was accepted from (or an old socket still lingering). Setting SO_REUSEADDR now would
    // replace that forced reuse with the ordinary one, which a listener on the port refuses.
    let (local, local_len) = sockaddr(c.family, c.local);
    // SAFETY: bind reads `local_len` bytes of the address from our stack.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&local as *const libc::sockaddr_storage).cast(),
            local_len,
        )
    })
    .map_err(|e| ("bind to the local address".to_string(), e))?;
    let (peer, peer_len) = sockaddr(c.family, c.peer);
    // SAFETY: connect reads `peer_len` bytes of the address from our stack; in repair mode it sends no
    // SYN and puts the socket straight into the established state.
    check(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&peer as *const libc::sockaddr_storage).cast(),
            peer_len,
        )
    })
    .map_err(|e| ("connect (repair mode) to the peer".to_string(), e))?;
    let mut opts = vec![RepairOpt {
        code: TCPOPT_MAXSEG,
        val: c.mss,
    }];
    if c.options & TCPI_OPT_WSCALE != 0 {
        opts.push(RepairOpt {
            code: TCPOPT_WINDOW,
            val: u32::from(c.snd_wscale) | (u32::from(c.rcv_wscale) << 16),
        });
    }
    if c.options & TCPI_OPT_SACK != 0 {
        opts.push(RepairOpt {
            code: TCPOPT_SACK_PERM,
            val: 0,
        });
    }
    if c.options & TCPI_OPT_TIMESTAMPS != 0 {
        opts.push(RepairOpt {
            code: TCPOPT_TIMESTAMP,
            val: 0,
        });
    }
    // SAFETY: the kernel reads `opts.len()` repr(C) pairs of u32 from the vector's buffer.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            tcp,
            TCP_REPAIR_OPTIONS,
            opts.as_ptr().cast(),
            std::mem::size_of_val(opts.as_slice()) as libc::socklen_t,
        )
    })
    .map_err(|e| ("setsockopt TCP_REPAIR_OPTIONS".to_string(), e))?;
    // The timestamp clock goes on from where the dump left it, or the peer would drop our segments as
    // old (PAWS).
    set_int(
        &fd,
        tcp,
        TCP_TIMESTAMP,
        c.timestamp as libc::c_int,
        "TCP_TIMESTAMP",
    )?;
    // The queues are charged to the buffers: room for each refill first, the dumped sizes after.
    set_buffer(
        &fd,
        SO_SNDBUFFORCE,
        room(c.sndbuf, c.send_queue.len()),
        "SO_SNDBUFFORCE",
    )?;
    set_buffer(
        &fd,
        SO_RCVBUFFORCE,
        room(c.rcvbuf, c.recv_queue.len()),
        "SO_RCVBUFFORCE",
    )?;
    set_int(
        &fd,
        tcp,
        TCP_REPAIR_QUEUE,
        TCP_SEND_QUEUE,
        "TCP_REPAIR_QUEUE",
    )?;
    refill(&fd, &c.send_queue, "send")?;
    set_int(
        &fd,
        tcp,
        TCP_REPAIR_QUEUE,
        TCP_RECV_QUEUE,
        "TCP_REPAIR_QUEUE",
    )?;
    refill(&fd, &c.recv_queue, "receive")?;
    // After the receive queue: the kernel checks the window against the restored rcv_nxt.
    let w = RepairWindow {
        snd_wl1: c.window.snd_wl1,
        snd_wnd: c.window.snd_wnd,
        max_window: c.window.max_window,
        rcv_wnd: c.window.rcv_wnd,
        rcv_wup: c.window.rcv_wup,
    };
    set_raw(&fd, tcp, TCP_REPAIR_WINDOW, &w, "TCP_REPAIR_WINDOW")?;
    set_buffer(&fd, SO_SNDBUFFORCE, c.sndbuf, "SO_SNDBUFFORCE")?;
    set_buffer(&fd, SO_RCVBUFFORCE, c.rcvbuf, "SO_RCVBUFFORCE")?;
    Ok(fd)
}

/// Takes the rebuilt connection on `fd` out of repair mode and sets its options. Called once every
/// description exists: leaving repair mode sends a window probe, and with both ends in the image the
/// peer must be there to take it (a probe to a missing socket, or to the listener on its port, would be
/// answered with a RST).
pub fn finish(fd: &OwnedFd, c: &TcpConnection) -> Result<(), Failure> {
    let tcp = libc::IPPROTO_TCP;
    set_int(fd, tcp, TCP_REPAIR, REPAIR_OFF, "TCP_REPAIR off")?;
    // Leaving repair mode reset the address reuse; now the dumped options.
    let sol = libc::SOL_SOCKET;
    set_int(
        fd,
        sol,
        libc::SO_REUSEADDR,
        c.reuseaddr.into(),
        "SO_REUSEADDR",
    )?;
    set_int(
        fd,
        sol,
        libc::SO_REUSEPORT,
        c.reuseport.into(),
        "SO_REUSEPORT",
    )?;
    set_int(
        fd,
        sol,
        libc::SO_KEEPALIVE,
        c.keepalive.into(),
        "SO_KEEPALIVE",
    )?;
    set_int(fd, tcp, libc::TCP_NODELAY, c.nodelay.into(), "TCP_NODELAY")?;
    Ok(())
}
