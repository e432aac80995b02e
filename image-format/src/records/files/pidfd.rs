//! pidfds ([`super::DescKind::Pidfd`]): a pidfd is carried only when it refers to a process of the dumped
//! tree (live or zombie), named by its pid; restore reopens it once that process exists again.

use std::collections::BTreeSet;

use super::DescId;
use crate::error::Problems;
use crate::records::file_names::FILE_DESCS;
use crate::records::ids::Pid;

/// Checks that a pidfd's process is one of the image.
pub(crate) fn check_pidfd(desc: DescId, pid: u32, processes: &BTreeSet<Pid>, p: &mut Problems) {
    if !processes.contains(&Pid(pid)) {
        p.add(
            FILE_DESCS,
            format!(
                "pidfd {} refers to pid {pid}, which is not a process of the image",
                desc.0
            ),
        );
    }
}
