//! Workload `wl_tcp`: established TCP connections with bytes in flight, for `--tcp-established`.
//!
//! `wl_tcp TRIGGER DIR MODE [PORT]`, MODE one of:
//! - `peer PORT`: connects to a server on 127.0.0.1:PORT run by the test (outside the dumped tree), sends
//!   [`CLIENT_PENDING`] (which the server does not read before the dump) and waits until the server's
//!   [`SERVER_PENDING`] sits unread in its receive queue. After the trigger: the same local and peer
//!   addresses, exactly those queued bytes, then [`CLIENT_NEW`] out and [`SERVER_REPLY`] back on the same
//!   connection (the server never saw a reconnect).
//!   With `--also-netlink` it also holds a netlink socket, which makes a dump fail after the connection.
//! - `loop`: both ends of a loopback connection (connect to its own listener, accept), with bytes queued
//!   both ways; the accepted end has a tiny receive buffer and the client wrote until its send queue was
//!   full too, so both the receive and the send queues are carried. After the trigger: the addresses, every
//!   byte in order on each side, a ping-pong, and a new connection accepted from the listener.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use dormant_tests::workload::{self, Report, WorkloadArgs, WorkloadError};

const USAGE: &str = "wl_tcp TRIGGER DIR (peer PORT [--also-netlink] | loop)";
/// `peer` also holds a netlink socket (opened after the connection, so a dump meets it later and fails
/// after the connection went into repair mode).
const ALSO_NETLINK: &str = "--also-netlink";
const TIMEOUT: Duration = Duration::from_secs(30);

/// `len` bytes counting up from `tag` (period 251, so a shift shows).
fn pattern(tag: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| tag.wrapping_add((i % 251) as u8))
        .collect()
}
/// What the workload sends and the server does not read before the dump, and the other way round.
const CLIENT_PENDING_LEN: usize = 4000;
const SERVER_PENDING_LEN: usize = 3000;
const CLIENT_NEW: &[u8] = b"client: written after the restore\n";
const SERVER_REPLY: &[u8] = b"server: got everything\n";

/// Bytes in `s`'s receive queue.
fn inq(s: &TcpStream) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `n` on our stack.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut n) };
    if r != 0 {
        0
    } else {
        n.max(0) as usize
    }
}

