//! Typed wrappers over the ptrace requests this crate makes, with errors that name the tid and the
//! request. The requests nix lacks (signal mask, xstate) are dormant-sys's, the same the dumper uses.

use libc::user_regs_struct;
use nix::sys::ptrace;
use nix::sys::signal::Signal;

use dormant_sys::host;
use dormant_sys::ptrace::{PTRACE_EVENTMSG_SYSCALL_ENTRY, PTRACE_EVENTMSG_SYSCALL_EXIT};

use crate::error::ParasiteError;
use crate::ids::Tid;

/// A thread's blocked-signal mask in the kernel's layout: bit `n - 1` is signal `n` (1..=64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SigMask(pub u64);

impl SigMask {
    /// Every signal blocked except `sig` (SIGKILL and SIGSTOP are never blockable; the kernel drops them).
    pub fn all_except(sig: Signal) -> Self {
        SigMask(!(1u64 << (sig as i32 - 1)))
    }
}

fn err(tid: Tid, op: &'static str) -> impl Fn(nix::Error) -> ParasiteError {
    move |source| ParasiteError::Ptrace { tid, op, source }
}

/// Read the blocked mask of a ptrace-stopped thread.
pub fn get_sigmask(tid: Tid) -> Result<SigMask, ParasiteError> {
    host::get_sigmask(tid.0)
        .map(SigMask)
        .map_err(err(tid, "GETSIGMASK"))
}

/// Set the blocked mask of a ptrace-stopped thread (see [`dormant_sys::host::set_sigmask`] for what it
/// does to a thread stopped in ppoll and friends).
pub fn set_sigmask(tid: Tid, mask: SigMask) -> Result<(), ParasiteError> {
    host::set_sigmask(tid.0, mask.0).map_err(err(tid, "SETSIGMASK"))
}

pub(crate) fn getregs(tid: Tid) -> Result<user_regs_struct, ParasiteError> {
    ptrace::getregs(tid.pid()).map_err(err(tid, "GETREGS"))
}

pub(crate) fn setregs(tid: Tid, regs: user_regs_struct) -> Result<(), ParasiteError> {
    ptrace::setregs(tid.pid(), regs).map_err(err(tid, "SETREGS"))
}

/// Resume without delivering a signal (a pending-delivery SIGTRAP from our own int3 is discarded).
pub(crate) fn cont(tid: Tid) -> Result<(), ParasiteError> {
    ptrace::cont(tid.pid(), None).map_err(err(tid, "CONT"))
}

pub(crate) fn siginfo_code(tid: Tid) -> Result<i32, ParasiteError> {
    ptrace::getsiginfo(tid.pid())
        .map(|si| si.si_code)
        .map_err(err(tid, "GETSIGINFO"))
}

/// The thread's full XSAVE image (standard format, software bytes included) as PTRACE_GETREGSET
/// returns it.
pub(crate) fn get_xstate(tid: Tid) -> Result<Vec<u8>, ParasiteError> {
    host::get_xstate(tid.0).map_err(err(tid, "GETREGSET(NT_X86_XSTATE)"))
}

/// Put back an XSAVE image read by [`get_xstate`].
pub(crate) fn set_xstate(tid: Tid, xstate: &[u8]) -> Result<(), ParasiteError> {
    host::set_xstate(tid.0, xstate).map_err(err(tid, "SETREGSET(NT_X86_XSTATE)"))
}

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
    let si = ptrace::getsiginfo(tid.pid()).map_err(err(tid, "GETSIGINFO"))?;
    let trap = libc::SIGTRAP;
    if si.si_signo != trap || (si.si_code != trap && si.si_code != trap | 0x80) {
        return Ok(SyscallStop::None);
    }
    let msg = ptrace::getevent(tid.pid()).map_err(err(tid, "GETEVENTMSG"))? as u64;
    Ok(match msg {
        PTRACE_EVENTMSG_SYSCALL_ENTRY => {
            let regs = getregs(tid)?;
            SyscallStop::Entry {
                nr: regs.orig_rax,
                rip: regs.rip,
            }
        }
        PTRACE_EVENTMSG_SYSCALL_EXIT => SyscallStop::Exit,
        _ => SyscallStop::None,
    })
}

/// Resume to the next syscall entry or exit (or signal).
pub(crate) fn resume_to_syscall(tid: Tid) -> Result<(), ParasiteError> {
    ptrace::syscall(tid.pid(), None).map_err(err(tid, "SYSCALL"))
}
