//! Which namespaces a task is in, against the dumper's own, and the one way the dumper looks inside one: a
//! short-lived helper thread that `setns()`es into it (uts, ipc and net may be entered per thread), so the
//! dumper itself never changes namespace.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use dormant_image::records::{NsId, NsKind, NsRef, Pid, TaskNamespaces};
use nix::sched::CloneFlags;

use super::error::{NsError, Result};

/// The nsfs inode of `/proc/<who>/ns/<kind>`; `None` when this kernel has no such namespace kind.
fn ns_inode(who: &str, kind: NsKind, pid: Pid) -> Result<Option<NsId>> {
    let path = PathBuf::from(format!("/proc/{who}/ns/{}", kind.proc_name()));
    match std::fs::metadata(&path) {
        Ok(m) => Ok(Some(NsId(m.ino()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && who == "self" => Ok(None),
        Err(e) => Err(NsError::Proc {
            pid,
            path,
            source: e,
        }),
    }
}

/// Which namespaces task `pid` is in, each marked external when the calling process is in the same one.
pub fn task_namespaces(pid: Pid) -> Result<TaskNamespaces> {
    let mut namespaces = Vec::new();
    for kind in NsKind::ALL {
        let Some(own) = ns_inode("self", kind, pid)? else {
            continue;
        };
        let Some(id) = ns_inode(&pid.0.to_string(), kind, pid)? else {
            continue;
        };
        namespaces.push(NsRef {
            kind,
            id,
            external: id == own,
        });
    }
    Ok(TaskNamespaces { pid, namespaces })
}

/// The `setns`/`unshare` flag of a namespace kind.
pub(crate) fn clone_flag(kind: NsKind) -> CloneFlags {
    match kind {
        NsKind::User => CloneFlags::CLONE_NEWUSER,
        NsKind::Uts => CloneFlags::CLONE_NEWUTS,
        NsKind::Ipc => CloneFlags::CLONE_NEWIPC,
        NsKind::Net => CloneFlags::CLONE_NEWNET,
        NsKind::Mnt => CloneFlags::CLONE_NEWNS,
        NsKind::Pid => CloneFlags::CLONE_NEWPID,
        NsKind::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        // CLONE_NEWTIME shares its value with CSIGNAL bits nix does not name; setns accepts 0 (any kind).
        NsKind::Time => CloneFlags::empty(),
    }
}

/// Runs `f` on a helper thread that has entered task `pid`'s namespace of `kind` (uts, ipc or net: kinds a
/// single thread may enter). The thread ends with `f`, taking its namespace membership with it, so the
/// calling thread never leaves its own namespaces.
pub(crate) fn in_namespace<T: Send>(
    pid: Pid,
    kind: NsKind,
    f: impl FnOnce() -> Result<T> + Send,
) -> Result<T> {
    debug_assert!(matches!(kind, NsKind::Uts | NsKind::Ipc | NsKind::Net));
    let path = PathBuf::from(format!("/proc/{}/ns/{}", pid.0, kind.proc_name()));
    let fd = File::open(&path).map_err(|source| NsError::Proc { pid, path, source })?;
    std::thread::scope(|s| {
        let helper = s.spawn(move || {
            nix::sched::setns(&fd, clone_flag(kind)).map_err(|source| NsError::Enter {
                pid,
                kind: kind.proc_name(),
                source,
            })?;
            f()
        });
        helper.join().unwrap_or(Err(NsError::HelperPanicked {
            pid,
            kind: kind.proc_name(),
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespaces_are_all_external() {
        let me = Pid(std::process::id());
        let t = task_namespaces(me).unwrap();
        assert_eq!(t.pid, me);
        for kind in [
            NsKind::User,
            NsKind::Uts,
            NsKind::Ipc,
            NsKind::Net,
            NsKind::Mnt,
            NsKind::Pid,
        ] {
            let n = t
                .get(kind)
                .unwrap_or_else(|| panic!("no {kind:?} namespace"));
            assert!(n.external, "{n:?}");
            let ino = std::fs::metadata(format!("/proc/self/ns/{}", kind.proc_name()))
                .unwrap()
                .ino();
            assert_eq!(n.id, NsId(ino));
        }
        assert!(matches!(
            task_namespaces(Pid(u32::MAX)),
            Err(NsError::Proc { .. })
        ));
    }
}
