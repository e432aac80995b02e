//! Pipes: size and buffered bytes, copied with `tee()` so the target's data stays where it is. The bytes
//! are carried once per pipe, on the first end met; an end whose other end only processes outside the dump
//! hold is refused, or recorded as external when the caller asked for that ([`Pipes::outside`]).

use dormant_image::records::DescKind;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use super::error::FdError;
use super::sys;

/// Where an end of a pipe or FIFO was met: (pid, fd, whether its other end was open anywhere then).
pub type EndSeen = (u32, i32, bool);

/// The pipes of one dump: which carried their bytes already, and every end met.
#[derive(Debug, Default)]
pub struct Pipes {
    with_data: HashSet<u64>,
    /// (pipe inode, write end) → where it was met.
    ends: HashMap<(u64, bool), EndSeen>,
}

impl Pipes {
    /// One end of pipe `ino`, fd `fd` of `pid` with open flags `flags` (`dup`: the dumper's copy).
    pub fn dump(
        &mut self,
        pid: u32,
        fd: i32,
        ino: u64,
        flags: u32,
        dup: &OwnedFd,
    ) -> Result<DescKind, FdError> {
        let write = flags & libc::O_ACCMODE as u32 == libc::O_WRONLY as u32;
        let peer = peer_open(dup, write)?;
        self.ends.insert((ino, write), (pid, fd, peer));
        let first = self.with_data.insert(ino);
        dump(pid, fd, ino, flags, dup, first)
    }

    /// The ends whose other end is open but held by no dumped task, which a restore would cut off: as
    /// (pipe inode, write end); or, when `external` is false, the refusal of the first with where it was
    /// met. With `external` they are recorded as external by the caller (the restore is handed a new one).
    pub fn outside(&self, external: bool) -> Result<Vec<(u64, bool)>, (u32, i32, FdError)> {
        let mut out = Vec::new();
        for (&(ino, write), &(pid, fd, peer_open)) in &self.ends {
            if !peer_open || self.ends.contains_key(&(ino, !write)) {
                continue;
            }
            let end = if write { "read" } else { "write" };
            if !external {
                return Err((
                    pid,
                    fd,
                    FdError::PeerOutside {
                        end,
                        what: format!("pipe:[{ino}]"),
                        hint: format!(
                            " (dump it as external with --external-pipes and restore with --inherit-fd \
                             fd[N]:pipe:[{ino}])"
                        ),
                    },
                ));
            }
            log::info!(
                "pid {pid} fd {fd}: the {end} end of pipe:[{ino}] is held outside the dump: dumped as \
                 external (restore with --inherit-fd fd[N]:pipe:[{ino}])"
            );
            out.push((ino, write));
        }
        Ok(out)
    }
}

/// Whether the other end of the pipe is still open somewhere (a read end without writers polls POLLHUP, a
/// write end without readers POLLERR). Asked before this module opens a read end of its own.
pub fn peer_open(dup: &OwnedFd, write: bool) -> Result<bool, FdError> {
    let mut p = libc::pollfd {
        fd: dup.as_raw_fd(),
        events: if write { libc::POLLOUT } else { libc::POLLIN },
        revents: 0,
    };
    // SAFETY: polls one pollfd on our stack without waiting.
    if unsafe { libc::poll(&mut p, 1, 0) } < 0 {
        return Err(FdError::last_os("poll"));
    }
    let gone = if write { libc::POLLERR } else { libc::POLLHUP };
    Ok(p.revents & gone == 0)
}

/// One end of pipe `ino`. `with_data`: this is the first end of the pipe met, which carries its bytes.
pub(super) fn dump(
    pid: u32,
    fd: i32,
    ino: u64,
    flags: u32,
    dup: &OwnedFd,
    with_data: bool,
) -> Result<DescKind, FdError> {
    let write = flags & libc::O_ACCMODE as u32 == libc::O_WRONLY as u32;
    // SAFETY: F_GETPIPE_SZ takes no argument and returns the size or -1.
    let size = unsafe { libc::fcntl(dup.as_raw_fd(), libc::F_GETPIPE_SZ) };
    if size < 0 {
        return Err(FdError::last_os("F_GETPIPE_SZ"));
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
fn copy_buffered(pid: u32, fd: i32, size: i32, dup: &OwnedFd) -> Result<Vec<u8>, FdError> {
    let queued = sys::bytes_queued(dup).map_err(FdError::sys("FIONREAD"))?;
    if queued == 0 {
        return Ok(Vec::new());
    }
    let path = format!("/proc/{pid}/fd/{fd}");
    let src = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .map_err(FdError::sys(format!("opening {path} for reading")))?;
    let (ours_r, ours_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
            .map_err(FdError::errno("pipe2"))?;
    // SAFETY: F_SETPIPE_SZ on our own pipe; returns the new size or -1.
    if unsafe { libc::fcntl(ours_w.as_raw_fd(), libc::F_SETPIPE_SZ, size) } < 0 {
        return Err(FdError::last_os(format!(
            "F_SETPIPE_SZ {size} on the copy pipe"
        )));
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
        return Err(FdError::last_os("tee"));
    }
    if n as usize != queued {
        return Err(FdError::ShortTee { copied: n, queued });
    }
    drop(ours_w);
    let mut data = Vec::with_capacity(queued);
    std::fs::File::from(ours_r)
        .read_to_end(&mut data)
        .map_err(FdError::sys("reading the copied bytes"))?;
    Ok(data)
}
