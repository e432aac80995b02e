//! epoll instances: each watch (`tfd:` lines of fdinfo) with its events and data, pointing at the record of
//! the task's fd that holds the watched file. Dumped after the task's other fds, so those records exist.

use dormant_image::records::{DescKind, EpollTarget, Fd, FdFile};

use super::error::FdError;

/// The `tfd:` lines of an epoll fdinfo: target fd, events, data.
pub fn parse(info: &str) -> Result<Vec<(i32, u32, u64)>, FdError> {
    let mut out = Vec::new();
    for line in info.lines().filter(|l| l.starts_with("tfd:")) {
        let mut it = line.split_whitespace();
        let mut take = |key: &str| -> Result<&str, FdError> {
            loop {
                match it.next() {
                    Some(k) if k == key => {
                        return it
                            .next()
                            .ok_or_else(|| FdError::Parse(format!("{line:?}: no {key}")))
                    }
                    Some(_) => continue,
                    None => return Err(FdError::Parse(format!("{line:?}: no {key}"))),
                }
            }
        };
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            FdError::Parse(format!("{line:?}: {what}: {e}"))
        };
        let tfd = take("tfd:")?.parse().map_err(|e| bad("tfd", &e))?;
        let events = u32::from_str_radix(take("events:")?, 16).map_err(|e| bad("events", &e))?;
        let data = u64::from_str_radix(take("data:")?, 16).map_err(|e| bad("data", &e))?;
        out.push((tfd, events, data));
    }
    Ok(out)
}

/// The description of epoll fd `epfd` of `pid` from its fdinfo text; `task_fds` are the task's fds dumped
/// so far. Each watch is matched to the task's fd holding the very file it watches (kcmp
/// `KCMP_EPOLL_TFD`), not to whatever the fd number names now: the task may have closed the number (the
/// file living on through a dup) or reused it for another file. Restore puts the file back at the
/// watched number for the `EPOLL_CTL_ADD` when the task no longer has it there.
pub fn dump(pid: u32, epfd: i32, info: &str, task_fds: &[Fd]) -> Result<DescKind, FdError> {
    let watches = parse(info)?;
    let mut targets = Vec::with_capacity(watches.len());
    for (i, &(tfd, events, data)) in watches.iter().enumerate() {
        // The kernel lists watches in the order kcmp counts them: `toff` is the number of earlier
        // watches with the same fd number.
        let toff = watches[..i].iter().filter(|w| w.0 == tfd).count() as u32;
        let file = find_target(pid, epfd, tfd, toff, task_fds)?;
        targets.push(EpollTarget {
            file,
            fd: tfd,
            events,
            data,
        });
    }
    Ok(DescKind::Epoll { targets })
}

/// The record of the task's fd holding the file of watch (`tfd`, `toff`), preferring the fd `tfd` itself.
fn find_target(
    pid: u32,
    epfd: i32,
    tfd: i32,
    toff: u32,
    task_fds: &[Fd],
) -> Result<FdFile, FdError> {
    let p = pid as i32;
    let same = |f: &Fd| -> Result<bool, FdError> {
        dormant_sys::host::kcmp_epoll_target(p, f.fd, p, epfd, tfd, toff).map_err(FdError::errno(
            format!("kcmp(KCMP_EPOLL_TFD) of watch {tfd} with fd {}", f.fd),
        ))
    };
    let here = task_fds.iter().filter(|f| f.fd == tfd);
    let others = task_fds.iter().filter(|f| f.fd != tfd);
    for f in here.chain(others) {
        if same(f)? {
            return Ok(f.file.clone());
        }
    }
    let why = if task_fds.iter().any(|f| f.fd == tfd) {
        "fd {tfd} now holds another file, and no fd of the task holds the watched one (or it is an epoll watched by an epoll, not supported)"
    } else {
        "no fd of the task holds the watched file (or it is an epoll watched by an epoll, not supported)"
    };
    Err(FdError::EpollTarget {
        tfd,
        why: why.replace("{tfd}", &tfd.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoll_fdinfo() {
        let text = "pos:\t0\nflags:\t02\nmnt_id:\t16\nino:\t1057\ntfd:        5 events:       19 data:                a  pos:0 ino:2a sdev:f\ntfd:       12 events: 80000001 data: ffffffffffffffff  pos:0 ino:2b sdev:f\n";
        let l = parse(text).unwrap();
        assert_eq!(l, vec![(5, 0x19, 10), (12, 0x8000_0001, u64::MAX)]);
    }
}
