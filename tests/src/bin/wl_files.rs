//! Workload `wl_files`: open files of many kinds whose state must survive a checkpoint.
//!
//! `wl_files TRIGGER DIR KIND... [--inject-fault]`, KIND one of:
//! - `dup`: a regular file opened once and dup'ed; the two fds share one offset (3 at READY).
//! - `pipe`: a pipe of 128 KiB with 10 buffered bytes, read end O_NONBLOCK.
//! - `socketpair`: a stream pair with two messages queued towards one end and one towards the other, and
//!   a datagram pair with two queued datagrams (boundaries must survive).
//! - `tcp`: a TCP listener on 127.0.0.1 (port chosen by the kernel); after the trigger it must accept a new
//!   connection from this process and carry bytes.
//! - `unixlisten`: a listening unix stream socket bound to a path of DIR and one bound to an abstract name;
//!   after the trigger each accepts a new connection from this process and carries bytes.
//! - `ghost`: a 5000-byte file of DIR, unlinked while open, offset 100.
//! - `udp`: a UDP socket bound to 127.0.0.1; after the trigger it receives a datagram sent to its port.
//! - `owner`: a pipe read end with O_ASYNC, owner this process (F_SETOWN_EX) and signal SIGURG (F_SETSIG).
//! - `eventfd`: an eventfd with counter 5.
//! - `epoll`: an epoll set watching an eventfd with counter 1 (data 0xabcdef) and an empty pipe (data 7);
//!   after the trigger exactly the eventfd is reported ready.
//! - `timerfd`: a CLOCK_MONOTONIC timerfd every 20 ms, which must still tick after the trigger, and a
//!   non-blocking one-shot CLOCK_BOOTTIME timerfd that expired once before the dump and was not read: after
//!   the trigger exactly one expiration is read from it, then none.
//! - `memfd`: a 100 KiB memfd with a pattern, offset 1234.
//! - `pty`: a pseudo-terminal pair (the master dup'ed, the slave O_NONBLOCK) in raw mode at 57600 baud,
//!   window 37x101: after the trigger the termios and window size are the same, bytes go both ways, and
//!   the two master fds are one description. (`--inject-fault` changes the window size.)
//! - `signalfd`: SIGUSR1 blocked and a signalfd for it; a SIGUSR1 raised after the trigger is read from it.
//! - `locks`: an exclusive flock on one file and a POSIX write lock on bytes 10-19 of another; after the
//!   trigger a new open of each sees them held (by this pid for the POSIX one).
//! - `forkshare`: a file opened (offset 3) and an O_APPEND file opened before a fork; after the trigger the
//!   parent and the child write through their inherited fds in turns and each sees the offset the other
//!   left (3 → 5 by the parent, → 7 by the child, → 9 by the parent; the append file grows 3 → 5).
//! - `fifo`: a FIFO of DIR opened read-only (O_NONBLOCK) and write-only, pipe size 64 KiB, 10 bytes
//!   buffered; after the trigger the bytes are there and the two fds are one pipe again.
//! - `unixdgram`: datagram sockets bound to a path and to an abstract name, a client bound to a path that
//!   sent one datagram to the first, and an unnamed client connected to the second that sent two; after the
//!   trigger the queues (boundaries, the sender's name), the names and the connection are as before.
//! - `unixaccept`: a unix stream connection accepted from a listener on a path of DIR (bytes queued both
//!   ways), and one accepted from an abstract listener closed since; after the trigger the bytes, both
//!   ends' names, the connections and the first listener work, and the closed name is free.
//! - `scmrights`: a socketpair with a queued message carrying a pipe fd (SCM_RIGHTS), which a dump must
//!   refuse; the check receives it and reads the pipe through the passed fd.
//! - `unixoutside`: a socketpair end whose peer is held by a process outside this tree (a grandchild whose
//!   parent exited; its pid in DIR/outside.pid), which a dump must refuse; the check gets an echo from it.
//! - `inotify`: an inotify instance (O_NONBLOCK) watching DIR/in-a for IN_CREATE (wd 1) and DIR/in-b for
//!   IN_CREATE|IN_ONESHOT (wd 3: wd 2 was added and removed before); after the trigger its queue is empty,
//!   a file created in each directory is reported with the right wd and mask (then IN_IGNORED for the
//!   one-shot watch), and a new watch gets wd 4 (the kernel's cyclic allocation went on from 3).
//! - `pidfd`: a child waiting on a pipe, a pidfd of it (PIDFD_NONBLOCK) registered in an epoll set; after
//!   the trigger the child is told to exit 7: the pidfd becomes readable, epoll reports it and
//!   waitid(P_PIDFD) reaps exactly that child with status 7.
//! - `pidfdzombie`: a pidfd of a child that has exited (exit 9) and is not reaped yet; after the trigger it
//!   is readable at once and waitid(P_PIDFD) reaps exactly that child with status 9.
//! - `pidfdoutside`: a pidfd of a process outside this tree (a grandchild whose parent exited; its pid in
//!   DIR/pidfd-outside.pid), which a dump must refuse; the check signals it through the pidfd.
//! - `pidfdreaped`: a pidfd of a child already reaped (fdinfo `Pid: -1`), which a dump must refuse.
//! - `inotifyqueued`: an inotify watch on DIR/in-q with one unread IN_CREATE event, which a dump must
//!   refuse; the check reads the event.
//! - `established` / `netlink`: an established loopback TCP connection / a netlink socket, which a dump
//!   must refuse (the workload then runs on and passes its own check).
//!
//! `--inject-fault` reads the pipe's bytes, the eventfd's counter and the one-shot timerfd's expiration and
//! drops the flock after the trigger, before checking.

use std::os::fd::RawFd;
use std::process::ExitCode;

use dormant_tests::workload::{self, Report, WorkloadArgs, WorkloadError, INJECT_FAULT};

/// fcntl commands not in the libc crate for this target.
const F_SETSIG: libc::c_int = 10;
const F_GETSIG: libc::c_int = 11;
const USAGE: &str = "KIND... [--inject-fault]";
const PIPE_BYTES: &[u8] = b"hello pipe";
const PIPE_SIZE: i32 = 128 << 10;
const MEMFD_LEN: usize = 100 << 10;
const MEMFD_POS: i64 = 1234;
const MEMFD_NAME: &str = "wl-files-memfd";
const EPOLL_EVENTFD_DATA: u64 = 0xab_cdef;
const FIFO_BYTES: &[u8] = b"fifo bytes";
const FIFO_SIZE: i32 = 64 << 10;
const PIDFD_EPOLL_DATA: u64 = 0x51_dfd0;

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn setup_err(what: &str) -> WorkloadError {
    WorkloadError::setup(what, std::io::Error::last_os_error())
}

fn cvt(r: libc::c_int, what: &str) -> Result<libc::c_int, WorkloadError> {
    if r < 0 {
        Err(setup_err(what))
    } else {
        Ok(r)
    }
}

fn write_fd(fd: RawFd, b: &[u8]) -> Result<(), String> {
    // SAFETY: writes `b.len()` bytes from `b`.
    let n = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
    if n as usize != b.len() {
        return Err(os_err(&format!("write to fd {fd} (got {n})")));
    }
    Ok(())
}

fn read_fd(fd: RawFd, max: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; max];
    // SAFETY: reads at most `max` bytes into `buf`.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), max) };
    if n < 0 {
        return Err(os_err(&format!("read from fd {fd}")));
    }
    buf.truncate(n as usize);
    Ok(buf)
}

const PTY_ROWS: u16 = 37;
const PTY_COLS: u16 = 101;

fn set_winsize(fd: RawFd, rows: u16, cols: u16) -> Result<(), String> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from our stack.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(os_err("TIOCSWINSZ"));
    }
    Ok(())
}

/// Reads `want` bytes from `fd` (which may be non-blocking), waiting up to 5 s for them.
fn read_some(fd: RawFd, want: usize) -> Result<Vec<u8>, String> {
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while got.len() < want {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polls one pollfd on our stack.
        unsafe { libc::poll(&mut p, 1, 100) };
        let mut buf = [0u8; 64];
        // SAFETY: reads into our buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), want - got.len()) };
        if n > 0 {
            got.extend_from_slice(&buf[..n as usize]);
        } else if std::time::Instant::now() > deadline {
            return Err(format!("read {} of {want} bytes from fd {fd}", got.len()));
        }
    }
    Ok(got)
}

fn pos(fd: RawFd) -> i64 {
    // SAFETY: lseek on our own fd.
    unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) }
}

fn ghost_pattern() -> Vec<u8> {
    (0..5000u32).map(|i| (i % 13) as u8 + b'a').collect()
}

fn memfd_pattern() -> Vec<u8> {
    (0..MEMFD_LEN).map(|i| (i * 7 % 251) as u8).collect()
}

/// A loopback TCP listener; returns the fd and its port.
fn listener() -> Result<(RawFd, u16), WorkloadError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| WorkloadError::setup("tcp bind", e))?;
    let port = l
        .local_addr()
        .map_err(|e| WorkloadError::setup("tcp addr", e))?
        .port();
    Ok((std::os::fd::IntoRawFd::into_raw_fd(l), port))
}

