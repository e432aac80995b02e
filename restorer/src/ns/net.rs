//! Network namespace at restore: join an existing one by path (`/proc/PID/ns/net`, a bind-mounted netns
//! such as `/var/run/netns/NAME`), or, in a namespace just unshared, set the loopback device up or down.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::sched::CloneFlags;

use super::error::{NsRestoreError, Result};

/// Joins the network namespace at `path`.
pub fn join_net_namespace(path: &Path) -> Result<()> {
    let f = std::fs::File::open(path).map_err(|source| NsRestoreError::File {
        what: "opening network namespace",
        path: path.to_owned(),
        source,
    })?;
    nix::sched::setns(&f, CloneFlags::CLONE_NEWNET).map_err(|source| NsRestoreError::File {
        what: "joining network namespace",
        path: path.to_owned(),
        source: source.into(),
    })
}

fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is a plain C struct for which all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

/// Reads (and with `set`, changes) the `IFF_UP` flag of interface `name` in the calling thread's network
/// namespace; returns the flags as they are afterwards.
pub fn interface_up(name: &str, set: Option<bool>) -> io::Result<i32> {
    // SAFETY: plain socket(2) call; the result is checked before it is wrapped.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor this function owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = ifreq_for(name)?;
    // SAFETY: SIOCGIFFLAGS reads the NUL-terminated name and writes the flags member of `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if let Some(up) = set {
        // SAFETY: the flags member was just written by SIOCGIFFLAGS.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        let up_bit = libc::IFF_UP as libc::c_short;
        req.ifr_ifru.ifru_flags = if up { flags | up_bit } else { flags & !up_bit };
        // SAFETY: SIOCSIFFLAGS reads the name and flags of `req`.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as for the first SIOCGIFFLAGS.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: the flags member is the one SIOCGIFFLAGS wrote.
    Ok(i32::from(unsafe { req.ifr_ifru.ifru_flags }))
}

/// Sets `lo` up or down in the calling thread's (new) network namespace.
pub fn set_loopback(up: bool) -> Result<()> {
    interface_up("lo", Some(up))
        .map(drop)
        .map_err(|source| NsRestoreError::File {
            what: "setting interface flags of",
            path: "lo".into(),
            source,
        })
}

/// What happens to the network namespace: `mode` as asked, `own` the tree's own namespace (if it had
/// one), `dumped` the one it was in.
pub(super) fn plan(
    src: &super::read::Source<'_>,
    mode: &super::NetMode,
    own: Option<dormant_image::records::NsId>,
    dumped: Option<dormant_image::records::NsId>,
) -> Result<super::NetPlan> {
    use super::{NetMode, NetPlan};
    use dormant_image::records::{ns_names, NsState};
    let mode = match mode {
        NetMode::AsDumped if own.is_some() => &NetMode::Private,
        NetMode::AsDumped => &NetMode::Inherit,
        other => other,
    };
    Ok(match mode {
        NetMode::AsDumped | NetMode::Inherit => {
            if let Some(id) = own {
                log::info!(
                    "the tree had network namespace {id} of its own; it joins the restorer's (pass a \
                     namespace path or private mode to change that)"
                );
            }
            NetPlan::Inherit
        }
        NetMode::External(p) => NetPlan::Join(p.clone()),
        NetMode::Private => {
            let loopback_up = match dumped {
                Some(id) if src.img.has_file(&ns_names::net(id)) => {
                    src.state(&ns_names::net(id), |s| match s {
                        NsState::Net(n) => Ok(n.loopback_up),
                        other => Err(other),
                    })?
                }
                _ => true,
            };
            NetPlan::Private { loopback_up }
        }
    })
}
