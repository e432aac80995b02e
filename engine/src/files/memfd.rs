//! memfd: the name from the link target (`/memfd:NAME (deleted)`), the content read with `pread` on the
//! dumper's copy (the shared offset does not move), the seals.

use std::os::fd::{AsRawFd, OwnedFd};

use dormant_image::records::DescKind;

use super::error::FdError;

/// memfd or unlinked-file content larger than this is refused (it would be carried in the image).
pub const MEMFD_MAX: u64 = 256 << 20;

/// The whole content of the file behind `dup`, refused above [`MEMFD_MAX`] (`what` names it).
pub fn read_content(dup: &OwnedFd, what: &'static str) -> Result<Vec<u8>, FdError> {
    let st = nix::sys::stat::fstat(dup).map_err(FdError::errno("fstat"))?;
    let size = st.st_size.max(0) as u64;
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
