//! epoll: the instance is created before the fork; its registrations are keyed by the fd numbers of the
//! task that made them, so each task adds its own once its fds are in place ([`add`], run in the child).

use std::os::fd::OwnedFd;

use super::error::OpenFailure;
use super::raw::owned;

pub(super) fn open() -> Result<OwnedFd, OpenFailure> {
    // SAFETY: epoll_create1 returns a new fd.
    owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })
        .map_err(OpenFailure::sys("epoll_create1"))
}

/// `epoll_ctl(epfd, EPOLL_CTL_ADD, fd, {events, data})` in the forked child; `EEXIST` is fine (a task that
/// shares the epoll already added it). Allocation-free; returns the errno on failure.
pub fn add(epfd: i32, fd: i32, events: u32, data: u64) -> Result<(), i32> {
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
