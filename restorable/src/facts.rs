//! What [`crate::check`] looks at: a few facts per task, read from `/proc` by the dumper or from the image
//! by the restorer.

use dormant_image::records::{NsKind, Pid, TaskNamespaces};
use dormant_image::Image;

/// One task of a tree, as far as the check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFacts {
    pub pid: Pid,
    /// Real, effective and saved uid.
    pub uids: [u32; 3],
    /// Real, effective and saved gid.
    pub gids: [u32; 3],
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
}

/// Who runs dormant: the credentials a restored task gets while credentials are not restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runner {
    pub uids: [u32; 3],
    pub gids: [u32; 3],
}

impl Runner {
    /// The calling process's real, effective and saved ids.
    pub fn current() -> Runner {
        let (mut r, mut e, mut s) = (0, 0, 0);
        // SAFETY: getresuid writes three uids into our stack variables; it cannot fail with valid pointers.
        unsafe { libc::getresuid(&mut r, &mut e, &mut s) };
        let uids = [r, e, s];
        // SAFETY: as above, for the gids.
        unsafe { libc::getresgid(&mut r, &mut e, &mut s) };
        Runner {
            uids,
            gids: [r, e, s],
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
        .map(|t| {
            let c = &t.core.creds;
            TaskFacts {
                pid: t.pid(),
                uids: [c.uids[0], c.uids[1], c.uids[2]],
                gids: [c.gids[0], c.gids[1], c.gids[2]],
                cwd: t.core.cwd.clone(),
                root: t.core.root.clone(),
                ns_pids: t.tree.ns_pids.clone(),
                namespaces: namespaces.iter().find(|n| n.pid == t.pid()).cloned(),
            }
        })
        .collect()
}