/// The fds one kind set up, checked after the trigger.
#[derive(Debug)]
enum State {
    Dup {
        a: RawFd,
        b: RawFd,
    },
    Pipe {
        r: RawFd,
        w: RawFd,
    },
    Pairs {
        s: [RawFd; 2],
        d: [RawFd; 2],
    },
    Tcp {
        l: RawFd,
        port: u16,
    },
    EventFd {
        fd: RawFd,
    },
    Epoll {
        ep: RawFd,
    },
    TimerFd {
        fd: RawFd,
        /// Expired once, never read.
        expired: RawFd,
    },
    Pty {
        master: RawFd,
        master_dup: RawFd,
        slave: RawFd,
    },
    Memfd {
        fd: RawFd,
    },
    SignalFd {
        fd: RawFd,
    },
    Locks {
        flocked: RawFd,
        a: std::path::PathBuf,
        b: std::path::PathBuf,
    },
    UnixListen {
        path: RawFd,
        abs: RawFd,
        at: std::path::PathBuf,
        name: String,
    },
    Ghost {
        fd: RawFd,
    },
    Udp {
        fd: RawFd,
    },
    Owner {
        fd: RawFd,
    },
    ForkShare {
        fd: RawFd,
        app: RawFd,
        cmd: RawFd,
        ack: RawFd,
        child: libc::pid_t,
        path: std::path::PathBuf,
        app_path: std::path::PathBuf,
    },
    Fifo {
        r: RawFd,
        w: RawFd,
        path: std::path::PathBuf,
    },
    UnixDgram {
        srv_path: std::os::unix::net::UnixDatagram,
        srv_abs: std::os::unix::net::UnixDatagram,
        bound: std::os::unix::net::UnixDatagram,
        conn: std::os::unix::net::UnixDatagram,
        at: std::path::PathBuf,
        client_at: std::path::PathBuf,
        abs: String,
    },
    UnixAccept {
        l: std::os::unix::net::UnixListener,
        acc: std::os::unix::net::UnixStream,
        cli: std::os::unix::net::UnixStream,
        acc2: std::os::unix::net::UnixStream,
        cli2: std::os::unix::net::UnixStream,
        at: std::path::PathBuf,
        abs: String,
    },
    ScmRights {
        b: RawFd,
    },
    Outside {
        s: RawFd,
    },
    Inotify {
        fd: RawFd,
        a: std::path::PathBuf,
        b: std::path::PathBuf,
    },
    Pidfd {
        pidfd: RawFd,
        ep: RawFd,
        cmd: RawFd,
        child: libc::pid_t,
    },
    PidfdOutside {
        pidfd: RawFd,
    },
    PidfdZombie {
        pidfd: RawFd,
        child: libc::pid_t,
    },
    InotifyQueued {
        fd: RawFd,
    },
    /// Refused kinds: kept open only.
    Held,
}

