//! pidfds (`anon_inode:[pidfd]`): a pidfd names a process, so it is carried only when that process is
//! itself in the dump, and restore reopens it on the restored process. A pidfd to a process outside the
//! dumped tree, to a process that has exited and been reaped (`Pid: -1`: nothing can be pointed at again),
//! to a process invisible from the dumper's pid namespace (`Pid: 0`) or to a single thread
//! (`PIDFD_THREAD`) fails the dump, naming the referenced pid.

use std::collections::HashSet;

use dormant_image::records::DescKind;

use super::error::FdError;

/// `PIDFD_THREAD` (= `O_EXCL`): a pidfd of one thread rather than a thread group.
const PIDFD_THREAD: u32 = libc::O_EXCL as u32;

/// The `Pid:` field of a pidfd's fdinfo: the pid in the pid namespace of the procfs read (-1 once reaped,
/// 0 when not visible there).
pub fn parse_pid(info: &str) -> Result<i64, FdError> {
    for line in info.lines() {
        if let Some(v) = line.strip_prefix("Pid:") {
            let v = v.trim();
            return v
                .parse()
                .map_err(|e| FdError::Parse(format!("Pid {v:?}: {e}")));
        }
    }
    Err(FdError::Parse("fdinfo has no Pid field".into()))
}

/// The description of a pidfd; `tree` holds every pid of the dump (live processes and zombies).
pub fn dump(info: &str, flags: u32, tree: &HashSet<u32>) -> Result<DescKind, FdError> {
    let pid = parse_pid(info)?;
    if flags & PIDFD_THREAD != 0 {
        return Err(FdError::PidfdThread { pid });
    }
    match pid {
        -1 => Err(FdError::PidfdReaped),
        0 => Err(FdError::PidfdInvisible),
        p => {
            let Some(p) = u32::try_from(p).ok().filter(|p| tree.contains(p)) else {
                return Err(FdError::PidfdOutside { pid });
            };
            Ok(DescKind::Pidfd { pid: p })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pids() {
        let tree: HashSet<u32> = [10, 11].into();
        let info = |p: &str| {
            format!("pos:\t0\nflags:\t02004002\nmnt_id:\t4\nino:\t25\nPid:\t{p}\nNSpid:\t{p}\n")
        };
        assert_eq!(
            dump(&info("11"), 0o4002, &tree).ok(),
            Some(DescKind::Pidfd { pid: 11 })
        );
        let e = dump(&info("12"), 0, &tree).unwrap_err().to_string();
        assert!(
            e.contains("pid 12") && e.contains("outside the dumped tree"),
            "{e}"
        );
        assert!(dump(&info("-1"), 0, &tree)
            .unwrap_err()
            .to_string()
            .contains("reaped"));
        assert!(dump(&info("0"), 0, &tree).is_err());
        assert!(dump(&info("11"), PIDFD_THREAD, &tree).is_err());
        assert!(dump("pos: 0\n", 0, &tree).is_err());
        assert!(dump(&info("x"), 0, &tree).is_err());
        assert!(dump(&info("99999999999"), 0, &tree).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*", flags in any::<u32>()) {
            let tree: HashSet<u32> = [1].into();
            let _ = dump(&s, flags, &tree);
            let _ = dump(&format!("Pid:{s}"), flags, &tree);
        }
    }
}
