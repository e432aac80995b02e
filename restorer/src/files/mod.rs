//! Rebuilding the open file descriptions of `file-descs` (pipes, FIFOs, unix socket pairs, listeners, named
//! connections and datagram sockets, inet sockets, eventfd, timerfd, signalfd, epoll, memfd, unlinked
//! files, inotify, pidfds). Every description is opened ONCE in the restoring process before any
//! task is forked, so every task that shared it inherits the same description through fork; each task then
//! moves it to its fd number ([`crate::launch::FdMove`]) and runs its [`ChildAction`]s (epoll
//! registrations, which are keyed by the fd number the task uses).
//!
//! A pidfd is the exception: its process does not exist before the fork, so a stand-in is opened here and
//! the task replaces it with `pidfd_open` ([`ChildAction::PidfdOpen`]) after it forked its own subtree;
//! the target must be the task itself, an ancestor or a descendant (they exist by then), which the restore
//! checks first. Tasks that shared one pidfd description each get their own (a pidfd holds no state but
//! its status flags).

mod fifo;
mod inherit;
mod open;
mod tcp;
mod unix;

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use dormant_image::records::{DescId, DescKind, Fd, FdFile, FileDesc, FileLock, LockKind};

pub use inherit::{InheritSpecError, Inherited};
pub use open::open_one;

/// fcntl commands and `struct f_owner_ex` (not in the libc crate for this target).
const F_SETSIG: libc::c_int = 10;
const F_SETOWN_EX: libc::c_int = 15;

#[repr(C)]
struct FOwnerEx {
    kind: libc::c_int,
    pid: libc::pid_t,
}

/// Why a description could not be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum FileRestoreError {
    #[error("file description {id} ({kind}): {what}: {source}")]
    Sys {
        id: u32,
        kind: &'static str,
        what: String,
        #[source]
        source: nix::Error,
    },
    #[error("file description {id} ({kind}): {reason}")]
    Bad {
        id: u32,
        kind: &'static str,
        reason: String,
    },
}

/// A step the forked child runs after its fds are in place; plain data so the child does not allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildAction {
    /// `epoll_ctl(epfd, EPOLL_CTL_ADD, fd, {events, data})`; `EEXIST` is fine (a task that shares the
    /// epoll already added it).
    EpollAdd {
        epfd: i32,
        fd: i32,
        events: u32,
        data: u64,
    },
    /// Replaces the stand-in at `fd` with `pidfd_open(pid)` (the pid as the task sees it), keeping the
    /// dumped `O_NONBLOCK` and close-on-exec. Runs first, so epoll registrations of the fd see the pidfd.
    PidfdOpen {
        fd: i32,
        pid: u32,
        nonblock: bool,
        cloexec: bool,
    },
    /// A POSIX record lock (`F_SETLK`), owned by the process that takes it.
    SetLk {
        fd: i32,
        write: bool,
        start: u64,
        len: u64,
    },
}

/// Runs one action in the child; returns the errno on failure. Allocation-free.
pub fn run_child_action(a: &ChildAction) -> Result<(), i32> {
    match *a {
        ChildAction::EpollAdd {
            epfd,
            fd,
            events,
            data,
        } => {
            let mut ev = libc::epoll_event { events, u64: data };
            // SAFETY: epoll_ctl reads one epoll_event from our stack.
            let r = unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) };
            if r != 0 {
                let e = nix::errno::Errno::last_raw();
                if e != libc::EEXIST {
                    return Err(e);
                }
            }
            Ok(())
        }
        ChildAction::SetLk {
            fd,
            write,
            start,
            len,
        } => set_lock(fd, libc::F_SETLK, write, start, len),
        ChildAction::PidfdOpen {
            fd,
            pid,
            nonblock,
            cloexec,
        } => {
            let flags = if nonblock { libc::O_NONBLOCK } else { 0 };
            // SAFETY: pidfd_open takes a pid and flags and returns a new fd (or -1).
            let p = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, flags) };
            if p < 0 {
                return Err(nix::errno::Errno::last_raw());
            }
            let p = p as i32;
            let fl = if cloexec { libc::O_CLOEXEC } else { 0 };
            // SAFETY: dup3 onto the task's own fd number (its stand-in is closed by it), then the
            // temporary fd is closed; both are fds of this (child) process.
            let r = unsafe { libc::dup3(p, fd, fl) };
            let e = nix::errno::Errno::last_raw();
            // SAFETY: as above.
            unsafe { libc::close(p) };
            if r != fd {
                return Err(e);
            }
            Ok(())
        }
    }
}

