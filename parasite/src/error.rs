//! Errors of the parasite crate; every variant names the task and what was being done.

use std::io;
use std::path::PathBuf;

use crate::ids::Tid;

/// Everything that can go wrong while inspecting or injecting into a task.
#[derive(Debug, thiserror::Error)]
pub enum ParasiteError {
    /// A /proc file of the target could not be opened or read.
    #[error("reading {path}: {source}")]
    Proc { path: PathBuf, source: io::Error },

    /// A /proc file had a line we could not parse.
    #[error("{path}: malformed line {line:?}")]
    ProcParse { path: PathBuf, line: String },

    /// A ptrace request failed.
    #[error("ptrace {op} on tid {tid}: {source}")]
    Ptrace {
        tid: Tid,
        op: &'static str,
        source: nix::Error,
    },

    /// waitpid on the tracee failed.
    #[error("waitpid on tid {tid}: {source}")]
    Wait { tid: Tid, source: nix::Error },

    /// No executable mapping has page padding for the injected code.
    #[error(
        "tid {tid}: no executable file mapping has 64 bytes of page padding past its code to hold the \
         injected code (code the task could run is never patched)"
    )]
    NoSyscallSite { tid: Tid },

    /// Too little stack below the thread's stack pointer for the rescue frame.
    #[error(
        "tid {tid}: only {have} bytes of stack below rsp {rsp:#x} (past the red zone); the injection's \
         rescue frame needs {need}, and growing the stack would change the task's mappings"
    )]
    NoStackRoom {
        tid: Tid,
        rsp: u64,
        have: u64,
        need: u64,
    },

    /// The thread has a shadow stack: a frame we build cannot pass rt_sigreturn's token check.
    #[error(
        "tid {tid}: runs with a shadow stack (x86 user shstk), which injection does not support"
    )]
    ShadowStack { tid: Tid },

    /// Reading or writing target memory through /proc/<tid>/mem failed.
    #[error("tid {tid}: {op} of {len} bytes at {addr:#x} through /proc/{tid}/mem: {source}")]
    Mem {
        tid: Tid,
        op: &'static str,
        addr: u64,
        len: usize,
        source: nix::Error,
    },

    /// /proc/<tid>/mem transferred fewer bytes than asked (end of a mapping).
    #[error("tid {tid}: {op} at {addr:#x} moved {done} of {len} bytes (unmapped memory?)")]
    ShortMem {
        tid: Tid,
        op: &'static str,
        addr: u64,
        len: usize,
        done: usize,
    },

    /// The tracee stopped for something other than what the injected code leads to (a fault in it, a
    /// signal that cannot be blocked). The session still puts the task back when it ends.
    #[error("tid {tid}: unexpected stop in injected code: {what}")]
    UnexpectedStop { tid: Tid, what: String },

    /// The tracee exited or was killed while running injected code.
    #[error("tid {tid}: task died while running injected code: {what}")]
    TaskDied { tid: Tid, what: String },

    /// An injected syscall returned an error where the caller needs success.
    #[error("tid {tid}: injected {call} failed: {errno}")]
    RemoteSyscall {
        tid: Tid,
        call: &'static str,
        errno: nix::errno::Errno,
    },

    /// Putting the task back at the end of an injection session failed: registers, mask, xstate or the
    /// site bytes may still be ours (the rescue frame still returns the thread to its own state if the
    /// tracer lets it go without touching it again).
    #[error("tid {tid}: RESTORING THE TASK FAILED at the end of an injection ({failures})")]
    RestoreFailed { tid: Tid, failures: String },

    /// The embedded parasite blob (or a frame built for it) is unusable.
    #[error("parasite blob: {0}")]
    Blob(String),

    /// A blob command failed inside the target.
    #[error("tid {tid}: parasite command {command} failed at step {step}: {errno}")]
    Command {
        tid: Tid,
        command: &'static str,
        step: u32,
        errno: nix::errno::Errno,
    },

    /// The blob did not behave as the protocol says (never finished, stopped elsewhere, bad answer).
    #[error("tid {tid}: parasite {what}")]
    Protocol { tid: Tid, what: String },

    /// A local system call of the dumper (pidfd, the control socket, pipes) failed.
    #[error("{what}: {source}")]
    Local { what: String, source: nix::Error },
}
