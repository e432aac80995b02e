//! File locks. An OFD lock belongs to the description and shows no owner pid: it is taken on the
//! restorer's copy before the fork. A flock and a lease belong to the description too, but show the pid
//! of the process that took them (`/proc/locks`): the task takes them itself, in the child once its fds
//! are in place ([`ChildAction`]). POSIX record locks belong to the process and are dropped by a close of
//! any of its fds on the file, so the blob takes them after it closed its helper fds ([`LockArg`]).

use dormant_image::records::{FileLock, LockKind};
use dormant_restorer_proto::LockArg;

use super::ChildAction;

/// Who takes a lock of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockTaker {
    /// Taken already, on the restorer's copy.
    Taken,
    /// The child, once its fds are in place.
    Child(ChildAction),
    /// The blob, once its helper fds are closed.
    Blob(LockArg),
}

/// `fcntl(fd, cmd, {type, SEEK_SET, start, len})`; allocation-free. Returns the errno on failure.
fn set_lock(fd: i32, cmd: i32, write: bool, start: u64, len: u64) -> Result<(), i32> {
    // SAFETY: flock is plain data; all-zero is valid.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = if write { libc::F_WRLCK } else { libc::F_RDLCK } as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start as libc::off_t;
    fl.l_len = len as libc::off_t;
    // SAFETY: fcntl reads one struct flock from our stack.
    if unsafe { libc::fcntl(fd, cmd, &fl) } != 0 {
        return Err(nix::errno::Errno::last_raw());
    }
    Ok(())
}

/// `flock(fd, LOCK_SH/LOCK_EX | LOCK_NB)` in the child. Allocation-free; returns the errno on failure.
pub(super) fn flock(fd: i32, write: bool) -> Result<(), i32> {
    let op = if write { libc::LOCK_EX } else { libc::LOCK_SH };
    // SAFETY: flock on an fd of this process.
    if unsafe { libc::flock(fd, op | libc::LOCK_NB) } != 0 {
        return Err(nix::errno::Errno::last_raw());
    }
    Ok(())
}

/// `fcntl(fd, F_SETLEASE, F_RDLCK/F_WRLCK)` in the child. Allocation-free; returns the errno on failure.
pub(super) fn lease(fd: i32, write: bool) -> Result<(), i32> {
    let ty = if write { libc::F_WRLCK } else { libc::F_RDLCK };
    // SAFETY: F_SETLEASE on an fd of this process.
    if unsafe { libc::fcntl(fd, libc::F_SETLEASE, ty) } != 0 {
        return Err(nix::errno::Errno::last_raw());
    }
    Ok(())
}

/// Takes an OFD lock on `fd` (the restorer's copy of the description) now; says who takes the others.
/// `l.fd` is the task's fd number.
pub fn lock_description(fd: i32, l: &FileLock) -> Result<LockTaker, nix::Error> {
    Ok(match l.kind {
        LockKind::Ofd => {
            set_lock(fd, libc::F_OFD_SETLK, l.write, l.start, l.len)
                .map_err(nix::Error::from_raw)?;
            LockTaker::Taken
        }
        LockKind::Flock => LockTaker::Child(ChildAction::Flock {
            fd: l.fd,
            write: l.write,
        }),
        LockKind::Lease => LockTaker::Child(ChildAction::Lease {
            fd: l.fd,
            write: l.write,
        }),
        LockKind::Posix => LockTaker::Blob(LockArg {
            fd: l.fd,
            write: l.write as u32,
            start: l.start,
            len: l.len,
        }),
    })
}

/// Checks from outside, once task `pid` is restored and before it runs, that every lock of its image
/// (`locks`) is held again through its fd: the fd's fdinfo lists the same kind, mode and range. A lock
/// lost on the way fails the restore here instead of a restored task running without it.
pub fn verify(pid: u32, locks: &[FileLock]) -> Result<(), crate::RestoreError> {
    let mut fds: Vec<i32> = locks.iter().map(|l| l.fd).collect();
    fds.sort_unstable();
    fds.dedup();
    for fd in fds {
        let path = format!("/proc/{pid}/fdinfo/{fd}");
        let text = std::fs::read_to_string(&path).map_err(|source| crate::RestoreError::Proc {
            path: path.clone().into(),
            source,
        })?;
        let found: Vec<String> = match FileLock::from_fdinfo(fd, &text) {
            Ok(held) => held.iter().map(FileLock::fdinfo_key).collect(),
            Err(e) => vec![e.to_string()],
        };
        let missing: Vec<String> = locks
            .iter()
            .filter(|l| l.fd == fd)
            .map(FileLock::fdinfo_key)
            .filter(|k| !found.contains(k))
            .collect();
        if !missing.is_empty() {
            return Err(crate::RestoreError::LockLost {
                pid,
                fd,
                missing,
                found,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;
    use dormant_image::records::LockKind;

    /// The check passes for locks held through the fd and names the ones that are not.
    #[test]
    fn verify_finds_a_lost_lock() {
        let f = tempfile::tempfile().unwrap();
        let fd = f.as_raw_fd();
        let held = FileLock {
            fd,
            kind: LockKind::Ofd,
            write: true,
            start: 20,
            len: 10,
        };
        set_lock(fd, libc::F_OFD_SETLK, true, 20, 10).unwrap();
        verify(std::process::id(), std::slice::from_ref(&held)).unwrap();
        let lost = FileLock {
            kind: LockKind::Posix,
            write: false,
            start: 100,
            len: 0,
            ..held.clone()
        };
        match verify(std::process::id(), &[held, lost]) {
            Err(crate::RestoreError::LockLost {
                fd: f,
                missing,
                found,
                ..
            }) => {
                assert_eq!(f, fd);
                assert_eq!(missing, vec!["POSIX READ 100 EOF".to_string()]);
                assert_eq!(found, vec!["OFDLCK WRITE 20 29".to_string()]);
            }
            other => panic!("a lost lock passed the check: {other:?}"),
        }
    }
}
