//! What [`crate::check`] looks at: a few facts per task, read from `/proc` by the dumper or from the image
//! by the restorer.

use dormant_image::records::{Creds, NsKind, Pid, TaskNamespaces, TaskSeccomp};
use dormant_image::Image;

/// One task of a tree, as far as the check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFacts {
    pub pid: Pid,
    /// Every thread's tid and credentials, the leader first.
    pub creds: Vec<(u32, Creds)>,
    /// The working and root directories as `/proc/PID/{cwd,root}` link to them (` (deleted)` appended by
    /// the kernel when the directory was removed).
    pub cwd: String,
    pub root: String,
    /// `NSpid`: the task's pid in every pid namespace from dormant's down to its own.
    pub ns_pids: Vec<Pid>,
    /// The namespaces the task is in, each marked external when it is dormant's. `None` when they are not
    /// known: an image of a tree outside any container does not record them (its dump refused anything but
    /// dormant's namespaces and the root's pid namespace, which `ns_pids` shows).
    pub namespaces: Option<TaskNamespaces>,
    /// The seccomp state of its threads; `None` when no thread is under seccomp.
    pub seccomp: Option<TaskSeccomp>,
    /// Every thread's tid and scheduling policy (as far as known).
    pub sched_policies: Vec<(u32, u32)>,
    /// `oom_score_adj`, when known.
    pub oom_score_adj: Option<i32>,
}

impl TaskFacts {
    /// Whether the task is in a mount namespace other than dormant's (as far as known).
    pub fn own_mount_namespace(&self) -> bool {
        self.namespaces
            .as_ref()
            .and_then(|n| n.get(NsKind::Mnt))
            .is_some_and(|n| !n.external)
    }

    /// Whether the task is in a user namespace other than dormant's (as far as known).
    pub fn own_user_namespace(&self) -> bool {
        self.namespaces
            .as_ref()
            .and_then(|n| n.get(NsKind::User))
            .is_some_and(|n| !n.external)
    }
}

/// Who runs dormant: the credentials a restore has to give tasks theirs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runner {
    pub creds: Creds,
    /// Its `oom_score_adj`, which every restored process inherits (and can only raise without
    /// CAP_SYS_RESOURCE).
    pub oom_score_adj: i32,
}

impl Runner {
    /// The calling thread's credentials (see [`crate::creds::current`]).
    pub fn current() -> Runner {
        let oom_score_adj = std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        Runner {
            creds: crate::creds::current(),
            oom_score_adj,
        }
    }
}

/// The facts of every task of a loaded image, in tree order (the root first).
pub fn facts_from_image(img: &Image) -> Vec<TaskFacts> {
    let namespaces = img
        .namespaces
        .as_ref()
        .map(|n| n.tasks.as_slice())
        .unwrap_or(&[]);
    img.tasks
        .iter()
        .map(|t| TaskFacts {
            pid: t.pid(),
            creds: t
                .threads
                .iter()
                .map(|th| (th.tid.0, th.creds.clone().unwrap_or(t.core.creds.clone())))
                .collect(),
            cwd: t.core.cwd.clone(),
            root: t.core.root.clone(),
            ns_pids: t.tree.ns_pids.clone(),
            namespaces: namespaces.iter().find(|n| n.pid == t.pid()).cloned(),
            seccomp: t.seccomp.clone(),
            sched_policies: t
                .attrs
                .iter()
                .flat_map(|a| a.threads.iter().map(|th| (th.tid.0, th.sched.policy)))
                .collect(),
            oom_score_adj: t.attrs.as_ref().map(|a| a.oom_score_adj),
        })
        .collect()
}
