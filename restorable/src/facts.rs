//! What [`crate::check`] looks at: a few facts per task, read from `/proc` by the dumper or from the image
//! by the restorer.

use dormant_image::records::{names, ns_names, NsKind, Pid, PsTreeEntry, TaskCore, TaskNamespaces};
use dormant_image::ImageReader;

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

/// The facts of every task of an image, in tree order (the root first).
pub fn facts_from_image(img: &ImageReader) -> dormant_image::Result<Vec<TaskFacts>> {
    let entries: Vec<PsTreeEntry> = img.read_records(names::PSTREE)?;
    let namespaces: Vec<TaskNamespaces> = if img.has_file(ns_names::NS_IDS) {
        img.read_records(ns_names::NS_IDS)?
    } else {
        Vec::new()
    };
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let core: TaskCore = img.read_single(&names::core(e.pid))?;
        let c = &core.creds;
        out.push(TaskFacts {
            pid: e.pid,
            uids: [c.uids[0], c.uids[1], c.uids[2]],
            gids: [c.gids[0], c.gids[1], c.gids[2]],
            cwd: core.cwd,
            root: core.root,
            ns_pids: e.ns_pids,
            namespaces: namespaces.iter().find(|n| n.pid == e.pid).cloned(),
        });
    }
    Ok(out)
}
