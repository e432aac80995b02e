//! ipc namespace: System V shared memory (with contents), semaphore sets (with values) and message queues
//! (with messages), plus the namespace's limits. Read from a helper thread inside the namespace, without
//! changing any object: `*_STAT_ANY` for the attributes, `GETALL` for semaphore values, `msgrcv(MSG_COPY)`
//! for messages (they stay queued), and a read-only attach that is dropped at once for shm contents.

use std::os::fd::OwnedFd;

use dormant_image::records::{
    ns_names, page_flags, IpcNamespace, IpcPerm, IpcSysctl, NsId, NsKind, Pid, SysvMsg,
    SysvMsgQueue, SysvSem, SysvShm,
};
use dormant_image::ImageWriter;

use super::error::{NsError, Result};
use super::membership::in_namespace;
use super::sysv;
use super::uts::sysctl;

/// The per-namespace settings under `/proc/sys` that restore sets before recreating objects, and the
/// `kernel/*_next_id` files, which restore writes back last (they read -1 unless a process of the namespace
/// chose the id its next object gets; restore itself uses them to give each object its id).
pub const IPC_SYSCTLS: [&str; 17] = [
    "kernel/shmmax",
    "kernel/shmall",
    "kernel/shmmni",
    "kernel/shm_rmid_forced",
    "kernel/msgmax",
    "kernel/msgmnb",
    "kernel/msgmni",
    "kernel/auto_msgmni",
    "kernel/sem",
    "fs/mqueue/msg_max",
    "fs/mqueue/msgsize_max",
    "fs/mqueue/queues_max",
    "fs/mqueue/msg_default",
    "fs/mqueue/msgsize_default",
    "kernel/msg_next_id",
    "kernel/sem_next_id",
    "kernel/shm_next_id",
];

/// `SHM_DEST` and `SHM_LOCKED` as the kernel reports them in a segment's mode.
const SHM_DEST: u32 = 0o1000;
const SHM_LOCKED: u32 = 0o2000;

fn perm(p: &libc::ipc_perm) -> IpcPerm {
    IpcPerm {
        key: p.__key,
        uid: p.uid,
        gid: p.gid,
        cuid: p.cuid,
        cgid: p.cgid,
        mode: u32::from(p.mode),
    }
}