fn set_up(kind: &str, args: &WorkloadArgs) -> Result<State, WorkloadError> {
    Ok(match kind {
        "dup" => {
            let path = args.dir.join("dup-file");
            std::fs::write(&path, b"0123456789")
                .map_err(|e| WorkloadError::setup("dup file", e))?;
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| WorkloadError::setup("dup file open", e))?;
            let a = std::os::fd::IntoRawFd::into_raw_fd(f);
            // SAFETY: dup of our own fd.
            let b = cvt(unsafe { libc::dup(a) }, "dup")?;
            // SAFETY: lseek on our own fd.
            cvt(unsafe { libc::lseek(a, 3, libc::SEEK_SET) } as i32, "lseek")?;
            State::Dup { a, b }
        }
        "pipe" => {
            let mut p = [0; 2];
            // SAFETY: pipe2 writes two fds into `p`.
            cvt(
                // SAFETY: pipe2 writes two fds into `p`.
                unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) },
                "pipe2",
            )?;
            // SAFETY: fcntl on our own fds.
            cvt(
                // SAFETY: fcntl on our own fds.
                unsafe { libc::fcntl(p[1], libc::F_SETPIPE_SZ, PIPE_SIZE) },
                "F_SETPIPE_SZ",
            )?;
            // SAFETY: fcntl on our own fd.
            cvt(
                // SAFETY: fcntl on our own fd.
                unsafe { libc::fcntl(p[0], libc::F_SETFL, libc::O_NONBLOCK) },
                "F_SETFL",
            )?;
            write_fd(p[1], PIPE_BYTES).map_err(|e| WorkloadError::setup("pipe write", e))?;
            State::Pipe { r: p[0], w: p[1] }
        }
        "socketpair" => {
            let mut s = [0; 2];
            let mut d = [0; 2];
            // SAFETY: socketpair writes two fds.
            cvt(
                // SAFETY: socketpair writes two fds.
                unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, s.as_mut_ptr()) },
                "socketpair",
            )?;
            // SAFETY: socketpair writes two fds.
            cvt(
                // SAFETY: socketpair writes two fds.
                unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, d.as_mut_ptr()) },
                "socketpair dgram",
            )?;
            for (fd, m) in [
                (s[0], &b"to b 1"[..]),
                (s[0], b"to b 2"),
                (s[1], b"to a"),
                (d[0], b"m1"),
                (d[0], b"m22"),
            ] {
                write_fd(fd, m).map_err(|e| WorkloadError::setup("socket send", e))?;
            }
            State::Pairs { s, d }
        }
        "tcp" => {
            let (l, port) = listener()?;
            State::Tcp { l, port }
        }
        "unixlisten" => {
            let at = args.dir.join("listen.sock");
            let l = std::os::unix::net::UnixListener::bind(&at)
                .map_err(|e| WorkloadError::setup("unix bind", e))?;
            let name = format!("wl-files-{}", std::process::id());
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .map_err(|e| WorkloadError::setup("abstract name", e))?;
            let a = std::os::unix::net::UnixListener::bind_addr(&addr)
                .map_err(|e| WorkloadError::setup("abstract bind", e))?;
            State::UnixListen {
                path: std::os::fd::IntoRawFd::into_raw_fd(l),
                abs: std::os::fd::IntoRawFd::into_raw_fd(a),
                at,
                name,
            }
        }
        "ghost" => {
            let p = args.dir.join("ghost");
            std::fs::write(&p, ghost_pattern())
                .map_err(|e| WorkloadError::setup("ghost file", e))?;
            let f = std::fs::File::open(&p).map_err(|e| WorkloadError::setup("ghost open", e))?;
            std::fs::remove_file(&p).map_err(|e| WorkloadError::setup("ghost unlink", e))?;
            let fd = std::os::fd::IntoRawFd::into_raw_fd(f);
            // SAFETY: lseek on our own fd.
            let r = unsafe { libc::lseek(fd, 100, libc::SEEK_SET) };
            cvt(r as i32, "lseek")?;
            State::Ghost { fd }
        }
        "udp" => {
            let s = std::net::UdpSocket::bind("127.0.0.1:0")
                .map_err(|e| WorkloadError::setup("udp bind", e))?;
            State::Udp {
                fd: std::os::fd::IntoRawFd::into_raw_fd(s),
            }
        }
        "owner" => {
            let mut p = [0; 2];
            // SAFETY: pipe2 writes two fds into `p`.
            let r = unsafe { libc::pipe2(p.as_mut_ptr(), 0) };
            cvt(r, "pipe2")?;
            // SAFETY: fcntl on our own fd.
            let r = unsafe { libc::fcntl(p[0], libc::F_SETFL, libc::O_ASYNC) };
            cvt(r, "F_SETFL O_ASYNC")?;
            // SAFETY: fcntl on our own fd.
            let r = unsafe { libc::fcntl(p[0], F_SETSIG, libc::SIGURG) };
            cvt(r, "F_SETSIG")?;
            // SAFETY: fcntl on our own fd; getpid has no preconditions.
            let r = unsafe { libc::fcntl(p[0], libc::F_SETOWN, libc::getpid()) };
            cvt(r, "F_SETOWN")?;
            State::Owner { fd: p[0] }
        }
        "eventfd" => State::EventFd {
            // SAFETY: eventfd returns a new fd.
            fd: cvt(unsafe { libc::eventfd(5, libc::EFD_NONBLOCK) }, "eventfd")?,
        },
        "epoll" => {
            // SAFETY: creating fds.
            let ev = cvt(unsafe { libc::eventfd(1, libc::EFD_NONBLOCK) }, "eventfd")?;
            let mut p = [0; 2];
            // SAFETY: pipe2 writes two fds.
            cvt(unsafe { libc::pipe2(p.as_mut_ptr(), 0) }, "pipe2")?;
            // SAFETY: creating an epoll fd.
            let ep = cvt(unsafe { libc::epoll_create1(0) }, "epoll_create1")?;
            for (fd, data) in [(ev, EPOLL_EVENTFD_DATA), (p[0], 7)] {
                let mut e = libc::epoll_event {
                    events: libc::EPOLLIN as u32,
                    u64: data,
                };
                // SAFETY: epoll_ctl reads one event from our stack.
                cvt(
                    // SAFETY: epoll_ctl reads one event from our stack.
                    unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut e) },
                    "epoll_ctl",
                )?;
            }
            State::Epoll { ep }
        }
        "timerfd" => {
            // SAFETY: creating a timerfd.
            let fd = cvt(
                unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, 0) },
                "timerfd_create",
            )?;
            let t = libc::timespec {
                tv_sec: 0,
                tv_nsec: 20_000_000,
            };
            let spec = libc::itimerspec {
                it_interval: t,
                it_value: t,
            };
            // SAFETY: reads one itimerspec.
            cvt(
                // SAFETY: reads one itimerspec.
                unsafe { libc::timerfd_settime(fd, 0, &spec, std::ptr::null_mut()) },
                "timerfd_settime",
            )?;
            let expired = cvt(
                // SAFETY: creating a timerfd.
                unsafe { libc::timerfd_create(libc::CLOCK_BOOTTIME, libc::TFD_NONBLOCK) },
                "timerfd_create",
            )?;
            let once = libc::itimerspec {
                it_interval: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 1_000_000,
                },
            };
            cvt(
                // SAFETY: reads one itimerspec.
                unsafe { libc::timerfd_settime(expired, 0, &once, std::ptr::null_mut()) },
                "timerfd_settime",
            )?;
            // Wait (without reading) until it has expired, so the dump sees one unread expiration.
            let mut p = libc::pollfd {
                fd: expired,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: polls one pollfd on our stack.
            if unsafe { libc::poll(&mut p, 1, 5000) } != 1 {
                return Err(WorkloadError::setup(
                    "timerfd",
                    "one-shot timer did not expire",
                ));
            }
            State::TimerFd { fd, expired }
        }
        "pty" => {
            // SAFETY: opens a new pty master.
            let master = cvt(
                unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) },
                "posix_openpt",
            )?;
            // SAFETY: unlocks our own master's slave.
            cvt(unsafe { libc::unlockpt(master) }, "unlockpt")?;
            let mut name = [0 as libc::c_char; 64];
            // SAFETY: writes the slave's NUL-terminated path into `name`.
            if unsafe { libc::ptsname_r(master, name.as_mut_ptr(), name.len()) } != 0 {
                return Err(WorkloadError::setup(
                    "ptsname_r",
                    std::io::Error::last_os_error(),
                ));
            }
            let slave = cvt(
                // SAFETY: opens the NUL-terminated slave path.
                unsafe {
                    libc::open(
                        name.as_ptr(),
                        libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK,
                    )
                },
                "open slave",
            )?;
            // SAFETY: termios is plain data; tcgetattr fills it.
            let mut t: libc::termios = unsafe { std::mem::zeroed() };
            // SAFETY: termios calls on our own slave with `t` on our stack.
            unsafe {
                cvt(libc::tcgetattr(slave, &mut t), "tcgetattr")?;
                libc::cfmakeraw(&mut t);
                cvt(libc::cfsetspeed(&mut t, libc::B57600), "cfsetspeed")?;
                cvt(libc::tcsetattr(slave, libc::TCSANOW, &t), "tcsetattr")?;
            }
            set_winsize(slave, PTY_ROWS, PTY_COLS)
                .map_err(|e| WorkloadError::setup("winsize", e))?;
            // SAFETY: dup of our own fd.
            let master_dup = cvt(unsafe { libc::dup(master) }, "dup")?;
            State::Pty {
                master,
                master_dup,
                slave,
            }
        }
        "memfd" => {
            let name =
                std::ffi::CString::new(MEMFD_NAME).map_err(|e| WorkloadError::setup("name", e))?;
            // SAFETY: memfd_create reads a NUL-terminated name.
            let fd = cvt(
                unsafe { libc::memfd_create(name.as_ptr(), 0) },
                "memfd_create",
            )?;
            write_fd(fd, &memfd_pattern()).map_err(|e| WorkloadError::setup("memfd write", e))?;
            // SAFETY: lseek on our own fd.
            cvt(
                // SAFETY: lseek on our own fd.
                unsafe { libc::lseek(fd, MEMFD_POS, libc::SEEK_SET) } as i32,
                "lseek",
            )?;
            State::Memfd { fd }
        }
        "signalfd" => {
            // SAFETY: sigset_t is plain data, initialised by sigemptyset.
            let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
            // SAFETY: building a signal set on our stack and blocking it.
            unsafe {
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGUSR1);
                libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            }
            // SAFETY: signalfd reads the set.
            State::SignalFd {
                fd: cvt(
                    // SAFETY: signalfd reads the set.
                    unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK) },
                    "signalfd",
                )?,
            }
        }
        "locks" => {
            let a = args.dir.join("flocked");
            let b = args.dir.join("posix-locked");
            let open = |p: &std::path::Path| -> Result<RawFd, WorkloadError> {
                std::fs::write(p, [0u8; 64]).map_err(|e| WorkloadError::setup("lock file", e))?;
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(p)
                    .map_err(|e| WorkloadError::setup("lock file open", e))?;
                Ok(std::os::fd::IntoRawFd::into_raw_fd(f))
            };
            let fa = open(&a)?;
            let fb = open(&b)?;
            // SAFETY: flock on our own fd.
            let r = unsafe { libc::flock(fa, libc::LOCK_EX) };
            cvt(r, "flock")?;
            // SAFETY: flock is plain data.
            let mut fl: libc::flock = unsafe { std::mem::zeroed() };
            fl.l_type = libc::F_WRLCK as libc::c_short;
            fl.l_whence = libc::SEEK_SET as libc::c_short;
            fl.l_start = 10;
            fl.l_len = 10;
            // SAFETY: fcntl reads one struct flock.
            let r = unsafe { libc::fcntl(fb, libc::F_SETLK, &fl) };
            cvt(r, "F_SETLK")?;
            State::Locks { flocked: fa, a, b }
        }
        "forkshare" => fork_share(args)?,
        "fifo" => {
            let path = args.dir.join("fifo");
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
                .map_err(|e| WorkloadError::setup("fifo path", e))?;
            // SAFETY: mkfifo and open read the NUL-terminated path.
            cvt(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, "mkfifo")?;
            // SAFETY: as above; a non-blocking read-only open of a FIFO does not wait for a writer.
            let r = cvt(
                unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK) },
                "open fifo for reading",
            )?;
            // SAFETY: as above; a reader exists, so this does not wait.
            let w = cvt(
                unsafe { libc::open(c.as_ptr(), libc::O_WRONLY) },
                "open fifo for writing",
            )?;
            // SAFETY: fcntl on our own fd.
            cvt(
                // SAFETY: a syscall on our own fds / stack buffers.
                unsafe { libc::fcntl(w, libc::F_SETPIPE_SZ, FIFO_SIZE) },
                "F_SETPIPE_SZ",
            )?;
            write_fd(w, FIFO_BYTES).map_err(|e| WorkloadError::setup("fifo write", e))?;
            State::Fifo { r, w, path }
        }
        "unixdgram" => unix_dgram(args)?,
        "unixaccept" => unix_accept(args)?,
        "scmrights" => scm_rights()?,
        "unixoutside" => unix_outside(args)?,
        "inotify" => inotify(args)?,
        "pidfd" => pidfd_child()?,
        "pidfdoutside" => pidfd_outside(args)?,
        "pidfdzombie" => {
            let child = workload::fork()?;
            if child == 0 {
                workload::exit_now(9);
            }
            let pidfd = pidfd_open(child, 0).map_err(|e| WorkloadError::setup("pidfd_open", e))?;
            // Readable once the child has exited: a zombie when the dump comes.
            if !poll_in(pidfd, 10_000).map_err(|e| WorkloadError::setup("pidfd poll", e))? {
                return Err(WorkloadError::setup("pidfdzombie", "child did not exit"));
            }
            State::PidfdZombie { pidfd, child }
        }
        "pidfdreaped" => {
            let child = workload::fork()?;
            if child == 0 {
                workload::exit_now(0);
            }
            let pidfd = pidfd_open(child, 0).map_err(|e| WorkloadError::setup("pidfd_open", e))?;
            workload::wait_status(child);
            let _ = pidfd;
            State::Held
        }
        "inotifyqueued" => {
            let dir = args.dir.join("in-q");
            std::fs::create_dir_all(&dir).map_err(|e| WorkloadError::setup("in-q", e))?;
            // SAFETY: inotify_init1 returns a new fd.
            let fd = cvt(
                unsafe { libc::inotify_init1(libc::IN_NONBLOCK) },
                "inotify_init1",
            )?;
            add_watch(fd, &dir, libc::IN_CREATE).map_err(|e| WorkloadError::setup("watch", e))?;
            std::fs::write(dir.join("queued"), b"")
                .map_err(|e| WorkloadError::setup("queued", e))?;
            State::InotifyQueued { fd }
        }
        "established" => {
            let (l, port) = listener()?;
            let c = std::net::TcpStream::connect(("127.0.0.1", port))
                .map_err(|e| WorkloadError::setup("connect", e))?;
            // SAFETY: accept on our own listener.
            let a = cvt(
                unsafe { libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut()) },
                "accept",
            )?;
            std::mem::forget(c);
            let _ = a;
            State::Held
        }
        "netlink" => {
            // SAFETY: creating a socket.
            cvt(
                // SAFETY: creating a socket.
                unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE) },
                "netlink socket",
            )?;
            State::Held
        }
        other => {
            return Err(WorkloadError::setup(
                "kind",
                format!("unknown kind {other:?}"),
            ))
        }
    })
}

