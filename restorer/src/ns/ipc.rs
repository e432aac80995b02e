//! Recreates a System V ipc namespace's objects with their ids: limits first, then for each object write
//! `*_next_id`, create it (as its creator), check the id, set owner and mode, and fill it (shm contents,
//! semaphore values, messages in order); last the dumped `*_next_id` values (an id a process chose for its
//! next object). Runs in the process that has just unshared the ipc namespace.

use dormant_image::records::{IdMapRange, IpcNamespace, IpcPerm, NsId};
use dormant_image::PageStoreReader;
use nix::errno::Errno;

use super::error::{NsRestoreError, Result};
use super::sysv::{self, IpcKind};
use super::user::to_inside;

/// Ids are `sequence * IPC_SLOTS + slot` (the kernel's default `IPCMNI`, without `ipcmni_extend`).
const IPC_SLOTS: i32 = 32768;

/// An ipc namespace to recreate, with the page store of each shm segment (same order as `ns.shm`).
#[derive(Debug)]
pub struct IpcPlan {
    pub ns: IpcNamespace,
    pub(crate) shm_pages: Vec<PageStoreReader>,
}

/// Creator and owner ids of `perm` as seen inside the user namespace restore created (the image holds them
/// as the dumper saw them); unchanged without one.
fn local_perm(
    ns: NsId,
    perm: &IpcPerm,
    object: &str,
    user: Option<(&[IdMapRange], &[IdMapRange])>,
) -> Result<IpcPerm> {
    let Some((uids, gids)) = user else {
        return Ok(*perm);
    };
    let map = |ids: &[IdMapRange], id: u32, what: &str| {
        to_inside(ids, id).ok_or_else(|| NsRestoreError::IpcContent {
            ns,
            object: object.to_owned(),
            reason: format!("{what} {id} is not mapped into the restored user namespace"),
        })
    };
    Ok(IpcPerm {
        uid: map(uids, perm.uid, "uid")?,
        gid: map(gids, perm.gid, "gid")?,
        cuid: map(uids, perm.cuid, "creator uid")?,
        cgid: map(gids, perm.cgid, "creator gid")?,
        ..*perm
    })
}

/// Creates one object with id `id`: refuses when the id is in use, writes `*_next_id`, runs `create` as the
/// creator, and checks the kernel gave that id (removing the object when it did not).
fn create_with_id(
    ns: NsId,
    kind: IpcKind,
    id: i32,
    perm: &IpcPerm,
    create: impl FnOnce() -> Result<i32, Errno>,
) -> Result<()> {
    let object = format!("{} {id}", kind.name());
    let ipc_err = |op| {
        let object = object.clone();
        move |source| NsRestoreError::Ipc {
            ns,
            object,
            op,
            source,
        }
    };
    if sysv::exists(kind, id).map_err(ipc_err("IPC_STAT"))? {
        return Err(NsRestoreError::IpcIdTaken {
            ns,
            object: kind.name(),
            id,
            reason: "an object with that id already exists".into(),
        });
    }
    sysv::set_next_id(kind, id)?;
    let got = sysv::as_creator(perm.cuid, perm.cgid, create)
        .map_err(ipc_err("switching to the creator's ids"))?
        .map_err(|e| match e {
            Errno::EEXIST => NsRestoreError::IpcIdTaken {
                ns,
                object: kind.name(),
                id,
                reason: format!("another object already has its key {:#x}", perm.key),
            },
            e => ipc_err("create")(e),
        })?;
    if got != id {
        let _ = sysv::remove(kind, got);
        return Err(NsRestoreError::IpcIdTaken {
            ns,
            object: kind.name(),
            id,
            reason: match sysv::id_at_index(kind, id % IPC_SLOTS) {
                Some(occupant) => format!(
                    "its slot {} is in use by id {occupant} (the kernel gave id {got})",
                    id % IPC_SLOTS
                ),
                None => format!("the kernel gave id {got}"),
            },
        });
    }
    Ok(())
}

/// A page store read failure, naming the store (the image directory is named by the caller's context).
fn store_err(pages: &PageStoreReader, source: dormant_image::ImageError) -> NsRestoreError {
    NsRestoreError::ShmContent {
        store: pages.name().to_owned(),
        source,
    }
}

/// Whether sysctl `name` chooses the id of the next object (`kernel/*_next_id`): written back last, after
/// restore used it to give every object its id.
fn is_next_id(name: &str) -> bool {
    name.starts_with("kernel/") && name.ends_with("_next_id")
}

