//! File locks a process held (`locks-<pid>`).

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use super::Fd;
use crate::error::Problems;

/// One file lock a task held (`locks-<pid>`, one entry per lock): flock and OFD locks belong to the open
/// file description, POSIX record locks to the process.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLock {
    /// An fd of the task on the locked file's description.
    pub fd: i32,
    pub kind: LockKind,
    pub write: bool,
    pub start: u64,
    /// Length in bytes; 0 = to the end of the file (and beyond).
    pub len: u64,
}

/// Which lock API took a [`FileLock`].
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockKind {
    Flock,
    Posix,
    Ofd,
}

/// Checks that every lock is held through an fd of the process.
pub(crate) fn check_locks(
    file: &str,
    fds_file: &str,
    locks: &[FileLock],
    fds: &[Fd],
    p: &mut Problems,
) {
    for l in locks.iter().filter(|l| !fds.iter().any(|f| f.fd == l.fd)) {
        p.add(
            file,
            format!("lock on fd {} which is not in {fds_file}", l.fd),
        );
    }
}
