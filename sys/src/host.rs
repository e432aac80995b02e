//! Host-side wrappers of the calls that neither nix nor libc wrap: every one is the single place its
//! call is made, so the dump, the restore and the kerndat probes run the same code (a probe cannot pass
//! while the real path differs). Each does one call; errors are the errno.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use crate::pagemap::PmScanArg;
use crate::process::CloneArgs;
use crate::ptrace::{
    PeekSiginfoArgs, SeccompMetadata, PTRACE_GETSIGMASK, PTRACE_GET_RSEQ_CONFIGURATION,
    PTRACE_PEEKSIGINFO, PTRACE_PEEKSIGINFO_SHARED, PTRACE_SECCOMP_GET_FILTER,
    PTRACE_SECCOMP_GET_METADATA, PTRACE_SETSIGMASK,
};
use crate::regs::{NT_X86_XSTATE, XSTATE_MAX};
use crate::rseq::RseqConfiguration;
use crate::signal::SIGINFO_SIZE;

/// A raw `syscall()`/`ptrace()` return as a Result.
pub fn check(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// Takes ownership of a descriptor a syscall just returned.
pub fn owned_fd(ret: libc::c_long) -> Result<OwnedFd, Errno> {
    let fd = RawFd::try_from(check(ret)?).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just returned `fd` as a new descriptor of this process; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

// --- processes -------------------------------------------------------------------------------------

/// clone3 as a fork (no `CLONE_VM` in `args.flags`): the child's pid in the parent, 0 in the child.
///
/// # Safety
/// The child is a copy of a possibly multi-threaded parent: it may only run async-signal-safe code (no
/// allocation, no locks another thread could hold) until it execs or exits. `args` must not ask for
/// `CLONE_VM` (the child would share this stack), and the memory `args.set_tid` points at must be live.
pub unsafe fn clone3(args: &CloneArgs) -> Result<i32, Errno> {
    // SAFETY: the caller's contract; `args` outlives the call and the kernel reads its size in bytes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    check(ret).map(|pid| pid as i32)
}

/// pidfd_open(pid, flags): a descriptor of the process `pid` leads.
pub fn pidfd_open(pid: i32, flags: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd; no memory is passed.
    owned_fd(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) })
}

/// pidfd_getfd: a copy, in this process, of fd `target_fd` of the process behind `pidfd` (same open file
/// description, `O_CLOEXEC`; needs ptrace rights over it).
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, target_fd: RawFd) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_getfd takes two descriptor numbers and flags and returns a new fd.
    owned_fd(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target_fd, 0) })
}

const KCMP_FILE: libc::c_int = 0;

/// kcmp(KCMP_FILE): whether fd `fd1` of `pid1` and fd `fd2` of `pid2` are the same open file description.
pub fn kcmp_same_file(pid1: i32, fd1: RawFd, pid2: i32, fd2: RawFd) -> Result<bool, Errno> {
    // SAFETY: kcmp only compares kernel objects named by pids and fd numbers; no memory is passed.
    let ret = check(unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid1,
            pid2,
            KCMP_FILE,
            fd1 as libc::c_ulong,
            fd2 as libc::c_ulong,
        )
    })?;
    Ok(ret == 0)
}

/// `kcmp` types comparing whole per-task objects: the fd table and the fs struct (cwd, root, umask).
pub const KCMP_FILES: libc::c_int = 2;
pub const KCMP_FS: libc::c_int = 3;

/// kcmp of a per-task object (`KCMP_FILES`, `KCMP_FS`, ...): whether tasks `pid1` and `pid2` share it.
pub fn kcmp_same(pid1: i32, pid2: i32, kind: libc::c_int) -> Result<bool, Errno> {
    // SAFETY: kcmp only compares kernel objects named by pids; no memory is passed.
    let ret = check(unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, kind, 0, 0) })?;
    Ok(ret == 0)
}

/// `kcmp` type comparing a task's fd with a file registered in an epoll.
pub const KCMP_EPOLL_TFD: libc::c_int = 7;

