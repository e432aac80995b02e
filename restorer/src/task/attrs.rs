//! Per-process attributes set with prctl and friends in the child before it enters the blob: child
//! subreaper, dumpable, parent-death signal, the name (`comm`) and the execution domain
//! (`personality`); and whether the task was stopped. Each thread's own attributes (scheduling policy,
//! nice, CPU affinity, I/O priority, timer slack, a non-leader's parent-death signal) are set by the
//! thread in the blob (`SchedArg`); the OOM score adjustment is written by the tracer, which checks all
//! of them in `/proc` before the release.

use std::ffi::{CStr, CString};

use dormant_image::records::{JobStop, ProcessAttrs, ThreadAttrs};
use dormant_restorer_proto::{SchedArg, Step, AFFINITY_WORDS};
use dormant_sys::process::{
    SchedAttr, IOPRIO_CLASS_NONE, IOPRIO_CLASS_SHIFT, SCHED_BATCH, SCHED_CAPACITY_SCALE,
    SCHED_FLAG_RESET_ON_FORK, SCHED_FLAG_UTIL_CLAMP_MAX, SCHED_FLAG_UTIL_CLAMP_MIN, SCHED_OTHER,
};

use super::ChildFailed;
use crate::error::RestoreError;
use crate::image::TaskImage;

/// Per-process attributes the child sets with prctl before it enters the blob (`None`: not known, left
/// as inherited). The blob sets dumpable and pdeathsig again after the credentials, whose change resets
/// both; securebits are part of the credentials (see [`super::creds`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessCtl {
    pub child_subreaper: Option<bool>,
    /// 0 or 1 (the kernel refuses 2, `suid_dumpable`, through prctl; such a value is left as is).
    pub dumpable: Option<u32>,
    /// Signal sent when the parent dies. Set by the child right after the fork, so "the parent" is its
    /// restored parent; [`crate::launch::start_tree`] drops it for the root, whose parent is the restorer.
    pub pdeathsig: Option<u32>,
}

impl ProcessCtl {
    /// Applies every known attribute to the calling process; on failure, which one (0 subreaper,
    /// 1 dumpable, 3 pdeathsig) and the errno.
    fn apply(&self) -> Result<(), (u64, i32)> {
        let set = |which: u64, option: libc::c_int, value: libc::c_ulong| {
            // SAFETY: these prctl options take one integer argument and change only the calling process.
            if unsafe { libc::prctl(option, value, 0, 0, 0) } != 0 {
                return Err((which, nix::errno::Errno::last_raw()));
            }
            Ok(())
        };
        if let Some(on) = self.child_subreaper {
            set(0, libc::PR_SET_CHILD_SUBREAPER, on as libc::c_ulong)?;
        }
        if let Some(d) = self.dumpable.filter(|d| *d <= 1) {
            set(1, libc::PR_SET_DUMPABLE, d as libc::c_ulong)?;
        }
        if let Some(sig) = self.pdeathsig {
            set(3, libc::PR_SET_PDEATHSIG, sig as libc::c_ulong)?;
        }
        Ok(())
    }
}

/// The attributes of one task.
#[derive(Debug)]
pub struct TaskAttrs {
    pub prctl: ProcessCtl,
    pub comm: Option<CString>,
    pub personality: Option<u32>,
    /// The job-control stop to put the task back in once it is released (it was stopped when dumped).
    pub job_stop: Option<JobStop>,
    /// A SIGCHLD was pending for the whole process when it was dumped: a report of a child's stop that
    /// the restore re-creates then adds nothing to be taken away again.
    pub sigchld_pending: bool,
}

