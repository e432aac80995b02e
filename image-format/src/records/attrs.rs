//! Process attributes and the per-process record. [`TaskCore`] (`core-<pid>`, one per process) carries
//! what belongs to the process as a whole: its own attributes (comm, personality, dumpable, pdeathsig,
//! child subreaper, job-control stop), and the process-wide parts of other kinds, each typed in its own
//! file (rlimits, signals, timers, creds, fs). [`ProcessAttrs`] (`attrs-<pid>`) carries the attributes
//! that belong to each thread (scheduling policy and priority, nice, CPU affinity, I/O priority, timer
//! slack, parent-death signal) and the process's OOM score adjustment.

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use super::creds::Creds;
use super::fs::RemovedDir;
use super::ids::{Pid, Tid};
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
    /// How it was stopped, when `stopped`; `None` also in images of schema version 1, which did not
    /// record it (their restore stops the task with SIGSTOP and tells its parent anew).
    pub job_stop: Option<JobStop>,
    /// Working directory and root directory (`/proc/pid/cwd`, `/proc/pid/root`), as paths in the task's
    /// mount namespace. A removed directory keeps the kernel's ` (deleted)` suffix and has its
    /// attributes in `cwd_removed` / `root_removed`.
    pub cwd: String,
    pub root: String,
    /// POSIX timers (`timer_create`), ascending by id.
    pub posix_timers: Vec<PosixTimer>,
    /// The removed working directory's attributes (the restore recreates it, enters it and removes it
    /// again); `None` when the working directory exists.
    pub cwd_removed: Option<RemovedDir>,
    /// The same for a removed root directory.
    pub root_removed: Option<RemovedDir>,
}

/// A job-control stop (`T` in `/proc/pid/stat`): which signal stopped the task, and whether its parent
/// has already collected the stop with `waitpid(WUNTRACED)`. The kernel reports a group stop to the
/// parent once (`signal->group_exit_code`, cleared by the wait); the restore re-creates the stop with the
/// same signal and, when the parent had already waited, collects the new report in the parent, so the
/// parent neither misses a report it was owed nor sees one twice.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStop {
    /// SIGSTOP, SIGTSTP, SIGTTIN or SIGTTOU.
    pub signal: u32,
    /// The parent (in the tree) already collected the stop; `false` for the root, whose parent is not
    /// part of the image.
    pub parent_waited: bool,
}

/// Schema version 1 of [`TaskCore`] (before the stop signal, the parent's wait and removed directories
/// were carried), kept to read older images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCoreV1 {
    pub pid: Pid,
    pub comm: String,
    pub personality: u32,
    pub umask: u32,
    pub rlimits: Vec<Rlimit>,
    pub sigactions: Option<Vec<SigAction>>,
    pub itimers: Option<[ITimer; 3]>,
    pub creds: Creds,
    pub dumpable: Option<u32>,
    pub pdeathsig: Option<u32>,
    pub child_subreaper: Option<bool>,
    pub shared_pending: Vec<SigInfo>,
    pub stopped: bool,
    pub cwd: String,
    pub root: String,
    pub posix_timers: Vec<PosixTimer>,
}

impl super::upgrade::Upgrade<TaskCore> for TaskCoreV1 {
    /// How a stopped task was stopped was not recorded (`None`); a version 1 dump refused removed
    /// directories.
    fn upgrade(self) -> Result<TaskCore, String> {
        Ok(TaskCore {
            pid: self.pid,
            comm: self.comm,
            personality: self.personality,
            umask: self.umask,
            rlimits: self.rlimits,
            sigactions: self.sigactions,
            itimers: self.itimers,
            creds: self.creds,
            dumpable: self.dumpable,
            pdeathsig: self.pdeathsig,
            child_subreaper: self.child_subreaper,
            shared_pending: self.shared_pending,
            stopped: self.stopped,
            job_stop: None,
            cwd: self.cwd,
            root: self.root,
            posix_timers: self.posix_timers,
            cwd_removed: None,
            root_removed: None,
        })
    }
}

