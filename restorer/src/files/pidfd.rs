//! pidfds: the target process does not exist before the fork, so a stand-in (an eventfd) holds the
//! description's place; the task replaces it with `pidfd_open` of its target ([`reopen`], run in the
//! child) once its own subtree exists. Tasks that shared one pidfd description each get their own (a
//! pidfd holds no state but its status flags).

use std::os::fd::OwnedFd;

use super::error::OpenFailure;
use super::raw::owned;

/// The stand-in, replaced in the task.
pub(super) fn open_stand_in() -> Result<OwnedFd, OpenFailure> {
    // SAFETY: eventfd takes an initial value and flags and returns a new fd.
    owned(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) })
        .map_err(OpenFailure::sys("eventfd (stand-in for a pidfd)"))
}

/// Replaces the stand-in at `fd` with `pidfd_open(pid)` (the pid as the task sees it), with the dumped
/// `O_NONBLOCK` and close-on-exec. Allocation-free; returns the errno on failure.
pub fn reopen(fd: i32, pid: u32, nonblock: bool, cloexec: bool) -> Result<(), i32> {
    let flags = if nonblock { libc::O_NONBLOCK } else { 0 };
    let p = std::os::fd::IntoRawFd::into_raw_fd(
        dormant_sys::host::pidfd_open(pid as libc::pid_t, flags).map_err(|e| e as i32)?,
    );
    let fl = if cloexec { libc::O_CLOEXEC } else { 0 };
    // SAFETY: dup3 onto the task's own fd number (its stand-in is closed by it), then the temporary fd is
    // closed; both are fds of this (child) process.
    let r = unsafe { libc::dup3(p, fd, fl) };
    let e = nix::errno::Errno::last_raw();
    // SAFETY: as above.
    unsafe { libc::close(p) };
    if r != fd {
        return Err(e);
    }
    Ok(())
}
