//! Per-process attributes: name, personality, the prctl flags only the task can report (dumpable,
//! parent-death signal, child subreaper; see [`super::remote`]), and its job-control stop.

use dormant_image::records::JobStop;
use dormant_parasite::query::TaskSnapshot;

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
