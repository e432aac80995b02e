//! Steps a forked task runs on its files once its fds are in place: the ones keyed by the task's own fd
//! numbers (epoll registrations), the ones that need the task's own process (POSIX locks), and the ones
//! that need processes that exist only after the fork (pidfds).

use std::collections::BTreeMap;

use dormant_image::records::{DescId, DescKind, Fd, FdFile, FileDesc};

use super::locks::PosixLock;

/// A step the forked child runs after its fds are in place; plain data so the child does not allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildAction {
    /// `epoll_ctl(epfd, EPOLL_CTL_ADD, fd, {events, data})` ([`super::epoll::add`]).
    EpollAdd {
        epfd: i32,
        fd: i32,
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
    /// A POSIX record lock, owned by the process that takes it.
    SetLk(PosixLock),
}

/// Runs one action in the child; returns the errno on failure. Allocation-free.
pub fn run_child_action(a: &ChildAction) -> Result<(), i32> {
    match *a {
        ChildAction::EpollAdd {
            epfd,
            fd,
            events,
            data,
        } => super::epoll::add(epfd, fd, events, data),
        ChildAction::SetLk(lock) => lock.take(),
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
        out.extend(targets.iter().map(|t| ChildAction::EpollAdd {
            epfd: f.fd,
            fd: t.fd,
            events: t.events,
            data: t.data,
        }));
    }
    out
}
