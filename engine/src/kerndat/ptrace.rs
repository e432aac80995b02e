//! ptrace probes: seize + interrupt, the XSAVE regset and the rseq configuration, each on a forked
//! sleeper that is detached, killed and reaped afterwards.

use std::time::Instant;

use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use super::child::{wait_until, Sleeper, CHILD_TIMEOUT};
use super::error::ProbeError;
use super::sys;
use super::{Fact, Found};

/// A sleeper seized with PTRACE_SEIZE and held in a PTRACE_EVENT_STOP; detached on drop (before the
/// sleeper itself is killed, since fields drop in declaration order).
struct Stopped {
    pid: Pid,
    _sleeper: Sleeper,
}

impl Stopped {
    fn new() -> Result<Self, ProbeError> {
        let sleeper = Sleeper::spawn()?;
        let pid = sleeper.pid();
        ptrace::seize(pid, ptrace::Options::empty())
            .map_err(|e| ProbeError::on_pid("PTRACE_SEIZE", pid, e))?;
        let stopped = Stopped {
            pid,
            _sleeper: sleeper,
        };
        ptrace::interrupt(pid).map_err(|e| ProbeError::on_pid("PTRACE_INTERRUPT", pid, e))?;
        let deadline = Instant::now() + CHILD_TIMEOUT;
        let status = wait_until(pid, deadline, |status| {
            matches!(
                status,
                WaitStatus::PtraceEvent(_, Signal::SIGTRAP, libc::PTRACE_EVENT_STOP)
            )
        })?;
        log::trace!("kerndat: pid {pid} stopped: {status:?}");
        Ok(stopped)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = ptrace::detach(self.pid, None);
    }
}

/// PTRACE_SEIZE, then PTRACE_INTERRUPT, then the PTRACE_EVENT_STOP that interrupt promises.
pub(crate) fn seize_interrupt() -> Result<Found, ProbeError> {
    let stopped = Stopped::new()?;
    let pid = stopped.pid;
    ptrace::detach(pid, None).map_err(|e| ProbeError::on_pid("PTRACE_DETACH", pid, e))?;
    Ok(Found::detail(format!(
        "seized pid {pid}, PTRACE_INTERRUPT put it in PTRACE_EVENT_STOP, detached"
    )))
}

/// PTRACE_GETREGSET NT_X86_XSTATE: the size of the regset is the size of the XSAVE area the engine
/// must store per thread, compared with what CPUID leaf 0xD says.
#[cfg(target_arch = "x86_64")]
pub(crate) fn xstate() -> Result<Found, ProbeError> {
    let stopped = Stopped::new()?;
    let pid = stopped.pid;
    let size = sys::ptrace_get_xstate(pid)
        .map_err(|e| ProbeError::on_pid("PTRACE_GETREGSET NT_X86_XSTATE", pid, e))?
        .len();
    if size == 0 {
        return Err(ProbeError::unexpected(
            "PTRACE_GETREGSET NT_X86_XSTATE returned 0 bytes",
        ));
    }
    let (enabled, max) = sys::cpuid_xsave_sizes();
    let note = if size == enabled as usize {
        "matches CPUID"
    } else {
        log::warn!("kerndat: xstate regset is {size} bytes but CPUID 0xD says {enabled}");
        "DIFFERS from CPUID"
    };
    Ok(Found {
        detail: format!("{size} bytes, {note} (leaf 0xD: {enabled} for XCR0, {max} max)"),
        fact: Fact::XstateSize(size),
    })
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn xstate() -> Result<Found, ProbeError> {
    Err(ProbeError::Arch)
}

/// PTRACE_GET_RSEQ_CONFIGURATION on a sleeper (which inherited glibc's rseq registration).
pub(crate) fn rseq_configuration() -> Result<Found, ProbeError> {
    let stopped = Stopped::new()?;
    let pid = stopped.pid;
    let conf = sys::ptrace_get_rseq(pid)
        .map_err(|e| ProbeError::on_pid("PTRACE_GET_RSEQ_CONFIGURATION", pid, e))?;
    let detail = if conf.rseq_abi_pointer == 0 {
        "request works; the probe child has no rseq area registered".to_string()
    } else {
        format!(
            "rseq area at {:#x}, {} bytes, signature {:#x}",
            conf.rseq_abi_pointer, conf.rseq_abi_size, conf.signature
        )
    };
    Ok(Found::detail(detail))
}
