//! Process attributes and the per-process record. [`TaskCore`] (`core-<pid>`, one per process) carries
//! what belongs to the process as a whole: its own attributes (comm, personality, dumpable, pdeathsig,
//! child subreaper, job-control stop), and the process-wide parts of other kinds, each typed in its own
//! file (rlimits, signals, timers, creds, fs).

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use super::creds::Creds;
use super::ids::Pid;
use super::rlimits::Rlimit;
use super::signals::{SigAction, SigInfo};
use super::timers::{ITimer, PosixTimer};
use crate::error::Problems;

/// Process-wide state (`core-<pid>`, one entry).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCore {
    pub pid: Pid,
    /// `/proc/pid/comm` of the leader.
    pub comm: String,
    pub personality: u32,
    pub umask: u32,
    pub rlimits: Vec<Rlimit>,
    /// All 64 signal actions, index 0 = signal 1. `None` when the dump could not ask the task (no parasite);
    /// the restorer then leaves every action at its default and says so.
    pub sigactions: Option<Vec<SigAction>>,
    /// Real, virtual and profiling interval timers, in that order (from inside the task).
    pub itimers: Option<[ITimer; 3]>,
    pub creds: Creds,
    /// `PR_GET_DUMPABLE`, `PR_GET_PDEATHSIG`, `PR_GET_CHILD_SUBREAPER`, when known.
    pub dumpable: Option<u32>,
    pub pdeathsig: Option<u32>,
    pub child_subreaper: Option<bool>,
    /// Process-wide pending signals (`PTRACE_PEEKSIGINFO` with the shared flag), raw `siginfo_t`s.
    pub shared_pending: Vec<SigInfo>,
    /// The task was stopped (job control) at dump time and must be stopped again after restore.
    pub stopped: bool,
    /// Working directory and root directory (`/proc/pid/cwd`, `/proc/pid/root`), as paths in the task's
    /// mount namespace.
    pub cwd: String,
    pub root: String,
    /// POSIX timers (`timer_create`), ascending by id.
    pub posix_timers: Vec<PosixTimer>,
}

/// Checks one process record against the pid the process tree gives it, and each kind it carries.
pub(crate) fn check_task_core(file: &str, pid: Pid, core: &TaskCore, p: &mut Problems) {
    if core.pid != pid {
        p.add(
            file,
            format!("holds the core of pid {}, not {}", core.pid.0, pid.0),
        );
    }
    super::rlimits::check_rlimits(file, &core.rlimits, p);
    super::signals::check_sigactions(file, core.sigactions.as_deref(), p);
    super::signals::check_siginfos(file, "shared pending signal", &core.shared_pending, p);
    super::timers::check_posix_timers(file, &core.posix_timers, p);
    super::fs::check_fs(file, &core.cwd, &core.root, core.umask, p);
}
