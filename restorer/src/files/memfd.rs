//! memfd: a new one with the dumped name, content, offset and seals (sealing allowed, so the seals can be
//! added back last).

use std::os::fd::{AsRawFd, OwnedFd};

use super::error::OpenFailure;
use super::raw::{check, owned, write_all};

pub(super) fn open(name: &str, data: &[u8], pos: u64, seals: u32) -> Result<OwnedFd, OpenFailure> {
    let cname = std::ffi::CString::new(name)
        .map_err(|_| OpenFailure::Bad(format!("name {name:?} holds a NUL byte")))?;
    // SAFETY: memfd_create reads the NUL-terminated name and returns a new fd.
    let fd = owned(unsafe {
        libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
    })
    .map_err(OpenFailure::sys("memfd_create"))?;
    write_all(&fd, data).map_err(OpenFailure::sys("writing the content"))?;
    nix::unistd::lseek(&fd, pos as i64, nix::unistd::Whence::SeekSet)
        .map_err(OpenFailure::sys(format!("seeking to {pos}")))?;
    if seals != 0 {
        // SAFETY: F_ADD_SEALS on our own memfd.
        check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals as libc::c_int) })
            .map_err(OpenFailure::sys(format!("F_ADD_SEALS {seals:#x}")))?;
    }
    Ok(fd)
}
