//! Unlinked ("ghost") regular files, carried with their content: an unnamed file (O_TMPFILE) in the
//! directory the file lived in, filled, then reopened through /proc/self/fd with the original access mode
//! and flags; its owner, mode and times are the dumped ones (`inode-attrs`), set once it is filled.

use std::os::fd::OwnedFd;

use dormant_image::records::InodeAttrs;
use nix::errno::Errno;

use super::raw::{owned, proc_fd_path, write_all};

pub(super) fn open(
    path: &str,
    mode: u32,
    flags: u32,
    data: &[u8],
    pos: u64,
    attrs: Option<&InodeAttrs>,
) -> Result<OwnedFd, (String, Errno)> {
    let dir = std::path::Path::new(path)
        .parent()
        .unwrap_or(std::path::Path::new("/"));
    let cdir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| (format!("directory of {path}"), Errno::EINVAL))?;
    // SAFETY: open reads the NUL-terminated path and returns a new fd.
    let tmp = owned(unsafe {
        libc::open(
            cdir.as_ptr(),
            libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })
    .map_err(|e| (format!("O_TMPFILE in {}", dir.display()), e))?;
    write_all(&tmp, data).map_err(|e| (format!("writing the content of {path}"), e))?;
    if let Some(a) = attrs {
        super::inode::set(&tmp, a)?;
    }
    let keep = flags
        & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY | libc::O_TMPFILE) as u32;
    let again = proc_fd_path(&tmp)?;
    // SAFETY: open reads the NUL-terminated path and returns a new fd.
    let fd = owned(unsafe { libc::open(again.as_ptr(), keep as libc::c_int | libc::O_CLOEXEC) })
        .map_err(|e| (format!("reopening the copy of {path}"), e))?;
    nix::unistd::lseek(&fd, pos as i64, nix::unistd::Whence::SeekSet)
        .map_err(|e| (format!("seeking {path} to {pos}"), e))?;
    Ok(fd)
}
