//! memfd: the name from the link target (`/memfd:NAME (deleted)`), the content read with `pread` on the
//! dumper's copy (the shared offset does not move), the seals.

use std::os::fd::{AsRawFd, OwnedFd};

use dormant_image::records::DescKind;

use super::error::FdError;

/// memfd or unlinked-file content larger than this is refused (it would be carried in the image).
pub const MEMFD_MAX: u64 = 256 << 20;

/// The whole content of the file behind `dup`, refused above [`MEMFD_MAX`] (`what` names it). Read
/// through a read-only `O_NOATIME` open of the dumper's copy's `/proc/self/fd` link (same inode, a
/// description of its own): the process's description may be write-only or `O_PATH`, its offset must not
/// move, and the dump must not change the file's access time, which the image carries.
pub fn read_content(dup: &OwnedFd, what: &'static str) -> Result<Vec<u8>, FdError> {
    use std::os::unix::fs::OpenOptionsExt;
    let st = nix::sys::stat::fstat(dup).map_err(FdError::errno("fstat"))?;
    let link = format!("/proc/self/fd/{}", dup.as_raw_fd());
    let readable = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(&link)
        .map_err(FdError::sys(format!("reopening the {what} read-only")))?;
    read_all(&OwnedFd::from(readable), st.st_size.max(0) as u64, what)
}

/// `size` bytes of `fd` read with `pread` from offset 0, refused above [`MEMFD_MAX`].
pub(super) fn read_all(dup: &OwnedFd, size: u64, what: &'static str) -> Result<Vec<u8>, FdError> {
    if size > MEMFD_MAX {
        return Err(FdError::TooLarge {
            what,
            size,
            limit: MEMFD_MAX,
        });
    }
    let mut data = vec![0u8; size as usize];
    let mut off = 0usize;
    while off < data.len() {
        match nix::sys::uio::pread(dup, &mut data[off..], off as i64) {
            Ok(0) => break,
            Ok(n) => off += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(FdError::errno(format!("reading the content at {off}"))(e)),
        }
    }
    data.truncate(off);
    Ok(data)
}

/// The description of a memfd whose link target is `target`, at file position `pos`.
pub fn dump(target: &str, pos: u64, dup: &OwnedFd) -> Result<DescKind, FdError> {
    let name = target
        .strip_prefix("/memfd:")
        .unwrap_or(target)
        .trim_end_matches(" (deleted)")
        .to_string();
    let data = read_content(dup, "memfd")?;
    // SAFETY: F_GET_SEALS takes no argument and returns the seal bits or -1.
    let seals = unsafe { libc::fcntl(dup.as_raw_fd(), libc::F_GET_SEALS) };
    Ok(DescKind::Memfd {
        name,
        data,
        pos,
        seals: seals.max(0) as u32,
    })
}
