//! What [`crate::check`] looks at: a few facts per task, read from `/proc` by the dumper or from the image
//! by the restorer.

use dormant_image::records::{Creds, NsKind, Pid, TaskNamespaces};
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
}

impl Runner {
    /// The calling thread's credentials (see [`crate::creds::current`]).
    pub fn current() -> Runner {
        Runner {
            creds: crate::creds::current(),
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
        })
        .collect()
}
