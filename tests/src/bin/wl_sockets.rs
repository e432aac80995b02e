//! Workload `wl_sockets`: unix socket states a restore must give back exactly.
//!
//! `wl_sockets TRIGGER DIR KIND... [--inject-fault]`, KIND one of:
//! - `shutdown`: a stream pair whose end `a` sent "last words" and shut down for writing, and a stream pair
//!   whose end `c` shut down for reading; after the trigger `b` reads "last words" then EOF, a send on `a`
//!   fails with EPIPE, `c` reads EOF at once, a send on `d` fails with EPIPE, and the open directions
//!   still carry bytes (`b` → `a`, `c` → `d`). A seqpacket pair shut down both ways on one end reads EOF
//!   on both.
//! - `unlinked`: a listener and a datagram socket bound to paths of DIR that were unlinked since, and a
//!   listener whose path is kept; after the trigger the unlinked paths are still absent, the kept one is a
//!   socket, each socket still reports its name, and the kept listener accepts a new connection.
//! - `unconnected`: an unbound stream socket, an unbound seqpacket socket and a stream socket bound to a
//!   path of DIR without listening; after the trigger each has its type, its name (none for the unbound
//!   ones) and no peer (ENOTCONN), and the bound one can still be made to listen and accept a connection
//!   from the unbound stream socket.
//! - `peerclosed`: a stream pair whose peer sent "bye" and was closed, and a connection accepted from a
//!   listener of DIR whose (unnamed) client sent "hello" and was closed; after the trigger each survivor
//!   reads its bytes, then EOF, and a send fails with EPIPE; the accepted one still has the listener's name.
//!
//! `--inject-fault` replaces each socket after the trigger by a fresh one carrying the same bytes but not
//! the state under test (no shutdown, no name, a live peer) and recreates the unlinked paths, before
//! checking.

use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use dormant_tests::workload::{self, Report, WorkloadArgs, WorkloadError, INJECT_FAULT};

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn setup_err(what: &str) -> WorkloadError {
    WorkloadError::setup(what, std::io::Error::last_os_error())
}

fn pair(ty: libc::c_int) -> Result<(RawFd, RawFd), WorkloadError> {
    let mut sv = [0; 2];
    // SAFETY: socketpair writes two fds into `sv`.
    if unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, sv.as_mut_ptr()) } != 0 {
        return Err(setup_err("socketpair"));
    }
    Ok((sv[0], sv[1]))
}

fn send(fd: RawFd, b: &[u8]) -> Result<usize, i32> {
    // SAFETY: send reads `b.len()` bytes of `b`.
    let n = unsafe {
        libc::send(
            fd,
            b.as_ptr().cast(),
            b.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(n as usize)
    }
}

/// One non-blocking receive: Ok(bytes) (empty = EOF) or Err(errno).
fn recv(fd: RawFd) -> Result<Vec<u8>, i32> {
    let mut buf = [0u8; 256];
    // SAFETY: recv writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(buf[..n as usize].to_vec())
    }
}

fn expect_eq<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, want {want:?}"))
    }
}

/// `b` reads `bytes` then EOF.
fn reads_then_eof(fd: RawFd, bytes: &[u8]) -> Result<(), String> {
    if !bytes.is_empty() {
        expect_eq("queued bytes", recv(fd), Ok(bytes.to_vec()))?;
    }
    expect_eq("then", recv(fd), Ok(Vec::new()))
}

fn send_fails_epipe(fd: RawFd) -> Result<(), String> {
    expect_eq("send", send(fd, b"x"), Err(libc::EPIPE))
}

/// Bytes go from `from` to `to`.
fn carries(from: RawFd, to: RawFd) -> Result<(), String> {
    expect_eq("send", send(from, b"ping"), Ok(4))?;
    expect_eq("receive", recv(to), Ok(b"ping".to_vec()))
}

/// The `sun_path` bytes of `fd`'s own (`peer` false) or peer's name; Err(errno) on failure.
fn name(fd: RawFd, peer: bool) -> Result<Vec<u8>, i32> {
    // SAFETY: sockaddr_un is plain data.
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    let p = (&mut sun as *mut libc::sockaddr_un).cast();
    // SAFETY: the kernel writes at most `len` bytes into `sun`.
    let r = unsafe {
        if peer {
            libc::getpeername(fd, p, &mut len)
        } else {
            libc::getsockname(fd, p, &mut len)
        }
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    let n = (len as usize).saturating_sub(2);
    let mut v: Vec<u8> = sun.sun_path[..n].iter().map(|&c| c as u8).collect();
    if let Some(end) = v
        .iter()
        .position(|&c| c == 0)
        .filter(|_| v.first() != Some(&0))
    {
        v.truncate(end);
    }
    Ok(v)
}

fn path_bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_encoded_bytes().to_vec()
}

