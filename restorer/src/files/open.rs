//! Opening one description of each kind.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use dormant_image::records::{DescId, DescKind, FileDesc, InetSocket, InotifyWatch, PtyState};
use nix::errno::Errno;

use super::{kind_name, FileRestoreError};

/// Ends created together with an earlier description and waiting for their own entry (the other end of a
/// pipe or of a socket pair).
#[derive(Debug, Default)]
pub struct State {
    pipe_ends: HashMap<(u64, bool), OwnedFd>,
    /// The slave of each pty pair opened so far, by dumped index, until its description is opened.
    pty_slaves: HashMap<u32, OwnedFd>,
    unix_ends: HashMap<u64, OwnedFd>,
    /// Unix socket inode → the description holding it.
    unix_desc: HashMap<u64, DescId>,
    /// Restored listening unix sockets by name (copies), for connections accepted from them.
    listeners: HashMap<Vec<u8>, OwnedFd>,
    /// `--inherit-fd` descriptors for external descriptions.
    pub(super) inherited: super::Inherited,
}

pub(super) fn check(r: libc::c_int) -> Result<libc::c_int, Errno> {
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

pub(super) fn owned(r: libc::c_int) -> Result<OwnedFd, Errno> {
    let fd = check(r)?;
    // SAFETY: `fd` was just returned by a syscall that creates a new fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn timespec(ns: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    }
}

/// Opens description `d` (both ends of a pipe or pair on the first of them).
pub fn open_one(d: &FileDesc, st: &mut State) -> Result<OwnedFd, FileRestoreError> {
    let kind = kind_name(&d.kind);
    let id = d.id.0;
    let sys = |what: &str| {
        let what = what.to_string();
        move |source: Errno| FileRestoreError::Sys {
            id,
            kind,
            what,
            source,
        }
    };
    let nonblock = d.flags & libc::O_NONBLOCK as u32 != 0;
    let fd = match &d.kind {
        DescKind::PipeEnd {
            pipe,
            write,
            size,
            data,
        } => match st.pipe_ends.remove(&(*pipe, *write)) {
            Some(fd) => fd,
            None => {
                let mut ends = [0 as libc::c_int; 2];
                // SAFETY: pipe2 writes two fds into `ends`.
                check(unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) })
                    .map_err(sys("pipe2"))?;
                // SAFETY: both fds were just created by pipe2 and are owned by nobody else.
                let (r, w) =
                    unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
                // SAFETY: F_SETPIPE_SZ on our own pipe.
                check(unsafe {
                    libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, *size as libc::c_int)
                })
                .map_err(sys(&format!("F_SETPIPE_SZ {size}")))?;
                if let Some(bytes) = data {
                    write_all(&w, bytes).map_err(sys("writing the buffered bytes"))?;
                }
                let (mine, other) = if *write { (w, r) } else { (r, w) };
                st.pipe_ends.insert((*pipe, !*write), other);
                mine
            }
        },
        DescKind::Pty {
            master: false,
            index,
            ..
        } => st
            .pty_slaves
            .remove(index)
            .ok_or_else(|| FileRestoreError::Bad {
                id,
                kind,
                reason: format!("/dev/pts/{index}: no master of that index in the image"),
            })?,
        DescKind::Pty {
            master: true,
            index,
            state,
        } => {
            let (master, slave) = open_pty(state).map_err(|(what, e)| sys(what)(e))?;
            let now = ioctl_int(&master, libc::TIOCGPTN).map_err(sys("TIOCGPTN"))?;
            if now as u32 != *index {
                log::info!("pty {index} is restored as /dev/pts/{now}");
            }
            st.pty_slaves.insert(*index, slave);
            master
        }
        DescKind::EventFd { count, semaphore } => {
            let count = u32::try_from(*count).map_err(|_| FileRestoreError::Bad {
                id,
                kind,
                reason: format!("counter {count} does not fit eventfd's initial value"),
            })?;
            let mut fl = libc::EFD_CLOEXEC;
            if *semaphore {
                fl |= libc::EFD_SEMAPHORE;
            }
            // SAFETY: eventfd takes an initial value and flags and returns a new fd.
            owned(unsafe { libc::eventfd(count, fl) }).map_err(sys("eventfd"))?
        }
        DescKind::TimerFd {
            clock,
            interval_ns,
            value_ns,
            ticks,
        } => {
            // SAFETY: timerfd_create takes a clock and flags and returns a new fd.
            let fd = owned(unsafe { libc::timerfd_create(*clock, libc::TFD_CLOEXEC) })
                .map_err(sys(&format!("timerfd_create clock {clock}")))?;
            if *value_ns != 0 {
                let spec = libc::itimerspec {
                    it_interval: timespec(*interval_ns),
                    it_value: timespec(*value_ns),
                };
                // SAFETY: reads one itimerspec from our stack; no old value is asked for.
                check(unsafe {
                    libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut())
                })
                .map_err(sys("timerfd_settime"))?;
            }
            if *ticks != 0 {
                /// `_IOW('T', 0, u64)`: sets the count of unread expirations (CONFIG_CHECKPOINT_RESTORE).
                const TFD_IOC_SET_TICKS: libc::c_ulong = 0x4008_5400;
                // SAFETY: the ioctl reads one u64 from our stack.
                check(unsafe {
                    libc::ioctl(fd.as_raw_fd(), TFD_IOC_SET_TICKS, ticks as *const u64)
                })
                .map_err(sys(&format!("TFD_IOC_SET_TICKS {ticks}")))?;
            }
            fd
        }
        DescKind::SignalFd { mask } => {
            // SAFETY: sigset_t is plain data; sigemptyset initialises it.
            let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
            // SAFETY: initialises `set` on our stack.
            unsafe { libc::sigemptyset(&mut set) };
            for sig in 1..=64 {
                if mask & (1u64 << (sig - 1)) != 0 {
                    // SAFETY: adds a signal number to `set`; out-of-range numbers fail harmlessly.
                    unsafe { libc::sigaddset(&mut set, sig) };
                }
            }
            // SAFETY: signalfd reads the set from our stack and returns a new fd.
            owned(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) })
                .map_err(sys("signalfd"))?
        }
        DescKind::Epoll { .. } => {
            // Registrations are added by each task (see ChildAction), keyed by its own fd numbers.
            // SAFETY: epoll_create1 returns a new fd.
            owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })
                .map_err(sys("epoll_create1"))?
        }
        DescKind::Memfd {
            name,
            data,
            pos,
            seals,
        } => {
            let cname =
                std::ffi::CString::new(name.as_str()).map_err(|_| FileRestoreError::Bad {
                    id,
                    kind,
                    reason: format!("name {name:?} holds a NUL byte"),
                })?;
            // SAFETY: memfd_create reads the NUL-terminated name and returns a new fd.
            let fd = owned(unsafe {
                libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
            })
            .map_err(sys("memfd_create"))?;
            write_all(&fd, data).map_err(sys("writing the content"))?;
            nix::unistd::lseek(&fd, *pos as i64, nix::unistd::Whence::SeekSet)
                .map_err(sys(&format!("seeking to {pos}")))?;
            if *seals != 0 {
                // SAFETY: F_ADD_SEALS on our own memfd.
                check(unsafe {
                    libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, *seals as libc::c_int)
                })
                .map_err(sys(&format!("F_ADD_SEALS {seals:#x}")))?;
            }
            fd
        }
        DescKind::UnixPair {
            ino,
            peer,
            sock_type,
            ..
        } => {
            st.unix_desc.insert(*ino, d.id);
            match st.unix_ends.remove(ino) {
                Some(fd) => fd,
                None => {
                    let mut sv = [0 as libc::c_int; 2];
                    // SAFETY: socketpair writes two fds into `sv`.
                    check(unsafe {
                        libc::socketpair(
                            libc::AF_UNIX,
                            *sock_type | libc::SOCK_CLOEXEC,
                            0,
                            sv.as_mut_ptr(),
                        )
                    })
                    .map_err(sys("socketpair"))?;
                    // SAFETY: both fds were just created by socketpair and are owned by nobody else.
                    let (a, b) =
                        unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) };
                    st.unix_ends.insert(*peer, b);
                    a
                }
            }
        }
        DescKind::Ghost {
            path,
            mode,
            data,
            pos,
        } => open_ghost(path, *mode, d.flags, data, *pos).map_err(|(what, source)| {
            FileRestoreError::Sys {
                id,
                kind,
                what,
                source,
            }
        })?,
        DescKind::UnixListen { name, sock_type } => {
            let fd = open_unix_listener(name, *sock_type).map_err(|(what, source)| {
                FileRestoreError::Sys {
                    id,
                    kind,
                    what,
                    source,
                }
            })?;
            let copy = fd.try_clone().map_err(|e| FileRestoreError::Sys {
                id,
                kind,
                what: "dup".into(),
                source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })?;
            st.listeners.insert(name.clone(), copy);
            fd
        }
        DescKind::Fifo {
            path,
            dev,
            ino,
            size,
            data,
        } => super::fifo::open_fifo(path, *dev, *ino, d.flags, *size, data.as_deref()).map_err(
            |(what, source)| FileRestoreError::Sys {
                id,
                kind,
                what,
                source,
            },
        )?,
        DescKind::UnixConn {
            ino,
            peer,
            sock_type,
            name,
            peer_name,
            ..
        } => {
            st.unix_desc.insert(*ino, d.id);
            match st.unix_ends.remove(ino) {
                Some(fd) => fd,
                None => {
                    let (mine, other) =
                        super::unix::open_connection(*sock_type, name, peer_name, &st.listeners)
                            .map_err(|(what, source)| FileRestoreError::Sys {
                                id,
                                kind,
                                what,
                                source,
                            })?;
                    st.unix_ends.insert(*peer, other);
                    mine
                }
            }
        }
        DescKind::UnixDgram { name, .. } => {
            super::unix::open_datagram(name).map_err(|(what, source)| FileRestoreError::Sys {
                id,
                kind,
                what,
                source,
            })?
        }
        // The caller's description as it is: its status flags are the caller's business.
        DescKind::External { key } => return st.inherited.dup(id, key),
        DescKind::Inet(s) => open_inet(s).map_err(|(what, source)| FileRestoreError::Sys {
            id,
            kind,
            what,
            source,
        })?,
        DescKind::TcpEstablished(c) => {
            super::tcp::open(c).map_err(|(what, source)| FileRestoreError::Sys {
                id,
                kind,
                what: format!("{}: {what}", super::tcp::shown(c)),
                source,
            })?
        }
        DescKind::Inotify { watches } => {
            open_inotify(watches).map_err(|(what, source)| FileRestoreError::Sys {
                id,
                kind,
                what,
                source,
            })?
        }
        // A stand-in the task replaces with `pidfd_open` of the restored process once it exists
        // (ChildAction::PidfdOpen): here, before any fork, the target is not there yet.
        // SAFETY: eventfd takes an initial value and flags and returns a new fd.
        DescKind::Pidfd { .. } => owned(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) })
            .map_err(sys("eventfd (stand-in for a pidfd)"))?,
    };
    let mut fl = nix::fcntl::OFlag::empty();
    if nonblock {
        fl |= nix::fcntl::OFlag::O_NONBLOCK;
    }
    if d.flags & libc::O_ASYNC as u32 != 0 {
        fl |= nix::fcntl::OFlag::O_ASYNC;
    }
    if !fl.is_empty() {
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(fl))
            .map_err(sys(&format!("F_SETFL {fl:?}")))?;
    }
    Ok(fd)
}

