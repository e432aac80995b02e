//! Per-process attributes: name, personality, and the prctl flags only the task can report (dumpable,
//! parent-death signal, child subreaper; see [`super::remote`]).

use dormant_parasite::query::TaskSnapshot;

use crate::error::{DumpError, Result};
use crate::proc;

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