/// `struct kcmp_epoll_slot`: which registration of epoll `efd` (the `toff`-th with fd number `tfd`).
#[repr(C)]
struct KcmpEpollSlot {
    efd: u32,
    tfd: u32,
    toff: u32,
}

/// Whether fd `fd1` of `pid1` is the file registered as the `toff`-th watch with fd number `tfd` in the
/// epoll `efd` of `pid2` (kcmp `KCMP_EPOLL_TFD`). `ENOENT` when the epoll has no such registration.
pub fn kcmp_epoll_target(
    pid1: i32,
    fd1: RawFd,
    pid2: i32,
    efd: RawFd,
    tfd: RawFd,
    toff: u32,
) -> Result<bool, Errno> {
    let slot = KcmpEpollSlot {
        efd: efd as u32,
        tfd: tfd as u32,
        toff,
    };
    // SAFETY: kcmp reads one kcmp_epoll_slot from our stack; it writes nothing.
    let ret = check(unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid1,
            pid2,
            KCMP_EPOLL_TFD,
            fd1 as libc::c_ulong,
            &slot as *const KcmpEpollSlot as libc::c_ulong,
        )
    })?;
    Ok(ret == 0)
}

// --- ptrace ----------------------------------------------------------------------------------------

/// PTRACE_GETREGSET `note` into `buf`; how many bytes the kernel filled.
pub fn ptrace_getregset(tid: i32, note: u32, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: the kernel writes at most iov_len bytes into `buf` (alive and writable for the call) and
    // updates iov_len, which lives on this stack.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGSET,
            tid,
            note as usize as *mut libc::c_void,
            &mut iov as *mut libc::iovec as *mut libc::c_void,
        )
    };
    check(ret)?;
    Ok(iov.iov_len)
}

/// PTRACE_SETREGSET `note` from `buf`.
pub fn ptrace_setregset(tid: i32, note: u32, buf: &[u8]) -> Result<(), Errno> {
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: SETREGSET only reads iov_len bytes from `buf`, which is alive for the call.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_SETREGSET,
            tid,
            note as usize as *mut libc::c_void,
            &mut iov as *mut libc::iovec as *mut libc::c_void,
        )
    };
    check(ret).map(drop)
}