/// `fcntl(fd, cmd, {type, SEEK_SET, start, len})`; allocation-free. Returns the errno on failure.
pub fn set_lock(fd: i32, cmd: i32, write: bool, start: u64, len: u64) -> Result<(), i32> {
    // SAFETY: flock is plain data; all-zero is valid.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = if write { libc::F_WRLCK } else { libc::F_RDLCK } as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start as libc::off_t;
    fl.l_len = len as libc::off_t;
    // SAFETY: fcntl reads one struct flock from our stack.
    if unsafe { libc::fcntl(fd, cmd, &fl) } != 0 {
        return Err(nix::errno::Errno::last_raw());
    }
    Ok(())
}

/// Takes a description's lock (flock or OFD) on `fd` before the fork, so every task sharing the description
/// holds it; POSIX locks become [`ChildAction::SetLk`].
pub fn lock_description(fd: i32, l: &FileLock) -> Result<Option<ChildAction>, nix::Error> {
    match l.kind {
        LockKind::Flock => {
            let op = if l.write {
                libc::LOCK_EX
            } else {
                libc::LOCK_SH
            };
            // SAFETY: flock on an fd this process owns.
            if unsafe { libc::flock(fd, op | libc::LOCK_NB) } != 0 {
                return Err(nix::Error::last());
            }
            Ok(None)
        }
        LockKind::Ofd => set_lock(fd, libc::F_OFD_SETLK, l.write, l.start, l.len)
            .map(|()| None)
            .map_err(nix::Error::from_raw),
        LockKind::Posix => Ok(Some(ChildAction::SetLk {
            fd: l.fd,
            write: l.write,
            start: l.start,
            len: l.len,
        })),
    }
}

/// The descriptions of an image, open in this process.
#[derive(Debug, Default)]
pub struct OpenedFiles {
    fds: BTreeMap<DescId, OwnedFd>,
    descs: BTreeMap<DescId, FileDesc>,
}

/// Short name of a kind, for errors.
pub fn kind_name(k: &DescKind) -> &'static str {
    match k {
        DescKind::PipeEnd { .. } => "pipe",
        DescKind::EventFd { .. } => "eventfd",
        DescKind::TimerFd { .. } => "timerfd",
        DescKind::SignalFd { .. } => "signalfd",
        DescKind::Epoll { .. } => "epoll",
        DescKind::Memfd { .. } => "memfd",
        DescKind::UnixPair { .. } => "unix socket",
        DescKind::Inet(_) => "inet socket",
        DescKind::UnixListen { .. } => "unix listener",
        DescKind::Ghost { .. } => "unlinked file",
        DescKind::Fifo { .. } => "fifo",
        DescKind::UnixConn { .. } => "unix connection",
        DescKind::UnixDgram { .. } => "unix datagram socket",
        DescKind::TcpEstablished(_) => "TCP connection",
        DescKind::External { .. } => "external",
        DescKind::Pty { master: true, .. } => "pty master",
        DescKind::Pty { master: false, .. } => "pty slave",
        DescKind::Inotify { .. } => "inotify",
        DescKind::Pidfd { .. } => "pidfd",
    }
}

/// Opens every description of `descs` (in image order: referenced ones come first). Established TCP
/// connections are rebuilt only with `tcp_established` (an image holding one is refused otherwise).
pub fn open_all(
    descs: &[FileDesc],
    tcp_established: bool,
) -> Result<OpenedFiles, FileRestoreError> {
    open_all_inheriting(descs, tcp_established, &Inherited::default())
}

