//! Per-process attributes set with prctl and friends in the child before it enters the blob: child
//! subreaper, dumpable, parent-death signal, the name (`comm`) and the execution domain
//! (`personality`); and whether the task was stopped.

use std::ffi::{CStr, CString};

use dormant_image::records::JobStop;
use dormant_restorer_proto::Step;

use super::ChildFailed;
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