pub fn prepare(task: &TaskImage) -> TaskAttrs {
    let core = &task.core;
    TaskAttrs {
        prctl: ProcessCtl {
            child_subreaper: core.child_subreaper,
            dumpable: core.dumpable,
            pdeathsig: core.pdeathsig,
        },
        comm: CString::new(core.comm.as_str()).ok(),
        personality: Some(core.personality),
        // Images of schema version 1 did not say how: SIGSTOP, reported to the parent anew.
        job_stop: core.stopped.then(|| {
            core.job_stop.unwrap_or(JobStop {
                signal: libc::SIGSTOP as u32,
                parent_waited: false,
            })
        }),
        sigchld_pending: core
            .shared_pending
            .iter()
            .any(|s| s.0.get(..4) == Some(&libc::SIGCHLD.to_le_bytes()[..])),
    }
}

/// In the child: prctl attributes, then the name and the execution domain. Allocation-free.
pub fn apply(
    prctl: &ProcessCtl,
    comm: Option<&CStr>,
    personality: Option<u32>,
) -> Result<(), ChildFailed> {
    if let Err((which, e)) = prctl.apply() {
        return Err(ChildFailed::new(Step::ChildPrctl, e, which));
    }
    if let Some(name) = comm {
        // SAFETY: PR_SET_NAME reads at most 16 bytes of the NUL-terminated string prepared before the fork.
        if unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) } != 0 {
            return Err(ChildFailed::errno(Step::ChildComm, 0));
        }
    }
    if let Some(p) = personality {
        // SAFETY: personality only changes this (child) task's execution domain flags.
        if unsafe { libc::personality(p as libc::c_ulong) } < 0 {
            return Err(ChildFailed::errno(Step::ChildPersonality, p as u64));
        }
    }
    Ok(())
}

/// Every thread's `SchedArg` (the leader first); all unset when the image does not carry them.
/// `own_slice` is the restorer's fair-scheduler slice: a thread's equal to it is the default, not set.
pub fn sched_args(
    attrs: Option<&ProcessAttrs>,
    nr_threads: usize,
    own_slice: u64,
) -> Vec<SchedArg> {
    let Some(a) = attrs else {
        return vec![SchedArg::default(); nr_threads];
    };
    a.threads.iter().map(|t| sched_arg(t, own_slice)).collect()
}

fn fair(policy: u32) -> bool {
    policy == SCHED_OTHER || policy == SCHED_BATCH
}

fn sched_arg(t: &ThreadAttrs, own_slice: u64) -> SchedArg {
    let s = &t.sched;
    let clamped = (s.util_min, s.util_max) != (0, SCHED_CAPACITY_SCALE) && s.util_max != 0;
    let mut flags = s.flags & SCHED_FLAG_RESET_ON_FORK;
    if clamped {
        flags |= SCHED_FLAG_UTIL_CLAMP_MIN | SCHED_FLAG_UTIL_CLAMP_MAX;
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: s.policy,
        flags,
        nice: s.nice,
        priority: s.priority,
        runtime: if fair(s.policy) && s.runtime != own_slice {
            s.runtime
        } else {
            0
        },
        deadline: 0,
        period: 0,
        util_min: s.util_min,
        util_max: s.util_max,
    };
    let mut affinity = [0u64; AFFINITY_WORDS];
    let n = t.affinity.len().min(AFFINITY_WORDS);
    affinity[..n].copy_from_slice(&t.affinity[..n]);
    SchedArg {
        set: 1,
        nice: s.nice,
        ioprio: normal_ioprio(t.ioprio),
        nr_affinity: n as u32,
        timer_slack_ns: t.timer_slack_ns,
        attr,
        affinity,
        pdeathsig: t.pdeathsig,
        _pad: 0,
    }
}

/// An I/O priority of class NONE is set as NONE with level 0 (the kernel reports a level for it that
/// it does not take back).
fn normal_ioprio(ioprio: u32) -> u32 {
    if ioprio >> IOPRIO_CLASS_SHIFT == IOPRIO_CLASS_NONE {
        0
    } else {
        ioprio
    }
}

