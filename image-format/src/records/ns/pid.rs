//! Pid namespaces: a process's pid in each pid namespace from the dumper's down to its own is
//! [`crate::records::PsTreeEntry::ns_pids`] (with `ThreadCore::ns_tids` and `Zombie::inner_pid`); the
//! namespace itself is named in `ns-ids` like every other.

use crate::error::Problems;
use crate::records::file_names::PSTREE;
use crate::records::tree::PsTreeEntry;

/// Checks that the pid-namespace levels of every task, when recorded, start with its pid.
pub(crate) fn check_ns_pids(tree: &[PsTreeEntry], p: &mut Problems) {
    for t in tree {
        if t.ns_pids.first().is_some_and(|first| *first != t.pid) {
            p.add(
                PSTREE,
                format!(
                    "pid {} has pid-namespace levels {:?} that do not start with it",
                    t.pid.0,
                    t.ns_pids.iter().map(|p| p.0).collect::<Vec<_>>()
                ),
            );
        }
    }
}
