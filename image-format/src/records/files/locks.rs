//! File locks a process held (`locks-<pid>`), and the `lock:` lines of `/proc/PID/fdinfo/FD` they come
//! from: the dump reads a task's locks there, and the restore reads them there again to check that every
//! dumped lock came back on its description ([`FileLock::from_fdinfo`], one parser for both sides).

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

/// Why an fdinfo `lock:` line gives no [`FileLock`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockLineError {
    #[error("malformed lock line {0:?}")]
    Malformed(String),
    /// A lock the image cannot describe or a restore cannot take again.
    #[error("{0}")]
    Unsupported(String),
}

impl FileLock {
    /// The locks held through fd `fd` (flock, OFD locks and leases of its description, POSIX locks its
    /// process took through it), from its fdinfo text. Waiters (`->` lines) hold nothing and are skipped.
    /// Refused: delegations and unknown kinds, mandatory locks, a lease being broken (the break in
    /// progress cannot be recreated).
    pub fn from_fdinfo(fd: i32, info: &str) -> Result<Vec<FileLock>, LockLineError> {
        info.lines()
            .filter_map(|l| l.strip_prefix("lock:"))
            .filter_map(|rest| lock_line(fd, rest).transpose())
            .collect()
    }

    /// The lock as the fields of its fdinfo line after the owner: kind, mode, start and end, e.g.
    /// `POSIX WRITE 0 EOF`; what a restore compares, since owner pid and device differ.
    pub fn fdinfo_key(&self) -> String {
        let kind = match self.kind {
            LockKind::Flock => "FLOCK",
            LockKind::Posix => "POSIX",
            LockKind::Ofd => "OFDLCK",
            LockKind::Lease => "LEASE",
        };
        let mode = if self.write { "WRITE" } else { "READ" };
        let end = match self.len {
            0 => "EOF".to_string(),
            n => self.start.saturating_add(n - 1).to_string(),
        };
        format!("{kind} {mode} {} {end}", self.start)
    }
}

/// One `lock:` line without its prefix, e.g. `1: POSIX  ADVISORY  WRITE 1234 00:1e:5678 0 EOF`; `None`
/// for a waiter.
fn lock_line(fd: i32, rest: &str) -> Result<Option<FileLock>, LockLineError> {
    let f: Vec<&str> = rest.split_whitespace().collect();
    if f.get(1) == Some(&"->") {
        return Ok(None);
    }
    let bad = || LockLineError::Malformed(rest.trim().to_string());
    let kind = match *f.get(1).ok_or_else(bad)? {
        "FLOCK" => LockKind::Flock,
        "POSIX" => LockKind::Posix,
        "OFDLCK" => LockKind::Ofd,
        "LEASE" => LockKind::Lease,
        other => {
            return Err(LockLineError::Unsupported(format!(
                "lock type {other} (a delegation or unknown) is not supported"
            )))
        }
    };
    match (kind, f.get(2).copied()) {
        (LockKind::Lease, Some("ACTIVE")) | (_, Some("ADVISORY")) => {}
        (LockKind::Lease, state) => {
            return Err(LockLineError::Unsupported(format!(
            "a lease being broken ({}) is not supported: the break in progress cannot be recreated",
            state.unwrap_or("?")
        )))
        }
        _ => {
            return Err(LockLineError::Unsupported(format!(
                "mandatory lock in {:?} is not supported",
                rest.trim()
            )))
        }
    }
    let write = match *f.get(3).ok_or_else(bad)? {
        "WRITE" => true,
        "READ" => false,
        other => {
            return Err(LockLineError::Unsupported(format!(
                "lock mode {other} is not supported"
            )))
        }
    };
    let start: u64 = f.get(6).ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let len = match *f.get(7).ok_or_else(bad)? {
        "EOF" => 0,
        end => {
            let end: u64 = end.parse().map_err(|_| bad())?;
            end.checked_sub(start)
                .and_then(|d| d.checked_add(1))
                .ok_or_else(bad)?
        }
    };
    Ok(Some(FileLock {
        fd,
        kind,
        write,
        start,
        len,
    }))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_lines() {
        let info = "pos:\t0\nflags:\t02\nlock:\t1: FLOCK  ADVISORY  WRITE 77 00:1e:12 0 EOF\nlock:\t2: POSIX  ADVISORY  READ 77 00:1e:12 10 19\nlock:\t2: -> POSIX  ADVISORY  WRITE 78 00:1e:12 10 19\n";
        let l = FileLock::from_fdinfo(4, info).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(
            (l[0].kind, l[0].write, l[0].start, l[0].len),
            (LockKind::Flock, true, 0, 0)
        );
        assert_eq!(
            (l[1].kind, l[1].write, l[1].start, l[1].len),
            (LockKind::Posix, false, 10, 10)
        );
        assert_eq!(l[0].fdinfo_key(), "FLOCK WRITE 0 EOF");
        assert_eq!(l[1].fdinfo_key(), "POSIX READ 10 19");
        let l = FileLock::from_fdinfo(4, "lock:\t1: LEASE  ACTIVE    READ 77 00:1e:12 0 EOF\n")
            .unwrap();
        assert_eq!((l[0].kind, l[0].write), (LockKind::Lease, false));
        let e = FileLock::from_fdinfo(4, "lock:\t1: LEASE  BREAKING  READ 77 00:1e:12 0 EOF\n")
            .unwrap_err();
        assert!(e.to_string().contains("being broken"), "{e}");
        assert!(
            FileLock::from_fdinfo(4, "lock:\t1: DELEG  ACTIVE    READ 77 00:1e:12 0 EOF\n")
                .is_err()
        );
        assert!(matches!(
            FileLock::from_fdinfo(4, "lock:\t1: POSIX  ADVISORY  READ 77 00:1e:12 19 10\n"),
            Err(LockLineError::Malformed(_))
        ));
    }

    proptest::proptest! {
        /// Any text: an answer, never a panic.
        #[test]
        fn never_panics(text in "(lock:[ -~]{0,60}\n){0,4}") {
            let _ = FileLock::from_fdinfo(3, &text);
        }

        /// A lock written as the kernel writes it reads back as itself, and its key is that line's tail.
        #[test]
        fn reads_back(kind in 0u8..3, write: bool, start in 0u64..u64::MAX / 2, len in 0u64..1 << 40) {
            let kind = [LockKind::Flock, LockKind::Posix, LockKind::Ofd][kind as usize];
            let want = FileLock { fd: 5, kind, write, start, len };
            let key = want.fdinfo_key();
            let (name, rest) = key.split_once(' ').unwrap();
            let (mode, range) = rest.split_once(' ').unwrap();
            let line = format!("lock:\t1: {name}  ADVISORY  {mode} 4242 00:1e:77 {range}\n");
            proptest::prop_assert_eq!(FileLock::from_fdinfo(5, &line), Ok(vec![want]));
        }
    }
}
