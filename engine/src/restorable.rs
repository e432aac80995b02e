//! The dump's half of "if a dump succeeds, its restore succeeds": right after the tree is seized, before
//! anything is injected or written, every task's facts are read from `/proc` and checked against
//! [`dormant_restorable`], the list the restorer checks images against. A refusal fails the dump with the
//! restorer's own message, and the target runs on untouched.
//!
//! One more refusal is the dump's alone, since no image records it: a namespace a task unshared for
//! children it has not forked yet (`/proc/PID/ns/{pid,time}_for_children`). Restored without it, the
//! task's next children would start in its own namespace instead. Which processes share an fd table or an
//! fs struct (cwd, root, umask) is found here too ([`shared_tables`], recorded in `shared-tables`): the
//! restore clones a sharer from its parent with `CLONE_FILES`/`CLONE_FS`, and gives every thread its
//! process's, so threads with their own (`unshare`) and sharing not between parent and child are refused.

use std::os::unix::fs::MetadataExt;

use dormant_image::records::{NsKind, Pid, SharedTables, TaskNamespaces};
use dormant_restorable::{Runner, TaskFacts};

use crate::error::{DumpError, Result};
use crate::ns;
use crate::proc;
use crate::tree::SeizedTree;

/// Namespace kinds a task can unshare for its children only (`/proc/PID/ns/<kind>_for_children`).
const FOR_CHILDREN: [NsKind; 2] = [NsKind::Pid, NsKind::Time];

/// Refuses a tree whose `facts` ([`read_facts`]) the restore could not rebuild (see the module docs).
pub fn check(facts: &[TaskFacts]) -> Result<()> {
    dormant_restorable::check(facts, &Runner::current()).map_err(DumpError::Unrestorable)?;
    let in_tree: Vec<u64> = facts
        .iter()
        .filter_map(|f| f.namespaces.as_ref())
        .flat_map(|n| n.namespaces.iter().map(|r| r.id.0))
        .collect();
    for f in facts {
        if let Some(kind) = for_children(f.pid.0, &in_tree)?.first() {
            return Err(DumpError::ForChildren {
                pid: f.pid.0,
                kind: kind.proc_name(),
            });
        }
    }
    Ok(())
}

/// The facts of every task of the seized tree, the root first.
pub fn read_facts(tree: &SeizedTree) -> Result<Vec<TaskFacts>> {
    tree.tasks
        .iter()
        .map(|t| task_facts(t.task.pid(), &t.task.tids()))
        .collect()
}

/// What `/proc` tells about task `pid` (threads `tids`, the leader first) for the check.
fn task_facts(pid: u32, tids: &[u32]) -> Result<TaskFacts> {
    let status = proc::status::parse(&proc::read_string(pid, "status")?).map_err(|reason| {
        DumpError::ProcParse {
            pid,
            file: "status",
            reason,
        }
    })?;
    let mut creds = vec![(pid, status.creds.clone())];
    for &tid in tids.iter().skip(1) {
        creds.push((tid, crate::task::threads::status(pid, tid)?.creds));
    }
    let namespaces: TaskNamespaces = ns::task_namespaces(Pid(pid))?;
    let sched_policies = tids
        .iter()
        .map(|&tid| Ok((tid, crate::task::attrs::sched_params(pid, tid)?.policy)))
        .collect::<Result<Vec<_>>>()?;
    Ok(TaskFacts {
        pid: Pid(pid),
        creds,
        cwd: proc::read_link(pid, "cwd")?,
        root: proc::read_link(pid, "root")?,
        ns_pids: status.ns_pids.iter().copied().map(Pid).collect(),
        namespaces: Some(namespaces),
        seccomp: crate::task::seccomp::read(pid, tids)?,
        sched_policies,
        oom_score_adj: Some(crate::task::attrs::oom_score_adj(pid)?),
    })
}

