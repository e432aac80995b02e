//! Pseudo-terminal pairs whose two ends are both held in the tree: the master's description opens a new
//! pair (its index may differ from the dumped one) with the dumped termios, window size, packet mode and
//! lock, and keeps the slave for the slave's description, opened after it.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};

use dormant_image::records::PtyState;
use nix::errno::Errno;

use super::error::OpenFailure;
use super::raw::{check, ioctl_int, owned};

/// The slave of each pair opened so far, by dumped index, until its description is opened.
#[derive(Debug, Default)]
pub struct Slaves(HashMap<u32, OwnedFd>);

/// The master of dumped pair `index`: a new pair, whose slave waits in `slaves`.
pub(super) fn open_master(
    slaves: &mut Slaves,
    index: u32,
    state: &PtyState,
) -> Result<OwnedFd, OpenFailure> {
    let (master, slave) = open_pty(state)?;
    let now = ioctl_int(&master, libc::TIOCGPTN).map_err(OpenFailure::sys("TIOCGPTN"))?;
    if now as u32 != index {
        log::info!("pty {index} is restored as /dev/pts/{now}");
    }
    slaves.0.insert(index, slave);
    Ok(master)
}

/// The slave of dumped pair `index`, opened with its master.
pub(super) fn open_slave(slaves: &mut Slaves, index: u32) -> Result<OwnedFd, OpenFailure> {
    slaves.0.remove(&index).ok_or_else(|| {
        OpenFailure::Bad(format!(
            "/dev/pts/{index}: no master of that index in the image"
        ))
    })
}

/// A new pty pair (master, slave) with `state` applied: termios and window size through the slave, packet
/// mode and lock on the master (the lock last, once the slave is open).
fn open_pty(state: &PtyState) -> Result<(OwnedFd, OwnedFd), (&'static str, Errno)> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: opens a new pty master from a NUL-terminated literal path.
    let master =
        owned(unsafe { libc::open(c"/dev/ptmx".as_ptr(), flags) }).map_err(|e| ("/dev/ptmx", e))?;
    let zero: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from our stack.
    check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &zero) })
        .map_err(|e| ("unlocking the slave", e))?;
    // SAFETY: TIOCGPTPEER opens the pair's slave with `flags` and returns the new fd.
    let slave = owned(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) })
        .map_err(|e| ("TIOCGPTPEER", e))?;
    // SAFETY: termios is plain data; every field the kernel reads is set below.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    t.c_iflag = state.iflag;
    t.c_oflag = state.oflag;
    t.c_cflag = state.cflag;
    t.c_lflag = state.lflag;
    t.c_line = state.line;
    for (dst, src) in t.c_cc.iter_mut().zip(&state.cc) {
        *dst = *src;
    }
    t.c_ispeed = state.ispeed;
    t.c_ospeed = state.ospeed;
    // SAFETY: reads one termios from our stack.
    check(unsafe { libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t) })
        .map_err(|e| ("tcsetattr", e))?;
    let [ws_row, ws_col, ws_xpixel, ws_ypixel] = state.winsize;
    let ws = libc::winsize {
        ws_row,
        ws_col,
        ws_xpixel,
        ws_ypixel,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from our stack.
    check(unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &ws) })
        .map_err(|e| ("TIOCSWINSZ", e))?;
    if state.packet {
        let one: libc::c_int = 1;
        // SAFETY: TIOCPKT reads one int from our stack.
        check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCPKT, &one) })
            .map_err(|e| ("TIOCPKT", e))?;
    }
    if state.locked {
        let one: libc::c_int = 1;
        // SAFETY: TIOCSPTLCK reads one int from our stack.
        check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &one) })
            .map_err(|e| ("locking the slave", e))?;
    }
    Ok((master, slave))
}
