//! Records of container dumps beyond mounts and namespaces: the pids tasks have inside nested pid
//! namespaces (`ns-pids`).

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;
use serde::{Deserialize, Serialize};

use super::{Pid, RecordKind};
use crate::Record;

/// A task's pid in every pid namespace from the dumper's down to the task's own (`/proc/PID/status`
/// `NSpid`): `levels[0]` is `pid` itself, the last entry the pid the task sees for itself. Restore forks
/// the task with all of them (clone3 `set_tid`, innermost first), so it keeps its pids inside the
/// container and, where it is free, outside too.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsPids {
    pub pid: Pid,
    pub levels: Vec<u32>,
}

impl Record for NsPids {
    const KIND: RecordKind = RecordKind::NsPids;
}

/// File names of the container records.
pub mod container_names {
    pub const NS_PIDS: &str = "ns-pids";

    /// Content ([`crate::records::TmpfsRecord`]s) of an external tmpfs mount the container uses (its /dev/shm,
    /// bound from the sandbox's): restored into the outside tmpfs when that is empty at restore.
    pub fn ext_tmpfs(id: crate::records::MountId) -> String {
        format!("ext-tmpfs-{}", id.0)
    }
}

pub(super) fn container_file_kind(name: &str) -> Option<RecordKind> {
    if name == container_names::NS_PIDS {
        return Some(RecordKind::NsPids);
    }
    name.strip_prefix("ext-tmpfs-")
        .filter(|id| id.parse::<u32>().is_ok())
        .map(|_| RecordKind::TmpfsContent)
}

/// The container half of `check_references`: every `ns-pids` entry is a task of the tree and starts with
/// its pid.
pub fn check_container_references(img: &crate::ImageReader) -> Vec<String> {
    if !img.has_file(container_names::NS_PIDS) {
        return Vec::new();
    }
    let read = img
        .read_records::<NsPids>(container_names::NS_PIDS)
        .and_then(|p| {
            Ok((
                p,
                img.read_records::<super::PsTreeEntry>(super::names::PSTREE)?,
            ))
        });
    let (pids, tree) = match read {
        Ok(x) => x,
        Err(e) => return vec![format!("{}: {e}", container_names::NS_PIDS)],
    };
    let mut problems = Vec::new();
    for p in &pids {
        if !tree.iter().any(|t| t.pid == p.pid) {
            problems.push(format!(
                "{}: pid {} is not a task of the pstree",
                container_names::NS_PIDS,
                p.pid.0
            ));
        }
        if p.levels.first() != Some(&p.pid.0) {
            problems.push(format!(
                "{}: pid {} has levels {:?} that do not start with it",
                container_names::NS_PIDS,
                p.pid.0,
                p.levels
            ));
        }
    }
    problems
}
