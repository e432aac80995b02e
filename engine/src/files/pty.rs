//! Pseudo-terminal pairs whose master and slave are both held in the dumped tree. Everything is read
//! through the pidfd_getfd copy of an end, without reading or writing the terminal: termios and window
//! size ioctls on a master act on its slave, and packet mode and the slave lock are the master's. Bytes
//! still queued in either direction cannot be read back without consuming them, so a pair with queued
//! bytes is refused.

use std::os::fd::{AsRawFd, OwnedFd};

use dormant_image::records::{DescKind, PtyState};

/// `ioctl(fd, req, &mut u32-sized value)`, or the error text.
fn ioctl_int(fd: &OwnedFd, req: libc::Ioctl, what: &str) -> Result<libc::c_int, String> {
    let mut v: libc::c_int = 0;
    // SAFETY: the request writes one int into `v` on our stack.
    if unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut v) } != 0 {
        return Err(format!("{what}: {}", std::io::Error::last_os_error()));
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
pub fn dump(dup: &OwnedFd, master: bool, target: &str) -> Result<DescKind, String> {
    let index = if master {
        ioctl_int(dup, libc::TIOCGPTN, "TIOCGPTN")? as u32
    } else {
        slave_index(target).ok_or_else(|| format!("{target} is not a /dev/pts/N path"))?
    };
    let queued = ioctl_int(dup, libc::FIONREAD, "FIONREAD")?;
    if queued != 0 {
        return Err(format!(
            "pty {index}: {queued} byte(s) queued for the {} not read yet (they cannot be read without \
             taking them from the process)",
            if master { "master" } else { "slave" }
        ));
    }
    // SAFETY: termios is plain data; tcgetattr fills it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: writes one termios on our stack.
    if unsafe { libc::tcgetattr(dup.as_raw_fd(), &mut t) } != 0 {
        return Err(format!("tcgetattr: {}", std::io::Error::last_os_error()));
    }
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: writes one winsize on our stack.
    if unsafe { libc::ioctl(dup.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } != 0 {
        return Err(format!("TIOCGWINSZ: {}", std::io::Error::last_os_error()));
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