/// The thread's XSAVE image (`NT_X86_XSTATE`: standard format, XCR0 in the first software word), exactly
/// as long as the kernel's regset.
pub fn get_xstate(tid: i32) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; XSTATE_MAX];
    let n = ptrace_getregset(tid, NT_X86_XSTATE, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// Puts back an XSAVE image read by [`get_xstate`].
pub fn set_xstate(tid: i32, xstate: &[u8]) -> Result<(), Errno> {
    ptrace_setregset(tid, NT_X86_XSTATE, xstate)
}

/// PTRACE_GETSIGMASK: the blocked mask of a ptrace-stopped thread.
pub fn get_sigmask(tid: i32) -> Result<u64, Errno> {
    let mut mask = 0u64;
    // SAFETY: the kernel writes `addr` (= 8, the kernel's sigset size) bytes to `data`, a live u64.
    let ret = unsafe {
        libc::ptrace(
            PTRACE_GETSIGMASK as libc::c_uint,
            tid,
            std::mem::size_of::<u64>() as *mut libc::c_void,
            &mut mask as *mut u64 as *mut libc::c_void,
        )
    };
    check(ret)?;
    Ok(mask)
}

/// PTRACE_SETSIGMASK: sets the blocked mask of a ptrace-stopped thread.
///
/// Kernel fact worth knowing: it also clears TIF_RESTORE_SIGMASK, so a thread stopped inside
/// ppoll/pselect6/epoll_pwait/rt_sigsuspend (which run with a temporary mask) keeps the temporary mask
/// instead of reverting to its saved one.
pub fn set_sigmask(tid: i32, mask: u64) -> Result<(), Errno> {
    // SAFETY: the kernel reads `addr` (= 8) bytes from `data`, a live u64.
    let ret = unsafe {
        libc::ptrace(
            PTRACE_SETSIGMASK as libc::c_uint,
            tid,
            std::mem::size_of::<u64>() as *mut libc::c_void,
            &mask as *const u64 as *mut libc::c_void,
        )
    };
    check(ret).map(drop)
}

/// PTRACE_PEEKSIGINFO: up to `buf.len() / SIGINFO_SIZE` queued siginfos from index `off` of the thread's
/// queue (or the process's, with `shared`), without dequeuing them; how many were copied.
pub fn peek_siginfo(tid: i32, shared: bool, off: u64, buf: &mut [u8]) -> Result<usize, Errno> {
    let args = PeekSiginfoArgs {
        off,
        flags: if shared { PTRACE_PEEKSIGINFO_SHARED } else { 0 },
        nr: i32::try_from(buf.len() / SIGINFO_SIZE).map_err(|_| Errno::EINVAL)?,
    };
    // SAFETY: the kernel writes at most `nr` siginfos into `buf`, which holds that many.
    let ret = unsafe {
        libc::ptrace(
            PTRACE_PEEKSIGINFO as libc::c_uint,
            tid,
            &args as *const PeekSiginfoArgs as *mut libc::c_void,
            buf.as_mut_ptr() as *mut libc::c_void,
        )
    };
    Ok(check(ret)? as usize)
}

/// PTRACE_GET_RSEQ_CONFIGURATION: where the thread registered its rseq area (a zero pointer: none).
pub fn get_rseq_configuration(tid: i32) -> Result<RseqConfiguration, Errno> {
    let mut conf = RseqConfiguration::default();
    // SAFETY: `addr` is the size of `conf` and `data` points at it; the kernel writes at most that much.
    let ret = unsafe {
        libc::ptrace(
            PTRACE_GET_RSEQ_CONFIGURATION as libc::c_uint,
            tid,
            std::mem::size_of::<RseqConfiguration>() as *mut libc::c_void,
            &mut conf as *mut RseqConfiguration as *mut libc::c_void,
        )
    };
    if check(ret)? as usize != std::mem::size_of::<RseqConfiguration>() {
        return Err(Errno::EMSGSIZE);
    }
    Ok(conf)
}

/// PTRACE_SECCOMP_GET_FILTER: the program of filter `index` (0 = the oldest) of the stopped tracee
/// `tid`; ENOENT past its newest filter.
pub fn seccomp_filter(tid: i32, index: u64) -> Result<Vec<crate::process::SockFilter>, Errno> {
    use crate::process::{SockFilter, BPF_MAXINSNS};
    // SAFETY: a null `data` only asks for the number of instructions; nothing is written.
    let count = check(unsafe {
        libc::ptrace(
            PTRACE_SECCOMP_GET_FILTER as libc::c_uint,
            tid,
            index as *mut libc::c_void,
            std::ptr::null_mut::<libc::c_void>(),
        )
    })? as usize;
    if count == 0 || count > BPF_MAXINSNS {
        return Err(Errno::EMSGSIZE);
    }
    let mut insns = vec![SockFilter::default(); count];
    // SAFETY: `data` points at `count` instructions, as many as the kernel just said it writes (the
    // tracee is stopped, so its filters cannot change in between).
    let got = check(unsafe {
        libc::ptrace(
            PTRACE_SECCOMP_GET_FILTER as libc::c_uint,
            tid,
            index as *mut libc::c_void,
            insns.as_mut_ptr() as *mut libc::c_void,
        )
    })? as usize;
    if got != count {
        return Err(Errno::EMSGSIZE);
    }
    Ok(insns)
}

/// PTRACE_SECCOMP_GET_METADATA: the flags the kernel kept for filter `index` (0 = the oldest) of `tid`.
pub fn seccomp_filter_flags(tid: i32, index: u64) -> Result<u64, Errno> {
    let mut md = SeccompMetadata {
        filter_off: index,
        flags: 0,
    };
    // SAFETY: `addr` is the size of `md` and `data` points at it; the kernel reads `filter_off` and
    // writes at most that many bytes.
    check(unsafe {
        libc::ptrace(
            PTRACE_SECCOMP_GET_METADATA as libc::c_uint,
            tid,
            std::mem::size_of::<SeccompMetadata>() as *mut libc::c_void,
            &mut md as *mut SeccompMetadata as *mut libc::c_void,
        )
    })?;
    Ok(md.flags)
}

// --- scheduling ------------------------------------------------------------------------------------

/// `sched_getattr(tid)`.
pub fn sched_getattr(tid: i32) -> Result<crate::process::SchedAttr, Errno> {
    let mut attr = crate::process::SchedAttr::default();
    let size = std::mem::size_of_val(&attr) as libc::c_uint;
    // SAFETY: the kernel writes at most `size` bytes into `attr`.
    check(unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            tid,
            &mut attr as *mut crate::process::SchedAttr,
            size,
            0u32,
        )
    })?;
    Ok(attr)
}

