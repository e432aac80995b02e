//! Pseudo-terminal pairs whose master and slave are both held in the dumped tree. Everything is read
//! through the pidfd_getfd copy of an end, without reading or writing the terminal: termios and window
//! size ioctls on a master act on its slave, and packet mode and the slave lock are the master's. Bytes
//! still queued in either direction cannot be read back without consuming them, so a pair with queued
//! bytes is refused.

use std::os::fd::{AsRawFd, OwnedFd};

use std::collections::HashSet;

use dormant_image::records::{DescId, DescKind, FileDesc, PtyState};

use super::error::FdError;

/// `ioctl(fd, req, &mut u32-sized value)`.
fn ioctl_int(fd: &OwnedFd, req: libc::Ioctl, what: &'static str) -> Result<libc::c_int, FdError> {
    let mut v: libc::c_int = 0;
    // SAFETY: the request writes one int into `v` on our stack.
    if unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut v) } != 0 {
        return Err(FdError::last_os(what));
    }
    Ok(v)
}

/// The pts index of a slave path (`/dev/pts/N`).
pub fn slave_index(target: &str) -> Option<u32> {
    target.strip_prefix("/dev/pts/")?.parse().ok()
}

/// Whether `target` names a pty master.
pub fn is_master(target: &str) -> bool {
    target == "/dev/ptmx" || target == "/dev/pts/ptmx"
}

/// The record of one end (`dup` is our copy of it).
pub fn dump(dup: &OwnedFd, master: bool, target: &str) -> Result<DescKind, FdError> {
    let index = if master {
        ioctl_int(dup, libc::TIOCGPTN, "TIOCGPTN")? as u32
    } else {
        slave_index(target).ok_or_else(|| FdError::NotPtsPath {
            target: target.to_string(),
        })?
    };
    let queued = ioctl_int(dup, libc::FIONREAD, "FIONREAD")?;
    if queued != 0 {
        return Err(FdError::PtyQueued {
            index,
            bytes: queued,
            side: if master { "master" } else { "slave" },
        });
    }
    // SAFETY: termios is plain data; tcgetattr fills it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: writes one termios on our stack.
    if unsafe { libc::tcgetattr(dup.as_raw_fd(), &mut t) } != 0 {
        return Err(FdError::last_os("tcgetattr"));
    }
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: writes one winsize on our stack.
    if unsafe { libc::ioctl(dup.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } != 0 {
        return Err(FdError::last_os("TIOCGWINSZ"));
    }
    // Only the master answers these; a slave's record is never the one a pair is rebuilt from.
    let (packet, locked) = if master {
        (
            ioctl_int(dup, libc::TIOCGPKT, "TIOCGPKT")? != 0,
            ioctl_int(dup, libc::TIOCGPTLCK, "TIOCGPTLCK")? != 0,
        )
    } else {
        (false, false)
    };
    Ok(DescKind::Pty {
        master,
        index,
        state: PtyState {
            iflag: t.c_iflag,
            oflag: t.c_oflag,
            cflag: t.c_cflag,
            lflag: t.c_lflag,
            line: t.c_line,
            cc: t.c_cc.to_vec(),
            ispeed: t.c_ispeed,
            ospeed: t.c_ospeed,
            winsize: [ws.ws_row, ws.ws_col, ws.ws_xpixel, ws.ws_ypixel],
            packet,
            locked,
        },
    })
}

/// A pty slave is rebuilt with its master: refuses a slave whose master is not in the dump (the terminal
/// the dump was started from, say), naming its description.
pub fn check_masters(descs: &[FileDesc]) -> Result<(), (DescId, FdError)> {
    let masters: HashSet<u32> = descs
        .iter()
        .filter_map(|d| match d.kind {
            DescKind::Pty {
                master: true,
                index,
                ..
            } => Some(index),
            _ => None,
        })
        .collect();
    for d in descs {
        if let DescKind::Pty {
            master: false,
            index,
            ..
        } = d.kind
        {
            if !masters.contains(&index) {
                return Err((d.id, FdError::PtyMasterOutside { index }));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(slave_index("/dev/pts/7"), Some(7));
        assert_eq!(slave_index("/dev/pts/ptmx"), None);
        assert_eq!(slave_index("/dev/pts/"), None);
        assert!(is_master("/dev/ptmx") && is_master("/dev/pts/ptmx"));
        assert!(!is_master("/dev/pts/1"));
    }
}