/// `forkshare`: see the module docs. The child answers commands on a pipe until told to quit.
fn fork_share(args: &WorkloadArgs) -> Result<State, WorkloadError> {
    let path = args.dir.join("fork-file");
    let app_path = args.dir.join("fork-append");
    std::fs::write(&path, b"0123456789").map_err(|e| WorkloadError::setup("fork file", e))?;
    std::fs::write(&app_path, b"abc").map_err(|e| WorkloadError::setup("append file", e))?;
    let open = |p: &std::path::Path, append: bool| -> Result<RawFd, WorkloadError> {
        let f = std::fs::OpenOptions::new()
            .read(!append)
            .write(!append)
            .append(append)
            .open(p)
            .map_err(|e| WorkloadError::setup("fork file open", e))?;
        Ok(std::os::fd::IntoRawFd::into_raw_fd(f))
    };
    let fd = open(&path, false)?;
    let app = open(&app_path, true)?;
    // SAFETY: lseek on our own fd.
    cvt(
        // SAFETY: a syscall on our own fds / stack buffers.
        unsafe { libc::lseek(fd, 3, libc::SEEK_SET) } as i32,
        "lseek",
    )?;
    let (mut cmd, mut ack) = ([0; 2], [0; 2]);
    // SAFETY: pipe2 writes two fds each.
    cvt(unsafe { libc::pipe2(cmd.as_mut_ptr(), 0) }, "pipe2")?;
    // SAFETY: as above.
    cvt(unsafe { libc::pipe2(ack.as_mut_ptr(), 0) }, "pipe2")?;
    // SAFETY: the workload is single-threaded; the child only makes raw syscalls and exits with _exit.
    let child = cvt(unsafe { libc::fork() }, "fork")?;
    if child == 0 {
        // SAFETY: raw syscalls on fds this child inherited; no allocation.
        unsafe {
            libc::close(cmd[1]);
            libc::close(ack[0]);
            loop {
                let mut c = 0u8;
                if libc::read(cmd[0], (&mut c as *mut u8).cast(), 1) != 1 {
                    libc::_exit(2);
                }
                let before = libc::lseek(fd, 0, libc::SEEK_CUR);
                let other = if c == b'w' {
                    libc::write(fd, b"CC".as_ptr().cast(), 2);
                    libc::write(app, b"c".as_ptr().cast(), 1);
                    libc::lseek(fd, 0, libc::SEEK_CUR)
                } else {
                    libc::lseek(app, 0, libc::SEEK_CUR)
                };
                let mut reply = [0u8; 16];
                reply[..8].copy_from_slice(&before.to_ne_bytes());
                reply[8..].copy_from_slice(&other.to_ne_bytes());
                libc::write(ack[1], reply.as_ptr().cast(), 16);
                if c != b'w' {
                    libc::_exit(0);
                }
            }
        }
    }
    // SAFETY: closing the child's ends in the parent.
    unsafe {
        libc::close(cmd[0]);
        libc::close(ack[1]);
    }
    Ok(State::ForkShare {
        fd,
        app,
        cmd: cmd[1],
        ack: ack[0],
        child,
        path,
        app_path,
    })
}

/// One command to the `forkshare` child; its two offsets back.
fn ask_child(cmd: RawFd, ack: RawFd, c: u8) -> Result<(i64, i64), String> {
    write_fd(cmd, &[c])?;
    let b = read_fd(ack, 16)?;
    if b.len() != 16 {
        return Err(format!("child answered {} bytes", b.len()));
    }
    let word = |i: usize| i64::from_ne_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
    Ok((word(0), word(8)))
}

fn abstract_addr(name: &str) -> Result<std::os::unix::net::SocketAddr, std::io::Error> {
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
}

fn unix_dgram(args: &WorkloadArgs) -> Result<State, WorkloadError> {
    use std::os::unix::net::UnixDatagram;
    let e = |what: &'static str| move |err: std::io::Error| WorkloadError::setup(what, err);
    let at = args.dir.join("dgram.sock");
    let client_at = args.dir.join("dgram-client.sock");
    let abs = format!("wl-files-dgram-{}", std::process::id());
    let srv_path = UnixDatagram::bind(&at).map_err(e("dgram bind"))?;
    let srv_abs =
        UnixDatagram::bind_addr(&abstract_addr(&abs).map_err(e("abstract"))?).map_err(e("bind"))?;
    let bound = UnixDatagram::bind(&client_at).map_err(e("client bind"))?;
    bound.send_to(b"d1", &at).map_err(e("send d1"))?;
    let conn = UnixDatagram::unbound().map_err(e("unbound"))?;
    conn.connect_addr(&abstract_addr(&abs).map_err(e("abstract"))?)
        .map_err(e("connect"))?;
    conn.send(b"d2").map_err(e("send d2"))?;
    conn.send(b"d33").map_err(e("send d33"))?;
    Ok(State::UnixDgram {
        srv_path,
        srv_abs,
        bound,
        conn,
        at,
        client_at,
        abs,
    })
}

fn unix_accept(args: &WorkloadArgs) -> Result<State, WorkloadError> {
    use std::io::Write;
    use std::os::unix::net::{UnixListener, UnixStream};
    let e = |what: &'static str| move |err: std::io::Error| WorkloadError::setup(what, err);
    let at = args.dir.join("accept.sock");
    let l = UnixListener::bind(&at).map_err(e("bind"))?;
    let mut cli = UnixStream::connect(&at).map_err(e("connect"))?;
    let (mut acc, _) = l.accept().map_err(e("accept"))?;
    cli.write_all(b"c2s").map_err(e("write"))?;
    acc.write_all(b"s2c").map_err(e("write"))?;
    let abs = format!("wl-files-accept-{}", std::process::id());
    let l2 = UnixListener::bind_addr(&abstract_addr(&abs).map_err(e("abstract"))?)
        .map_err(e("bind abstract"))?;
    let mut cli2 = UnixStream::connect_addr(&abstract_addr(&abs).map_err(e("abstract"))?)
        .map_err(e("connect abstract"))?;
    let (acc2, _) = l2.accept().map_err(e("accept abstract"))?;
    drop(l2);
    cli2.write_all(b"x2").map_err(e("write"))?;
    Ok(State::UnixAccept {
        l,
        acc,
        cli,
        acc2,
        cli2,
        at,
        abs,
    })
}

/// Sends `data` on `fd` with one fd attached (SCM_RIGHTS).
fn send_with_fd(fd: RawFd, data: &[u8], passed: RawFd) -> Result<(), WorkloadError> {
    let mut cmsg = [0u64; 4];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; the CMSG macros write one header and one int inside `cmsg`.
    unsafe {
        let mut mh: libc::msghdr = std::mem::zeroed();
        mh.msg_iov = &mut iov;
        mh.msg_iovlen = 1;
        mh.msg_control = cmsg.as_mut_ptr().cast();
        mh.msg_controllen = libc::CMSG_SPACE(4) as usize;
        let c = libc::CMSG_FIRSTHDR(&mh);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
        libc::CMSG_DATA(c)
            .cast::<libc::c_int>()
            .write_unaligned(passed);
        cvt(libc::sendmsg(fd, &mh, 0) as i32, "sendmsg SCM_RIGHTS")?;
    }
    Ok(())
}

/// Receives one message with one fd attached; returns the bytes and the fd.
fn recv_with_fd(fd: RawFd) -> Result<(Vec<u8>, RawFd), String> {
    let mut cmsg = [0u64; 8];
    let mut buf = [0u8; 64];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; recvmsg writes within the given lengths; CMSG macros walk `cmsg`.
    unsafe {
        let mut mh: libc::msghdr = std::mem::zeroed();
        mh.msg_iov = &mut iov;
        mh.msg_iovlen = 1;
        mh.msg_control = cmsg.as_mut_ptr().cast();
        mh.msg_controllen = std::mem::size_of_val(&cmsg);
        let n = libc::recvmsg(fd, &mut mh, libc::MSG_DONTWAIT);
        if n < 0 {
            return Err(os_err("recvmsg"));
        }
        let c = libc::CMSG_FIRSTHDR(&mh);
        if c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
            return Err("the message arrived without its fd".into());
        }
        let passed = libc::CMSG_DATA(c).cast::<libc::c_int>().read_unaligned();
        Ok((buf[..n as usize].to_vec(), passed))
    }
}

