//! The inodes whose content the dump carries (unlinked files, memfds): their owner, mode and times for
//! `inode-attrs`, and the refusal of one such inode open through two descriptions (restore creates one new
//! inode per description, so they would no longer be one file).

use std::collections::HashMap;
use std::os::fd::OwnedFd;

use dormant_image::records::{DescId, FileTime, InodeAttrs};

use super::error::FdError;

/// The first fd (pid, fd) met on each carried inode and its description, by (dev, ino).
#[derive(Debug, Default)]
pub struct Carried {
    first: HashMap<(u64, u64), (u32, i32, DescId)>,
}

impl Carried {
    /// The attributes of description `id`, the dumper's copy `dup` of fd `fd` of `pid`; refused when
    /// another description of the dump is open on the same inode.
    pub fn add(
        &mut self,
        pid: u32,
        fd: i32,
        id: DescId,
        dup: &OwnedFd,
    ) -> Result<InodeAttrs, FdError> {
        let st = nix::sys::stat::fstat(dup).map_err(FdError::errno("fstat"))?;
        if let Some(&(first_pid, first_fd, _)) = self.first.get(&(st.st_dev, st.st_ino)) {
            return Err(FdError::CarriedInodeShared {
                what: "unlinked file or memfd",
                ino: st.st_ino,
                pid: first_pid,
                fd: first_fd,
            });
        }
        self.first.insert((st.st_dev, st.st_ino), (pid, fd, id));
        Ok(InodeAttrs {
            desc: id,
            uid: st.st_uid,
            gid: st.st_gid,
            mode: st.st_mode & 0o7777,
            atime: FileTime {
                sec: st.st_atime,
                nsec: st.st_atime_nsec as u32,
            },
            mtime: FileTime {
                sec: st.st_mtime,
                nsec: st.st_mtime_nsec as u32,
            },
        })
    }

    /// The description carrying inode `ino` of device `dev`, if the dump carries it.
    pub fn desc_of(&self, dev: u64, ino: u64) -> Option<DescId> {
        self.first.get(&(dev, ino)).map(|&(_, _, id)| id)
    }
}
