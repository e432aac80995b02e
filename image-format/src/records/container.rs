//! Records of container dumps beyond mounts and namespaces: the container's root directory as the dumper
//! named it (`container-root`, from `dormant dump --root`) and the content of external tmpfs mounts.
//!
//! The pids tasks have inside nested pid namespaces are `PsTreeEntry::ns_pids` (and `Zombie::inner_pid`,
//! `ThreadCore::ns_tids`). Record kind 40 was a separate `ns-pids` file duplicating them: it is retired,
//! no longer written or read, and its number stays reserved (an image that still has the file shows it as
//! an unknown file).

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;
use serde::{Deserialize, Serialize};

use super::RecordKind;
use crate::Record;

/// The directory that was the container's root filesystem in the dumper's mount namespace
/// (`dormant dump --root DIR`), checked at dump to be the root of the tree's mount namespace (same device
/// and inode as `/proc/PID/root`). A restore given no `--root` binds the container root from it, when it
/// is still a directory there.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRoot {
    /// Absolute path in the dumper's mount namespace.
    pub path: String,
    /// Device and inode of the directory at dump time (for the log and `dormant show`).
    pub dev: u64,
    pub ino: u64,
}

impl Record for ContainerRoot {
    const KIND: RecordKind = RecordKind::ContainerRoot;
}

/// File names of the container records.
pub mod container_names {
    /// One [`crate::records::ContainerRoot`], present only when the dump was given `--root`.
    pub const CONTAINER_ROOT: &str = "container-root";

    /// Content ([`crate::records::TmpfsRecord`]s) of an external tmpfs mount the container uses (its /dev/shm,
    /// bound from the sandbox's): restored into the outside tmpfs when that is empty at restore.
    pub fn ext_tmpfs(id: crate::records::MountId) -> String {
        format!("ext-tmpfs-{}", id.0)
    }
}

pub(super) fn container_file_kind(name: &str) -> Option<RecordKind> {
    if name == container_names::CONTAINER_ROOT {
        return Some(RecordKind::ContainerRoot);
    }
    name.strip_prefix("ext-tmpfs-")
        .filter(|id| id.parse::<u32>().is_ok())
        .map(|_| RecordKind::TmpfsContent)
}

/// The container half of `check_references`: the pid-namespace levels of every task, when recorded, start
/// with its pid; a `container-root` file holds exactly one absolute path.
pub fn check_container_references(img: &crate::ImageReader) -> Vec<String> {
    use super::{names, PsTreeEntry};
    let mut problems = Vec::new();
    if let Ok(tree) = img.read_records::<PsTreeEntry>(names::PSTREE) {
        for t in &tree {
            if t.ns_pids.first().is_some_and(|first| *first != t.pid) {
                problems.push(format!(
                    "{}: pid {} has pid-namespace levels {:?} that do not start with it",
                    names::PSTREE,
                    t.pid.0,
                    t.ns_pids.iter().map(|p| p.0).collect::<Vec<_>>()
                ));
            }
        }
    }
    if img.has_file(container_names::CONTAINER_ROOT) {
        match img.read_records::<ContainerRoot>(container_names::CONTAINER_ROOT) {
            Ok(r) if r.len() == 1 && r[0].path.starts_with('/') => {}
            Ok(r) => problems.push(format!(
                "{}: {} entries {:?}; one absolute path expected",
                container_names::CONTAINER_ROOT,
                r.len(),
                r.iter().map(|e| e.path.as_str()).collect::<Vec<_>>()
            )),
            Err(e) => problems.push(format!("{}: {e}", container_names::CONTAINER_ROOT)),
        }
    }
    problems
}
