//! memfd: a new one with the dumped name, content, seals, access mode and offset (sealing allowed, so the
//! seals can be added back last). A memfd opened again read-only or write-only through
//! `/proc/PID/fd/N` is a description of its own with that access mode: the new memfd is reopened the same
//! way once it is filled and sealed (adding seals needs a writable description). Its owner, mode and times
//! are the dumped ones (`inode-attrs`), set before the seals.

use std::os::fd::{AsRawFd, OwnedFd};

use dormant_image::records::InodeAttrs;

use super::error::OpenFailure;
use super::ghost::Content;
use super::raw::{check, owned, proc_fd_path};

pub(super) fn open(
    name: &str,
    content: Content<'_>,
    pos: u64,
    seals: u32,
    flags: u32,
    attrs: Option<&InodeAttrs>,
) -> Result<OwnedFd, OpenFailure> {
    let cname = std::ffi::CString::new(name)
        .map_err(|_| OpenFailure::Bad(format!("name {name:?} holds a NUL byte")))?;
    // SAFETY: memfd_create reads the NUL-terminated name and returns a new fd.
    let fd = owned(unsafe {
        libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
    })
    .map_err(OpenFailure::sys("memfd_create"))?;
    content.write_into(&fd)?;
    // Before the seals: F_SEAL_EXEC forbids the chmod.
    if let Some(a) = attrs {
        super::inode::set(&fd, a)?;
    }
    if seals != 0 {
        // SAFETY: F_ADD_SEALS on our own memfd.
        check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals as libc::c_int) })
            .map_err(OpenFailure::sys(format!("F_ADD_SEALS {seals:#x}")))?;
    }
    let access = flags as i32 & libc::O_ACCMODE;
    let fd = if access == libc::O_RDWR {
        fd
    } else {
        let again = proc_fd_path(&fd)?;
        // SAFETY: open reads the NUL-terminated path and returns a new fd.
        owned(unsafe { libc::open(again.as_ptr(), access | libc::O_CLOEXEC) }).map_err(
            OpenFailure::sys(format!("reopening with access mode {access:#o}")),
        )?
    };
    nix::unistd::lseek(&fd, pos as i64, nix::unistd::Whence::SeekSet)
        .map_err(OpenFailure::sys(format!("seeking to {pos}")))?;
    Ok(fd)
}
