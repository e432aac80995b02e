//! Small fd-level helpers every kind of description uses: errno checks, owning a new fd, writing a buffer
//! whole. They hold no state of any kind.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

/// `r`, or the errno when it is negative.
pub(super) fn check(r: libc::c_int) -> Result<libc::c_int, Errno> {
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

/// The new fd returned by a creating syscall, owned.
pub(super) fn owned(r: libc::c_int) -> Result<OwnedFd, Errno> {
    let fd = check(r)?;
    // SAFETY: `fd` was just returned by a syscall that creates a new fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Writes every byte of `bytes` to `fd` (retrying short writes and EINTR).
pub(super) fn write_all(fd: &OwnedFd, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(0) => return Err(Errno::EIO),
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// An ioctl that writes one int.
pub(super) fn ioctl_int(fd: &OwnedFd, req: libc::Ioctl) -> Result<libc::c_int, Errno> {
    let mut v: libc::c_int = 0;
    // SAFETY: the request writes one int into `v` on our stack.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut v) })?;
    Ok(v)
}

/// The errno of an io error (EIO when it carries none).
pub(super) fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// `ns` nanoseconds as a timespec.
pub(super) fn timespec(ns: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    }
}

/// `/proc/self/fd/N` of `fd`, NUL-terminated: reopening through it gives a new description of the same
/// inode with other flags.
pub(super) fn proc_fd_path(fd: &OwnedFd) -> Result<std::ffi::CString, (String, Errno)> {
    std::ffi::CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|_| ("proc path".to_string(), Errno::EINVAL))
}
