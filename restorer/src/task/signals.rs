//! The task's signal state the blob restores: the actions of every signal and the pending queues
//! (process-wide and per thread). Each thread's mask and alternate stack travel with the thread
//! ([`super::threads`]).

use std::path::Path;

use dormant_image::records::SigInfo;
use dormant_restorer_proto::QueuedSigArg;
use dormant_sys::signal::{KernelSigaction, NSIG, SIGINFO_SIZE};

use super::threads::inner_tid;
use crate::error::RestoreError;
use crate::image::TaskImage;
use crate::ns::pid::InnerIds;
use crate::refusal::Unsupported;

/// Signal actions (`None`: every action reset to its default) and the signals to re-queue.
#[derive(Debug)]
pub struct TaskSignals {
    pub actions: Option<Box<[KernelSigaction; NSIG]>>,
    /// Process-wide ones first, each queue in its saved order.
    pub queued: Vec<QueuedSigArg>,
}

pub fn prepare(dir: &Path, task: &TaskImage, ids: &InnerIds) -> Result<TaskSignals, RestoreError> {
    let pid = task.pid.0;
    let core = &task.core;
    let actions = match &core.sigactions {
        Some(acts) if acts.len() == NSIG => {
            let mut out = Box::new([KernelSigaction::default(); NSIG]);
            for (o, a) in out.iter_mut().zip(acts) {
                *o = KernelSigaction::from(*a);
            }
            Some(out)
        }
        Some(acts) => {
            return Err(RestoreError::BadImage {
                dir: dir.to_owned(),
                reason: format!("pid {pid}: {} signal actions instead of {NSIG}", acts.len()),
            })
        }
        None => {
            log::warn!(
                "pid {pid}: the image has no signal actions; every action is reset to its default"
            );
            None
        }
    };
    let mut queued = queued_signals(dir, pid, &core.shared_pending, true, 0)?;
    for t in task.threads() {
        if !t.pending.is_empty() {
            // The blob queues these inside the tree's pid namespace: thread ids as seen there.
            let tid = inner_tid(dir, pid, ids, t.tid.0)?;
            queued.extend(queued_signals(dir, pid, &t.pending, false, tid)?);
        }
    }
    Ok(TaskSignals { actions, queued })
}

/// Refuses a pending SIGTRAP, process-wide or of a thread (see [`queued_signals`]).
pub fn refuse(task: &TaskImage) -> Result<(), Unsupported> {
    let trap = |si: &SigInfo| si.0.get(..4) == Some(&libc::SIGTRAP.to_le_bytes()[..]);
    let pending = task.threads().flat_map(|t| &t.pending);
    if task.core.shared_pending.iter().chain(pending).any(trap) {
        return Err(Unsupported::PendingSigtrap { pid: task.pid.0 });
    }
    Ok(())
}

/// One saved queue of pending signals as the blob re-queues them (the process-wide one when `shared`).
fn queued_signals(
    dir: &Path,
    pid: u32,
    queue: &[SigInfo],
    shared: bool,
    tid: u32,
) -> Result<Vec<QueuedSigArg>, RestoreError> {
    let one = |si: &SigInfo, is_shared: bool| -> Result<QueuedSigArg, RestoreError> {
        let info: [u8; SIGINFO_SIZE] =
            si.0.as_slice()
                .try_into()
                .map_err(|_| RestoreError::BadImage {
                    dir: dir.to_owned(),
                    reason: format!(
                        "pid {pid}: a pending siginfo of {} bytes instead of {SIGINFO_SIZE}",
                        si.0.len()
                    ),
                })?;
        let signo = i32::from_le_bytes([info[0], info[1], info[2], info[3]]);
        if !(1..=NSIG as i32).contains(&signo) {
            return Err(RestoreError::BadImage {
                dir: dir.to_owned(),
                reason: format!("pid {pid}: pending signal number {signo}"),
            });
        }
        // The blob keeps SIGTRAP unblocked for its final int3 (see the blob's `block_signals`): a queued one
        // would be delivered to the tracer in the middle of the restore instead of to the task.
        if signo == libc::SIGTRAP {
            return Err(Unsupported::PendingSigtrap { pid }.into());
        }
        Ok(QueuedSigArg {
            shared: is_shared as u32,
            signo,
            tid: tid as i32,
            _pad: 0,
            info,
        })
    };
    queue.iter().map(|si| one(si, shared)).collect()
}