fn ioctl_int(fd: &OwnedFd, req: libc::Ioctl) -> Result<libc::c_int, Errno> {
    let mut v: libc::c_int = 0;
    // SAFETY: the request writes one int into `v` on our stack.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut v) })?;
    Ok(v)
}

/// A new pty pair (master, slave) with `state` applied: termios and window size through the slave, packet
/// mode and lock on the master (the lock last, once the slave is open).
fn open_pty(state: &PtyState) -> Result<(OwnedFd, OwnedFd), (&'static str, Errno)> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: opens a new pty master from a NUL-terminated literal path.
    let master =
        owned(unsafe { libc::open(c"/dev/ptmx".as_ptr(), flags) }).map_err(|e| ("/dev/ptmx", e))?;
    let zero: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from our stack.
    check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &zero) })
        .map_err(|e| ("unlocking the slave", e))?;
    // SAFETY: TIOCGPTPEER opens the pair's slave with `flags` and returns the new fd.
    let slave = owned(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) })
        .map_err(|e| ("TIOCGPTPEER", e))?;
    // SAFETY: termios is plain data; every field the kernel reads is set below.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    t.c_iflag = state.iflag;
    t.c_oflag = state.oflag;
    t.c_cflag = state.cflag;
    t.c_lflag = state.lflag;
    t.c_line = state.line;
    for (dst, src) in t.c_cc.iter_mut().zip(&state.cc) {
        *dst = *src;
    }
    t.c_ispeed = state.ispeed;
    t.c_ospeed = state.ospeed;
    // SAFETY: reads one termios from our stack.
    check(unsafe { libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t) })
        .map_err(|e| ("tcsetattr", e))?;
    let [ws_row, ws_col, ws_xpixel, ws_ypixel] = state.winsize;
    let ws = libc::winsize {
        ws_row,
        ws_col,
        ws_xpixel,
        ws_ypixel,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from our stack.
    check(unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &ws) })
        .map_err(|e| ("TIOCSWINSZ", e))?;
    if state.packet {
        let one: libc::c_int = 1;
        // SAFETY: TIOCPKT reads one int from our stack.
        check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCPKT, &one) })
            .map_err(|e| ("TIOCPKT", e))?;
    }
    if state.locked {
        let one: libc::c_int = 1;
        // SAFETY: TIOCSPTLCK reads one int from our stack.
        check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &one) })
            .map_err(|e| ("locking the slave", e))?;
    }
    Ok((master, slave))
}

