//! Steps a forked task runs on its files once its fds are in place: the ones keyed by the task's own fd
//! numbers (epoll registrations), the ones that need the task's own process (flocks, leases), and the ones
//! that need processes that exist only after the fork (pidfds).

use std::collections::BTreeMap;

use dormant_image::records::{DescId, DescKind, Fd, FdFile, FileDesc};

/// A step the forked child runs after its fds are in place; plain data so the child does not allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildAction {
    /// `epoll_ctl(epfd, EPOLL_CTL_ADD, fd, {events, data})` ([`super::epoll::add`]); when `src` is not
    /// `fd`, the watched file is the one at `src`, put at `fd` for the call only (the task had closed `fd`
    /// or reused it for another file).
    EpollAdd {
        epfd: i32,
        fd: i32,
        src: i32,
        events: u32,
        data: u64,
    },
    /// Replaces the stand-in at `fd` with `pidfd_open(pid)` (the pid as the task sees it), keeping the
    /// dumped `O_NONBLOCK` and close-on-exec ([`super::pidfd::reopen`]). Runs first, so epoll
    /// registrations of the fd see the pidfd.
    PidfdOpen {
        fd: i32,
        pid: u32,
        nonblock: bool,
        cloexec: bool,
    },
    /// `flock` of the description at `fd` (the task takes it, so `/proc/locks` shows its pid).
    Flock { fd: i32, write: bool },
    /// `F_SETLEASE` on the description at `fd` (likewise).
    Lease { fd: i32, write: bool },
}

/// Runs one action in the child; returns the errno on failure. Allocation-free.
pub fn run_child_action(a: &ChildAction) -> Result<(), i32> {
    match *a {
        ChildAction::EpollAdd {
            epfd,
            fd,
            src,
            events,
            data,
        } if src == fd => super::epoll::add(epfd, fd, events, data),
        ChildAction::EpollAdd {
            epfd,
            fd,
            src,
            events,
            data,
        } => super::epoll::add_at(epfd, fd, src, events, data),
        ChildAction::Flock { fd, write } => super::locks::flock(fd, write),
        ChildAction::Lease { fd, write } => super::locks::lease(fd, write),
        ChildAction::PidfdOpen {
            fd,
            pid,
            nonblock,
            cloexec,
        } => super::pidfd::reopen(fd, pid, nonblock, cloexec),
    }
}

/// The actions of a task with fd table `fds` (fd numbers are the task's own) on the descriptions `descs`:
/// pidfds first, then epoll registrations.
pub(super) fn for_fds(descs: &BTreeMap<DescId, FileDesc>, fds: &[Fd]) -> Vec<ChildAction> {
    let desc_of = |f: &Fd| match f.file {
        FdFile::Desc(id) => descs.get(&id),
        _ => None,
    };
    let mut out = Vec::new();
    // pidfds first: a later epoll registration of the fd must find the pidfd, not its stand-in.
    for f in fds {
        if let Some(
            d @ FileDesc {
                kind: DescKind::Pidfd { pid },
                ..
            },
        ) = desc_of(f)
        {
            out.push(ChildAction::PidfdOpen {
                fd: f.fd,
                pid: *pid,
                nonblock: d.flags & libc::O_NONBLOCK as u32 != 0,
                cloexec: f.cloexec,
            });
        }
    }
    for f in fds {
        let Some(DescKind::Epoll { targets }) = desc_of(f).map(|d| &d.kind) else {
            continue;
        };
        for t in targets {
            // The fd holding the watched file: the watched number itself when it still does, else any.
            // None: the epoll is shared with the task the dump took the watch from, which adds it.
            let here = fds.iter().filter(|g| g.fd == t.fd);
            let others = fds.iter().filter(|g| g.fd != t.fd);
            let Some(src) = here.chain(others).find(|g| g.file == t.file) else {
                continue;
            };
            out.push(ChildAction::EpollAdd {
                epfd: f.fd,
                fd: t.fd,
                src: src.fd,
                events: t.events,
                data: t.data,
            });
        }
    }
    out
}
