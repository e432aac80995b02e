//! Thin typed wrappers over the ptrace requests nix does not cover (signal mask), and over the ones
//! it does, with errors that name the tid and the request.

use libc::{c_long, c_void, user_regs_struct};
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::error::ParasiteError;
use crate::remote::Tid;

/// `PTRACE_GETSIGMASK` (linux/ptrace.h); not exported by nix.
const PTRACE_GETSIGMASK: libc::c_uint = 0x420a;
/// `PTRACE_SETSIGMASK` (linux/ptrace.h).
const PTRACE_SETSIGMASK: libc::c_uint = 0x420b;

/// A thread's blocked-signal mask in the kernel's layout: bit `n - 1` is signal `n` (1..=64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SigMask(pub u64);

impl SigMask {
    /// Every signal blocked except `sig` (SIGKILL and SIGSTOP are never blockable; the kernel drops them).
    pub fn all_except(sig: Signal) -> Self {
        SigMask(!(1u64 << (sig as i32 - 1)))
    }
}

/// Read the blocked mask of a ptrace-stopped thread.
pub fn get_sigmask(tid: Tid) -> Result<SigMask, ParasiteError> {
    let mut mask: u64 = 0;
    // SAFETY: PTRACE_GETSIGMASK writes exactly `addr` (= 8, the kernel's sigset size) bytes to `data`,
    // which points at a live, writable u64.
    let rc = unsafe {
        libc::ptrace(
            PTRACE_GETSIGMASK,
            tid.0,
            std::mem::size_of::<u64>() as *mut c_void,
            &mut mask as *mut u64 as *mut c_void,
        )
    };
    check(rc, tid, "GETSIGMASK")?;
    Ok(SigMask(mask))
}

/// Set the blocked mask of a ptrace-stopped thread.
///
/// Kernel fact worth knowing: PTRACE_SETSIGMASK also clears TIF_RESTORE_SIGMASK, so a thread stopped
/// inside ppoll/pselect6/epoll_pwait/rt_sigsuspend (which run with a temporary mask) keeps the
/// temporary mask afterwards instead of reverting to its saved one.
pub fn set_sigmask(tid: Tid, mask: SigMask) -> Result<(), ParasiteError> {
    let value = mask.0;
    // SAFETY: PTRACE_SETSIGMASK reads exactly `addr` (= 8) bytes from `data`, a live u64.
    let rc = unsafe {
        libc::ptrace(
            PTRACE_SETSIGMASK,
            tid.0,
            std::mem::size_of::<u64>() as *mut c_void,
            &value as *const u64 as *mut c_void,
        )
    };
    check(rc, tid, "SETSIGMASK")
}

fn check(rc: c_long, tid: Tid, op: &'static str) -> Result<(), ParasiteError> {
    if rc == -1 {
        Err(ParasiteError::Ptrace {
            tid,
            op,
            source: nix::errno::Errno::last(),
        })
    } else {
        Ok(())
    }
}

pub(crate) fn getregs(tid: Tid) -> Result<user_regs_struct, ParasiteError> {
    ptrace::getregs(tid.pid()).map_err(|source| ParasiteError::Ptrace {
        tid,
        op: "GETREGS",
        source,
    })
}

pub(crate) fn setregs(tid: Tid, regs: user_regs_struct) -> Result<(), ParasiteError> {
    ptrace::setregs(tid.pid(), regs).map_err(|source| ParasiteError::Ptrace {
        tid,
        op: "SETREGS",
        source,
    })
}

/// Resume without delivering a signal (a pending-delivery SIGTRAP from our own int3 is discarded).
pub(crate) fn cont(tid: Tid) -> Result<(), ParasiteError> {
    ptrace::cont(tid.pid(), None).map_err(|source| ParasiteError::Ptrace {
        tid,
        op: "CONT",
        source,
    })
}

pub(crate) fn siginfo_code(tid: Tid) -> Result<i32, ParasiteError> {
    ptrace::getsiginfo(tid.pid())
        .map(|si| si.si_code)
        .map_err(|source| ParasiteError::Ptrace {
            tid,
            op: "GETSIGINFO",
            source,
        })
}