/// Watch descriptors beyond this are refused: reaching one takes that many placeholder watches.
const INOTIFY_MAX_WD: i32 = 1 << 22;

/// An inotify instance whose watches have the dumped wd numbers and masks. The kernel hands out wds
/// cyclically upward from 1 (verified on 6.18: after removing wd 1 the next add gets 2, not 1), so watches
/// are added in ascending wd order and every gap is burnt with a placeholder watch on a memfd of ours,
/// removed at once. Each removal queues an `IN_IGNORED` event, which is drained from the still private
/// instance (the dump carried no events). Returned blocking; the caller applies the dumped status flags.
fn open_inotify(watches: &[InotifyWatch]) -> Result<OwnedFd, (String, Errno)> {
    // SAFETY: inotify_init1 returns a new fd.
    let fd = owned(unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) })
        .map_err(|e| ("inotify_init1".to_string(), e))?;
    let mut sorted: Vec<&InotifyWatch> = watches.iter().collect();
    sorted.sort_by_key(|w| w.wd);
    let mut placeholder: Option<(OwnedFd, std::ffi::CString)> = None;
    let mut next = 1;
    for w in sorted {
        if w.wd < next || w.wd > INOTIFY_MAX_WD {
            return Err((
                format!(
                    "watch descriptor {} of {} cannot be recreated (next free is {next}, limit {INOTIFY_MAX_WD})",
                    w.wd, w.path
                ),
                Errno::EINVAL,
            ));
        }
        let mut burnt = 0u32;
        while next < w.wd {
            if placeholder.is_none() {
                let name = c"dormant-inotify-placeholder";
                // SAFETY: memfd_create reads the NUL-terminated name and returns a new fd.
                let m = owned(unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) })
                    .map_err(|e| ("memfd_create (inotify placeholder)".to_string(), e))?;
                let path = std::ffi::CString::new(format!("/proc/self/fd/{}", m.as_raw_fd()))
                    .map_err(|_| ("placeholder path".to_string(), Errno::EINVAL))?;
                placeholder = Some((m, path));
            }
            let Some((_, path)) = &placeholder else {
                break;
            };
            // SAFETY: reads the NUL-terminated path; returns a wd or -1.
            let got = check(unsafe {
                libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), libc::IN_ACCESS)
            })
            .map_err(|e| (format!("placeholder watch before wd {}", w.wd), e))?;
            // SAFETY: removes the watch just added to our own instance.
            check(unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), got) })
                .map_err(|e| (format!("removing placeholder wd {got}"), e))?;
            next = got + 1;
            burnt += 1;
            // Keep the queue of IN_IGNORED events short of its limit (an overflow event would stay).
            if burnt.is_multiple_of(1024) {
                drain(&fd);
            }
        }
        drain(&fd);
        let md = std::fs::symlink_metadata(&w.path)
            .map_err(|e| (format!("watched path {}", w.path), errno_of(&e)))?;
        use std::os::unix::fs::MetadataExt;
        if md.ino() != w.ino || md.dev() != w.dev {
            return Err((
                format!(
                    "watched path {} is inode {} on device {:#x} now, not inode {} on {:#x} as dumped",
                    w.path,
                    md.ino(),
                    md.dev(),
                    w.ino,
                    w.dev
                ),
                Errno::ESTALE,
            ));
        }
        let mut mask = w.mask & !(libc::IN_MASK_ADD | IN_MASK_CREATE);
        if w.symlink {
            mask |= libc::IN_DONT_FOLLOW;
        }
        let cpath = std::ffi::CString::new(w.path.as_str()).map_err(|_| {
            (
                format!("watched path {:?} holds a NUL byte", w.path),
                Errno::EINVAL,
            )
        })?;
        // SAFETY: reads the NUL-terminated path; returns a wd or -1.
        let got = check(unsafe { libc::inotify_add_watch(fd.as_raw_fd(), cpath.as_ptr(), mask) })
            .map_err(|e| (format!("inotify_add_watch {} mask {mask:#x}", w.path), e))?;
        if got != w.wd {
            return Err((
                format!("watch on {} got wd {got}, not the dumped {}", w.path, w.wd),
                Errno::EINVAL,
            ));
        }
        next = got + 1;
    }
    nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
    )
    .map_err(|e| ("F_SETFL (blocking)".to_string(), e))?;
    Ok(fd)
}

