//! memfd: the name from the link target (`/memfd:NAME (deleted)`), the content read with `pread` on the
//! dumper's copy (the shared offset does not move), the seals.

use std::os::fd::{AsRawFd, OwnedFd};

use dormant_image::records::DescKind;

use super::error::FdError;

/// The content of a carried inode (memfd, unlinked file), open for the dumper to store in the image's
/// page store of its description once every fd is dumped (`desc-contents`).
#[derive(Debug)]
pub struct Content {
    pub file: std::fs::File,
    pub size: u64,
}

/// The content of the file behind `dup` (`what` names it). Read through a read-only `O_NOATIME` open of
/// the dumper's copy's `/proc/self/fd` link (same inode, a description of its own): the process's
/// description may be write-only or `O_PATH`, its offset must not move, and the dump must not change the
/// file's access time, which the image carries.
pub fn content(dup: &OwnedFd, what: &'static str) -> Result<Content, FdError> {
    use std::os::unix::fs::OpenOptionsExt;
    let st = nix::sys::stat::fstat(dup).map_err(FdError::errno("fstat"))?;
    let link = format!("/proc/self/fd/{}", dup.as_raw_fd());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(&link)
        .map_err(FdError::sys(format!("reopening the {what} read-only")))?;
    Ok(Content {
        file,
        size: st.st_size.max(0) as u64,
    })
}

/// The description of a memfd whose link target is `target`, at file position `pos`, and its content
/// (stored apart: the description's `data` is empty).
pub fn dump(target: &str, pos: u64, dup: &OwnedFd) -> Result<(DescKind, Content), FdError> {
    let name = target
        .strip_prefix("/memfd:")
        .unwrap_or(target)
        .trim_end_matches(" (deleted)")
        .to_string();
    let on = nix::sys::statfs::fstatfs(dup).map_err(FdError::errno("fstatfs"))?;
    if on.filesystem_type() == nix::sys::statfs::HUGETLBFS_MAGIC {
        return Err(FdError::HugetlbMemfd { name });
    }
    let content = content(dup, "memfd")?;
    // SAFETY: F_GET_SEALS takes no argument and returns the seal bits or -1.
    let seals = unsafe { libc::fcntl(dup.as_raw_fd(), libc::F_GET_SEALS) };
    let desc = DescKind::Memfd {
        name,
        data: Vec::new(),
        pos,
        seals: seals.max(0) as u32,
    };
    Ok((desc, content))
}