fn wait_inq(s: &TcpStream, want: usize, what: &str) -> Result<(), WorkloadError> {
    let start = Instant::now();
    while inq(s) < want {
        if start.elapsed() > TIMEOUT {
            return Err(WorkloadError::setup(
                what,
                format!("{} of {want} bytes arrived", inq(s)),
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

fn read_exact(s: &mut TcpStream, len: usize) -> Result<Vec<u8>, String> {
    s.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf)
        .map_err(|e| format!("reading {len} bytes: {e}"))?;
    Ok(buf)
}

fn expect(s: &mut TcpStream, want: &[u8], what: &str) -> Result<(), String> {
    let got = read_exact(s, want.len()).map_err(|e| format!("{what}: {e}"))?;
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
        return Err(format!(
            "{what}: {} bytes differ from byte {at} on",
            want.len()
        ));
    }
    Ok(())
}

/// The two addresses of a connection, for comparing after the restore.
fn addrs(s: &TcpStream) -> Result<(SocketAddr, SocketAddr), String> {
    Ok((
        s.local_addr().map_err(|e| format!("getsockname: {e}"))?,
        s.peer_addr().map_err(|e| format!("getpeername: {e}"))?,
    ))
}

fn same_addrs(s: &TcpStream, before: (SocketAddr, SocketAddr), what: &str) -> Result<(), String> {
    let now = addrs(s)?;
    if now != before {
        return Err(format!(
            "{what}: addresses {now:?}, before the dump {before:?}"
        ));
    }
    Ok(())
}

enum State {
    Peer {
        s: TcpStream,
        at: (SocketAddr, SocketAddr),
    },
    Loop {
        l: TcpListener,
        c: TcpStream,
        a: TcpStream,
        at_c: (SocketAddr, SocketAddr),
        at_a: (SocketAddr, SocketAddr),
        /// Bytes the client wrote towards `a` (queued in `a`'s receive queue and `c`'s send queue).
        to_a: usize,
    },
}

fn set_up(args: &WorkloadArgs) -> Result<State, WorkloadError> {
    let mode = args.rest.first().map(String::as_str);
    match mode {
        Some("peer") => {
            let port: u16 = args
                .rest
                .get(1)
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| WorkloadError::setup("args", USAGE))?;
            let mut s = TcpStream::connect(("127.0.0.1", port))
                .map_err(|e| WorkloadError::setup("connect to the test's server", e))?;
            s.write_all(&pattern(b'c', CLIENT_PENDING_LEN))
                .map_err(|e| WorkloadError::setup("write the pending bytes", e))?;
            wait_inq(&s, SERVER_PENDING_LEN, "the server's pending bytes")?;
            if args.has_flag(ALSO_NETLINK) {
                // SAFETY: creating a socket; it stays open (leaked) for the dump to refuse.
                let fd =
                    unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE) };
                if fd < 0 {
                    return Err(WorkloadError::setup(
                        "netlink socket",
                        std::io::Error::last_os_error(),
                    ));
                }
            }
            let at = addrs(&s).map_err(|e| WorkloadError::setup("addresses", e))?;
            Ok(State::Peer { s, at })
        }
        Some("loop") => {
            let l =
                TcpListener::bind("127.0.0.1:0").map_err(|e| WorkloadError::setup("listen", e))?;
            let port = l
                .local_addr()
                .map_err(|e| WorkloadError::setup("listener address", e))?
                .port();
            let mut c = TcpStream::connect(("127.0.0.1", port))
                .map_err(|e| WorkloadError::setup("connect", e))?;
            let (mut a, _) = l.accept().map_err(|e| WorkloadError::setup("accept", e))?;
            // A small receive buffer on the accepted end, so the client's bytes back up into its own
            // send queue.
            let small: libc::c_int = 4096;
            // SAFETY: setsockopt reads one int from our stack.
            unsafe {
                libc::setsockopt(
                    a.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    (&small as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            a.write_all(&pattern(b'a', SERVER_PENDING_LEN))
                .map_err(|e| WorkloadError::setup("write a -> c", e))?;
            c.set_nonblocking(true)
                .map_err(|e| WorkloadError::setup("O_NONBLOCK", e))?;
            // Write until the client's send queue takes no more (bounded).
            let mut to_a = 0;
            let period = pattern(b'x', 251 + 4096);
            let start = Instant::now();
            let mut stalls = 0;
            while to_a < (64 << 20) && start.elapsed() < TIMEOUT {
                let from = to_a % 251;
                match c.write(&period[from..from + 4096]) {
                    Ok(n) => {
                        to_a += n;
                        stalls = 0;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        stalls += 1;
                        if stalls > 50 {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) => return Err(WorkloadError::setup("write c -> a", e)),
                }
            }
            c.set_nonblocking(false)
                .map_err(|e| WorkloadError::setup("O_NONBLOCK off", e))?;
            wait_inq(&c, SERVER_PENDING_LEN, "a's bytes at c")?;
            let at_c = addrs(&c).map_err(|e| WorkloadError::setup("addresses", e))?;
            let at_a = addrs(&a).map_err(|e| WorkloadError::setup("addresses", e))?;
            workload::say(&format!("note c wrote {to_a} bytes; {} wait at a", inq(&a)))?;
            Ok(State::Loop {
                l,
                c,
                a,
                at_c,
                at_a,
                to_a,
            })
        }
        _ => Err(WorkloadError::setup("mode", USAGE)),
    }
}

fn check(state: State) -> Result<(), String> {
    match state {
        State::Peer { mut s, at } => {
            same_addrs(&s, at, "connection")?;
            let queued = inq(&s);
            if queued != SERVER_PENDING_LEN {
                return Err(format!(
                    "{queued} bytes queued after the restore, want {SERVER_PENDING_LEN}"
                ));
            }
            expect(
                &mut s,
                &pattern(b's', SERVER_PENDING_LEN),
                "the server's pending bytes",
            )?;
            s.write_all(CLIENT_NEW)
                .map_err(|e| format!("write after the restore: {e}"))?;
            expect(&mut s, SERVER_REPLY, "the server's reply")
        }
        State::Loop {
            l,
            mut c,
            mut a,
            at_c,
            at_a,
            to_a,
        } => {
            same_addrs(&c, at_c, "client end")?;
            same_addrs(&a, at_a, "accepted end")?;
            expect(&mut c, &pattern(b'a', SERVER_PENDING_LEN), "a -> c bytes")?;
            expect(&mut a, &pattern(b'x', to_a), "c -> a bytes")?;
            c.write_all(b"ping").map_err(|e| format!("ping: {e}"))?;
            expect(&mut a, b"ping", "ping")?;
            a.write_all(b"pong").map_err(|e| format!("pong: {e}"))?;
            expect(&mut c, b"pong", "pong")?;
            let port = l.local_addr().map_err(|e| e.to_string())?.port();
            let mut n = TcpStream::connect(("127.0.0.1", port))
                .map_err(|e| format!("new connection to the listener: {e}"))?;
            let (mut m, _) = l.accept().map_err(|e| format!("accept: {e}"))?;
            n.write_all(b"new").map_err(|e| e.to_string())?;
            expect(&mut m, b"new", "new connection")
        }
    }
}

fn run() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env(USAGE)?;
    let mut report = Report::new("wl_tcp");
    let state = set_up(&args)?;
    workload::ready()?;
    workload::wait_for_trigger(&args.trigger)?;
    let what = args.rest.first().cloned().unwrap_or_default();
    report.check(&what, check(state));
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_tcp", run)
}