/// `IN_MASK_CREATE` (not in the libc crate for this target): never part of a kept mask.
const IN_MASK_CREATE: u32 = 0x1000_0000;

/// Reads (and drops) every queued event of a non-blocking inotify instance of ours.
fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 4096];
    while matches!(nix::unistd::read(fd, &mut buf), Ok(n) if n > 0) {}
}

fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

pub(super) fn write_all(fd: &OwnedFd, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(0) => return Err(Errno::EIO),
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// An unnamed file (O_TMPFILE) in the directory the unlinked file lived in, filled with its content, then
/// reopened through /proc/self/fd with the original access mode and flags.
fn open_ghost(
    path: &str,
    mode: u32,
    flags: u32,
    data: &[u8],
    pos: u64,
) -> Result<OwnedFd, (String, Errno)> {
    let dir = std::path::Path::new(path)
        .parent()
        .unwrap_or(std::path::Path::new("/"));
    let cdir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| (format!("directory of {path}"), Errno::EINVAL))?;
    // SAFETY: open reads the NUL-terminated path and returns a new fd.
    let tmp = owned(unsafe {
        libc::open(
            cdir.as_ptr(),
            libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })
    .map_err(|e| (format!("O_TMPFILE in {}", dir.display()), e))?;
    write_all(&tmp, data).map_err(|e| (format!("writing the content of {path}"), e))?;
    let keep = flags
        & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY | libc::O_TMPFILE) as u32;
    let again = std::ffi::CString::new(format!("/proc/self/fd/{}", tmp.as_raw_fd()))
        .map_err(|_| ("proc path".to_string(), Errno::EINVAL))?;
    // SAFETY: open reads the NUL-terminated path and returns a new fd.
    let fd = owned(unsafe { libc::open(again.as_ptr(), keep as libc::c_int | libc::O_CLOEXEC) })
        .map_err(|e| (format!("reopening the copy of {path}"), e))?;
    nix::unistd::lseek(&fd, pos as i64, nix::unistd::Whence::SeekSet)
        .map_err(|e| (format!("seeking {path} to {pos}"), e))?;
    Ok(fd)
}

