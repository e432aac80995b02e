//! File locks: a description's own locks (flock, OFD) are taken on the restorer's copy before the fork, so
//! every task sharing the description holds them; POSIX record locks belong to a process and are taken by
//! the task itself ([`PosixLock`], run in the child once its fds are in place).

use dormant_image::records::{FileLock, LockKind};

/// A POSIX record lock (`F_SETLK`) the task takes on its fd `fd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PosixLock {
    pub fd: i32,
    pub write: bool,
    pub start: u64,
    pub len: u64,
}

impl PosixLock {
    /// Takes the lock in the calling (child) process. Allocation-free; returns the errno on failure.
    pub fn take(&self) -> Result<(), i32> {
        set_lock(self.fd, libc::F_SETLK, self.write, self.start, self.len)
    }
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

/// Takes a description's lock (flock or OFD) on `fd` (the restorer's copy) before the fork, so every task
/// sharing the description holds it; a POSIX lock is returned for the task to take.
pub fn lock_description(fd: i32, l: &FileLock) -> Result<Option<PosixLock>, nix::Error> {
    match l.kind {
        LockKind::Flock => {
            let op = if l.write {
                libc::LOCK_EX
            } else {
                libc::LOCK_SH
            };
            // SAFETY: flock on an fd this process owns.
            if unsafe { libc::flock(fd, op | libc::LOCK_NB) } != 0 {
                return Err(nix::Error::last());
            }
            Ok(None)
        }
        LockKind::Ofd => set_lock(fd, libc::F_OFD_SETLK, l.write, l.start, l.len)
            .map(|()| None)
            .map_err(nix::Error::from_raw),
        LockKind::Posix => Ok(Some(PosixLock {
            fd: l.fd,
            write: l.write,
            start: l.start,
            len: l.len,
        })),
    }
}