fn sock_type(fd: RawFd) -> Result<i32, String> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes one int.
    if unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    } != 0
    {
        return Err(os_err("SO_TYPE"));
    }
    Ok(v)
}

/// For `--inject-fault`: puts a fresh socket of `ty` at `fd`, bound to nothing and connected to nothing.
fn replace_unconnected(fd: RawFd, ty: libc::c_int) {
    // SAFETY: a new socket, dup2'ed over our own fd and closed.
    unsafe {
        let s = libc::socket(libc::AF_UNIX, ty, 0);
        libc::dup2(s, fd);
        libc::close(s);
    }
}

/// For `--inject-fault`: puts one end of a fresh pair at `fd`, with `queued` readable from it and its peer
/// kept open (leaked) so it never reads EOF.
fn replace_with_live_pair(fd: RawFd, ty: libc::c_int, queued: &[u8]) {
    if let Ok((x, y)) = pair(ty) {
        let _ = send(y, queued);
        // SAFETY: dup2 over our own fd; `x` is ours.
        unsafe {
            libc::dup2(x, fd);
            libc::close(x);
        }
    }
}

enum State {
    Shutdown {
        a: RawFd,
        b: RawFd,
        c: RawFd,
        d: RawFd,
        e: RawFd,
        f: RawFd,
    },
    Unlinked {
        gone: UnixListener,
        gone_dgram: std::os::unix::net::UnixDatagram,
        kept: UnixListener,
        gone_at: PathBuf,
        gone_dgram_at: PathBuf,
        kept_at: PathBuf,
    },
    Unconnected {
        stream: RawFd,
        seqpacket: RawFd,
        bound: RawFd,
        at: PathBuf,
    },
    PeerClosed {
        survivor: RawFd,
        accepted: UnixStream,
        _listener: UnixListener,
        at: PathBuf,
    },
}

fn set_up(kind: &str, args: &WorkloadArgs) -> Result<State, WorkloadError> {
    let io = |what: &'static str| move |e: std::io::Error| WorkloadError::setup(what, e);
    Ok(match kind {
        "shutdown" => {
            let (a, b) = pair(libc::SOCK_STREAM)?;
            send(a, b"last words").map_err(|_| setup_err("send"))?;
            // SAFETY: shutdown of our own sockets.
            unsafe { libc::shutdown(a, libc::SHUT_WR) };
            let (c, d) = pair(libc::SOCK_STREAM)?;
            // SAFETY: as above.
            unsafe { libc::shutdown(c, libc::SHUT_RD) };
            let (e, f) = pair(libc::SOCK_SEQPACKET)?;
            // SAFETY: as above.
            unsafe { libc::shutdown(e, libc::SHUT_RDWR) };
            State::Shutdown { a, b, c, d, e, f }
        }
        "unlinked" => {
            let gone_at = args.dir.join("gone.sock");
            let gone_dgram_at = args.dir.join("gone-dgram.sock");
            let kept_at = args.dir.join("kept.sock");
            let gone = UnixListener::bind(&gone_at).map_err(io("bind gone"))?;
            let gone_dgram = std::os::unix::net::UnixDatagram::bind(&gone_dgram_at)
                .map_err(io("bind gone-dgram"))?;
            let kept = UnixListener::bind(&kept_at).map_err(io("bind kept"))?;
            std::fs::remove_file(&gone_at).map_err(io("unlink gone"))?;
            std::fs::remove_file(&gone_dgram_at).map_err(io("unlink gone-dgram"))?;
            State::Unlinked {
                gone,
                gone_dgram,
                kept,
                gone_at,
                gone_dgram_at,
                kept_at,
            }
        }
        "unconnected" => {
            let at = args.dir.join("bound-only.sock");
            // SAFETY: new sockets owned by this process.
            let (stream, seqpacket, bound) = unsafe {
                (
                    libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0),
                    libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0),
                    libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0),
                )
            };
            if stream < 0 || seqpacket < 0 || bound < 0 {
                return Err(setup_err("socket"));
            }
            // SAFETY: sockaddr_un is plain data; bind reads it.
            let r = unsafe {
                let mut sun: libc::sockaddr_un = std::mem::zeroed();
                sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
                for (d, s) in sun.sun_path.iter_mut().zip(path_bytes(&at)) {
                    *d = s as libc::c_char;
                }
                libc::bind(
                    bound,
                    (&sun as *const libc::sockaddr_un).cast(),
                    std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
                )
            };
            if r != 0 {
                return Err(setup_err("bind"));
            }
            State::Unconnected {
                stream,
                seqpacket,
                bound,
                at,
            }
        }
        "peerclosed" => {
            let (survivor, gone) = pair(libc::SOCK_STREAM)?;
            send(gone, b"bye").map_err(|_| setup_err("send"))?;
            // SAFETY: closing our own fd.
            unsafe { libc::close(gone) };
            let at = args.dir.join("srv.sock");
            let listener = UnixListener::bind(&at).map_err(io("bind"))?;
            let mut cli = UnixStream::connect(&at).map_err(io("connect"))?;
            let (accepted, _) = listener.accept().map_err(io("accept"))?;
            std::io::Write::write_all(&mut cli, b"hello").map_err(io("write"))?;
            drop(cli);
            State::PeerClosed {
                survivor,
                accepted,
                _listener: listener,
                at,
            }
        }
        other => {
            return Err(WorkloadError::setup(
                "arguments",
                format!("unknown kind {other}"),
            ))
        }
    })
}