/// Reads every object of task `pid`'s ipc namespace `ns`; also returns an open file on each segment's
/// contents (see [`sysv::open_shm_file`]), so the contents can be copied outside the namespace.
fn read_ipc(pid: Pid, ns: NsId) -> Result<(IpcNamespace, Vec<(i32, OwnedFd)>)> {
    in_namespace(pid, NsKind::Ipc, || {
        let err = |object: String, op| {
            move |source| NsError::Ipc {
                ns,
                object,
                op,
                source,
            }
        };
        let mut sysctls = Vec::new();
        for name in IPC_SYSCTLS {
            sysctls.push(IpcSysctl {
                name: name.to_owned(),
                value: sysctl(pid, name)?,
            });
        }

        let mut shm = Vec::new();
        let mut files = Vec::new();
        let max = sysv::shm_max_index().map_err(err("shm".into(), "shmctl(SHM_INFO)"))?;
        for idx in 0..=max {
            let Some((id, ds)) = sysv::shm_stat_index(idx)
                .map_err(err(format!("shm index {idx}"), "shmctl(SHM_STAT_ANY)"))?
            else {
                continue;
            };
            let p = perm(&ds.shm_perm);
            if p.mode & SHM_DEST != 0 {
                return Err(NsError::IpcUnsupported {
                    ns,
                    object: format!("shm {id}"),
                    reason: format!(
                        "removed (IPC_RMID) while still attached {} times; such segments are not supported",
                        ds.shm_nattch
                    ),
                });
            }
            let size = ds.shm_segsz as u64;
            let file = sysv::open_shm_file(id, size).map_err(|source| NsError::ShmRead {
                ns,
                shmid: id,
                source,
            })?;
            files.push((id, file));
            shm.push(SysvShm {
                id,
                perm: IpcPerm {
                    mode: p.mode & 0o777,
                    ..p
                },
                size,
                locked: p.mode & SHM_LOCKED != 0,
            });
        }

        let mut sem = Vec::new();
        let max = sysv::sem_max_index().map_err(err("sem".into(), "semctl(SEM_INFO)"))?;
        for idx in 0..=max {
            let Some((id, ds)) = sysv::sem_stat_index(idx)
                .map_err(err(format!("sem index {idx}"), "semctl(SEM_STAT_ANY)"))?
            else {
                continue;
            };
            let values = sysv::sem_values(id, ds.sem_nsems as usize)
                .map_err(err(format!("sem {id}"), "semctl(GETALL)"))?;
            let p = perm(&ds.sem_perm);
            sem.push(SysvSem {
                id,
                perm: IpcPerm {
                    mode: p.mode & 0o777,
                    ..p
                },
                values,
            });
        }

        let mut msg = Vec::new();
        let max = sysv::msg_max_index().map_err(err("msg".into(), "msgctl(MSG_INFO)"))?;
        for idx in 0..=max {
            let Some((id, ds)) = sysv::msg_stat_index(idx)
                .map_err(err(format!("msg index {idx}"), "msgctl(MSG_STAT_ANY)"))?
            else {
                continue;
            };
            let max_text = usize::try_from(ds.__msg_cbytes)
                .unwrap_or(usize::MAX)
                .max(1);
            let mut messages = Vec::new();
            for n in 0..ds.msg_qnum as i64 {
                match sysv::msg_copy(id, n, max_text) {
                    Ok(Some((mtype, text))) => messages.push(SysvMsg { mtype, text }),
                    Ok(None) => break,
                    Err(nix::errno::Errno::ENOSYS) => {
                        return Err(NsError::IpcUnsupported {
                            ns,
                            object: format!("msg {id}"),
                            reason: format!(
                                "holds {} messages, and msgrcv(MSG_COPY) needs CONFIG_CHECKPOINT_RESTORE, which this kernel lacks",
                                ds.msg_qnum
                            ),
                        })
                    }
                    Err(e) => return Err(err(format!("msg {id} message {n}"), "msgrcv(MSG_COPY)")(e)),
                }
            }
            if messages.len() as u64 != ds.msg_qnum {
                return Err(NsError::IpcUnsupported {
                    ns,
                    object: format!("msg {id}"),
                    reason: format!(
                        "reported {} messages but {} could be copied (changed during the dump?)",
                        ds.msg_qnum,
                        messages.len()
                    ),
                });
            }
            let p = perm(&ds.msg_perm);
            msg.push(SysvMsgQueue {
                id,
                perm: IpcPerm {
                    mode: p.mode & 0o777,
                    ..p
                },
                qbytes: ds.msg_qbytes,
                messages,
            });
        }
        Ok((
            IpcNamespace {
                id: ns,
                sysctls,
                shm,
                sem,
                msg,
                posix_mq: super::mqueue::read_posix_queues(ns)?,
            },
            files,
        ))
    })
}

/// Every object of task `pid`'s ipc namespace `ns`, without shared memory contents.
pub fn read_ipc_namespace(pid: Pid, ns: NsId) -> Result<IpcNamespace> {
    read_ipc(pid, ns).map(|(n, _)| n)
}

/// Reads ipc namespace `ns` of task `pid` and stores each segment's contents in its page store
/// ([`ns_names::sysv_shm_pages`]: offsets in the segment; holes and zero pages are not stored).
pub(super) fn dump_ipc_namespace(pid: Pid, ns: NsId, w: &mut ImageWriter) -> Result<IpcNamespace> {
    let (ipc, files) = read_ipc(pid, ns)?;
    for (seg, (_, file)) in ipc.shm.iter().zip(&files) {
        let name = ns_names::sysv_shm_pages(ns, seg.id);
        let image_err = |source| NsError::Image {
            what: name.clone(),
            source,
        };
        let store = w.page_store(&name).map_err(image_err)?;
        copy_segment(ns, seg, file, &store)?;
        w.finish_page_store(store).map_err(image_err)?;
    }
    Ok(ipc)
}

/// Copies the data ranges of one segment's shmem file into `store`, page runs that are not all zero.
fn copy_segment(
    ns: NsId,
    seg: &SysvShm,
    file: &OwnedFd,
    store: &dormant_image::PageStoreWriter,
) -> Result<()> {
    let file = std::fs::File::from(file.try_clone().map_err(|source| NsError::ShmRead {
        ns,
        shmid: seg.id,
        source,
    })?);
    let what = format!("shm segment {} of ipc namespace {ns}", seg.id);
    store
        .store_file(&file, seg.size, page_flags::SHMEM, &what)
        .map_err(|source| NsError::Image {
            what: store.name().to_owned(),
            source,
        })?;
    Ok(())
}