/// Binds a unix socket to `name` and listens. A socket file left at the path by the dumped process (its
/// socket is gone) is removed first; anything else at the path fails the bind.
pub(super) fn open_unix_listener(name: &[u8], sock_type: i32) -> Result<OwnedFd, (String, Errno)> {
    let shown = String::from_utf8_lossy(name).replace('\0', "@");
    // SAFETY: socket returns a new fd.
    let fd = owned(unsafe { libc::socket(libc::AF_UNIX, sock_type | libc::SOCK_CLOEXEC, 0) })
        .map_err(|e| ("socket(AF_UNIX)".to_string(), e))?;
    // SAFETY: sockaddr_un is plain data; all-zero is valid.
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if name.len() >= sun.sun_path.len() {
        return Err((
            format!("unix name {shown} is too long"),
            Errno::ENAMETOOLONG,
        ));
    }
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in sun.sun_path.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    if name.first() != Some(&0) {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::FileTypeExt;
        let path = std::path::Path::new(std::ffi::OsStr::from_bytes(name));
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
            std::fs::remove_file(path).map_err(|e| {
                (
                    format!("removing the stale socket {shown}"),
                    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                )
            })?;
        }
    }
    let len = std::mem::size_of::<libc::sa_family_t>()
        + name.len()
        + usize::from(name.first() != Some(&0));
    // SAFETY: bind reads `len` bytes of `sun` on our stack.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sun as *const libc::sockaddr_un).cast(),
            len as libc::socklen_t,
        )
    })
    .map_err(|e| (format!("bind to {shown}"), e))?;
    // SAFETY: listen on our own socket.
    check(unsafe { libc::listen(fd.as_raw_fd(), libc::SOMAXCONN) })
        .map_err(|e| ("listen".to_string(), e))?;
    Ok(fd)
}

