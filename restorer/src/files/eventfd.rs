//! eventfd: a new counter with the dumped value and semaphore mode.

use std::os::fd::OwnedFd;

use super::error::OpenFailure;
use super::raw::owned;

pub(super) fn open(count: u64, semaphore: bool) -> Result<OwnedFd, OpenFailure> {
    let count = u32::try_from(count).map_err(|_| {
        OpenFailure::Bad(format!(
            "counter {count} does not fit eventfd's initial value"
        ))
    })?;
    let mut fl = libc::EFD_CLOEXEC;
    if semaphore {
        fl |= libc::EFD_SEMAPHORE;
    }
    // SAFETY: eventfd takes an initial value and flags and returns a new fd.
    owned(unsafe { libc::eventfd(count, fl) }).map_err(OpenFailure::sys("eventfd"))
}