fn scm_rights() -> Result<State, WorkloadError> {
    let mut s = [0; 2];
    // SAFETY: socketpair writes two fds.
    cvt(
        // SAFETY: a syscall on our own fds / stack buffers.
        unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, s.as_mut_ptr()) },
        "socketpair",
    )?;
    let mut p = [0; 2];
    // SAFETY: pipe2 writes two fds.
    cvt(unsafe { libc::pipe2(p.as_mut_ptr(), 0) }, "pipe2")?;
    write_fd(p[1], b"scm").map_err(|e| WorkloadError::setup("pipe write", e))?;
    send_with_fd(s[0], b"fd", p[0])?;
    // The read end now exists only in the queue.
    // SAFETY: closing our own fd.
    unsafe { libc::close(p[0]) };
    Ok(State::ScmRights { b: s[1] })
}

/// `unixoutside`: the peer lives in a grandchild whose parent exited, so it is outside this tree.
fn unix_outside(args: &WorkloadArgs) -> Result<State, WorkloadError> {
    let mut s = [0; 2];
    // SAFETY: socketpair writes two fds.
    cvt(
        // SAFETY: a syscall on our own fds / stack buffers.
        unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, s.as_mut_ptr()) },
        "socketpair",
    )?;
    // SAFETY: single-threaded; the children only make raw syscalls and leave with _exit.
    let a = cvt(unsafe { libc::fork() }, "fork")?;
    if a == 0 {
        // SAFETY: raw syscalls only, no allocation.
        unsafe {
            if libc::fork() != 0 {
                libc::_exit(0);
            }
            libc::close(s[0]);
            let me = libc::getpid().to_ne_bytes();
            libc::write(s[1], me.as_ptr().cast(), 4);
            let mut buf = [0u8; 64];
            loop {
                let n = libc::read(s[1], buf.as_mut_ptr().cast(), buf.len());
                if n <= 0 {
                    libc::_exit(0);
                }
                libc::write(s[1], buf.as_ptr().cast(), n as usize);
            }
        }
    }
    // SAFETY: reaping our own child; closing our copy of the grandchild's end.
    unsafe {
        libc::waitpid(a, std::ptr::null_mut(), 0);
        libc::close(s[1]);
    }
    let b = read_fd(s[0], 4).map_err(|e| WorkloadError::setup("outside pid", e))?;
    let pid = i32::from_ne_bytes(
        b.as_slice()
            .try_into()
            .map_err(|_| WorkloadError::setup("outside pid", "short read"))?,
    );
    std::fs::write(args.dir.join("outside.pid"), pid.to_string())
        .map_err(|e| WorkloadError::setup("outside.pid", e))?;
    Ok(State::Outside { s: s[0] })
}

