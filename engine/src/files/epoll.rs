//! epoll instances: each watch (`tfd:` lines of fdinfo) with its events and data, pointing at the record of
//! the watched fd of the same task. Dumped after the task's other fds, so those records exist.

use dormant_image::records::{DescKind, EpollTarget, Fd};

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

/// The description of an epoll fd from its fdinfo text; `task_fds` are the task's fds dumped so far.
pub fn dump(info: &str, task_fds: &[Fd]) -> Result<DescKind, FdError> {
    let mut targets = Vec::new();
    for (tfd, events, data) in parse(info)? {
        let file = task_fds
            .iter()
            .find(|f| f.fd == tfd)
            .map(|f| f.file.clone())
            .ok_or(FdError::EpollTarget { tfd })?;
        targets.push(EpollTarget {
            file,
            fd: tfd,
            events,
            data,
        });
    }
    Ok(DescKind::Epoll { targets })
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