/// Sets the namespace's sysctls (`/proc/sys/kernel/*`, `/proc/sys/fs/mqueue/*` of the calling thread's ipc
/// namespace) that `pick` selects. Only those two directories may be named, without `..`.
fn restore_sysctls(ipc: &IpcNamespace, pick: impl Fn(&str) -> bool) -> Result<()> {
    // A `*_next_id` of -1 (none chosen) is what a new namespace has, and the kernel refuses to be written it.
    let unset =
        |s: &dormant_image::records::IpcSysctl| is_next_id(&s.name) && s.value.trim() == "-1";
    for s in ipc.sysctls.iter().filter(|s| pick(&s.name) && !unset(s)) {
        let allowed = (s.name.starts_with("kernel/") || s.name.starts_with("fs/mqueue/"))
            && s.name
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..");
        if !allowed {
            return Err(NsRestoreError::IpcContent {
                ns: ipc.id,
                object: "sysctls".into(),
                reason: format!("{:?} is not an ipc namespace sysctl", s.name),
            });
        }
        let path = std::path::PathBuf::from(format!("/proc/sys/{}", s.name));
        std::fs::write(&path, &s.value).map_err(|source| NsRestoreError::File {
            what: "writing",
            path,
            source,
        })?;
    }
    Ok(())
}

/// Recreates the POSIX queues with their attributes, owner, mode and messages.
fn restore_posix_queues(
    ipc: &IpcNamespace,
    user: Option<(&[IdMapRange], &[IdMapRange])>,
) -> Result<()> {
    let ns = ipc.id;
    for q in &ipc.posix_mq {
        let object = format!("POSIX queue /{}", q.name);
        let perm = local_perm(
            ns,
            &IpcPerm {
                key: 0,
                uid: q.uid,
                gid: q.gid,
                cuid: q.uid,
                cgid: q.gid,
                mode: q.mode,
            },
            &object,
            user,
        )?;
        let bad = |reason: String| NsRestoreError::IpcContent {
            ns,
            object: object.clone(),
            reason,
        };
        if q.name.is_empty() || q.name.contains('/') {
            return Err(bad("not a queue name".into()));
        }
        let (Ok(maxmsg), Ok(msgsize)) = (i64::try_from(q.maxmsg), i64::try_from(q.msgsize)) else {
            return Err(bad("attributes out of range".into()));
        };
        let mq =
            sysv::PosixQueue::create(&q.name, q.mode, maxmsg, msgsize).map_err(|e| match e {
                Errno::EEXIST => NsRestoreError::IpcIdTaken {
                    ns,
                    object: "POSIX queue",
                    id: 0,
                    reason: format!("/{} already exists", q.name),
                },
                e => NsRestoreError::Ipc {
                    ns,
                    object: object.clone(),
                    op: "mq_open(O_CREAT|O_EXCL)",
                    source: e,
                },
            })?;
        for m in &q.messages {
            mq.send(m.priority, &m.data)
                .map_err(|source| NsRestoreError::Ipc {
                    ns,
                    object: object.clone(),
                    op: "mq_send",
                    source,
                })?;
        }
        mq.set_owner(perm.uid, perm.gid, q.mode)
            .map_err(|source| NsRestoreError::Ipc {
                ns,
                object: object.clone(),
                op: "fchown/fchmod",
                source,
            })?;
    }
    Ok(())
}

