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
