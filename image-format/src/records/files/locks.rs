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
    /// `F_SETLEASE` (read or write, never one being broken); held by the description. Schema 2.
    Lease,
}

/// Schema 1 of `locks-<pid>`: the same, without leases.
pub mod v1 {
    use serde::{Deserialize, Serialize};

    use crate::records::upgrade::Upgrade;

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct FileLockV1 {
        pub fd: i32,
        pub kind: LockKindV1,
        pub write: bool,
        pub start: u64,
        pub len: u64,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    pub enum LockKindV1 {
        Flock,
        Posix,
        Ofd,
    }

    impl Upgrade<super::FileLock> for FileLockV1 {
        /// Every schema 1 lock is a schema 2 lock of the same kind.
        fn upgrade(self) -> Result<super::FileLock, String> {
            Ok(super::FileLock {
                fd: self.fd,
                kind: match self.kind {
                    LockKindV1::Flock => super::LockKind::Flock,
                    LockKindV1::Posix => super::LockKind::Posix,
                    LockKindV1::Ofd => super::LockKind::Ofd,
                },
                write: self.write,
                start: self.start,
                len: self.len,
            })
        }
    }
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