fn open_inet(s: &InetSocket) -> Result<OwnedFd, (String, Errno)> {
    let e = |what: &str| {
        let what = what.to_string();
        move |err: Errno| (what, err)
    };
    // SAFETY: socket returns a new fd.
    let fd = owned(unsafe { libc::socket(s.family, s.sock_type | libc::SOCK_CLOEXEC, s.protocol) })
        .map_err(e("socket"))?;
    let set = |level, name, on: bool, what: &str| -> Result<(), (String, Errno)> {
        let v: libc::c_int = on.into();
        // SAFETY: setsockopt reads one int from our stack.
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                level,
                name,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })
        .map(|_| ())
        .map_err(e(what))
    };
    set(
        libc::SOL_SOCKET,
        libc::SO_REUSEADDR,
        s.reuseaddr,
        "SO_REUSEADDR",
    )?;
    set(
        libc::SOL_SOCKET,
        libc::SO_REUSEPORT,
        s.reuseport,
        "SO_REUSEPORT",
    )?;
    set(
        libc::SOL_SOCKET,
        libc::SO_KEEPALIVE,
        s.keepalive,
        "SO_KEEPALIVE",
    )?;
    if s.sock_type == libc::SOCK_STREAM {
        set(
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            s.nodelay,
            "TCP_NODELAY",
        )?;
    }
    if s.family == libc::AF_INET6 {
        set(
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            s.v6only,
            "IPV6_V6ONLY",
        )?;
    }
    if let Some((addr, port)) = s.bound {
        // SAFETY: sockaddr_storage is plain data; all-zero is valid.
        let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = if s.family == libc::AF_INET {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in.
            let sin = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = port.to_be();
            sin.sin_addr.s_addr = u32::from_be_bytes([addr[0], addr[1], addr[2], addr[3]]).to_be();
            std::mem::size_of::<libc::sockaddr_in>()
        } else {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in6.
            let sin6 = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = port.to_be();
            sin6.sin6_addr.s6_addr = addr;
            std::mem::size_of::<libc::sockaddr_in6>()
        };
        // SAFETY: bind reads `len` bytes of the address from our stack.
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&ss as *const libc::sockaddr_storage).cast(),
                len as libc::socklen_t,
            )
        })
        .map_err(e(&format!("bind to port {port}")))?;
    }
    if let Some(backlog) = s.listen_backlog {
        // SAFETY: listen on our own socket.
        check(unsafe { libc::listen(fd.as_raw_fd(), backlog.min(i32::MAX as u32) as libc::c_int) })
            .map_err(e("listen"))?;
    }
    Ok(fd)
}

