//! File locks from the `lock:` lines of fdinfo (the kernel lists there the flock/OFD locks and leases of
//! the description and the POSIX locks the task took through it). A lease being broken is refused. Waiters (`->` lines) are not locks held.

use dormant_image::records::{FileLock, LockKind};

use super::error::FdError;

/// The locks held through fd `fd`, from its fdinfo text.
pub fn parse(fd: i32, info: &str) -> Result<Vec<FileLock>, FdError> {
    let mut out = Vec::new();
    for line in info.lines() {
        let Some(rest) = line.strip_prefix("lock:") else {
            continue;
        };
        // "1: POSIX  ADVISORY  WRITE 1234 00:1e:5678 0 EOF"
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.get(1) == Some(&"->") {
            continue;
        }
        let bad = || FdError::Parse(format!("lock line {line:?}"));
        let kind = match *f.get(1).ok_or_else(bad)? {
            "FLOCK" => LockKind::Flock,
            "POSIX" => LockKind::Posix,
            "OFDLCK" => LockKind::Ofd,
            "LEASE" => LockKind::Lease,
            other => {
                return Err(FdError::Lock(format!(
                    "lock type {other} (a delegation or unknown) is not supported"
                )))
            }
        };
        match (kind, f.get(2).copied()) {
            (LockKind::Lease, Some("ACTIVE")) | (_, Some("ADVISORY")) => {}
            (LockKind::Lease, state) => {
                return Err(FdError::Lock(format!(
                    "a lease being broken ({}) is not supported: the break in progress cannot be \
                     recreated",
                    state.unwrap_or("?")
                )))
            }
            _ => {
                return Err(FdError::Lock(format!(
                    "mandatory lock in {line:?} is not supported"
                )))
            }
        }
        let write = match *f.get(3).ok_or_else(bad)? {
            "WRITE" => true,
            "READ" => false,
            other => return Err(FdError::Lock(format!("lock mode {other} is not supported"))),
        };
        let start: u64 = f.get(6).ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let end = *f.get(7).ok_or_else(bad)?;
        let len = if end == "EOF" {
            0
        } else {
            let end: u64 = end.parse().map_err(|_| bad())?;
            end.checked_sub(start).ok_or_else(bad)? + 1
        };
        out.push(FileLock {
            fd,
            kind,
            write,
            start,
            len,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let info = "pos:\t0\nflags:\t02\nlock:\t1: FLOCK  ADVISORY  WRITE 77 00:1e:12 0 EOF\nlock:\t2: POSIX  ADVISORY  READ 77 00:1e:12 10 19\nlock:\t2: -> POSIX  ADVISORY  WRITE 78 00:1e:12 10 19\n";
        let l = parse(4, info).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(
            (l[0].kind, l[0].write, l[0].start, l[0].len),
            (LockKind::Flock, true, 0, 0)
        );
        assert_eq!(
            (l[1].kind, l[1].write, l[1].start, l[1].len),
            (LockKind::Posix, false, 10, 10)
        );
        let l = parse(4, "lock:\t1: LEASE  ACTIVE    READ 77 00:1e:12 0 EOF\n").unwrap();
        assert_eq!((l[0].kind, l[0].write), (LockKind::Lease, false));
        let e = parse(4, "lock:\t1: LEASE  BREAKING  READ 77 00:1e:12 0 EOF\n").unwrap_err();
        assert!(e.to_string().contains("being broken"), "{e}");
        assert!(parse(4, "lock:\t1: DELEG  ACTIVE    READ 77 00:1e:12 0 EOF\n").is_err());
    }
}
