//! Owners of descriptions (`F_SETOWN_EX`, `F_SETSIG`): who gets SIGIO, and which signal.

use std::os::fd::{AsRawFd, OwnedFd};

use dormant_image::records::FileDesc;

use super::error::{kind_name, FileRestoreError};

/// fcntl commands and `struct f_owner_ex` (not in the libc crate for this target).
const F_SETSIG: libc::c_int = 10;
const F_SETOWN_EX: libc::c_int = 15;

#[repr(C)]
struct FOwnerEx {
    kind: libc::c_int,
    pid: libc::pid_t,
}

/// Sets `d`'s owner and signal on `fd`, if it had one; the recorded owner pid is translated by `host`
/// (the identity unless the kernel chose the tree's host pids).
pub(super) fn set(
    d: &FileDesc,
    fd: &OwnedFd,
    host: &dyn Fn(u32) -> u32,
) -> Result<(), FileRestoreError> {
    let Some(o) = d.owner else {
        return Ok(());
    };
    let fail = |what: String| {
        let source = nix::Error::last();
        FileRestoreError::Sys {
            id: d.id.0,
            kind: kind_name(&d.kind),
            what,
            source,
        }
    };
    // SAFETY: F_SETSIG takes an int.
    if unsafe { libc::fcntl(fd.as_raw_fd(), F_SETSIG, o.signal) } != 0 {
        return Err(fail(format!("F_SETSIG {}", o.signal)));
    }
    let ex = FOwnerEx {
        kind: o.kind,
        pid: host(o.pid) as libc::pid_t,
    };
    // SAFETY: F_SETOWN_EX reads one f_owner_ex from our stack.
    if unsafe { libc::fcntl(fd.as_raw_fd(), F_SETOWN_EX, &ex) } != 0 {
        return Err(fail(format!("F_SETOWN_EX kind {} pid {}", o.kind, o.pid)));
    }
    Ok(())
}
