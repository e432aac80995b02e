//! The dumped owner, mode and times put back on the new inode of an unlinked file or a memfd, once its
//! content is written (writing moves the times) and before a memfd's seals. The owner first: `fchown`
//! clears set-id bits, which the mode then sets again; the times last.

use std::os::fd::{AsRawFd, OwnedFd};

use dormant_image::records::{FileTime, InodeAttrs};
use nix::errno::Errno;

use super::raw::check;

fn timespec(t: FileTime) -> libc::timespec {
    libc::timespec {
        tv_sec: t.sec as libc::time_t,
        tv_nsec: t.nsec as libc::c_long,
    }
}

/// Gives the inode behind `fd` the owner, mode and times of `a`.
pub(super) fn set(fd: &OwnedFd, a: &InodeAttrs) -> Result<(), (String, Errno)> {
    let raw = fd.as_raw_fd();
    // SAFETY: fchown, fchmod and futimens act on our own fd; futimens reads two timespecs from our stack.
    check(unsafe { libc::fchown(raw, a.uid, a.gid) })
        .map_err(|e| (format!("fchown to {}:{}", a.uid, a.gid), e))?;
    // SAFETY: as above.
    check(unsafe { libc::fchmod(raw, a.mode as libc::mode_t) })
        .map_err(|e| (format!("fchmod to {:o}", a.mode), e))?;
    let times = [timespec(a.atime), timespec(a.mtime)];
    // SAFETY: as above.
    check(unsafe { libc::futimens(raw, times.as_ptr()) }).map_err(|e| {
        (
            "futimens to the dumped access and modification times".to_string(),
            e,
        )
    })?;
    Ok(())
}
