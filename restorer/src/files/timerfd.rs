//! timerfd: a new timer on the dumped clock, armed with the time that was left, and its unread expirations.

use std::os::fd::{AsRawFd, OwnedFd};

use super::error::OpenFailure;
use super::raw::{check, owned, timespec};

/// `_IOW('T', 0, u64)`: sets the count of unread expirations (CONFIG_CHECKPOINT_RESTORE).
const TFD_IOC_SET_TICKS: libc::c_ulong = 0x4008_5400;

pub(super) fn open(
    clock: i32,
    interval_ns: u64,
    value_ns: u64,
    ticks: u64,
) -> Result<OwnedFd, OpenFailure> {
    // SAFETY: timerfd_create takes a clock and flags and returns a new fd.
    let fd = owned(unsafe { libc::timerfd_create(clock, libc::TFD_CLOEXEC) })
        .map_err(OpenFailure::sys(format!("timerfd_create clock {clock}")))?;
    if value_ns != 0 {
        let spec = libc::itimerspec {
            it_interval: timespec(interval_ns),
            it_value: timespec(value_ns),
        };
        // SAFETY: reads one itimerspec from our stack; no old value is asked for.
        check(unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) })
            .map_err(OpenFailure::sys("timerfd_settime"))?;
    }
    if ticks != 0 {
        // SAFETY: the ioctl reads one u64 from our stack.
        check(unsafe { libc::ioctl(fd.as_raw_fd(), TFD_IOC_SET_TICKS, &ticks as *const u64) })
            .map_err(OpenFailure::sys(format!("TFD_IOC_SET_TICKS {ticks}")))?;
    }
    Ok(fd)
}