fn check(state: &State) -> Result<(), String> {
    match *state {
        State::Dup { a, b } => {
            if pos(b) != 3 {
                return Err(format!("dup'ed fd at offset {}, want 3", pos(b)));
            }
            let got = read_fd(a, 2)?;
            if got != b"34" || pos(b) != 5 {
                return Err(format!(
                    "read {got:?} via one fd, other fd at {} (offset not shared)",
                    pos(b)
                ));
            }
        }
        State::Pipe { r, w } => {
            // SAFETY: fcntl on our own fds.
            let (size, fl) = unsafe {
                (
                    libc::fcntl(w, libc::F_GETPIPE_SZ),
                    libc::fcntl(r, libc::F_GETFL),
                )
            };
            if size != PIPE_SIZE {
                return Err(format!("pipe size {size}, want {PIPE_SIZE}"));
            }
            if fl & libc::O_NONBLOCK == 0 {
                return Err("read end lost O_NONBLOCK".into());
            }
            let got = read_fd(r, 4096)?;
            if got != PIPE_BYTES {
                return Err(format!("buffered {got:?}, want {PIPE_BYTES:?}"));
            }
            write_fd(w, b"more")?;
            if read_fd(r, 16)? != b"more" {
                return Err("the two ends are not one pipe".into());
            }
        }
        State::Pairs { s, d } => {
            let mut got = Vec::new();
            while got.len() < 12 {
                let b = read_fd(s[1], 64)?;
                if b.is_empty() {
                    break;
                }
                got.extend(b);
            }
            if got != b"to b 1to b 2" {
                return Err(format!(
                    "stream end b read {:?}",
                    String::from_utf8_lossy(&got)
                ));
            }
            if read_fd(s[0], 64)? != b"to a" {
                return Err("stream end a lost its message".into());
            }
            if read_fd(d[1], 64)? != b"m1" || read_fd(d[1], 64)? != b"m22" {
                return Err("datagrams lost or merged".into());
            }
            write_fd(s[1], b"x")?;
            if read_fd(s[0], 8)? != b"x" {
                return Err("stream pair no longer connected".into());
            }
        }
        State::Tcp { l, port } => {
            let c = std::net::TcpStream::connect(("127.0.0.1", port))
                .map_err(|e| format!("connect to {port}: {e}"))?;
            // SAFETY: accept on our own listener.
            let a = unsafe { libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut()) };
            if a < 0 {
                return Err(os_err("accept"));
            }
            use std::io::Read;
            write_fd(a, b"hi")?;
            let mut buf = [0u8; 2];
            (&c).read_exact(&mut buf)
                .map_err(|e| format!("client read: {e}"))?;
            if &buf != b"hi" {
                return Err(format!("client got {buf:?}"));
            }
        }
        State::EventFd { fd } => {
            let b = read_fd(fd, 8)?;
            let v = u64::from_ne_bytes(b.as_slice().try_into().map_err(|_| "short eventfd read")?);
            if v != 5 {
                return Err(format!("eventfd counter {v}, want 5"));
            }
        }
        State::Epoll { ep } => {
            let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
            // SAFETY: the kernel writes at most 4 events into `evs`.
            let n = unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), 4, 0) };
            if n != 1 {
                return Err(format!("epoll_wait reported {n} ready fds, want 1"));
            }
            let data = evs[0].u64;
            if data != EPOLL_EVENTFD_DATA {
                return Err(format!(
                    "ready data {data:#x}, want {EPOLL_EVENTFD_DATA:#x}"
                ));
            }
        }
        State::TimerFd { fd, expired } => {
            let b = read_fd(expired, 8)
                .map_err(|e| format!("one-shot timerfd lost its unread expiration: {e}"))?;
            let n = u64::from_ne_bytes(
                b.as_slice()
                    .try_into()
                    .map_err(|_| "short one-shot timerfd read")?,
            );
            if n != 1 {
                return Err(format!("one-shot timerfd read {n} expirations, want 1"));
            }
            if read_fd(expired, 8).is_ok() {
                return Err("one-shot timerfd expired again".into());
            }
            let b = read_fd(fd, 8)?;
            let v = u64::from_ne_bytes(b.as_slice().try_into().map_err(|_| "short timerfd read")?);
            if v == 0 {
                return Err("timerfd read 0 expirations".into());
            }
            // SAFETY: itimerspec is plain data.
            let mut cur: libc::itimerspec = unsafe { std::mem::zeroed() };
            // SAFETY: writes one itimerspec.
            unsafe { libc::timerfd_gettime(fd, &mut cur) };
            if cur.it_interval.tv_nsec != 20_000_000 || cur.it_interval.tv_sec != 0 {
                return Err(format!(
                    "interval {:?}s {}ns",
                    cur.it_interval.tv_sec, cur.it_interval.tv_nsec
                ));
            }
        }
        State::Pty {
            master,
            master_dup,
            slave,
        } => {
            // SAFETY: termios is plain data; tcgetattr fills it.
            let mut t: libc::termios = unsafe { std::mem::zeroed() };
            // SAFETY: reads our own slave's termios onto our stack.
            if unsafe { libc::tcgetattr(slave, &mut t) } != 0 {
                return Err(os_err("tcgetattr"));
            }
            // SAFETY: reads a field of `t`.
            let speed = unsafe { libc::cfgetospeed(&t) };
            if t.c_lflag & (libc::ICANON | libc::ECHO) != 0 || speed != libc::B57600 {
                return Err(format!(
                    "termios lflag {:#o} speed {speed:#o}, want raw at B57600",
                    t.c_lflag
                ));
            }
            let mut ws = libc::winsize {
                ws_row: 0,
                ws_col: 0,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: TIOCGWINSZ writes one winsize on our stack.
            if unsafe { libc::ioctl(slave, libc::TIOCGWINSZ, &mut ws) } != 0 {
                return Err(os_err("TIOCGWINSZ"));
            }
            if (ws.ws_row, ws.ws_col) != (PTY_ROWS, PTY_COLS) {
                return Err(format!(
                    "window {}x{}, want {PTY_ROWS}x{PTY_COLS}",
                    ws.ws_row, ws.ws_col
                ));
            }
            // SAFETY: kcmp compares two of our own fds.
            let same = unsafe {
                libc::syscall(
                    libc::SYS_kcmp,
                    libc::getpid(),
                    libc::getpid(),
                    0, // KCMP_FILE
                    master,
                    master_dup,
                )
            };
            if same != 0 {
                return Err(format!(
                    "the dup'ed master fds are distinct descriptions ({same})"
                ));
            }
            write_fd(master, b"ping")?;
            let got = read_some(slave, 4)?;
            if got != b"ping" {
                return Err(format!("slave read {got:?}, want ping"));
            }
            write_fd(slave, b"pong")?;
            let got = read_some(master_dup, 4)?;
            if got != b"pong" {
                return Err(format!("master read {got:?}, want pong"));
            }
        }
        State::Memfd { fd } => {
            if pos(fd) != MEMFD_POS {
                return Err(format!("offset {}, want {MEMFD_POS}", pos(fd)));
            }
            let link = std::fs::read_link(format!("/proc/self/fd/{fd}"))
                .map_err(|e| format!("readlink: {e}"))?;
            if !link.to_string_lossy().contains(MEMFD_NAME) {
                return Err(format!("link {link:?} lost the name"));
            }
            let mut all = vec![0u8; MEMFD_LEN + 16];
            // SAFETY: pread into our buffer.
            let n = unsafe { libc::pread(fd, all.as_mut_ptr().cast(), all.len(), 0) };
            all.truncate(n.max(0) as usize);
            if all != memfd_pattern() {
                return Err(format!("content differs ({n} bytes)"));
            }
        }
        State::SignalFd { fd } => {
            // SAFETY: signals ourselves.
            unsafe { libc::raise(libc::SIGUSR1) };
            let b = read_fd(fd, 128)?;
            let signo = b
                .get(..4)
                .map(|x| u32::from_ne_bytes([x[0], x[1], x[2], x[3]]));
            if signo != Some(libc::SIGUSR1 as u32) {
                return Err(format!("signalfd read {signo:?}"));
            }
        }
        State::Locks { ref a, ref b, .. } => {
            let open = |p: &std::path::Path| {
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(p)
                    .map_err(|e| format!("open {p:?}: {e}"))
            };
            let fa = open(a)?;
            use std::os::fd::AsRawFd;
            // SAFETY: flock on our own fd.
            if unsafe { libc::flock(fa.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Err("the flock is no longer held".into());
            }
            let fb = open(b)?;
            // SAFETY: flock is plain data.
            let mut fl: libc::flock = unsafe { std::mem::zeroed() };
            fl.l_type = libc::F_WRLCK as libc::c_short;
            fl.l_whence = libc::SEEK_SET as libc::c_short;
            fl.l_len = 100;
            // SAFETY: fcntl reads and writes one struct flock on our stack.
            if unsafe { libc::fcntl(fb.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) } != 0 {
                return Err(os_err("F_OFD_GETLK"));
            }
            // SAFETY: getpid has no preconditions.
            let me = unsafe { libc::getpid() };
            if fl.l_type != libc::F_WRLCK as libc::c_short
                || (fl.l_start, fl.l_len, fl.l_pid) != (10, 10, me)
            {
                return Err(format!(
                    "POSIX lock: type {} start {} len {} pid {} (want write 10 10 {me})",
                    fl.l_type, fl.l_start, fl.l_len, fl.l_pid
                ));
            }
        }
        State::UnixListen {
            path,
            abs,
            ref at,
            ref name,
        } => {
            use std::io::{Read, Write};
            use std::os::linux::net::SocketAddrExt;
            use std::os::unix::net::{SocketAddr, UnixStream};
            let abs_addr =
                SocketAddr::from_abstract_name(name.as_bytes()).map_err(|e| e.to_string())?;
            let clients = [
                UnixStream::connect(at).map_err(|e| format!("connect {at:?}: {e}"))?,
                UnixStream::connect_addr(&abs_addr).map_err(|e| format!("connect @{name}: {e}"))?,
            ];
            for (l, mut c) in [path, abs].into_iter().zip(clients) {
                // SAFETY: accept on our own listener.
                let a = unsafe { libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut()) };
                if a < 0 {
                    return Err(os_err("accept"));
                }
                c.write_all(b"ping").map_err(|e| e.to_string())?;
                if read_fd(a, 4)? != b"ping" {
                    return Err("accepted connection does not carry bytes".into());
                }
                let mut buf = [0u8; 1];
                write_fd(a, b"!")?;
                c.read_exact(&mut buf).map_err(|e| e.to_string())?;
            }
        }
        State::Ghost { fd } => {
            if pos(fd) != 100 {
                return Err(format!("offset {}, want 100", pos(fd)));
            }
            let mut all = vec![0u8; 8192];
            // SAFETY: pread into our buffer.
            let n = unsafe { libc::pread(fd, all.as_mut_ptr().cast(), all.len(), 0) };
            all.truncate(n.max(0) as usize);
            if all != ghost_pattern() {
                return Err(format!("content differs ({n} bytes)"));
            }
            let link =
                std::fs::read_link(format!("/proc/self/fd/{fd}")).map_err(|e| e.to_string())?;
            if !link.to_string_lossy().ends_with(" (deleted)") {
                return Err(format!("link {link:?} is not an unlinked file"));
            }
            // SAFETY: fcntl on our own fd.
            let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
            if fl & libc::O_ACCMODE != libc::O_RDONLY {
                return Err(format!(
                    "access mode {:#o}, want read-only",
                    fl & libc::O_ACCMODE
                ));
            }
        }
        State::Udp { fd } => {
            use std::os::fd::FromRawFd;
            // SAFETY: we own `fd`; ManuallyDrop keeps it open for later checks.
            let s = std::mem::ManuallyDrop::new(unsafe { std::net::UdpSocket::from_raw_fd(fd) });
            let at = s.local_addr().map_err(|e| e.to_string())?;
            let c = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            c.send_to(b"dgram", at)
                .map_err(|e| format!("send to {at}: {e}"))?;
            if read_fd(fd, 64)? != b"dgram" {
                return Err("datagram not received".into());
            }
        }
        State::Owner { fd } => {
            // SAFETY: fcntl queries on our own fd; getpid has no preconditions.
            let (fl, sig, own, me) = unsafe {
                (
                    libc::fcntl(fd, libc::F_GETFL),
                    libc::fcntl(fd, F_GETSIG),
                    libc::fcntl(fd, libc::F_GETOWN),
                    libc::getpid(),
                )
            };
            if fl & libc::O_ASYNC == 0 || sig != libc::SIGURG || own != me {
                return Err(format!(
                    "O_ASYNC {} signal {sig} owner {own} (want set, {}, {me})",
                    fl & libc::O_ASYNC != 0,
                    libc::SIGURG
                ));
            }
        }
        State::ForkShare {
            fd,
            app,
            cmd,
            ack,
            child,
            ref path,
            ref app_path,
        } => {
            if pos(fd) != 3 {
                return Err(format!("shared fd at offset {}, want 3", pos(fd)));
            }
            write_fd(fd, b"PP")?;
            let (before, after) = ask_child(cmd, ack, b'w')?;
            if (before, after) != (5, 7) {
                return Err(format!(
                    "the child saw offsets {before} → {after}, want 5 → 7 (description not shared)"
                ));
            }
            if pos(fd) != 7 {
                return Err(format!(
                    "after the child's write the parent is at {}, want 7",
                    pos(fd)
                ));
            }
            write_fd(fd, b"pp")?;
            write_fd(app, b"p")?;
            let (child_pos, child_app) = ask_child(cmd, ack, b'q')?;
            if (child_pos, child_app, pos(app)) != (9, 5, 5) {
                return Err(format!(
                    "child at {child_pos}, child's append fd at {child_app}, ours at {} (want 9, 5, 5)",
                    pos(app)
                ));
            }
            let mut st = 0;
            // SAFETY: reaping our own child.
            if unsafe { libc::waitpid(child, &mut st, 0) } != child
                || !libc::WIFEXITED(st)
                || libc::WEXITSTATUS(st) != 0
            {
                return Err(format!("child {child} ended with status {st:#x}"));
            }
            let got = std::fs::read(path).map_err(|e| e.to_string())?;
            let got_app = std::fs::read(app_path).map_err(|e| e.to_string())?;
            if got != b"012PPCCpp9" || got_app != b"abccp" {
                return Err(format!(
                    "files hold {:?} and {:?}",
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&got_app)
                ));
            }
            // SAFETY: fcntl on our own fd.
            if unsafe { libc::fcntl(app, libc::F_GETFL) } & libc::O_APPEND == 0 {
                return Err("the append fd lost O_APPEND".into());
            }
        }
        State::Fifo { r, w, ref path } => {
            // SAFETY: fcntl on our own fds.
            let (size, rfl, wfl) = unsafe {
                (
                    libc::fcntl(r, libc::F_GETPIPE_SZ),
                    libc::fcntl(r, libc::F_GETFL),
                    libc::fcntl(w, libc::F_GETFL),
                )
            };
            if size != FIFO_SIZE {
                return Err(format!("FIFO size {size}, want {FIFO_SIZE}"));
            }
            if rfl & libc::O_ACCMODE != libc::O_RDONLY
                || rfl & libc::O_NONBLOCK == 0
                || wfl & libc::O_ACCMODE != libc::O_WRONLY
            {
                return Err(format!("flags {rfl:#o} and {wfl:#o}"));
            }
            let link =
                std::fs::read_link(format!("/proc/self/fd/{r}")).map_err(|e| e.to_string())?;
            if &link != path {
                return Err(format!("read end is {link:?}, want {path:?}"));
            }
            let got = read_fd(r, 4096)?;
            if got != FIFO_BYTES {
                return Err(format!("buffered {got:?}, want {FIFO_BYTES:?}"));
            }
            write_fd(w, b"more")?;
            if read_fd(r, 16)? != b"more" {
                return Err("the two ends are not one FIFO".into());
            }
        }
        State::UnixDgram {
            ref srv_path,
            ref srv_abs,
            ref bound,
            ref conn,
            ref at,
            ref client_at,
            ref abs,
        } => {
            use std::os::linux::net::SocketAddrExt;
            for s in [srv_path, srv_abs, bound, conn] {
                s.set_nonblocking(true).map_err(|e| e.to_string())?;
            }
            let mut buf = [0u8; 64];
            let (n, from) = srv_path
                .recv_from(&mut buf)
                .map_err(|e| format!("recv d1: {e}"))?;
            if &buf[..n] != b"d1" || from.as_pathname() != Some(client_at.as_path()) {
                return Err(format!("path socket got {:?} from {from:?}", &buf[..n]));
            }
            for want in [&b"d2"[..], b"d33"] {
                let n = srv_abs.recv(&mut buf).map_err(|e| format!("recv: {e}"))?;
                if &buf[..n] != want {
                    return Err(format!(
                        "abstract socket got {:?}, want {want:?}",
                        &buf[..n]
                    ));
                }
            }
            let local = srv_path.local_addr().map_err(|e| e.to_string())?;
            let abs_local = srv_abs.local_addr().map_err(|e| e.to_string())?;
            let peer = conn.peer_addr().map_err(|e| format!("peer_addr: {e}"))?;
            if local.as_pathname() != Some(at.as_path())
                || abs_local.as_abstract_name() != Some(abs.as_bytes())
                || peer.as_abstract_name() != Some(abs.as_bytes())
            {
                return Err(format!("names {local:?}, {abs_local:?}, peer {peer:?}"));
            }
            conn.send(b"x")
                .map_err(|e| format!("send on the connected socket: {e}"))?;
            let n = srv_abs.recv(&mut buf).map_err(|e| format!("recv x: {e}"))?;
            srv_abs
                .send_to(b"y", client_at)
                .map_err(|e| format!("send to {client_at:?}: {e}"))?;
            let m = bound
                .recv(&mut buf[n..])
                .map_err(|e| format!("recv y: {e}"))?;
            if &buf[..n + m] != b"xy" {
                return Err(format!("new datagrams {:?}", &buf[..n + m]));
            }
        }
        State::UnixAccept {
            ref l,
            ref acc,
            ref cli,
            ref acc2,
            ref cli2,
            ref at,
            ref abs,
        } => {
            use std::io::{Read, Write};
            use std::os::linux::net::SocketAddrExt;
            for s in [acc, cli, acc2, cli2] {
                s.set_nonblocking(true).map_err(|e| e.to_string())?;
            }
            let mut buf = [0u8; 16];
            let mut read = |mut s: &std::os::unix::net::UnixStream, want: &[u8]| {
                let n = s.read(&mut buf).map_err(|e| format!("read: {e}"))?;
                if &buf[..n] != want {
                    return Err(format!("read {:?}, want {want:?}", &buf[..n]));
                }
                Ok::<(), String>(())
            };
            read(acc, b"c2s")?;
            read(cli, b"s2c")?;
            read(acc2, b"x2")?;
            let names = [
                acc.local_addr().map_err(|e| e.to_string())?,
                cli.peer_addr().map_err(|e| e.to_string())?,
                cli.local_addr().map_err(|e| e.to_string())?,
                acc2.local_addr().map_err(|e| e.to_string())?,
                cli2.peer_addr().map_err(|e| e.to_string())?,
            ];
            if names[0].as_pathname() != Some(at.as_path())
                || names[1].as_pathname() != Some(at.as_path())
                || !names[2].is_unnamed()
                || names[3].as_abstract_name() != Some(abs.as_bytes())
                || names[4].as_abstract_name() != Some(abs.as_bytes())
            {
                return Err(format!("names {names:?}"));
            }
            (&*acc).write_all(b"more").map_err(|e| e.to_string())?;
            read(cli, b"more")?;
            (&*cli2).write_all(b"y").map_err(|e| e.to_string())?;
            read(acc2, b"y")?;
            let c = std::os::unix::net::UnixStream::connect(at)
                .map_err(|e| format!("connect {at:?}: {e}"))?;
            let (a, _) = l.accept().map_err(|e| format!("accept: {e}"))?;
            (&c).write_all(b"z").map_err(|e| e.to_string())?;
            a.set_nonblocking(true).map_err(|e| e.to_string())?;
            read(&a, b"z")?;
            let addr = abstract_addr(abs).map_err(|e| e.to_string())?;
            if std::os::unix::net::UnixStream::connect_addr(&addr).is_ok() {
                return Err(format!(
                    "@{abs} accepts connections, but its listener was closed"
                ));
            }
        }
        State::ScmRights { b } => {
            let (data, passed) = recv_with_fd(b)?;
            if data != b"fd" || read_fd(passed, 8)? != b"scm" {
                return Err(format!("message {data:?} or the passed pipe is wrong"));
            }
        }
        State::Outside { s } => {
            write_fd(s, b"ping")?;
            if read_fd(s, 4)? != b"ping" {
                return Err("no echo from the outside peer".into());
            }
        }
        State::Inotify { fd, ref a, ref b } => check_inotify(fd, a, b)?,
        State::Pidfd {
            pidfd,
            ep,
            cmd,
            child,
        } => check_pidfd(pidfd, ep, cmd, child)?,
        State::PidfdOutside { pidfd } => {
            // SAFETY: pidfd_send_signal on our own pidfd; no siginfo.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    pidfd,
                    libc::SIGKILL,
                    0usize,
                    0u32,
                )
            };
            if r != 0 {
                return Err(os_err("pidfd_send_signal SIGKILL to the outside process"));
            }
            if !poll_in(pidfd, 10_000)? {
                return Err("the outside process did not exit after SIGKILL".into());
            }
        }
        State::PidfdZombie { pidfd, child } => {
            if !poll_in(pidfd, 0)? {
                return Err("the pidfd of the exited child is not readable".into());
            }
            reap_pidfd(pidfd, child, 9)?;
        }
        State::InotifyQueued { fd } => {
            let ev = read_events(fd)?;
            if ev.len() != 1 || ev[0].0 != 1 || ev[0].1 != libc::IN_CREATE || ev[0].2 != "queued" {
                return Err(format!(
                    "queued events {ev:?}, want [(1, IN_CREATE, queued)]"
                ));
            }
        }
        State::Held => {}
    }
    Ok(())
}

