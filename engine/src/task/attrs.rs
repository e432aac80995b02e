//! Per-process attributes: name, personality, the prctl flags only the task can report (dumpable,
//! parent-death signal, child subreaper; see [`super::remote`]), and its job-control stop; and what each
//! thread has of its own, read from outside: scheduling policy, priority and nice (`sched_getattr`), CPU
//! affinity, I/O priority, timer slack (`/proc/<tid>/timerslack_ns`), with the process's OOM score
//! adjustment.

use dormant_image::records::{JobStop, Pid, ProcessAttrs, SchedParams, ThreadAttrs, Tid};
use dormant_parasite::query::TaskSnapshot;
use dormant_sys::process::SCHED_FLAG_RESET_ON_FORK;

use crate::error::{DumpError, Result};
use crate::proc;
use crate::seize::SeizedTask;

/// The prctl flags of a process as records carry them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrctlFlags {
    pub dumpable: Option<u32>,
    pub pdeathsig: Option<u32>,
    pub child_subreaper: Option<bool>,
}

/// The name of thread `tid` of `pid` (`/proc/<pid>/task/<tid>/comm`; the leader's is the process's).
pub fn comm(pid: u32, tid: u32) -> Result<String> {
    let name = if pid == tid {
        "comm".to_string()
    } else {
        format!("task/{tid}/comm")
    };
    Ok(proc::read_string(pid, &name)?
        .trim_end_matches('\n')
        .to_string())
}

/// The execution domain (`/proc/<pid>/personality`).
pub fn personality(pid: u32) -> Result<u32> {
    proc::parse_personality(&proc::read_string(pid, "personality")?).ok_or(DumpError::ProcParse {
        pid,
        file: "personality",
        reason: "not a hex number".into(),
    })
}

/// The prctl flags the task reported.
pub fn prctl_flags(snap: &TaskSnapshot) -> PrctlFlags {
    PrctlFlags {
        dumpable: Some(snap.dumpable as u32),
        pdeathsig: Some(snap.pdeathsig as u32),
        child_subreaper: Some(snap.child_subreaper),
    }
}

/// The job-control stop of `task`, if it was in one: the signal its group-stop trap reported (SIGSTOP
/// when none did) and whether its parent had collected it (`parent_waited`, asked in the parent; `None`
/// for the root, whose parent is not dumped: it counts as not collected).
pub fn job_stop(task: &SeizedTask, parent_waited: Option<bool>) -> Option<JobStop> {
    task.was_stopped().then(|| JobStop {
        signal: task.stop_signal().unwrap_or(libc::SIGSTOP) as u32,
        parent_waited: parent_waited.unwrap_or(false),
    })
}

/// The pid of `pid` in its own (innermost) pid namespace, as its parent names it (`NSpid`).
pub fn inner_pid(pid: u32) -> Result<u32> {
    let text = proc::read_string(pid, "status")?;
    let status = proc::status::parse(&text).map_err(|reason| DumpError::ProcParse {
        pid,
        file: "status",
        reason,
    })?;
    Ok(status.ns_pids.last().copied().unwrap_or(pid))
}

/// The per-thread attributes of `pid` (threads `tids`, the leader first, with the parent-death signal
/// each reported in `pdeathsigs`) and its OOM score adjustment.
pub fn process_attrs(pid: u32, tids: &[u32], pdeathsigs: &[u32]) -> Result<ProcessAttrs> {
    let threads = tids
        .iter()
        .zip(pdeathsigs)
        .map(|(&tid, &pdeathsig)| thread_attrs(pid, tid, pdeathsig))
        .collect::<Result<Vec<_>>>()?;
    Ok(ProcessAttrs {
        pid: Pid(pid),
        oom_score_adj: oom_score_adj(pid)?,
        threads,
    })
}

/// `/proc/<pid>/oom_score_adj`.
pub fn oom_score_adj(pid: u32) -> Result<i32> {
    let text = proc::read_string(pid, "oom_score_adj")?;
    text.trim().parse().map_err(|e| DumpError::ProcParse {
        pid,
        file: "oom_score_adj",
        reason: format!("{e}"),
    })
}

/// What thread `tid` of `pid` has of its own (see the module docs).
fn thread_attrs(pid: u32, tid: u32, pdeathsig: u32) -> Result<ThreadAttrs> {
    let sched = sched_params(pid, tid)?;
    let err = |op: &'static str| {
        move |source| DumpError::Ptrace {
            pid: tid,
            op,
            source,
        }
    };
    let affinity =
        dormant_sys::host::sched_getaffinity(tid as i32).map_err(err("sched_getaffinity"))?;
    let ioprio = dormant_sys::host::ioprio_get(tid as i32).map_err(err("ioprio_get"))?;
    let slack = proc::read_string(tid, "timerslack_ns")?;
    let timer_slack_ns = slack.trim().parse().map_err(|e| DumpError::ProcParse {
        pid,
        file: "timerslack_ns",
        reason: format!("thread {tid}: {e}"),
    })?;
    Ok(ThreadAttrs {
        tid: Tid(tid),
        sched,
        ioprio,
        timer_slack_ns,
        affinity,
        pdeathsig,
    })
}

/// The scheduling policy and parameters of thread `tid`.
pub fn sched_params(pid: u32, tid: u32) -> Result<SchedParams> {
    let a = dormant_sys::host::sched_getattr(tid as i32).map_err(|source| DumpError::Ptrace {
        pid,
        op: "sched_getattr",
        source,
    })?;
    let nice = dormant_sys::host::nice_of(tid as i32).map_err(|source| DumpError::Ptrace {
        pid,
        op: "getpriority",
        source,
    })?;
    Ok(SchedParams {
        policy: a.policy,
        flags: a.flags & SCHED_FLAG_RESET_ON_FORK,
        nice,
        priority: a.priority,
        runtime: a.runtime,
        deadline: a.deadline,
        period: a.period,
        util_min: a.util_min,
        util_max: a.util_max,
    })
}
