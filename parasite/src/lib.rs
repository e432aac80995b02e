//! dormant-parasite: run code inside a task the caller has seized with ptrace.
//!
//! What it does: the remote-syscall primitive ([`RemoteTask::syscall`]): patch `syscall; int3` at a
//! syscall site of the target, run one system call with the target's credentials and address space, and
//! put registers, signal mask and code bytes back on every path. On top of it: target memory access
//! through `/proc/<tid>/mem`, an injected scratch mapping ([`RemoteScratch`]), and the handful of
//! in-process queries the dumper needs ([`query`]). The injected no_std blob ([`Parasite`]): a memfd area
//! shared by dumper and target, commands run one per resume inside a chosen thread (a batched state
//! snapshot, per-thread state, vmsplice of pages into pipes the dumper drains in parallel, with the crc32
//! of each piece taken inside the target), and a cure
//! through `rt_sigreturn` that returns every thread to its exact saved state.
//!
//! What it does NOT do: it never seizes, interrupts, resumes or detaches a task (the caller owns the
//! ptrace life cycle and must keep every request on the thread that seized the task), it does not apply
//! the syscall-restart fixup to the registers it saves (that is the dumper's job on its own copy), and it
//! does not decide what to dump: it answers commands.

/// A point a crash test can stop or kill the injecting process at (see [`test_hooks`]); expands to
/// nothing without the `test-hooks` feature, so release builds carry no hook.
macro_rules! hook {
    ($stage:ident) => {
        #[cfg(feature = "test-hooks")]
        crate::test_hooks::stage(crate::test_hooks::Stage::$stage);
    };
}

mod area;
mod blob;
mod error;
mod ids;
mod parasite;
mod ptrace;
pub mod query;
mod remote;
mod site;
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod test_hooks;

pub use blob::embedded as embedded_blob;
pub use error::ParasiteError;
pub use ids::Tid;
pub use parasite::{PagePiece, Parasite, SpliceError, ThreadInfo};
pub use ptrace::{get_sigmask, set_sigmask, SigMask};
pub use remote::{RemoteScratch, RemoteTask};
pub use site::find_syscall_site;

/// The options a caller must pass to `PTRACE_SEIZE` for every task it hands to this crate.
///
/// `PTRACE_O_TRACESYSGOOD` is what keeps the target alive if the dumper dies mid-command: a tracee left
/// in a syscall-stop by a tracer that exits is woken with the stop's code still in place, and the kernel
/// sends that code to it as a signal. Without the option the code is a plain SIGTRAP, which kills a target
/// that is running (or parked in) blob code, where SIGTRAP is the one signal left unblocked; with it the
/// code is `SIGTRAP | 0x80`, not a valid signal number, and nothing is sent (`dumper_killed_at_each_parasite_stage`).
/// No `PTRACE_O_EXITKILL`: a dumper crash must leave the target running.
pub const SEIZE_OPTIONS: nix::sys::ptrace::Options =
    nix::sys::ptrace::Options::PTRACE_O_TRACESYSGOOD;