/// The stop signals a job-control stop can come from.
const STOP_SIGNALS: [i32; 4] = [libc::SIGSTOP, libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU];

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
    super::fs::check_fs(
        file,
        (&core.cwd, core.cwd_removed),
        (&core.root, core.root_removed),
        core.umask,
        p,
    );
    if let Some(stop) = core.job_stop {
        if !core.stopped {
            p.add(file, "records how it was stopped but was not stopped");
        }
        if !STOP_SIGNALS.contains(&(stop.signal as i32)) {
            p.add(
                file,
                format!(
                    "job-control stop by signal {}, not a stop signal",
                    stop.signal
                ),
            );
        }
    }
}

/// What the scheduler knows of a thread (`sched_getattr`).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SchedParams {
    /// `SCHED_*` policy.
    pub policy: u32,
    /// `SCHED_FLAG_*` as reported (only `SCHED_FLAG_RESET_ON_FORK` is kept).
    pub flags: u64,
    /// `getpriority(PRIO_PROCESS, tid)`: a real-time thread keeps one too.
    pub nice: i32,
    /// Real-time priority (`SCHED_FIFO`, `SCHED_RR`).
    pub priority: u32,
    /// The fair scheduler's slice (a custom one was set with `sched_setattr`), or the deadline runtime.
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
    /// Utilization clamps (0 and 1024 are the defaults).
    pub util_min: u32,
    pub util_max: u32,
}

/// The attributes one thread has of its own.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadAttrs {
    pub tid: Tid,
    pub sched: SchedParams,
    /// `ioprio_get(IOPRIO_WHO_PROCESS, tid)`: class in bits 13-15, level below.
    pub ioprio: u32,
    /// `/proc/<tid>/timerslack_ns` (0 for a real-time thread, whose slack the kernel keeps at 0).
    pub timer_slack_ns: u64,
    /// CPU affinity (`sched_getaffinity`), 64 CPUs per word, CPU 0 in bit 0 of the first.
    pub affinity: Vec<u64>,
    /// `PR_GET_PDEATHSIG` of the thread (the kernel keeps one per thread).
    pub pdeathsig: u32,
}

/// Per-thread attributes of a process and its OOM score adjustment (`attrs-<pid>`, one entry).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessAttrs {
    pub pid: Pid,
    /// `/proc/<pid>/oom_score_adj` (-1000..=1000).
    pub oom_score_adj: i32,
    /// Every thread, in the order of the process tree (the leader first).
    pub threads: Vec<ThreadAttrs>,
}

/// Checks one process's attributes record against its pid and the threads the tree lists for it.
pub(crate) fn check_process_attrs(
    file: &str,
    pid: Pid,
    tids: &[Tid],
    a: &ProcessAttrs,
    p: &mut Problems,
) {
    if a.pid != pid {
        p.add(file, format!("holds pid {}, not {}", a.pid.0, pid.0));
    }
    let listed: Vec<Tid> = a.threads.iter().map(|t| t.tid).collect();
    if listed != tids {
        p.add(
            file,
            format!(
                "lists threads {:?}, the tree {:?}",
                listed.iter().map(|t| t.0).collect::<Vec<_>>(),
                tids.iter().map(|t| t.0).collect::<Vec<_>>()
            ),
        );
    }
    if !(-1000..=1000).contains(&a.oom_score_adj) {
        p.add(
            file,
            format!("oom_score_adj {} is outside -1000..=1000", a.oom_score_adj),
        );
    }
    for t in &a.threads {
        if !(-20..=19).contains(&t.sched.nice) {
            p.add(
                file,
                format!(
                    "thread {}: nice {} is outside -20..=19",
                    t.tid.0, t.sched.nice
                ),
            );
        }
        if t.affinity.iter().all(|w| *w == 0) {
            p.add(file, format!("thread {}: an empty CPU affinity", t.tid.0));
        }
        if t.pdeathsig > 64 {
            p.add(
                file,
                format!("thread {}: parent-death signal {}", t.tid.0, t.pdeathsig),
            );
        }
    }
}
