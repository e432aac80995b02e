//! time namespace: a tree that ran in a time namespace of its own gets a new one with the dumped offsets
//! of CLOCK_MONOTONIC and CLOCK_BOOTTIME, so the clocks its tasks read keep their distance to the host's
//! and never jump backwards.
//!
//! The kernel accepts offsets only before the first task enters the namespace, and a task enters it only
//! by being forked after its parent unshared it (`time_for_children`). So the restoring process (single
//! threaded, right before it forks the tree) unshares, writes `/proc/self/timens_offsets`, forks, and then
//! goes back to its own namespace for later children ([`ChildrenTimeNs`]'s drop).

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;

use dormant_image::records::{NsKind, Pid, TimeNamespace};
use dormant_image::Image;
use nix::sched::CloneFlags;

use super::error::{NsRestoreError, Result};

/// `CLONE_NEWTIME`: nix does not name it (it shares a value with the CSIGNAL bits).
const CLONE_NEWTIME: libc::c_int = 0x80;

/// The time namespace of the tree whose root is `root`, when it had one of its own (`None`: the host's;
/// `dormant_restorable` made sure every task shares the root's).
pub fn plan(img: &Image, root: Pid) -> Result<Option<TimeNamespace>> {
    let Some(ns) = &img.namespaces else {
        return Ok(None);
    };
    let own = ns
        .tasks
        .iter()
        .find(|t| t.pid == root)
        .and_then(|t| t.get(NsKind::Time))
        .filter(|n| !n.external);
    let Some(own) = own else {
        return Ok(None);
    };
    ns.time
        .get(&own.id)
        .copied()
        .map(Some)
        .ok_or_else(|| NsRestoreError::BadImage {
            dir: PathBuf::new(),
            reason: format!("time namespace {} has no record", own.id.0),
        })
}

/// While alive, the children the calling process forks enter a new time namespace with the saved
/// offsets; dropping it puts the caller's `time_for_children` back (the caller must still be
/// single-threaded then, as setns of a time namespace demands).
#[derive(Debug)]
pub struct ChildrenTimeNs {
    before: File,
}

impl ChildrenTimeNs {
    /// Unshares a time namespace for the caller's children and writes `t`'s offsets into it.
    pub fn enter(t: &TimeNamespace) -> Result<ChildrenTimeNs> {
        let file_err = |what, path: &str| {
            let path = PathBuf::from(path);
            move |source| NsRestoreError::File { what, path, source }
        };
        let before = File::open("/proc/self/ns/time_for_children").map_err(file_err(
            "opening the restorer's time namespace",
            "/proc/self/ns/time_for_children",
        ))?;
        nix::sched::unshare(CloneFlags::from_bits_retain(CLONE_NEWTIME)).map_err(|source| {
            NsRestoreError::Syscall {
                step: "unshare(CLONE_NEWTIME)",
                source,
            }
        })?;
        let guard = ChildrenTimeNs { before };
        let offsets = format!(
            "monotonic {} {}\nboottime {} {}\n",
            t.monotonic.secs, t.monotonic.nanos, t.boottime.secs, t.boottime.nanos
        );
        std::fs::write("/proc/self/timens_offsets", offsets).map_err(file_err(
            "writing the time namespace's clock offsets to",
            "/proc/self/timens_offsets",
        ))?;
        log::debug!(
            "time namespace {}: monotonic {:?}, boottime {:?}",
            t.id.0,
            t.monotonic,
            t.boottime
        );
        Ok(guard)
    }
}

impl Drop for ChildrenTimeNs {
    fn drop(&mut self) {
        if let Err(e) = nix::sched::setns(
            self.before.as_fd(),
            CloneFlags::from_bits_retain(CLONE_NEWTIME),
        ) {
            log::warn!("returning to the restorer's own time namespace for children: {e}");
        }
    }
}
