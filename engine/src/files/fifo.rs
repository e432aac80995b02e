//! FIFOs (named pipes) opened by path: the path and identity of the FIFO, its size, and the buffered bytes
//! (copied with the pipe module's `tee`, so nothing is consumed). Restore reopens the path; the bytes are
//! carried once per FIFO, on the first end met. An end kept open outside the dump is refused: it would
//! also keep the buffered bytes, which restore would then write a second time.
//!
//! A FIFO unlinked while open keeps the kernel's ` (deleted)` in its path, which tells restore to make a
//! new one (once, for all its ends) rather than open the path; its owner, mode and times go to
//! `inode-attrs` with its first end met.

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;

use dormant_image::records::{DescId, DescKind, InodeAttrs};

use super::error::FdError;
use super::kind::FifoKey;
use super::pipe::{self, EndSeen};
use super::table::DELETED;

/// The FIFO behind `/proc/<pid>/fd/<fd>`, if it is one (a path target whose inode is `S_IFIFO`).
pub fn identify(pid: u32, fd: i32) -> Option<FifoKey> {
    let md = std::fs::metadata(format!("/proc/{pid}/fd/{fd}")).ok()?;
    (md.mode() & libc::S_IFMT == libc::S_IFIFO).then(|| (md.dev(), md.ino()))
}

/// The FIFOs of one dump: which carried their bytes already, and every end met (an `O_RDWR` open counts
/// as both ends).
#[derive(Debug, Default)]
pub struct Fifos {
    with_data: HashSet<FifoKey>,
    ends: HashMap<(FifoKey, bool), EndSeen>,
    /// Unlinked FIFOs whose attributes were recorded.
    unlinked: HashSet<FifoKey>,
}

impl Fifos {
    /// One open of the FIFO `key` whose link target is `target`: fd `fd` of `pid`, open flags `flags`.
    pub fn dump(
        &mut self,
        pid: u32,
        fd: i32,
        target: &str,
        key: FifoKey,
        flags: u32,
        dup: &OwnedFd,
    ) -> Result<DescKind, FdError> {
        let access = flags & libc::O_ACCMODE as u32;
        if access == libc::O_RDWR as u32 {
            self.ends.insert((key, false), (pid, fd, false));
            self.ends.insert((key, true), (pid, fd, false));
        } else {
            let write = access == libc::O_WRONLY as u32;
            let peer = pipe::peer_open(dup, write)?;
            self.ends.entry((key, write)).or_insert((pid, fd, peer));
        }
        let first = self.with_data.insert(key);
        let DescKind::PipeEnd { size, data, .. } = pipe::dump(pid, fd, key.1, 0, dup, first)?
        else {
            return Err(FdError::Parse("pipe state of the FIFO not readable".into()));
        };
        Ok(DescKind::Fifo {
            path: target.to_string(),
            dev: key.0,
            ino: key.1,
            size,
            data,
        })
    }

    /// The owner, mode and times of FIFO `key` for `inode-attrs` (description `id`), when its link target
    /// `target` says it was unlinked and no other end recorded them yet. A FIFO still linked under a name
    /// that itself ends in ` (deleted)` is refused: restore could not tell it from an unlinked one.
    pub fn unlinked_attrs(
        &mut self,
        key: FifoKey,
        target: &str,
        id: DescId,
        dup: &OwnedFd,
    ) -> Result<Option<InodeAttrs>, FdError> {
        if !target.ends_with(DELETED) {
            return Ok(None);
        }
        let st = nix::sys::stat::fstat(dup).map_err(FdError::errno("fstat"))?;
        if st.st_nlink != 0 {
            return Err(FdError::UnlinkedFifo {
                target: target.to_string(),
            });
        }
        Ok(self
            .unlinked
            .insert(key)
            .then(|| super::inode::attrs_of(id, &st)))
    }

    /// Refuses an end whose other end is open in a process outside the dump: where it was met and why.
    pub fn check_outside(&self) -> Result<(), (u32, i32, FdError)> {
        for (&(key, write), &(pid, fd, peer_open)) in &self.ends {
            if peer_open && !self.ends.contains_key(&(key, !write)) {
                return Err((
                    pid,
                    fd,
                    FdError::PeerOutside {
                        end: if write { "read" } else { "write" },
                        what: format!("this FIFO (inode {})", key.1),
                        hint: String::new(),
                    },
                ));
            }
        }
        Ok(())
    }
}
