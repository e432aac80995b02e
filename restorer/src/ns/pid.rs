//! A tree whose root is the init of its own pid namespace but which shares the dumper's mount namespace
//! (started with `unshare(CLONE_NEWPID)` and a fork, or `unshare --pid --fork`, not a container).
//!
//! The image says so through `PsTreeEntry::ns_pids`: the root has two levels, `[outer pid, 1]`, and every
//! other task `[outer pid, inner pid]`. The launcher forks the root as pid 1 of a new pid namespace
//! (`unshare(CLONE_NEWPID)` in the process that forks it) and every task with `clone3`
//! `set_tid = [inner pid, outer pid]` (`Launch::ns_pid`): the outer pids, which the tracer and the restored
//! tree's outside observers use, stay the dumped ones. The tree shares the restorer's `/proc`, which shows
//! the outer namespace, as the dumped tree shared the dumper's: nothing is mounted.
//!
//! Threads are created by the blob with `set_tid = [inner, outer]` from their recorded `NSpid`.
//!
//! Zombies too, from the `NSpid` their record carries.
//!
//! What this does NOT do: nesting deeper than one level below the restorer's namespace; helper processes for gone session or group leaders inside the namespace
//! (their inner pids are not recorded).

use std::collections::BTreeMap;

use crate::error::RestoreError;
use crate::image::TreeImage;
use crate::refusal::Unsupported;

/// The tree's own pid namespace, planned from the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidNsPlan {
    /// Outer pid → pid inside the namespace, for every task.
    inner: BTreeMap<u32, u32>,
}

impl PidNsPlan {
    /// `None` when the tree's root is in the restorer's pid namespace (one `ns_pids` level, or none
    /// recorded); the plan when it is the init of a namespace one level down; an error for any other
    /// nesting.
    pub fn from_tree(tree: &TreeImage) -> Result<Option<PidNsPlan>, RestoreError> {
        let Some(root) = tree.tasks.first() else {
            return Ok(None);
        };
        match root.tree.ns_pids.as_slice() {
            [] | [_] => return Ok(None),
            [_, one] if one.0 == 1 => {}
            levels => {
                return Err(Unsupported::from(dormant_restorable::Refusal::PidNesting {
                    pid: root.pid.0,
                    levels: levels.iter().map(|p| p.0).collect(),
                })
                .into())
            }
        }
        let mut inner = BTreeMap::new();
        for t in &tree.tasks {
            match t.tree.ns_pids.as_slice() {
                [outer, i] if outer.0 == t.pid.0 => {
                    inner.insert(t.pid.0, i.0);
                }
                levels => {
                    return Err(Unsupported::InnerPidMissing {
                        pid: t.pid.0,
                        levels: levels.iter().map(|p| p.0).collect(),
                        root: root.pid.0,
                    }
                    .into())
                }
            }
            if let Some(o) = t
                .other_threads
                .iter()
                .find(|o| !matches!(o.ns_tids.as_slice(), [outer, _] if *outer == o.tid))
            {
                return Err(Unsupported::InnerTidMissing {
                    pid: t.pid.0,
                    tid: o.tid.0,
                    levels: o.ns_tids.iter().map(|p| p.0).collect(),
                }
                .into());
            }
        }
        if let Some(z) = tree.zombies.iter().find(|z| z.inner_pid.is_none()) {
            return Err(Unsupported::ZombieInnerPidMissing { pid: z.pid.0 }.into());
        }
        Ok(Some(PidNsPlan { inner }))
    }

    /// The pid task `pid` (outer) has inside the namespace.
    pub fn ns_pid(&self, pid: u32) -> Option<u32> {
        self.inner.get(&pid).copied()
    }

    /// Logs what the restore does with the tree (the launcher forks its root as the init of a new pid
    /// namespace, [`crate::launch::StartOptions::new_pid_ns`]).
    pub fn announce(&self) {
        log::info!(
            "pid namespace: the tree's root is forked as the init of a new pid namespace ({} task(s))",
            self.inner.len()
        );
    }
}

/// How a pid or tid recorded by the dumper (in its own pid namespace) reads inside the restored tree's
/// namespace, for the ids a restored task hands to the kernel itself: the thread a private pending
/// signal is re-queued to, the thread a POSIX timer signals (`SIGEV_THREAD_ID`), the owner of an fd
/// (`F_SETOWN_EX`). The kernel reads each in the caller's pid namespace.
#[derive(Debug, Clone, Default)]
pub struct InnerIds {
    /// Outer → inner for every task and thread of a tree in a nested namespace; `None`: not nested,
    /// every id reads the same.
    map: Option<BTreeMap<u32, u32>>,
}

impl InnerIds {
    /// Ids of a tree restored in the restorer's own pid namespace: unchanged.
    pub fn same() -> Self {
        Self { map: None }
    }

    /// Ids of a tree restored in a nested pid namespace: tasks and zombies through `inner_pid`, threads
    /// through their recorded `NSpid`.
    pub fn nested(tree: &TreeImage, inner_pid: impl Fn(u32) -> Option<u32>) -> Self {
        let mut map = BTreeMap::new();
        for t in &tree.tasks {
            if let Some(i) = inner_pid(t.pid.0) {
                map.insert(t.pid.0, i);
            }
            for th in t.threads() {
                if let [outer, inner] = th.ns_tids.as_slice() {
                    if *outer == th.tid {
                        map.insert(outer.0, inner.0);
                    }
                }
            }
        }
        for z in &tree.zombies {
            if let Some(i) = inner_pid(z.pid.0) {
                map.insert(z.pid.0, i);
            }
        }
        Self { map: Some(map) }
    }

    /// The id inside for `outer`; `None` when the tree is nested and `outer` is none of its tasks or
    /// threads (a process outside the namespace, which has no id there).
    pub fn inner(&self, outer: u32) -> Option<u32> {
        match &self.map {
            None => Some(outer),
            Some(m) => m.get(&outer).copied(),
        }
    }
}

#[cfg(test)]
mod inner_ids_tests {
    use super::*;

    #[test]
    fn same_is_identity_and_nested_maps_only_known_ids() {
        assert_eq!(InnerIds::same().inner(4242), Some(4242));
        let ids = InnerIds {
            map: Some(BTreeMap::from([(500, 1), (501, 2)])),
        };
        assert_eq!(ids.inner(501), Some(2));
        assert_eq!(ids.inner(777), None);
    }
}
