//! Small fd-level helpers every kind of description uses: errno checks, owning a new fd, writing a buffer
//! whole, socket addresses and options. They hold no state of any kind.

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

/// What was being done, and the errno.
pub(super) type Failure = (String, Errno);

/// A `sockaddr_in`/`sockaddr_in6` for `addr` (IPv4 in the first 4 bytes) and its length.
pub(super) fn sockaddr(
    family: i32,
    (a, port): ([u8; 16], u16),
) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = if family == libc::AF_INET {
        // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in.
        let sin =
            unsafe { &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_port = port.to_be();
        sin.sin_addr.s_addr = u32::from_be_bytes([a[0], a[1], a[2], a[3]]).to_be();
        std::mem::size_of::<libc::sockaddr_in>()
    } else {
        // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in6.
        let sin6 =
            unsafe { &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
        sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sin6.sin6_port = port.to_be();
        sin6.sin6_addr.s6_addr = a;
        std::mem::size_of::<libc::sockaddr_in6>()
    };
    (ss, len as libc::socklen_t)
}

/// `setsockopt` with a plain value of type `T`.
pub(super) fn set_raw<T>(
    fd: &OwnedFd,
    level: i32,
    name: i32,
    v: &T,
    what: &str,
) -> Result<(), Failure> {
    // SAFETY: the kernel reads `size_of_val(v)` bytes from `v`, which is a valid reference.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of_val(v) as libc::socklen_t,
        )
    })
    .map(|_| ())
    .map_err(|e| (format!("setsockopt {what}"), e))
}

/// `setsockopt` with an int.
pub(super) fn set_int(
    fd: &OwnedFd,
    level: i32,
    name: i32,
    v: libc::c_int,
    what: &str,
) -> Result<(), Failure> {
    set_raw(fd, level, name, &v, what)
}