/// The kinds task `pid` unshared for children that no task of the tree (`in_tree`: every namespace id
/// the tree's tasks are in) has entered: its `<kind>_for_children` is neither its own namespace nor one
/// of the tree's. A link that cannot be followed (the namespace exists only for a child not forked yet)
/// counts as unshared.
fn for_children(pid: u32, in_tree: &[u64]) -> Result<Vec<NsKind>> {
    let mut out = Vec::new();
    for kind in FOR_CHILDREN {
        let own = proc::path(pid, &format!("ns/{}", kind.proc_name()));
        let own = match std::fs::metadata(&own) {
            Ok(m) => m.ino(),
            // A kernel without this namespace kind.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(DumpError::ProcRead {
                    pid,
                    path: own,
                    source,
                })
            }
        };
        let path = proc::path(pid, &format!("ns/{}_for_children", kind.proc_name()));
        match std::fs::metadata(&path) {
            Ok(m) if m.ino() == own || in_tree.contains(&m.ino()) => {}
            Ok(_) => out.push(kind),
            Err(e) if proc::is_gone(&e) && std::path::Path::new(&proc::path(pid, "")).exists() => {
                out.push(kind)
            }
            Err(source) => return Err(DumpError::ProcRead { pid, path, source }),
        }
    }
    Ok(out)
}

/// The per-task objects [`shared_tables`] compares: kcmp type, what sharing it means, and the `clone` flag.
const SHARED_TABLES: [(libc::c_int, &str, &str); 2] = [
    (dormant_sys::host::KCMP_FILES, "fd table", "CLONE_FILES"),
    (
        dormant_sys::host::KCMP_FS,
        "fs struct (cwd, root, umask)",
        "CLONE_FS",
    ),
];

/// Which processes of the tree share an fd table or an fs struct (see [`SharedTables`]): the entries of
/// those that share either. Refuses a thread with a table of its own (`unshare`), and sharing the restore
/// cannot clone again: a process sharing a table its parent does not have (siblings cloned with
/// `CLONE_PARENT`, or a parent that unshared since). Pairwise over processes: trees are small, and kcmp
/// is one cheap syscall.
pub fn shared_tables(tree: &SeizedTree) -> Result<Vec<SharedTables>> {
    let tasks: Vec<(u32, Option<u32>, Vec<u32>)> = tree
        .tasks
        .iter()
        .map(|t| (t.task.pid(), t.ppid, t.task.tids()))
        .collect();
    let same = |a: u32, b: u32, kind: libc::c_int| {
        dormant_sys::host::kcmp_same(a as i32, b as i32, kind).map_err(|e| DumpError::Sharing {
            pid: a,
            what: format!("kcmp with task {b}: {e}"),
        })
    };
    let mut owners: Vec<[u32; 2]> = Vec::with_capacity(tasks.len());
    for (i, (pid, ppid, tids)) in tasks.iter().enumerate() {
        let mut ids = [*pid; 2];
        for (k, (kind, table, flag)) in SHARED_TABLES.into_iter().enumerate() {
            for &tid in tids.iter().filter(|&&t| t != *pid) {
                if !same(*pid, tid, kind)? {
                    return Err(DumpError::Sharing {
                        pid: *pid,
                        what: format!("thread {tid} has an {table} of its own (unshare({flag}))"),
                    });
                }
            }
            // The first earlier process with the same table names it (its owner names itself).
            for (j, (other, _, _)) in tasks[..i].iter().enumerate() {
                if owners[j][k] == *other && same(*pid, *other, kind)? {
                    ids[k] = *other;
                    break;
                }
            }
            if ids[k] == *pid {
                continue;
            }
            // Restore clones a sharer from its parent with the flag, so the parent must share it too.
            let parent = ppid.and_then(|pp| tasks[..i].iter().position(|t| t.0 == pp));
            if parent.is_none_or(|p| owners[p][k] != ids[k]) {
                return Err(DumpError::Sharing {
                    pid: *pid,
                    what: format!(
                        "shares its {table} with pid {} but its parent {} does not ({flag} \
                         from a process other than its parent)",
                        ids[k],
                        ppid.unwrap_or(0)
                    ),
                });
            }
        }
        owners.push(ids);
    }
    Ok(tasks
        .iter()
        .zip(&owners)
        .filter(|((pid, _, _), ids)| ids[0] != *pid || ids[1] != *pid)
        .map(|((pid, _, _), ids)| SharedTables {
            pid: Pid(*pid),
            files: Pid(ids[0]),
            fs: Pid(ids[1]),
        })
        .collect())
}
