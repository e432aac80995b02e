//! The process tree: every live process with its parent, process group, session and threads
//! (`pstree`), the zombies among its children (`zombies`), and which processes share an fd table or an fs
//! struct (`shared-tables`).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use super::file_names::{PSTREE, SHARED_TABLES, ZOMBIES};
use super::ids::{Pid, Tid};
use crate::error::Problems;

/// One process of the dumped tree (`pstree`, one entry per process, root first).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsTreeEntry {
    pub pid: Pid,
    /// Parent inside the tree; `None` for the root.
    pub ppid: Option<Pid>,
    pub pgid: Pid,
    pub sid: Pid,
    /// Every thread, leader first.
    pub threads: Vec<Tid>,
    /// `NSpid`: the pid in each pid namespace from the dumper's (= `pid`) down to the process's own; one
    /// entry when the process is in the dumper's pid namespace, empty when the kernel did not say.
    pub ns_pids: Vec<Pid>,
}

/// A zombie of the dumped tree (`zombies`, one entry per zombie): a child that exited and was not reaped
/// yet. The restorer recreates it as a child of `ppid` that exits at once with `exit_status`, so the
/// parent's `wait` still finds it.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zombie {
    pub pid: Pid,
    pub ppid: Pid,
    pub pgid: Pid,
    pub sid: Pid,
    /// The raw wait status (`exit code << 8`, or the terminating signal in the low 7 bits).
    pub exit_status: u32,
    /// Its pid in the pid namespace one level below the dumper's, when it lived in one (the second
    /// `NSpid` entry; deeper nesting is not restorable anyway).
    pub inner_pid: Option<Pid>,
}

/// Which fd table and which fs struct (cwd, root, umask) a process of the tree has (`shared-tables`, one
/// entry per process that shares either with another process of the tree): each is named by the pid of
/// the first process in `pstree` order that has it, so equal ids mean shared (`clone(CLONE_FILES)`,
/// `CLONE_FS`), and a process that has its own is its own id. A process without an entry has both of its
/// own; an image without the file (older dumps, which refused any sharing) shares nothing.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedTables {
    pub pid: Pid,
    /// The fd table's id (see the type's docs).
    pub files: Pid,
    /// The fs struct's id.
    pub fs: Pid,
}

impl SharedTables {
    /// The ids of process `pid` in `entries`: its own when it has no entry.
    pub fn of(entries: &[SharedTables], pid: Pid) -> SharedTables {
        entries
            .iter()
            .copied()
            .find(|e| e.pid == pid)
            .unwrap_or(SharedTables {
                pid,
                files: pid,
                fs: pid,
            })
    }
}

/// Checks the sharing entries against the tree: each names a process of the tree once, shares something,
/// and each id is a process before it in the tree that has that table itself (its own id).
pub(crate) fn check_shared_tables(
    entries: &[SharedTables],
    tree: &[PsTreeEntry],
    p: &mut Problems,
) {
    let at = |pid: Pid| tree.iter().position(|t| t.pid == pid);
    let mut seen = BTreeSet::new();
    for e in entries {
        if !seen.insert(e.pid) {
            p.add(SHARED_TABLES, format!("pid {} is listed twice", e.pid.0));
        }
        let Some(i) = at(e.pid) else {
            p.add(SHARED_TABLES, format!("pid {} is not in the tree", e.pid.0));
            continue;
        };
        if e.files == e.pid && e.fs == e.pid {
            p.add(SHARED_TABLES, format!("pid {} shares nothing", e.pid.0));
        }
        for (what, id) in [("fd table", e.files), ("fs struct", e.fs)] {
            if id == e.pid {
                continue;
            }
            let own = |o: &SharedTables| if what == "fd table" { o.files } else { o.fs };
            let owner_ok =
                at(id).is_some_and(|j| j < i) && own(&SharedTables::of(entries, id)) == id;
            if !owner_ok {
                p.add(
                    SHARED_TABLES,
                    format!(
                        "pid {}: its {what} is named after pid {}, which is not an earlier process of \
                         the tree with that {what} of its own",
                        e.pid.0, id.0
                    ),
                );
            }
        }
    }
}

/// Checks the tree: it is not empty, starts with the inventory's root, lists every pid and tid once, each
/// parent before its children (the order restore forks in) and each leader thread first.
pub(crate) fn check_tree(tree: &[PsTreeEntry], root: Pid, p: &mut Problems) {
    match tree.first() {
        None => return p.add(PSTREE, "the process tree is empty"),
        Some(first) if first.pid != root => p.add(
            PSTREE,
            format!(
                "first task is {}, the inventory's root is {}",
                first.pid.0, root.0
            ),
        ),
        Some(_) => {}
    }
    let mut pids = BTreeSet::new();
    let mut tids = BTreeSet::new();
    for (i, t) in tree.iter().enumerate() {
        if !pids.insert(t.pid) {
            p.add(PSTREE, format!("pid {} is listed twice", t.pid.0));
        }
        match t.ppid {
            None if i == 0 => {}
            None => p.add(
                PSTREE,
                format!("pid {} has no parent but is not the root", t.pid.0),
            ),
            Some(pp) if i == 0 => {
                p.add(PSTREE, format!("the root {} has parent {}", t.pid.0, pp.0))
            }
            Some(pp) if !tree[..i].iter().any(|e| e.pid == pp) => p.add(
                PSTREE,
                format!(
                    "parent {} of pid {} is not in the tree before it",
                    pp.0, t.pid.0
                ),
            ),
            Some(_) => {}
        }
        if t.threads.first().map(|x| x.0) != Some(t.pid.0) {
            p.add(
                PSTREE,
                format!("pid {} does not list its leader thread first", t.pid.0),
            );
        }
        for tid in &t.threads {
            if !tids.insert(*tid) {
                p.add(PSTREE, format!("thread {} is listed twice", tid.0));
            }
        }
    }
}

/// Checks the zombies: each is a child of a live process of the tree and is not one itself.
pub(crate) fn check_zombies(zombies: &[Zombie], pids: &BTreeSet<Pid>, p: &mut Problems) {
    let mut seen = BTreeSet::new();
    for z in zombies {
        if !pids.contains(&z.ppid) {
            p.add(
                ZOMBIES,
                format!(
                    "parent {} of zombie {} is not in the tree",
                    z.ppid.0, z.pid.0
                ),
            );
        }
        if pids.contains(&z.pid) {
            p.add(
                ZOMBIES,
                format!("zombie {} is also a live process of the tree", z.pid.0),
            );
        }
        if !seen.insert(z.pid) {
            p.add(ZOMBIES, format!("zombie {} is listed twice", z.pid.0));
        }
    }
}
