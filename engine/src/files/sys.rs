//! Small wrappers over the syscalls the file dumper needs and `nix` does not have: pidfd_getfd and kcmp
//! (dormant-sys's, shared with the parasite and the probes), fcntl owners, socket options.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// fcntl commands and `struct f_owner_ex` (not in the libc crate for this target).
const F_GETSIG: libc::c_int = 11;
const F_GETOWN_EX: libc::c_int = 16;

#[repr(C)]
struct FOwnerEx {
    kind: libc::c_int,
    pid: libc::pid_t,
}

/// A pidfd of a target task, used to take copies of its fds.
#[derive(Debug)]
pub struct TaskFds {
    pid: u32,
    pidfd: OwnedFd,
}

impl TaskFds {
    pub fn open(pid: u32) -> io::Result<Self> {
        let pidfd = dormant_sys::host::pidfd_open(pid as libc::pid_t, 0)?;
        Ok(Self { pid, pidfd })
    }

    /// A copy of the task's fd `fd` in this process (same open file description, `O_CLOEXEC`).
    pub fn get(&self, fd: i32) -> io::Result<OwnedFd> {
        Ok(dormant_sys::host::pidfd_getfd(self.pidfd.as_fd(), fd)?)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }
}

/// Whether fd `fd1` of `pid1` and fd `fd2` of `pid2` are the same open file description (kcmp).
pub fn same_description(pid1: u32, fd1: i32, pid2: u32, fd2: i32) -> io::Result<bool> {
    Ok(dormant_sys::host::kcmp_same_file(
        pid1 as libc::pid_t,
        fd1,
        pid2 as libc::pid_t,
        fd2,
    )?)
}

/// The owner of a description (`F_GETOWN_EX`, `F_GETSIG`); `None` when nobody is set.
pub fn owner(fd: &OwnedFd) -> io::Result<Option<dormant_image::records::FileOwner>> {
    let mut ex = FOwnerEx { kind: 0, pid: 0 };
    // SAFETY: F_GETOWN_EX writes one f_owner_ex into `ex` on our stack.
    if unsafe { libc::fcntl(fd.as_raw_fd(), F_GETOWN_EX, &mut ex) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if ex.pid == 0 {
        return Ok(None);
    }
    // SAFETY: F_GETSIG takes no argument and returns the signal or -1.
    let signal = unsafe { libc::fcntl(fd.as_raw_fd(), F_GETSIG) };
    Ok(Some(dormant_image::records::FileOwner {
        kind: ex.kind,
        pid: ex.pid as u32,
        signal: signal.max(0),
    }))
}

/// `int` socket option `opt` at `level`.
pub fn sockopt_int(fd: &OwnedFd, level: libc::c_int, opt: libc::c_int) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `v`, which lives on our stack.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

/// Sets `int` socket option `opt` at `level`.
pub fn set_sockopt_int(
    fd: &OwnedFd,
    level: libc::c_int,
    opt: libc::c_int,
    v: i32,
) -> io::Result<()> {
    // SAFETY: the kernel reads `sizeof(int)` bytes from `v` on our stack.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Bytes waiting to be read (`FIONREAD`).
pub fn bytes_queued(fd: &OwnedFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `n` on our stack.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
}

/// `getsockname`/`getpeername` into a `sockaddr_storage`; returns the address and its length.
pub fn sock_name(
    fd: &OwnedFd,
    peer: bool,
) -> io::Result<(libc::sockaddr_storage, libc::socklen_t)> {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let p = (&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr>();
    // SAFETY: the kernel writes at most `len` bytes into `ss` on our stack.
    let r = unsafe {
        if peer {
            libc::getpeername(fd.as_raw_fd(), p, &mut len)
        } else {
            libc::getsockname(fd.as_raw_fd(), p, &mut len)
        }
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((ss, len))
}