/// `sched_getaffinity(tid)`: the mask in 64-bit words, as long as the kernel's (`nr_cpu_ids` rounded up).
pub fn sched_getaffinity(tid: i32) -> Result<Vec<u64>, Errno> {
    let mut mask = vec![0u64; 16];
    // SAFETY: the kernel writes at most `mask.len() * 8` bytes into the buffer and returns how many.
    let len = check(unsafe {
        libc::syscall(
            libc::SYS_sched_getaffinity,
            tid,
            mask.len() * 8,
            mask.as_mut_ptr(),
        )
    })? as usize;
    mask.truncate(len.div_ceil(8));
    Ok(mask)
}

/// The nice value of thread `tid` (`getpriority(PRIO_PROCESS, tid)`; `sched_getattr` reports none for a
/// real-time thread, which keeps one all the same).
pub fn nice_of(tid: i32) -> Result<i32, Errno> {
    // SAFETY: takes and returns integers only; the raw call returns 20 - nice, never negative.
    let raw = check(unsafe { libc::syscall(libc::SYS_getpriority, libc::PRIO_PROCESS, tid) })?;
    Ok(20 - raw as i32)
}

/// `ioprio_get(IOPRIO_WHO_PROCESS, tid)`.
pub fn ioprio_get(tid: i32) -> Result<u32, Errno> {
    // SAFETY: takes and returns integers only.
    Ok(check(unsafe { libc::syscall(libc::SYS_ioprio_get, 1, tid) })? as u32)
}

// --- memory ----------------------------------------------------------------------------------------

/// One PAGEMAP_SCAN ioctl on an open `/proc/PID/pagemap`; the number of regions filled.
///
/// # Safety
/// `arg.vec` must point at `arg.vec_len` writable `PageRegion`s that stay alive for the call.
pub unsafe fn pagemap_scan(pagemap: BorrowedFd<'_>, arg: &mut PmScanArg) -> Result<usize, Errno> {
    // SAFETY: the caller's contract for `vec`; `arg` is a live pm_scan_arg the kernel updates.
    let ret = unsafe {
        libc::ioctl(
            pagemap.as_raw_fd(),
            crate::pagemap::PAGEMAP_SCAN as libc::c_ulong,
            arg as *mut PmScanArg,
        )
    };
    Ok(check(libc::c_long::from(ret))? as usize)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (project rule)
mod tests {
    use super::*;

    #[test]
    fn pidfd_of_self_takes_a_copy_of_an_fd() {
        let me = std::process::id() as i32;
        let pidfd = pidfd_open(me, 0).unwrap();
        let (r, _w) = nix::unistd::pipe().unwrap();
        let copy = pidfd_getfd(std::os::fd::AsFd::as_fd(&pidfd), r.as_raw_fd()).unwrap();
        assert!(kcmp_same_file(me, r.as_raw_fd(), me, copy.as_raw_fd()).unwrap());
        assert!(!kcmp_same_file(me, r.as_raw_fd(), me, _w.as_raw_fd()).unwrap());
    }
}