fn inject_fault(s: &State) {
    match s {
        State::Shutdown { a, b, c, d, e, f } => {
            replace_with_live_pair(*b, libc::SOCK_STREAM, b"last words");
            replace_with_live_pair(*a, libc::SOCK_STREAM, b"");
            replace_with_live_pair(*c, libc::SOCK_STREAM, b"");
            replace_with_live_pair(*d, libc::SOCK_STREAM, b"");
            replace_with_live_pair(*e, libc::SOCK_SEQPACKET, b"");
            replace_with_live_pair(*f, libc::SOCK_SEQPACKET, b"");
        }
        State::Unlinked {
            gone_at,
            gone_dgram_at,
            ..
        } => {
            let _ = UnixListener::bind(gone_at).map(|l| l.into_raw_fd());
            let _ = std::os::unix::net::UnixDatagram::bind(gone_dgram_at).map(|l| l.into_raw_fd());
        }
        State::Unconnected { bound, .. } => replace_unconnected(*bound, libc::SOCK_STREAM),
        State::PeerClosed {
            survivor, accepted, ..
        } => {
            replace_with_live_pair(*survivor, libc::SOCK_STREAM, b"bye");
            replace_with_live_pair(accepted.as_raw_fd(), libc::SOCK_STREAM, b"hello");
        }
    }
}

fn is_socket_file(p: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_socket() => Ok(()),
        Ok(m) => Err(format!("{} is a {:?}", p.display(), m.file_type())),
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
}

fn is_absent(p: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(p) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Ok(m) => Err(format!("{} exists ({:?})", p.display(), m.file_type())),
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
}

/// A new connection to `l` from an unbound socket carries bytes.
fn accepts(l: &UnixListener, at: &Path) -> Result<(), String> {
    let mut c = UnixStream::connect(at).map_err(|e| format!("connect to {}: {e}", at.display()))?;
    let (s, _) = l.accept().map_err(|e| format!("accept: {e}"))?;
    std::io::Write::write_all(&mut c, b"ping").map_err(|e| e.to_string())?;
    expect_eq("accepted bytes", recv(s.as_raw_fd()), Ok(b"ping".to_vec()))
}

