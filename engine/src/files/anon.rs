//! Anonymous-inode files (eventfd, timerfd, signalfd, epoll) and memfd: their state comes from fdinfo and
//! from a copy of the fd taken with pidfd_getfd, so no code runs in the target.

use std::os::fd::{AsRawFd, OwnedFd};

use dormant_image::records::DescKind;

/// memfd or unlinked-file content larger than this is refused (it would be carried in the image).
pub const MEMFD_MAX: u64 = 256 << 20;

/// The value of `key:` in fdinfo text.
fn field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

fn hex(info: &str, key: &str) -> Result<u64, String> {
    let v = field(info, key).ok_or_else(|| format!("fdinfo has no {key}"))?;
    u64::from_str_radix(v, 16).map_err(|e| format!("fdinfo {key} {v:?}: {e}"))
}

pub fn eventfd(info: &str) -> Result<DescKind, String> {
    let count = hex(info, "eventfd-count")?;
    let semaphore = field(info, "eventfd-semaphore").is_some_and(|v| v != "0");
    Ok(DescKind::EventFd { count, semaphore })
}

pub fn signalfd(info: &str) -> Result<DescKind, String> {
    Ok(DescKind::SignalFd {
        mask: hex(info, "sigmask")?,
    })
}

fn ns(ts: libc::timespec) -> u64 {
    (ts.tv_sec.max(0) as u64) * 1_000_000_000 + ts.tv_nsec.max(0) as u64
}

/// The clock from fdinfo, the timer from `timerfd_gettime` on our copy (relative time to the next expiry).
pub fn timerfd(info: &str, dup: &OwnedFd) -> Result<DescKind, String> {
    let v = field(info, "clockid").ok_or("fdinfo has no clockid")?;
    let clock: i32 = v.parse().map_err(|e| format!("clockid {v:?}: {e}"))?;
    // SAFETY: itimerspec is plain data; all-zero is valid.
    let mut cur: libc::itimerspec = unsafe { std::mem::zeroed() };
    // SAFETY: writes one itimerspec into `cur` on our stack.
    if unsafe { libc::timerfd_gettime(dup.as_raw_fd(), &mut cur) } != 0 {
        return Err(format!(
            "timerfd_gettime: {}",
            std::io::Error::last_os_error()
        ));
    }
    let v = field(info, "ticks").ok_or("fdinfo has no ticks")?;
    let ticks: u64 = v.parse().map_err(|e| format!("ticks {v:?}: {e}"))?;
    Ok(DescKind::TimerFd {
        clock,
        interval_ns: ns(cur.it_interval),
        value_ns: ns(cur.it_value),
        ticks,
    })
}

/// One `tfd:` line of an epoll fdinfo: target fd, events, data.
pub fn epoll_lines(info: &str) -> Result<Vec<(i32, u32, u64)>, String> {
    let mut out = Vec::new();
    for line in info.lines().filter(|l| l.starts_with("tfd:")) {
        let mut it = line.split_whitespace();
        let mut take = |key: &str| -> Result<&str, String> {
            loop {
                match it.next() {
                    Some(k) if k == key => return it.next().ok_or(format!("{line:?}: no {key}")),
                    Some(_) => continue,
                    None => return Err(format!("{line:?}: no {key}")),
                }
            }
        };
        let tfd = take("tfd:")?
            .parse()
            .map_err(|e| format!("{line:?}: tfd: {e}"))?;
        let events = u32::from_str_radix(take("events:")?, 16)
            .map_err(|e| format!("{line:?}: events: {e}"))?;
        let data =
            u64::from_str_radix(take("data:")?, 16).map_err(|e| format!("{line:?}: data: {e}"))?;
        out.push((tfd, events, data));
    }
    Ok(out)
}

/// A regular file unlinked while open: its content (pread, the shared offset does not move) and mode.
pub fn ghost(target: &str, pos: u64, dup: &OwnedFd) -> Result<DescKind, String> {
    let st = nix::sys::stat::fstat(dup).map_err(|e| format!("fstat: {e}"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_nlink != 0 {
        return Err(format!("{target} is not an unlinked regular file"));
    }
    let DescKind::Memfd { data, .. } = memfd(target, pos, dup)? else {
        return Err("unreachable content reader result".into());
    };
    Ok(DescKind::Ghost {
        path: target.trim_end_matches(" (deleted)").to_string(),
        mode: st.st_mode & 0o7777,
        data,
        pos,
    })
}

/// A memfd: name from the link target (`/memfd:NAME (deleted)`), content read with pread (the shared
/// offset does not move), seals.
pub fn memfd(target: &str, pos: u64, dup: &OwnedFd) -> Result<DescKind, String> {
    let name = target
        .strip_prefix("/memfd:")
        .unwrap_or(target)
        .trim_end_matches(" (deleted)")
        .to_string();
    let st = nix::sys::stat::fstat(dup).map_err(|e| format!("fstat: {e}"))?;
    let size = st.st_size.max(0) as u64;
    if size > MEMFD_MAX {
        return Err(format!(
            "memfd of {size} bytes is larger than the {MEMFD_MAX} byte limit"
        ));
    }
    let mut data = vec![0u8; size as usize];
    let mut off = 0usize;
    while off < data.len() {
        match nix::sys::uio::pread(dup, &mut data[off..], off as i64) {
            Ok(0) => break,
            Ok(n) => off += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("reading the content at {off}: {e}")),
        }
    }
    data.truncate(off);
    // SAFETY: F_GET_SEALS takes no argument and returns the seal bits or -1.
    let seals = unsafe { libc::fcntl(dup.as_raw_fd(), libc::F_GET_SEALS) };
    Ok(DescKind::Memfd {
        name,
        data,
        pos,
        seals: seals.max(0) as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoll_fdinfo() {
        let text = "pos:\t0\nflags:\t02\nmnt_id:\t16\nino:\t1057\ntfd:        5 events:       19 data:                a  pos:0 ino:2a sdev:f\ntfd:       12 events: 80000001 data: ffffffffffffffff  pos:0 ino:2b sdev:f\n";
        let l = epoll_lines(text).unwrap();
        assert_eq!(l, vec![(5, 0x19, 10), (12, 0x8000_0001, u64::MAX)]);
    }

    #[test]
    fn eventfd_fdinfo() {
        let k = eventfd(
            "pos:\t0\neventfd-count:                7\neventfd-id: 3\neventfd-semaphore: 1\n",
        )
        .unwrap();
        assert_eq!(
            k,
            DescKind::EventFd {
                count: 7,
                semaphore: true
            }
        );
        assert!(eventfd("pos: 0\n").is_err());
    }
}