impl State {
    /// Sends every unix socket's queued messages from its peer (after all descriptions exist).
    pub fn fill_queues(
        &self,
        descs: &[FileDesc],
        fds: &std::collections::BTreeMap<DescId, OwnedFd>,
    ) -> Result<(), FileRestoreError> {
        for d in descs {
            let (DescKind::UnixPair { peer, queued, .. } | DescKind::UnixConn { peer, queued, .. }) =
                &d.kind
            else {
                continue;
            };
            if queued.is_empty() {
                continue;
            }
            let peer_fd = self
                .unix_desc
                .get(peer)
                .and_then(|pid| fds.get(pid))
                .or_else(|| self.unix_ends.get(peer))
                .ok_or_else(|| FileRestoreError::Bad {
                    id: d.id.0,
                    kind: "unix socket",
                    reason: format!("peer socket {peer} was not created"),
                })?;
            for m in queued {
                // SAFETY: send reads `m.len()` bytes from `m`.
                let n = unsafe {
                    libc::send(
                        peer_fd.as_raw_fd(),
                        m.as_ptr().cast(),
                        m.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                if n < 0 || n as usize != m.len() {
                    return Err(FileRestoreError::Sys {
                        id: d.id.0,
                        kind: "unix socket",
                        what: format!("re-queueing a {} byte message", m.len()),
                        source: Errno::last(),
                    });
                }
            }
        }
        super::unix::fill_datagrams(descs, fds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn watch(wd: i32, mask: u32, path: &std::path::Path) -> InotifyWatch {
        let md = std::fs::symlink_metadata(path).unwrap();
        InotifyWatch {
            wd,
            mask,
            path: path.to_str().unwrap().to_string(),
            ino: md.ino(),
            dev: md.dev(),
            symlink: md.file_type().is_symlink(),
        }
    }

    /// Gaps in the wd numbers are burnt with placeholders; the instance comes back with exactly the wanted
    /// wds and masks, an empty queue and blocking.
    #[test]
    fn inotify_same_wds_and_masks() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::write(&b, b"").unwrap();
        let ws = [
            watch(5, libc::IN_MODIFY | libc::IN_ONESHOT, &b),
            watch(2, libc::IN_CREATE | libc::IN_DELETE, &a),
        ];
        let fd = open_inotify(&ws).unwrap();
        let info =
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
        let lines: Vec<(String, String)> = info
            .lines()
            .filter(|l| l.starts_with("inotify "))
            .map(|l| {
                let f = |k: &str| {
                    l.split_whitespace()
                        .find_map(|x| x.strip_prefix(k))
                        .unwrap()
                        .to_string()
                };
                (f("wd:"), f("mask:"))
            })
            .collect();
        let mut lines = lines;
        lines.sort();
        assert_eq!(
            lines,
            vec![
                (
                    "2".into(),
                    format!("{:x}", libc::IN_CREATE | libc::IN_DELETE)
                ),
                (
                    "5".into(),
                    format!("{:x}", libc::IN_MODIFY | libc::IN_ONESHOT)
                ),
            ]
        );
        let mut queued: libc::c_int = -1;
        // SAFETY: FIONREAD writes one int to our stack.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut queued) };
        assert_eq!(r, 0);
        assert_eq!(queued, 0, "placeholder IN_IGNORED events left in the queue");
        let fl = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        assert_eq!(fl & libc::O_NONBLOCK, 0);
    }

    /// A path that names another inode now is refused rather than watched.
    #[test]
    fn inotify_refuses_a_replaced_path() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::create_dir(&a).unwrap();
        let w = watch(1, libc::IN_CREATE, &a);
        std::fs::remove_dir(&a).unwrap();
        std::fs::write(dir.path().join("pad"), b"").unwrap();
        std::fs::create_dir(&a).unwrap();
        if std::fs::metadata(&a).unwrap().ino() == w.ino {
            return; // the file system reused the inode number: nothing to tell apart
        }
        let (what, _) = open_inotify(&[w]).unwrap_err();
        assert!(what.contains("not inode"), "{what}");
    }
}