/// [`open_all`], external descriptions taken from `inherited` (`--inherit-fd`).
pub fn open_all_inheriting(
    descs: &[FileDesc],
    tcp_established: bool,
    inherited: &Inherited,
) -> Result<OpenedFiles, FileRestoreError> {
    if !tcp_established {
        if let Some((d, c)) = descs.iter().find_map(|d| match &d.kind {
            DescKind::TcpEstablished(c) => Some((d, c)),
            _ => None,
        }) {
            return Err(FileRestoreError::Bad {
                id: d.id.0,
                kind: kind_name(&d.kind),
                reason: format!(
                    "the image holds the established TCP connection {}; restore it with --tcp-established",
                    tcp::shown(c)
                ),
            });
        }
    }
    let mut state = open::State::default();
    state.inherited = inherited.clone();
    let mut opened = OpenedFiles::default();
    // Listeners first: connections accepted from one are rebuilt through it, and an accepted TCP
    // connection rebinds the listener's port (allowed in repair mode while the listener exists; the
    // listener's own bind would conflict with the connection the other way round).
    // Pty masters first too: each opens its pair, and the slave's description takes the slave.
    let is_listener = |d: &&FileDesc| match &d.kind {
        DescKind::UnixListen { .. } => true,
        DescKind::Inet(s) => s.listen_backlog.is_some(),
        DescKind::Pty { master, .. } => *master,
        _ => false,
    };
    let listeners_first = descs
        .iter()
        .filter(is_listener)
        .chain(descs.iter().filter(|d| !is_listener(d)));
    for d in listeners_first {
        let fd = open_one(d, &mut state)?;
        opened.fds.insert(d.id, fd);
        opened.descs.insert(d.id, d.clone());
    }
    state.fill_queues(descs, &opened.fds)?;
    // Established TCP connections leave repair mode last, when every end in the image exists.
    for d in descs {
        let (DescKind::TcpEstablished(c), Some(fd)) = (&d.kind, opened.fds.get(&d.id)) else {
            continue;
        };
        tcp::finish(fd, c).map_err(|(what, source)| FileRestoreError::Sys {
            id: d.id.0,
            kind: kind_name(&d.kind),
            what: format!("{}: {what}", tcp::shown(c)),
            source,
        })?;
    }
    Ok(opened)
}

impl OpenedFiles {
    /// The open description `id`, if the image has it.
    pub fn get(&self, id: DescId) -> Option<BorrowedFd<'_>> {
        self.fds.get(&id).map(|f| f.as_fd())
    }

    /// The child-side actions of a task with fd table `fds`, given where its fds end up (`fd` numbers are
    /// the task's own).
    pub fn child_actions_for(&self, fds: &[Fd]) -> Vec<ChildAction> {
        let mut out = Vec::new();
        // pidfds first: a later epoll registration of the fd must find the pidfd, not its stand-in.
        for f in fds {
            let FdFile::Desc(id) = f.file else { continue };
            if let Some(d) = self.descs.get(&id) {
                if let DescKind::Pidfd { pid } = d.kind {
                    out.push(ChildAction::PidfdOpen {
                        fd: f.fd,
                        pid,
                        nonblock: d.flags & libc::O_NONBLOCK as u32 != 0,
                        cloexec: f.cloexec,
                    });
                }
            }
        }
        for f in fds {
            let FdFile::Desc(id) = f.file else { continue };
            let Some(DescKind::Epoll { targets }) = self.descs.get(&id).map(|d| &d.kind) else {
                continue;
            };
            for t in targets {
                out.push(ChildAction::EpollAdd {
                    epfd: f.fd,
                    fd: t.fd,
                    events: t.events,
                    data: t.data,
                });
            }
        }
        out
    }

    /// Sets each description's owner and signal (`F_SETOWN_EX`, `F_SETSIG`) on the restorer's own copy, once
    /// every task and thread of the tree exists and before any runs: an owner may be a thread, which only
    /// the blob creates, and the ids recorded are the dumper's, which read the same in the restorer's pid
    /// namespace (a nested tree's own ids would not). Both are properties of the description, so the
    /// tasks' fds see them. The owner's credentials (which decide whom SIGIO may signal) become the
    /// restorer's.
    pub fn set_owners(&self) -> Result<(), FileRestoreError> {
        self.set_owners_mapped(&|pid| pid)
    }

    /// [`Self::set_owners`], with each recorded owner pid translated by `host` (a tree whose host pids
    /// the kernel chose).
    pub fn set_owners_mapped(&self, host: &dyn Fn(u32) -> u32) -> Result<(), FileRestoreError> {
        for (id, d) in &self.descs {
            let (Some(o), Some(fd)) = (d.owner, self.fds.get(id)) else {
                continue;
            };
            let fail = |what: String| {
                let source = nix::Error::last();
                FileRestoreError::Sys {
                    id: id.0,
                    kind: kind_name(&d.kind),
                    what,
                    source,
                }
            };
            // SAFETY: F_SETSIG takes an int.
            if unsafe { libc::fcntl(fd.as_raw_fd(), F_SETSIG, o.signal) } != 0 {
                return Err(fail(format!("F_SETSIG {}", o.signal)));
            }
            let ex = FOwnerEx {
                kind: o.kind,
                pid: host(o.pid) as libc::pid_t,
            };
            // SAFETY: F_SETOWN_EX reads one f_owner_ex from our stack.
            if unsafe { libc::fcntl(fd.as_raw_fd(), F_SETOWN_EX, &ex) } != 0 {
                return Err(fail(format!("F_SETOWN_EX kind {} pid {}", o.kind, o.pid)));
            }
        }
        Ok(())
    }
}