fn verify(s: &State, r: &mut Report) {
    match s {
        State::Shutdown { a, b, c, d, e, f } => {
            r.check(
                "shut-wr-peer-reads-then-eof",
                reads_then_eof(*b, b"last words"),
            );
            r.check("shut-wr-send-epipe", send_fails_epipe(*a));
            r.check("shut-wr-other-way-open", carries(*b, *a));
            r.check("shut-rd-reads-eof", reads_then_eof(*c, b""));
            r.check("shut-rd-peer-send-epipe", send_fails_epipe(*d));
            r.check("shut-rd-other-way-open", carries(*c, *d));
            r.check(
                "seqpacket-shut-rdwr",
                reads_then_eof(*e, b"")
                    .and_then(|()| reads_then_eof(*f, b""))
                    .and_then(|()| send_fails_epipe(*e))
                    .and_then(|()| send_fails_epipe(*f)),
            );
        }
        State::Unlinked {
            gone,
            gone_dgram,
            kept,
            gone_at,
            gone_dgram_at,
            kept_at,
        } => {
            r.check("unlinked-listener-path-absent", is_absent(gone_at));
            r.check("unlinked-dgram-path-absent", is_absent(gone_dgram_at));
            r.check("kept-listener-path-is-socket", is_socket_file(kept_at));
            r.check(
                "unlinked-names",
                expect_eq(
                    "listener",
                    name(gone.as_raw_fd(), false),
                    Ok(path_bytes(gone_at)),
                )
                .and_then(|()| {
                    expect_eq(
                        "dgram",
                        name(gone_dgram.as_raw_fd(), false),
                        Ok(path_bytes(gone_dgram_at)),
                    )
                })
                .and_then(|()| {
                    expect_eq(
                        "kept",
                        name(kept.as_raw_fd(), false),
                        Ok(path_bytes(kept_at)),
                    )
                }),
            );
            r.check("kept-listener-accepts", accepts(kept, kept_at));
        }
        State::Unconnected {
            stream,
            seqpacket,
            bound,
            at,
        } => {
            r.check(
                "types",
                expect_eq("stream", sock_type(*stream), Ok(libc::SOCK_STREAM))
                    .and_then(|()| {
                        expect_eq("seqpacket", sock_type(*seqpacket), Ok(libc::SOCK_SEQPACKET))
                    })
                    .and_then(|()| expect_eq("bound", sock_type(*bound), Ok(libc::SOCK_STREAM))),
            );
            r.check(
                "unconnected-names",
                expect_eq("stream", name(*stream, false), Ok(Vec::new()))
                    .and_then(|()| expect_eq("seqpacket", name(*seqpacket, false), Ok(Vec::new())))
                    .and_then(|()| expect_eq("bound", name(*bound, false), Ok(path_bytes(at)))),
            );
            r.check(
                "no-peers",
                expect_eq("stream", name(*stream, true), Err(libc::ENOTCONN))
                    .and_then(|()| expect_eq("bound", name(*bound, true), Err(libc::ENOTCONN))),
            );
            r.check(
                "bound-listens-and-accepts",
                (|| {
                    // SAFETY: listen on our own socket; the fd stays ours (dup'ed into the listener).
                    if unsafe { libc::listen(*bound, 4) } != 0 {
                        return Err(os_err("listen"));
                    }
                    // SAFETY: dup of our own fd, owned by the listener from here on.
                    let l = unsafe { UnixListener::from_raw_fd(libc::dup(*bound)) };
                    let at_c = std::ffi::CString::new(path_bytes(at)).map_err(|e| e.to_string())?;
                    // SAFETY: sockaddr_un is plain data; connect reads it.
                    let rc = unsafe {
                        let mut sun: libc::sockaddr_un = std::mem::zeroed();
                        sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
                        for (d, s) in sun.sun_path.iter_mut().zip(at_c.as_bytes()) {
                            *d = *s as libc::c_char;
                        }
                        libc::connect(
                            *stream,
                            (&sun as *const libc::sockaddr_un).cast(),
                            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
                        )
                    };
                    if rc != 0 {
                        return Err(os_err("connect"));
                    }
                    let (acc, _) = l.accept().map_err(|e| format!("accept: {e}"))?;
                    let acc = OwnedFd::from(acc);
                    carries(*stream, acc.as_raw_fd())
                })(),
            );
        }
        State::PeerClosed {
            survivor,
            accepted,
            at,
            ..
        } => {
            r.check(
                "pair-survivor-reads-then-eof",
                reads_then_eof(*survivor, b"bye").and_then(|()| send_fails_epipe(*survivor)),
            );
            r.check(
                "accepted-survivor-reads-then-eof",
                reads_then_eof(accepted.as_raw_fd(), b"hello")
                    .and_then(|()| send_fails_epipe(accepted.as_raw_fd())),
            );
            r.check(
                "accepted-name",
                expect_eq(
                    "getsockname",
                    name(accepted.as_raw_fd(), false),
                    Ok(path_bytes(at)),
                ),
            );
        }
    }
}

fn body() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env("KIND... [--inject-fault]")?;
    let kinds = args.kinds()?;
    let states = kinds
        .iter()
        .map(|k| set_up(k, &args))
        .collect::<Result<Vec<_>, _>>()?;
    workload::ready()?;
    workload::wait_for_trigger(&args.trigger)?;
    if args.has_flag(INJECT_FAULT) {
        states.iter().for_each(inject_fault);
    }
    let mut report = Report::new("wl_sockets");
    for s in &states {
        verify(s, &mut report);
    }
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_sockets", body)
}
