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

    /// No executable mapping can host the `syscall; int3` site.
    #[error("tid {tid}: no executable mapping usable as a syscall site")]
    NoSyscallSite { tid: Tid },

    /// SIGTRAP is already pending; our int3 trap could not be told apart from it.
    #[error("tid {tid}: SIGTRAP is pending, refusing to inject (the trap would be ambiguous)")]
    SigtrapPending { tid: Tid },

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

    /// The tracee stopped for something other than our int3 while running the injected syscall.
    /// The task's state was restored; a signal named here was intercepted by the stop and is
    /// suppressed unless the caller re-injects it when resuming.
    #[error("tid {tid}: unexpected stop while running injected syscall {nr}: {what}")]
    UnexpectedStop { tid: Tid, nr: i64, what: String },

    /// The tracee exited or was killed while running the injected syscall.
    #[error("tid {tid}: task died while running injected syscall {nr}: {what}")]
    TaskDied { tid: Tid, nr: i64, what: String },

    /// An injected syscall returned an error where the caller needs success.
    #[error("tid {tid}: injected {call} failed: {errno}")]
    RemoteSyscall {
        tid: Tid,
        call: &'static str,
        errno: nix::errno::Errno,
    },

    /// Restoring the task after an injection failed: the task is left MODIFIED (registers, signal
    /// mask or the code bytes at the syscall site may still be ours). Never resume such a task.
    #[error(
        "tid {tid}: RESTORING THE TASK FAILED after injected syscall {nr}, the task is left modified \
         ({failures}); injection outcome: {outcome}"
    )]
    RestoreFailed {
        tid: Tid,
        nr: i64,
        failures: String,
        outcome: String,
    },

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

    /// A local system call of the dumper (pidfd, mmap of the shared area, pipes) failed.
    #[error("{what}: {source}")]
    Local { what: String, source: nix::Error },
}
