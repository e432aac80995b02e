//! Pipes: both ends are created when the first of them is opened, with the dumped size and the bytes that
//! were buffered; the other end waits in [`PendingEnds`] for its own description.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::error::OpenFailure;
use super::raw::{check, write_all};

/// Ends created with an earlier description, by (pipe inode, is the write end).
#[derive(Debug, Default)]
pub struct PendingEnds(HashMap<(u64, bool), OwnedFd>);

/// The end `write` of pipe `pipe`: the one left over from its other end, or a new pipe of `size` bytes
/// holding `data`.
pub(super) fn open(
    ends: &mut PendingEnds,
    pipe: u64,
    write: bool,
    size: u32,
    data: Option<&[u8]>,
) -> Result<OwnedFd, OpenFailure> {
    if let Some(fd) = ends.0.remove(&(pipe, write)) {
        return Ok(fd);
    }
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two fds into `fds`.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })
        .map_err(OpenFailure::sys("pipe2"))?;
    // SAFETY: both fds were just created by pipe2 and are owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: F_SETPIPE_SZ on our own pipe.
    check(unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, size as libc::c_int) })
        .map_err(OpenFailure::sys(format!("F_SETPIPE_SZ {size}")))?;
    if let Some(bytes) = data {
        write_all(&w, bytes).map_err(OpenFailure::sys("writing the buffered bytes"))?;
    }
    let (mine, other) = if write { (w, r) } else { (r, w) };
    ends.0.insert((pipe, !write), other);
    Ok(mine)
}
