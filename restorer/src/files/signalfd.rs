//! signalfd: a new one with the dumped mask (signals it reads are queued to the task, not to it).

use std::os::fd::OwnedFd;

use super::error::OpenFailure;
use super::raw::owned;

/// `mask`: bit N-1 set for signal N.
pub(super) fn open(mask: u64) -> Result<OwnedFd, OpenFailure> {
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
        .map_err(OpenFailure::sys("signalfd"))
}
