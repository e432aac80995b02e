//! Descriptors the restorer opens for one task (its fds' descriptions, the files behind its mappings, its
//! page store, its exe, the report pipe), numbered above every fd the task had: moving the task's fds to
//! their numbers in the child then never overwrites one of them.

use std::os::fd::{AsFd, OwnedFd, RawFd};

use dormant_image::records::Fd;
use nix::fcntl::{fcntl, FcntlArg};

use crate::error::RestoreError;

/// Helper fds, all numbered at or above `base`.
#[derive(Debug)]
pub struct HelperFds {
    base: RawFd,
    owned: Vec<OwnedFd>,
    /// Those the blob uses (and closes): mapped files, shared memory, the page store, the exe.
    blob: Vec<RawFd>,
}

impl HelperFds {
    /// Numbered above every fd in `fds`, above `also` (an fd number the child uses for a moment, such as
    /// the closed number an epoll watch is keyed by) and above 0-2.
    pub fn above(fds: &[Fd], also: RawFd) -> Self {
        let max_target_fd = fds.iter().map(|f| f.fd).max().unwrap_or(-1).max(also);
        HelperFds {
            base: (max_target_fd + 1).max(3),
            owned: Vec::new(),
            blob: Vec::new(),
        }
    }

    /// Moves `fd` to the lowest free number >= base; returns the new number (owned by `self`).
    pub fn lift(&mut self, fd: impl AsFd, what: &str) -> Result<RawFd, RestoreError> {
        let new = fcntl(fd.as_fd(), FcntlArg::F_DUPFD_CLOEXEC(self.base)).map_err(|e| {
            RestoreError::sys(format!("moving the fd of {what} above {}", self.base), e)
        })?;
        // SAFETY: F_DUPFD_CLOEXEC returned a fresh fd that nothing else owns.
        let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(new) };
        self.owned.push(owned);
        Ok(new)
    }

    /// [`lift`](Self::lift) for an fd the blob uses and closes.
    pub fn lift_for_blob(&mut self, fd: impl AsFd, what: &str) -> Result<RawFd, RestoreError> {
        let new = self.lift(fd, what)?;
        self.blob.push(new);
        Ok(new)
    }

    /// The fds the blob uses, in the order they were lifted.
    pub fn blob_fds(&self) -> &[RawFd] {
        &self.blob
    }

    /// A new report pipe: its write end lifted (and returned, not kept here) with its number, and the read
    /// end the tracer reads.
    pub fn report_pipe(&mut self) -> Result<ReportPipe, RestoreError> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| RestoreError::sys("pipe2", e))?;
        let fd = self.lift(&write, "the report pipe")?;
        drop(write);
        let write = self
            .owned
            .pop()
            .ok_or_else(|| RestoreError::Blob("report pipe fd lost".into()))?;
        Ok(ReportPipe { fd, write, read })
    }

    /// Every helper fd, for the launch to hold until the fork.
    pub fn into_owned(self) -> Vec<OwnedFd> {
        self.owned
    }
}

/// The pipe a task reports its restore's outcome on.
#[derive(Debug)]
pub struct ReportPipe {
    /// The write end's number (the same in the child).
    pub fd: RawFd,
    pub write: OwnedFd,
    pub read: OwnedFd,
}
