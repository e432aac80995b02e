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

/// [`add`] of the file at fd `src` under the number `fd`: the file is put at `fd` for the call and `fd`
/// is given back what it held before (closed if nothing), so the epoll keys the watch by the number the
/// task used. Runs before the POSIX locks are taken (closing `fd` would drop the task's locks on the
/// file). Allocation-free; returns the errno on failure.
pub fn add_at(epfd: i32, fd: i32, src: i32, events: u32, data: u64) -> Result<(), i32> {
    let errno = nix::errno::Errno::last_raw;
    // SAFETY: fcntl/dup3/close on fds of this (child) process: `fd` is parked on a fresh number and put
    // back, no fd of the task is lost.
    unsafe {
        let fd_flags = libc::fcntl(fd, libc::F_GETFD);
        let parked = if fd_flags >= 0 {
            let p = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0);
            if p < 0 {
                return Err(errno());
            }
            p
        } else {
            -1
        };
        if libc::dup3(src, fd, libc::O_CLOEXEC) != fd {
            return Err(errno());
        }
        let added = add(epfd, fd, events, data);
        if parked >= 0 {
            let cloexec = if fd_flags & libc::FD_CLOEXEC != 0 {
                libc::O_CLOEXEC
            } else {
                0
            };
            if libc::dup3(parked, fd, cloexec) != fd {
                return Err(errno());
            }
            libc::close(parked);
        } else {
            libc::close(fd);
        }
        added
    }
}