fn pidfd_open(pid: libc::pid_t, flags: libc::c_int) -> Result<RawFd, String> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) };
    if r < 0 {
        return Err(os_err(&format!("pidfd_open {pid}")));
    }
    Ok(r as RawFd)
}

fn add_watch(fd: RawFd, path: &std::path::Path, mask: u32) -> Result<i32, String> {
    let c =
        std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: reads the NUL-terminated path.
    let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), mask) };
    if wd < 0 {
        return Err(os_err(&format!("inotify_add_watch {}", path.display())));
    }
    Ok(wd)
}

/// Every queued event of a non-blocking inotify fd: (wd, mask, name).
fn read_events(fd: RawFd) -> Result<Vec<(i32, u32, String)>, String> {
    let mut out = Vec::new();
    loop {
        let mut buf = [0u8; 4096];
        // SAFETY: reads at most `buf.len()` bytes into `buf`.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
                return Ok(out);
            }
            return Err(os_err("read inotify"));
        }
        let mut at = 0usize;
        while at + 16 <= n as usize {
            let word = |o: usize| {
                [
                    buf[at + o],
                    buf[at + o + 1],
                    buf[at + o + 2],
                    buf[at + o + 3],
                ]
            };
            let wd = i32::from_ne_bytes(word(0));
            let mask = u32::from_ne_bytes(word(4));
            let len = u32::from_ne_bytes(word(12)) as usize;
            let name = buf.get(at + 16..at + 16 + len).unwrap_or(&[]);
            let name = String::from_utf8_lossy(name)
                .trim_end_matches('\0')
                .to_string();
            out.push((wd, mask, name));
            at += 16 + len;
        }
    }
}

/// Whether `fd` is readable within `ms` milliseconds.
fn poll_in(fd: RawFd, ms: i32) -> Result<bool, String> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: polls one pollfd on our stack.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if r < 0 {
            return Err(os_err("poll"));
        }
        return Ok(r == 1 && p.revents & libc::POLLIN != 0);
    }
}

