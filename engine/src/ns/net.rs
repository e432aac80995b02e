//! Network namespace description: which interfaces it has and whether `lo` is up. Nothing of it is dumped
//! (Kata pods share one namespace that outlives the container); restore joins one or makes a loopback-only one.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use dormant_image::records::{NetNamespace, NsId, NsKind, Pid};

use super::error::{NsError, Result};
use super::membership::in_namespace;

/// Interface names from `/proc/net/dev` text (two header lines, then `NAME: counters...`).
pub fn parse_net_dev(text: &str) -> Vec<String> {
    text.lines()
        .skip(2)
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim().to_owned()))
        .filter(|n| !n.is_empty())
        .collect()
}

/// `SIOCGIFFLAGS` of interface `name` in the calling thread's network namespace.
pub(crate) fn interface_flags(name: &str) -> io::Result<i32> {
    // SAFETY: plain socket(2) call; the result is checked before it is wrapped.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor this function owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is a plain C struct for which all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the NUL-terminated name and writes ifru_flags of `req`, which lives on our
    // stack for the duration of the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: after SIOCGIFFLAGS the flags member of the union is the initialised one.
    Ok(i32::from(unsafe { req.ifr_ifru.ifru_flags }))
}

/// Describes task `pid`'s network namespace `id`; `external` says the dumper shares it.
pub fn read_net_namespace(pid: Pid, id: NsId, external: bool) -> Result<NetNamespace> {
    in_namespace(pid, NsKind::Net, || {
        // thread-self: /proc/self/net would show the namespace of the thread group leader, not ours.
        let text = std::fs::read_to_string("/proc/thread-self/net/dev").map_err(|source| {
            NsError::Net {
                pid,
                op: "reading /proc/thread-self/net/dev",
                source,
            }
        })?;
        let interfaces = parse_net_dev(&text);
        let loopback_up = if interfaces.iter().any(|i| i == "lo") {
            let flags = interface_flags("lo").map_err(|source| NsError::Net {
                pid,
                op: "SIOCGIFFLAGS lo",
                source,
            })?;
            flags & libc::IFF_UP != 0
        } else {
            false
        };
        Ok(NetNamespace {
            id,
            external,
            loopback_up,
            interfaces,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_dev() {
        let text = "Inter-|   Receive\n face |bytes\n    lo: 1 2 3\n  eth0: 4 5 6\n";
        assert_eq!(parse_net_dev(text), vec!["lo", "eth0"]);
    }
}
