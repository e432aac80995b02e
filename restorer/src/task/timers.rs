//! The task's timers the blob restores: the three interval timers and the POSIX timers (with their saved
//! ids, which needs `PR_TIMER_CREATE_RESTORE_IDS`).

use std::path::Path;

use dormant_image::records::PosixTimer;
use dormant_restorer_proto::TimerArg;
use dormant_sys::signal::KernelItimerval;

use super::threads::inner_tid;
use crate::error::RestoreError;
use crate::image::TaskImage;
use crate::ns::pid::InnerIds;
use crate::refusal::Unsupported;

/// `prctl` option (Linux 6.17) that makes `timer_create` take the id from `*timer_id`.
const PR_TIMER_CREATE_RESTORE_IDS: libc::c_int = 77;
const PR_TIMER_CREATE_RESTORE_IDS_GET: libc::c_ulong = 2;

#[derive(Debug)]
pub struct TaskTimers {
    pub itimers: Option<[KernelItimerval; 3]>,
    /// Ascending by id.
    pub posix: Vec<TimerArg>,
}

pub fn prepare(dir: &Path, task: &TaskImage, ids: &InnerIds) -> Result<TaskTimers, RestoreError> {
    let pid = task.pid.0;
    let itimers = task.core.itimers.map(|ts| {
        ts.map(|t| KernelItimerval {
            interval_sec: (t.interval_us / 1_000_000) as i64,
            interval_usec: (t.interval_us % 1_000_000) as i64,
            value_sec: (t.value_us / 1_000_000) as i64,
            value_usec: (t.value_us % 1_000_000) as i64,
        })
    });
    let mut posix = posix_timers(pid, &task.core.posix_timers)?;
    // The blob creates them inside the tree's pid namespace: the thread a timer signals as seen there.
    for t in &mut posix {
        if t.notify_tid != 0 {
            t.notify_tid = inner_tid(dir, pid, ids, t.notify_tid as u32)? as i32;
        }
    }
    Ok(TaskTimers { itimers, posix })
}

/// Refuses POSIX timers on a kernel that cannot give them their ids back.
pub fn refuse(task: &TaskImage) -> Result<(), Unsupported> {
    if task.core.posix_timers.is_empty() {
        return Ok(());
    }
    probe_restore_ids(task.pid.0, task.core.posix_timers.len())
}

/// Whether this kernel has `PR_TIMER_CREATE_RESTORE_IDS`; `count` timers of `pid` need it.
fn probe_restore_ids(pid: u32, count: usize) -> Result<(), Unsupported> {
    // SAFETY: the GET form of this prctl only reads a flag of the calling task.
    let probe = unsafe {
        libc::prctl(
            PR_TIMER_CREATE_RESTORE_IDS,
            PR_TIMER_CREATE_RESTORE_IDS_GET,
            0,
            0,
            0,
        )
    };
    if probe < 0 {
        return Err(Unsupported::TimerIds {
            pid,
            count,
            errno: nix::Error::last(),
        });
    }
    Ok(())
}

/// The saved POSIX timers for the blob; refuses a task with timers on a kernel that cannot give them their
/// ids back (a different id would silently break the task's `timer_*` calls).
fn posix_timers(pid: u32, timers: &[PosixTimer]) -> Result<Vec<TimerArg>, RestoreError> {
    if timers.is_empty() {
        return Ok(Vec::new());
    }
    probe_restore_ids(pid, timers.len())?;
    const NS: u64 = 1_000_000_000;
    Ok(timers
        .iter()
        .map(|t| TimerArg {
            id: t.id,
            clock: t.clock,
            notify: t.notify,
            signo: t.signo,
            notify_tid: t.notify_tid.map_or(0, |tid| tid.0 as i32),
            _pad: 0,
            value: t.value,
            interval_sec: (t.interval_ns / NS) as i64,
            interval_nsec: (t.interval_ns % NS) as i64,
            value_sec: (t.value_ns / NS) as i64,
            value_nsec: (t.value_ns % NS) as i64,
        })
        .collect())
}
