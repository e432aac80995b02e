//! timerfd: the clock from fdinfo, the timer from `timerfd_gettime` on the dumper's copy of the fd (relative
//! time to the next expiry), the expirations not read yet.

use std::os::fd::{AsRawFd, OwnedFd};

use dormant_image::records::DescKind;

use super::error::FdError;
use crate::proc::fdinfo;

fn ns(ts: libc::timespec) -> u64 {
    (ts.tv_sec.max(0) as u64) * 1_000_000_000 + ts.tv_nsec.max(0) as u64
}

/// The description of a timerfd (`dup` is the dumper's copy of it).
pub fn dump(info: &str, dup: &OwnedFd) -> Result<DescKind, FdError> {
    let v = fdinfo::field(info, "clockid").ok_or(FdError::Parse("fdinfo has no clockid".into()))?;
    let clock: i32 = v
        .parse()
        .map_err(|e| FdError::Parse(format!("clockid {v:?}: {e}")))?;
    // SAFETY: itimerspec is plain data; all-zero is valid.
    let mut cur: libc::itimerspec = unsafe { std::mem::zeroed() };
    // SAFETY: writes one itimerspec into `cur` on our stack.
    if unsafe { libc::timerfd_gettime(dup.as_raw_fd(), &mut cur) } != 0 {
        return Err(FdError::last_os("timerfd_gettime"));
    }
    let v = fdinfo::field(info, "ticks").ok_or(FdError::Parse("fdinfo has no ticks".into()))?;
    let ticks: u64 = v
        .parse()
        .map_err(|e| FdError::Parse(format!("ticks {v:?}: {e}")))?;
    Ok(DescKind::TimerFd {
        clock,
        interval_ns: ns(cur.it_interval),
        value_ns: ns(cur.it_value),
        ticks,
    })
}