/// Refuses what this restorer cannot set: an affinity wider than the blob carries.
pub fn refuse(task: &TaskImage) -> Result<(), RestoreError> {
    let Some(a) = &task.attrs else { return Ok(()) };
    for t in &a.threads {
        if t.affinity[AFFINITY_WORDS.min(t.affinity.len())..]
            .iter()
            .any(|w| *w != 0)
        {
            return Err(RestoreError::BadImage {
                dir: std::path::PathBuf::new(),
                reason: format!(
                    "pid {} thread {}: CPU affinity names a CPU above {}",
                    task.pid.0,
                    t.tid.0,
                    AFFINITY_WORDS * 64 - 1
                ),
            });
        }
    }
    Ok(())
}

/// The restorer's own fair-scheduler slice (what a thread inherits when no custom one was set).
pub fn own_slice() -> u64 {
    // SAFETY: gettid takes no argument.
    let tid = unsafe { libc::gettid() };
    dormant_sys::host::sched_getattr(tid).map_or(0, |a| a.runtime)
}

/// Writes the OOM score adjustment of process `pid` (the tracer, before the release).
pub fn set_oom_score_adj(pid: u32, value: i32) -> Result<(), RestoreError> {
    let path = format!("/proc/{pid}/oom_score_adj");
    std::fs::write(&path, value.to_string()).map_err(|source| RestoreError::Proc {
        path: path.into(),
        source,
    })
}

/// Checks thread `tid` of `pid` against its image's attributes as the kernel reports them.
pub fn verify(pid: u32, tid: u32, want: &ThreadAttrs, own_slice: u64) -> Result<(), RestoreError> {
    let mismatch = |what: &'static str, found: String, want: String| RestoreError::AttrMismatch {
        pid,
        tid,
        what,
        found,
        want,
    };
    let sys_err =
        |what: &'static str| move |e| RestoreError::sys(format!("{what} of thread {tid}"), e);
    let got = dormant_sys::host::sched_getattr(tid as i32).map_err(sys_err("sched_getattr"))?;
    let s = &want.sched;
    let runtime = |r: u64| {
        if fair(s.policy) && r == own_slice {
            0
        } else {
            r
        }
    };
    let nice = dormant_sys::host::nice_of(tid as i32).map_err(sys_err("getpriority"))?;
    let found = (
        got.policy,
        got.flags & SCHED_FLAG_RESET_ON_FORK,
        nice,
        got.priority,
        runtime(got.runtime),
    );
    let wanted = (s.policy, s.flags, s.nice, s.priority, runtime(s.runtime));
    if found != wanted {
        return Err(mismatch(
            "scheduling (policy, flags, nice, priority, slice)",
            format!("{found:?}"),
            format!("{wanted:?}"),
        ));
    }
    let affinity =
        dormant_sys::host::sched_getaffinity(tid as i32).map_err(sys_err("sched_getaffinity"))?;
    let trim = |v: &[u64]| {
        let mut v = v.to_vec();
        while v.last() == Some(&0) {
            v.pop();
        }
        v
    };
    if trim(&affinity) != trim(&want.affinity) {
        return Err(mismatch(
            "CPU affinity",
            format!("{affinity:x?}"),
            format!("{:x?}", want.affinity),
        ));
    }
    let ioprio = dormant_sys::host::ioprio_get(tid as i32).map_err(sys_err("ioprio_get"))?;
    if normal_ioprio(ioprio) != normal_ioprio(want.ioprio) {
        return Err(mismatch(
            "I/O priority",
            format!("{ioprio:#x}"),
            format!("{:#x}", want.ioprio),
        ));
    }
    let path = format!("/proc/{tid}/timerslack_ns");
    let slack = std::fs::read_to_string(&path).map_err(|source| RestoreError::Proc {
        path: path.into(),
        source,
    })?;
    if slack.trim() != want.timer_slack_ns.to_string() {
        return Err(mismatch(
            "timer slack",
            slack.trim().into(),
            want.timer_slack_ns.to_string(),
        ));
    }
    Ok(())
}
