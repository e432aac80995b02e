//! The client's own fds named in options (images_dir_fd, work_dir_fd, status_fd) are numbers in the
//! CLIENT's fd table, not ours: they are reopened through `/proc/<client pid>/fd/N` (the pid from
//! SO_PEERCRED). This must happen before a restore moves us into the container's namespaces, where that
//! /proc view is gone.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use crate::error::RpcError;

/// The client process whose fds options refer to.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub pid: u32,
}

impl Peer {
    fn path(&self, fd: i32) -> PathBuf {
        PathBuf::from(format!("/proc/{}/fd/{fd}", self.pid))
    }

    /// Opens the client's directory fd `fd` (a new description of the same directory).
    pub fn open_dir(&self, fd: i32, what: &'static str) -> Result<File, RpcError> {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(self.path(fd))
            .map_err(|source| RpcError::PeerFd {
                pid: self.pid,
                fd,
                what,
                source,
            })
    }

    /// Opens the client's fd `fd` for writing (a pipe or file the client reads).
    pub fn open_write(&self, fd: i32, what: &'static str) -> Result<File, RpcError> {
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(self.path(fd))
            .map_err(|source| RpcError::PeerFd {
                pid: self.pid,
                fd,
                what,
                source,
            })
    }
}

/// A path naming an open fd of ours, usable as a directory path while the fd stays open (and while our
/// /proc shows our own fd table; for a restore the restorer takes its own hold before it moves).
pub fn self_fd_path(fd: &impl std::os::fd::AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}
