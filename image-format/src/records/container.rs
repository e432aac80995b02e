//! Records of container dumps beyond mounts and namespaces: the container's root directory as the dumper
//! named it (`container-root`, from `dormant dump --root`) and the content of external tmpfs mounts
//! (`ext-tmpfs-<mount id>`, [`crate::records::TmpfsRecord`]s).
//!
//! The pids tasks have inside nested pid namespaces are `PsTreeEntry::ns_pids` (and `Zombie::inner_pid`,
//! `ThreadCore::ns_tids`). Record kind 40 was a separate `ns-pids` file duplicating them: it is retired,
//! no longer written or read, and its number stays reserved (an image that still has the file shows it as
//! an unknown file).

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;
use serde::{Deserialize, Serialize};

use crate::error::Problems;
use crate::records::file_names::CONTAINER_ROOT;

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

/// File names of the container records.
pub mod container_names {
    pub use crate::records::file_names::{ext_tmpfs, CONTAINER_ROOT};
}

/// Checks `container-root`: one absolute path.
pub(crate) fn check_container_root(entries: &[ContainerRoot], p: &mut Problems) {
    if !(entries.len() == 1 && entries[0].path.starts_with('/')) {
        p.add(
            CONTAINER_ROOT,
            format!(
                "{} entries {:?}; one absolute path expected",
                entries.len(),
                entries.iter().map(|e| e.path.as_str()).collect::<Vec<_>>()
            ),
        );
    }
}