impl Tid {
    pub(crate) fn pid(self) -> Pid {
        Pid::from_raw(self.0)
    }
}

/// `NT_X86_XSTATE` (elf.h): the XSAVE image regset.
const NT_X86_XSTATE: libc::c_int = 0x202;
/// Largest XSAVE image we accept (AMX tiles included, with room to spare).
const XSTATE_MAX: usize = 64 * 1024;

/// The thread's full XSAVE image (standard format, software bytes included) as PTRACE_GETREGSET
/// returns it.
pub(crate) fn get_xstate(tid: Tid) -> Result<Vec<u8>, ParasiteError> {
    let mut buf = vec![0u8; XSTATE_MAX];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: GETREGSET writes at most iov_len bytes into `buf` (alive and writable) and updates
    // iov_len to the size it wrote.
    let rc = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGSET,
            tid.0,
            NT_X86_XSTATE as usize as *mut c_void,
            &mut iov as *mut libc::iovec as *mut c_void,
        )
    };
    check(rc, tid, "GETREGSET(NT_X86_XSTATE)")?;
    buf.truncate(iov.iov_len);
    Ok(buf)
}

/// Put back an XSAVE image read by [`get_xstate`].
pub(crate) fn set_xstate(tid: Tid, xstate: &[u8]) -> Result<(), ParasiteError> {
    let mut iov = libc::iovec {
        iov_base: xstate.as_ptr() as *mut c_void,
        iov_len: xstate.len(),
    };
    // SAFETY: SETREGSET only reads iov_len bytes from `xstate`, which is alive for the call.
    let rc = unsafe {
        libc::ptrace(
            libc::PTRACE_SETREGSET,
            tid.0,
            NT_X86_XSTATE as usize as *mut c_void,
            &mut iov as *mut libc::iovec as *mut c_void,
        )
    };
    check(rc, tid, "SETREGSET(NT_X86_XSTATE)")
}

/// `PTRACE_EVENTMSG_SYSCALL_ENTRY` / `_EXIT` (linux/ptrace.h): the event message of a syscall stop.
const EVENTMSG_SYSCALL_ENTRY: libc::c_long = 1;
const EVENTMSG_SYSCALL_EXIT: libc::c_long = 2;

/// What a stop is: a syscall entry (with the syscall number and rip), a syscall exit, or something
/// else (`None`: a real SIGTRAP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyscallStop {
    Entry { nr: u64, rip: u64 },
    Exit,
    None,
}

/// Classify a SIGTRAP stop. Works whether or not the caller seized with PTRACE_O_TRACESYSGOOD (we
/// must not change its options): a syscall stop has si_code SIGTRAP (or SIGTRAP|0x80), and its
/// event message says entry or exit (PTRACE_GET_SYSCALL_INFO would need TRACESYSGOOD).
pub(crate) fn syscall_stop(tid: Tid) -> Result<SyscallStop, ParasiteError> {
    let si = ptrace::getsiginfo(tid.pid()).map_err(|source| ParasiteError::Ptrace {
        tid,
        op: "GETSIGINFO",
        source,
    })?;
    let trap = libc::SIGTRAP;
    if si.si_signo != trap || (si.si_code != trap && si.si_code != trap | 0x80) {
        return Ok(SyscallStop::None);
    }
    let msg = ptrace::getevent(tid.pid()).map_err(|source| ParasiteError::Ptrace {
        tid,
        op: "GETEVENTMSG",
        source,
    })?;
    Ok(match msg {
        EVENTMSG_SYSCALL_ENTRY => {
            let regs = getregs(tid)?;
            SyscallStop::Entry {
                nr: regs.orig_rax,
                rip: regs.rip,
            }
        }
        EVENTMSG_SYSCALL_EXIT => SyscallStop::Exit,
        _ => SyscallStop::None,
    })
}

/// Resume to the next syscall entry or exit (or signal).
pub(crate) fn resume_to_syscall(tid: Tid) -> Result<(), ParasiteError> {
    ptrace::syscall(tid.pid(), None).map_err(|source| ParasiteError::Ptrace {
        tid,
        op: "SYSCALL",
        source,
    })
}
