//! dormant-parasite: run code inside a task the caller has seized with ptrace, such that a caller that
//! dies at any moment leaves the task exactly as it was.
//!
//! What it does: the remote-syscall primitive ([`RemoteTask::syscall`]): run system calls in a thread with
//! its credentials and address space, from code written in page padding of one of its executable
//! mappings, inside a *session* that first writes a rescue frame (its own registers, mask and xstate) on
//! the thread's stack, so that every instant of the session has a way back that needs no tracer (see
//! `remote` for the invariant). On top of it: target memory access through `/proc/<tid>/mem`, scratch
//! memory for syscall outputs on the thread's stack ([`RemoteScratch`]), and the handful of in-process
//! queries the dumper needs ([`query`]). The injected no_std blob ([`Parasite`]): mapped by one injected
//! mmap, it serves requests over a socket only the dumper holds the other end of (a batched state snapshot,
//! per-thread state, pipes, vmsplice of pages into them with the crc32 of each piece taken inside the
//! target), and on that socket's EOF (the cure, or the dumper's death) closes what it opened, unmaps
//! itself and returns the thread through its rescue frame.
//!
//! What it does NOT do: it never seizes, interrupts, resumes or detaches a task on its own account (the
//! caller owns the ptrace life cycle, seizes with [`seize_options`] and keeps every request on the thread
//! that seized the task), it does not apply the syscall-restart fixup to the registers it hands out (that
//! is the dumper's job on its own copy), and it does not decide what to dump: it answers commands.

/// A point a crash test can stop or kill the injecting process at (see [`test_hooks`]); expands to
/// nothing without the `test-hooks` feature, so release builds carry no hook.
macro_rules! hook {
    ($stage:ident) => {
        #[cfg(feature = "test-hooks")]
        crate::test_hooks::stage(crate::test_hooks::Stage::$stage);
    };
}

mod blob;
mod channel;
mod error;
mod ids;
mod parasite;
mod pod;
mod ptrace;
pub mod query;
mod remote;
mod site;
mod splice;
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod test_hooks;

pub use blob::embedded as embedded_blob;
pub use error::ParasiteError;
pub use ids::Tid;
pub use parasite::{Parasite, ThreadInfo};
pub use ptrace::{get_sigmask, set_sigmask, SigMask};
pub use remote::{RemoteScratch, RemoteTask, SCRATCH_LEN};
pub use site::find_syscall_site;
pub use splice::{PagePiece, SpliceError};

use dormant_sys::ptrace::PTRACE_O_SUSPEND_SECCOMP;
use nix::sys::ptrace::Options;

/// The options every task handed to this crate must be seized with, whatever its seccomp state.
///
/// `PTRACE_O_TRACESYSGOOD` is what keeps the target alive if the dumper dies in a syscall stop: a tracee
/// left in a syscall-stop by a tracer that exits is woken with the stop's code still in place, and the
/// kernel sends that code to it as a signal. Without the option the code is a plain SIGTRAP; with it the
/// code is `SIGTRAP | 0x80`, not a valid signal number, and nothing is sent. No `PTRACE_O_EXITKILL`: a
/// dumper crash must leave the target running.
pub const SEIZE_OPTIONS: Options = Options::PTRACE_O_TRACESYSGOOD;

/// The options to seize `tid` with: [`SEIZE_OPTIONS`], plus `PTRACE_O_SUSPEND_SECCOMP` when the thread
/// runs under seccomp (strict or filters), whose filters would otherwise judge (and may kill on) every
/// injected syscall. The kernel grants that option only to a tracer with CAP_SYS_ADMIN that is not under
/// seccomp itself, so it is asked for only when needed.
pub fn seize_options(tid: Tid) -> Options {
    if seccomp_mode(tid).unwrap_or(0) != 0 {
        SEIZE_OPTIONS | Options::from_bits_retain(PTRACE_O_SUSPEND_SECCOMP as i32)
    } else {
        SEIZE_OPTIONS
    }
}

/// The `Seccomp:` field of the thread's status (0 disabled, 1 strict, 2 filter).
pub fn seccomp_mode(tid: Tid) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .and_then(|v| v.trim().parse().ok())
}
