//! Namespaces other than mount and pid: which ones each task is in, and the state of those dormant carries in
//! the image (uts names, System V IPC, cgroup membership, the network namespace's mode, user id maps).
//!
//! A namespace the dumper shares with the task is external (the host's or the agent's) and only named. The
//! others are read without disturbing them: uts, ipc and net state is read by a short-lived helper thread that
//! `setns()`es into the task's namespace (those three kinds may be entered per thread), so the dumper itself
//! never changes namespace. Mount and pid namespaces belong to the mount-tree and process-tree dumpers.

mod cgroup;
mod error;
mod ipc;
mod mqueue;
mod net;
mod sysv;
mod user;
mod uts;

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use dormant_image::records::{ns_names, NsId, NsKind, NsRef, NsState, Pid, TaskNamespaces};
use dormant_image::ImageWriter;
use nix::sched::CloneFlags;

pub use cgroup::read_cgroups;
pub use error::{NsError, Result};
pub use ipc::read_ipc_namespace;
pub use net::read_net_namespace;
pub use user::read_user_namespace;
pub use uts::read_uts_namespace;

/// What [`dump_namespaces`] wrote, for the log and the caller's checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NsDumpSummary {
    /// Namespaces that were dumped (not external), by kind.
    pub dumped: Vec<(NsKind, NsId)>,
    pub shm_segments: usize,
    pub sem_sets: usize,
    pub msg_queues: usize,
    pub messages: usize,
    pub posix_queues: usize,
}

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

/// Reads the namespaces of every task in `pids` (the dumped tree, root first) and writes them into the image:
/// `ns-ids` and `cgroups` for every task; `uts-<id>` and `ipc-<id>` (with one page store per shared memory
/// segment) for every uts and ipc namespace the dumper does not share; `net-<id>` for every network
/// namespace (external or not: it is never dumped, only described); `user-<id>` for a user namespace of the
/// tree. Mount, pid, time and cgroup namespaces are only named in `ns-ids`.
///
/// The tasks must be frozen (seized) so no object changes while it is read; nothing here changes them.
pub fn dump_namespaces(pids: &[Pid], w: &mut ImageWriter) -> Result<NsDumpSummary> {
    let mut summary = NsDumpSummary::default();
    let mut tasks = Vec::with_capacity(pids.len());
    let mut cgroups = Vec::with_capacity(pids.len());
    // One task per namespace does the reading; BTreeMap keeps the image deterministic.
    let mut owners: BTreeMap<(NsKind, NsId), (Pid, bool)> = BTreeMap::new();
    for &pid in pids {
        let t = task_namespaces(pid)?;
        for n in &t.namespaces {
            owners.entry((n.kind, n.id)).or_insert((pid, n.external));
        }
        tasks.push(t);
        cgroups.push(read_cgroups(pid)?);
    }
    let image_err = |what: String| move |source| NsError::Image { what, source };
    let mut user_namespaces = 0;
    for (&(kind, id), &(pid, external)) in &owners {
        match kind {
            NsKind::Uts if !external => {
                let uts = read_uts_namespace(pid)?;
                w.write_records(&ns_names::uts(id), &[uts])
                    .map_err(image_err(ns_names::uts(id)))?;
            }
            NsKind::Ipc if !external => {
                let n = ipc::dump_ipc_namespace(pid, id, w)?;
                summary.shm_segments += n.shm.len();
                summary.sem_sets += n.sem.len();
                summary.msg_queues += n.msg.len();
                summary.messages += n.msg.iter().map(|q| q.messages.len()).sum::<usize>();
                summary.posix_queues += n.posix_mq.len();
                w.write_records(&ns_names::ipc(id), &[n])
                    .map_err(image_err(ns_names::ipc(id)))?;
            }
            NsKind::Net => {
                let net = read_net_namespace(pid, id, external)?;
                log::info!(
                    "net namespace {id} of pid {}: {} (interfaces {:?}, lo {}); not dumped, restore joins or creates one",
                    pid.0,
                    if external { "shared with the dumper" } else { "private to the tree" },
                    net.interfaces,
                    if net.loopback_up { "up" } else { "down" },
                );
                w.write_records(&ns_names::net(id), &[NsState::Net(net)])
                    .map_err(image_err(ns_names::net(id)))?;
            }
            NsKind::User if !external => {
                user_namespaces += 1;
                if user_namespaces > 1 {
                    return Err(NsError::Unsupported {
                        pid,
                        reason: "the tree spans more than one user namespace of its own; nested user namespaces are not supported".into(),
                    });
                }
                let user = read_user_namespace(pid, id)?;
                w.write_records(&ns_names::user(id), &[NsState::User(user)])
                    .map_err(image_err(ns_names::user(id)))?;
            }
            _ => {}
        }
        if !external {
            summary.dumped.push((kind, id));
        }
    }
    w.write_records(ns_names::NS_IDS, &tasks)
        .map_err(image_err(ns_names::NS_IDS.into()))?;
    w.write_records(ns_names::CGROUPS, &cgroups)
        .map_err(image_err(ns_names::CGROUPS.into()))?;
    log::debug!("namespaces dumped: {summary:?}");
    Ok(summary)
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