fn inotify(args: &WorkloadArgs) -> Result<State, WorkloadError> {
    let (a, b, gone) = (
        args.dir.join("in-a"),
        args.dir.join("in-b"),
        args.dir.join("in-gone"),
    );
    for d in [&a, &b, &gone] {
        std::fs::create_dir_all(d).map_err(|e| WorkloadError::setup("inotify dirs", e))?;
    }
    // SAFETY: inotify_init1 returns a new fd.
    let fd = cvt(
        unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) },
        "inotify_init1",
    )?;
    let w = |p: &std::path::Path, m: u32| {
        add_watch(fd, p, m).map_err(|e| WorkloadError::setup("watch", e))
    };
    let wa = w(&a, libc::IN_CREATE)?;
    let wg = w(&gone, libc::IN_DELETE)?;
    // SAFETY: removes a watch of our own instance.
    cvt(
        // SAFETY: removes a watch of our own instance.
        unsafe { libc::inotify_rm_watch(fd, wg) },
        "inotify_rm_watch",
    )?;
    let wb = w(&b, libc::IN_CREATE | libc::IN_ONESHOT)?;
    if (wa, wg, wb) != (1, 2, 3) {
        return Err(WorkloadError::setup(
            "inotify",
            format!("wds {wa} {wg} {wb}, want 1 2 3"),
        ));
    }
    // The removal queued IN_IGNORED: read it, a dump refuses unread events.
    let ev = read_events(fd).map_err(|e| WorkloadError::setup("inotify drain", e))?;
    if ev.len() != 1 || ev[0].1 != libc::IN_IGNORED {
        return Err(WorkloadError::setup("inotify drain", format!("{ev:?}")));
    }
    Ok(State::Inotify { fd, a, b })
}

fn check_inotify(fd: RawFd, a: &std::path::Path, b: &std::path::Path) -> Result<(), String> {
    // SAFETY: fcntl on our own fd.
    let (fl, fdfl) = unsafe {
        (
            libc::fcntl(fd, libc::F_GETFL),
            libc::fcntl(fd, libc::F_GETFD),
        )
    };
    if fl & libc::O_NONBLOCK == 0 || fdfl & libc::FD_CLOEXEC == 0 {
        return Err(format!(
            "flags {fl:#o} fd flags {fdfl}: O_NONBLOCK or FD_CLOEXEC lost"
        ));
    }
    let ev = read_events(fd)?;
    if !ev.is_empty() {
        return Err(format!("events queued after restore: {ev:?}"));
    }
    std::fs::write(a.join("new-a"), b"").map_err(|e| e.to_string())?;
    std::fs::write(b.join("new-b"), b"").map_err(|e| e.to_string())?;
    std::fs::write(b.join("new-b2"), b"").map_err(|e| e.to_string())?;
    let ev = read_events(fd)?;
    let want = vec![
        (1, libc::IN_CREATE, "new-a".to_string()),
        (3, libc::IN_CREATE, "new-b".to_string()),
        (3, libc::IN_IGNORED, String::new()),
    ];
    if ev != want {
        return Err(format!("events {ev:?}, want {want:?}"));
    }
    let next = add_watch(fd, a.parent().unwrap_or(a), libc::IN_DELETE)?;
    if next != 4 {
        return Err(format!("a new watch got wd {next}, want 4"));
    }
    Ok(())
}

fn pidfd_child() -> Result<State, WorkloadError> {
    let mut p = [0; 2];
    // SAFETY: pipe2 writes two fds into `p`.
    cvt(
        // SAFETY: pipe2 writes two fds into `p`.
        unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) },
        "pipe2",
    )?;
    let child = workload::fork()?;
    if child == 0 {
        let mut b = [0u8; 1];
        // SAFETY: raw syscalls only: wait for one byte (retrying on EINTR), then exit 7.
        unsafe {
            libc::close(p[1]);
            while libc::read(p[0], b.as_mut_ptr().cast(), 1) < 0 {}
        }
        workload::exit_now(7);
    }
    // SAFETY: closing our copy of the read end.
    unsafe { libc::close(p[0]) };
    let pidfd =
        pidfd_open(child, libc::O_NONBLOCK).map_err(|e| WorkloadError::setup("pidfd", e))?;
    // SAFETY: epoll_create1 returns a new fd.
    let ep = cvt(
        unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
        "epoll_create1",
    )?;
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: PIDFD_EPOLL_DATA,
    };
    // SAFETY: epoll_ctl reads one epoll_event from our stack.
    cvt(
        // SAFETY: epoll_ctl reads one epoll_event from our stack.
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, pidfd, &mut ev) },
        "epoll_ctl",
    )?;
    Ok(State::Pidfd {
        pidfd,
        ep,
        cmd: p[1],
        child,
    })
}

fn check_pidfd(pidfd: RawFd, ep: RawFd, cmd: RawFd, child: libc::pid_t) -> Result<(), String> {
    // SAFETY: fcntl on our own fd.
    let fl = unsafe { libc::fcntl(pidfd, libc::F_GETFL) };
    if fl & libc::O_NONBLOCK == 0 {
        return Err(format!("pidfd flags {fl:#o}: PIDFD_NONBLOCK lost"));
    }
    let info =
        std::fs::read_to_string(format!("/proc/self/fdinfo/{pidfd}")).map_err(|e| e.to_string())?;
    if !info.lines().any(|l| {
        l.split_whitespace()
            .eq(["Pid:".to_string(), child.to_string()])
    }) {
        return Err(format!(
            "pidfd fdinfo does not name child {child}: {info:?}"
        ));
    }
    if poll_in(pidfd, 0)? {
        return Err("pidfd readable while the child lives".into());
    }
    write_fd(cmd, b"x")?;
    if !poll_in(pidfd, 10_000)? {
        return Err("pidfd not readable after the child was told to exit".into());
    }
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
    // SAFETY: epoll_wait writes at most 4 events into `evs`.
    let n = unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), 4, 1000) };
    if n != 1 || { evs[0].u64 } != PIDFD_EPOLL_DATA {
        return Err(format!("epoll_wait gave {n} events, want the pidfd's"));
    }
    reap_pidfd(pidfd, child, 7)
}

/// waitid(P_PIDFD) must reap exactly `child` with exit status `code`.
fn reap_pidfd(pidfd: RawFd, child: libc::pid_t, code: i32) -> Result<(), String> {
    // SAFETY: siginfo_t is plain data; waitid fills it.
    let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid on our own pidfd (P_PIDFD = 3) writes one siginfo_t.
    if unsafe {
        libc::waitid(
            3,
            pidfd as libc::id_t,
            &mut si,
            libc::WEXITED | libc::WNOHANG,
        )
    } != 0
    {
        return Err(os_err("waitid(P_PIDFD)"));
    }
    // SAFETY: filled by waitid for an exited child.
    let (pid, status) = unsafe { (si.si_pid(), si.si_status()) };
    if pid != child || status != code {
        return Err(format!(
            "waitid(P_PIDFD) reaped pid {pid} status {status}, want {child} status {code}"
        ));
    }
    Ok(())
}

/// A process outside this tree: a grandchild (its parent exits at once) that pauses; the pidfd is ours.
fn pidfd_outside(args: &WorkloadArgs) -> Result<State, WorkloadError> {
    let pid = workload::outside_process()?;
    let pidfd = pidfd_open(pid, 0).map_err(|e| WorkloadError::setup("pidfd", e))?;
    std::fs::write(args.dir.join("pidfd-outside.pid"), pid.to_string())
        .map_err(|e| WorkloadError::setup("pidfd-outside.pid", e))?;
    Ok(State::PidfdOutside { pidfd })
}

fn inject_fault(states: &[(String, State)]) {
    for (_, s) in states {
        match *s {
            State::Pipe { r, .. } => drop(read_fd(r, 4096)),
            State::EventFd { fd } => drop(read_fd(fd, 8)),
            State::TimerFd { expired, .. } => drop(read_fd(expired, 8)),
            State::Pty { slave, .. } => drop(set_winsize(slave, 1, 1)),
            State::Fifo { r, .. } => drop(read_fd(r, 4096)),
            State::ForkShare { fd, .. } => {
                // SAFETY: lseek on our own fd.
                unsafe { libc::lseek(fd, 0, libc::SEEK_SET) };
            }
            State::Locks { flocked, .. } => {
                // SAFETY: flock on our own fd.
                unsafe { libc::flock(flocked, libc::LOCK_UN) };
            }
            _ => {}
        }
    }
}

fn run() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env(USAGE)?;
    let mut report = Report::new("wl_files");
    let kinds = args.kinds()?;
    let mut states = Vec::new();
    for k in &kinds {
        states.push((k.clone(), set_up(k, &args)?));
    }
    workload::ready()?;
    workload::wait_for_trigger(&args.trigger)?;
    if args.has_flag(INJECT_FAULT) {
        inject_fault(&states);
    }
    for (k, s) in &states {
        report.check(k, check(s));
    }
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_files", run)
}
