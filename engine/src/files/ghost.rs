//! Regular files unlinked while open ("ghost" files): the content (read with `pread`, the shared offset
//! does not move) and mode are carried, and restore recreates the file at its old path and unlinks it.

use std::os::fd::OwnedFd;

use dormant_image::records::DescKind;

use super::error::FdError;
use super::memfd;

/// The description of an unlinked file whose link target is `target` (`PATH (deleted)`), at position
/// `pos`.
pub fn dump(target: &str, pos: u64, dup: &OwnedFd) -> Result<DescKind, FdError> {
    let st = nix::sys::stat::fstat(dup).map_err(FdError::errno("fstat"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_nlink != 0 {
        return Err(FdError::NotUnlinkedFile {
            target: target.to_string(),
        });
    }
    let data = memfd::read_content(dup, "unlinked file")?;
    Ok(DescKind::Ghost {
        path: target.trim_end_matches(" (deleted)").to_string(),
        mode: st.st_mode & 0o7777,
        data,
        pos,
    })
}