/// Recreates every object of `plan` in the calling thread's (new, empty) ipc namespace. `user` holds the
/// uid and gid maps of a user namespace restore created, to translate owner ids.
pub fn restore_ipc(plan: &IpcPlan, user: Option<(&[IdMapRange], &[IdMapRange])>) -> Result<()> {
    let ipc = &plan.ns;
    let ns = ipc.id;
    restore_sysctls(ipc, |n| !is_next_id(n))?;
    for (seg, pages) in ipc.shm.iter().zip(&plan.shm_pages) {
        let object = format!("shm {}", seg.id);
        let perm = local_perm(ns, &seg.perm, &object, user)?;
        let flags = libc::IPC_CREAT | libc::IPC_EXCL | (perm.mode & 0o777) as i32;
        create_with_id(ns, IpcKind::Shm, seg.id, &perm, || {
            sysv::shmget(perm.key, seg.size, flags)
        })?;
        let ipc_err = |op| {
            let object = object.clone();
            move |source| NsRestoreError::Ipc {
                ns,
                object,
                op,
                source,
            }
        };
        let len = usize::try_from(seg.size).map_err(|_| NsRestoreError::IpcContent {
            ns,
            object: object.clone(),
            reason: format!("size {} does not fit this machine", seg.size),
        })?;
        let mut at = sysv::ShmAttach::new(seg.id, len).map_err(ipc_err("shmat"))?;
        let bytes = at.bytes_mut();
        for e in pages.extents() {
            let start = e.vaddr as usize;
            // The page store covers whole pages; the last one may reach past the byte size.
            let end = start.saturating_add(e.len as usize);
            if start >= len || end > len.next_multiple_of(4096) {
                return Err(NsRestoreError::IpcContent {
                    ns,
                    object,
                    reason: format!(
                        "page extent {:#x}+{:#x} lies outside the segment",
                        e.vaddr, e.len
                    ),
                });
            }
            if end <= len {
                pages
                    .read_extent(e, &mut bytes[start..end])
                    .map_err(|source| store_err(pages, source))?;
            } else {
                let mut page = vec![0u8; e.len as usize];
                pages
                    .read_extent(e, &mut page)
                    .map_err(|source| store_err(pages, source))?;
                bytes[start..].copy_from_slice(&page[..len - start]);
            }
        }
        drop(at);
        sysv::set_owner(IpcKind::Shm, seg.id, perm.uid, perm.gid, perm.mode, None)
            .map_err(ipc_err("IPC_SET"))?;
        if seg.locked {
            sysv::shm_lock(seg.id).map_err(ipc_err("SHM_LOCK"))?;
        }
    }
    for set in &ipc.sem {
        let object = format!("sem {}", set.id);
        let perm = local_perm(ns, &set.perm, &object, user)?;
        let flags = libc::IPC_CREAT | libc::IPC_EXCL | (perm.mode & 0o777) as i32;
        create_with_id(ns, IpcKind::Sem, set.id, &perm, || {
            sysv::semget(perm.key, set.values.len(), flags)
        })?;
        let ipc_err = |op| {
            let object = object.clone();
            move |source| NsRestoreError::Ipc {
                ns,
                object,
                op,
                source,
            }
        };
        sysv::sem_set_all(set.id, &set.values).map_err(ipc_err("semctl(SETALL)"))?;
        sysv::set_owner(IpcKind::Sem, set.id, perm.uid, perm.gid, perm.mode, None)
            .map_err(ipc_err("IPC_SET"))?;
    }
    for q in &ipc.msg {
        let object = format!("msg {}", q.id);
        let perm = local_perm(ns, &q.perm, &object, user)?;
        let flags = libc::IPC_CREAT | libc::IPC_EXCL | (perm.mode & 0o777) as i32;
        create_with_id(ns, IpcKind::Msg, q.id, &perm, || {
            sysv::msgget(perm.key, flags)
        })?;
        for (n, m) in q.messages.iter().enumerate() {
            sysv::msgsnd(q.id, m.mtype, &m.text).map_err(|e| match e {
                Errno::EAGAIN => NsRestoreError::IpcContent {
                    ns,
                    object: object.clone(),
                    reason: format!(
                        "message {n} does not fit: the queue's messages exceed this namespace's msgmnb"
                    ),
                },
                e => NsRestoreError::Ipc {
                    ns,
                    object: object.clone(),
                    op: "msgsnd",
                    source: e,
                },
            })?;
        }
        // After the messages: a limit above msgmnb needs CAP_SYS_RESOURCE, a lower one may be below them.
        sysv::set_owner(
            IpcKind::Msg,
            q.id,
            perm.uid,
            perm.gid,
            perm.mode,
            Some(q.qbytes),
        )
        .map_err(|source| NsRestoreError::Ipc {
            ns,
            object: object.clone(),
            op: "IPC_SET",
            source,
        })?;
    }
    restore_posix_queues(ipc, user)?;
    restore_sysctls(ipc, is_next_id)?;
    log::info!(
        "ipc namespace {ns}: recreated {} shm segments, {} semaphore sets, {} message queues, {} POSIX queues",
        ipc.shm.len(),
        ipc.sem.len(),
        ipc.msg.len(),
        ipc.posix_mq.len()
    );
    Ok(())
}

/// Reads ipc namespace `id` with the page stores of its shm segments (checked), and refuses it when this
/// kernel cannot give its objects their ids back.
pub(super) fn plan(src: &super::read::Source<'_>, id: NsId) -> Result<IpcPlan> {
    use dormant_image::records::ns_names;
    let ns: IpcNamespace = src.single(&ns_names::ipc(id))?;
    let mut shm_pages = Vec::with_capacity(ns.shm.len());
    for seg in &ns.shm {
        let name = ns_names::sysv_shm_pages(id, seg.id);
        let store = src.img.page_store(&name).map_err(src.err(&name))?;
        store.verify_all().map_err(src.err(&name))?;
        shm_pages.push(store);
    }
    for (kind, count) in [
        (IpcKind::Shm, ns.shm.len()),
        (IpcKind::Sem, ns.sem.len()),
        (IpcKind::Msg, ns.msg.len()),
    ] {
        if count > 0 {
            sysv::check_next_id_support(kind)?;
        }
    }
    Ok(IpcPlan { ns, shm_pages })
}
