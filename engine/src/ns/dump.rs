//! Writes the namespaces of a dumped tree into the image: membership of every task, and the state of the
//! namespaces the tree does not share with the dumper.

use std::collections::BTreeMap;

use dormant_image::records::{ns_names, NsId, NsKind, NsState, Pid};
use dormant_image::ImageWriter;

use super::cgroup::read_cgroups;
use super::error::{NsError, Result};
use super::ipc;
use super::membership::task_namespaces;
use super::net::read_net_namespace;
use super::time::{check_children_namespace, read_time_namespace};
use super::user::read_user_namespace;
use super::uts::read_uts_namespace;

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

/// Reads the namespaces of every task in `pids` (the dumped tree, root first) and writes them into the image:
/// `ns-ids` and `cgroups` for every task; `uts-<id>` and `ipc-<id>` (with one page store per shared memory
/// segment) for every uts and ipc namespace the dumper does not share; `net-<id>` for every network
/// namespace (external or not: it is never dumped, only described); `user-<id>` for a user namespace of the
/// tree; `time-<id>` (its clock offsets) for a time namespace of the tree. Mount, pid and cgroup namespaces
/// are only named in `ns-ids`.
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
        if let Some(time) = t.get(NsKind::Time) {
            check_children_namespace(pid, time.id)?;
        }
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
            NsKind::Time if !external => {
                let time = read_time_namespace(pid, id)?;
                w.write_records(&ns_names::time(id), &[NsState::Time(time)])
                    .map_err(image_err(ns_names::time(id)))?;
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
