//! Pipes: size and buffered bytes, copied with `tee()` so the target's data stays where it is.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};

use dormant_image::records::DescKind;

use super::sys;

/// Whether the other end of the pipe is still open somewhere (a read end without writers polls POLLHUP, a
/// write end without readers POLLERR). Asked before this module opens a read end of its own.
pub fn peer_open(dup: &OwnedFd, write: bool) -> Result<bool, String> {
    let mut p = libc::pollfd {
        fd: dup.as_raw_fd(),
        events: if write { libc::POLLOUT } else { libc::POLLIN },
        revents: 0,
    };
    // SAFETY: polls one pollfd on our stack without waiting.
    if unsafe { libc::poll(&mut p, 1, 0) } < 0 {
        return Err(format!("poll: {}", std::io::Error::last_os_error()));
    }
    let gone = if write { libc::POLLERR } else { libc::POLLHUP };
    Ok(p.revents & gone == 0)
}

/// One end of pipe `ino`. `with_data`: this is the first end of the pipe met, which carries its bytes.
pub fn dump(
    pid: u32,
    fd: i32,
    ino: u64,
    flags: u32,
    dup: &OwnedFd,
    with_data: bool,
) -> Result<DescKind, String> {
    let write = flags & libc::O_ACCMODE as u32 == libc::O_WRONLY as u32;
    // SAFETY: F_GETPIPE_SZ takes no argument and returns the size or -1.
    let size = unsafe { libc::fcntl(dup.as_raw_fd(), libc::F_GETPIPE_SZ) };
    if size < 0 {
        return Err(format!("F_GETPIPE_SZ: {}", std::io::Error::last_os_error()));
    }
    let data = if with_data {
        Some(copy_buffered(pid, fd, size, dup)?)
    } else {
        None
    };
    Ok(DescKind::PipeEnd {
        pipe: ino,
        write,
        size: size as u32,
        data,
    })
}

/// The bytes in the pipe, without consuming them: a read end from /proc (works from either end), `tee`
/// into a pipe of ours as large as the target's, read ours.
fn copy_buffered(pid: u32, fd: i32, size: i32, dup: &OwnedFd) -> Result<Vec<u8>, String> {
    let queued = sys::bytes_queued(dup).map_err(|e| format!("FIONREAD: {e}"))?;
    if queued == 0 {
        return Ok(Vec::new());
    }
    let path = format!("/proc/{pid}/fd/{fd}");
    let src = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| format!("opening {path} for reading: {e}"))?;
    let (ours_r, ours_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
            .map_err(|e| format!("pipe2: {e}"))?;
    // SAFETY: F_SETPIPE_SZ on our own pipe; returns the new size or -1.
    if unsafe { libc::fcntl(ours_w.as_raw_fd(), libc::F_SETPIPE_SZ, size) } < 0 {
        return Err(format!(
            "F_SETPIPE_SZ {size} on the copy pipe: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: tee duplicates pipe buffers between two fds we hold; no memory is passed.
    let n = unsafe {
        libc::tee(
            src.as_raw_fd(),
            ours_w.as_raw_fd(),
            usize::MAX >> 1,
            libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        return Err(format!("tee: {}", std::io::Error::last_os_error()));
    }
    if n as usize != queued {
        return Err(format!("tee copied {n} of {queued} buffered bytes"));
    }
    drop(ours_w);
    let mut data = Vec::with_capacity(queued);
    std::fs::File::from(ours_r)
        .read_to_end(&mut data)
        .map_err(|e| format!("reading the copied bytes: {e}"))?;
    Ok(data)
}

use std::os::unix::fs::OpenOptionsExt;
