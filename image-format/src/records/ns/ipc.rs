//! ipc namespaces: System V shared memory, semaphores and message queues, POSIX message queues and the
//! namespace's limits (`ipc-<id>`); each shared memory segment's content is a page store
//! (`sysvshm-<ns>-<shmid>`).

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use super::NsId;
use crate::error::Problems;

/// A dumped ipc namespace (`ipc-<id>`, one entry). Shared memory contents are in the page stores
/// [`super::ns_names::sysv_shm_pages`], one per segment, offsets in the segment.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpcNamespace {
    pub id: NsId,
    /// The namespace's limits under `/proc/sys/kernel` (`shmmax`, `msgmnb`, `sem`, ...), as the files read.
    pub sysctls: Vec<IpcSysctl>,
    pub shm: Vec<SysvShm>,
    pub sem: Vec<SysvSem>,
    pub msg: Vec<SysvMsgQueue>,
    /// POSIX message queues (the namespace's mqueue filesystem), by name.
    pub posix_mq: Vec<PosixMq>,
}

/// One per-namespace ipc sysctl: path under `/proc/sys` (`kernel/shmmax`, `fs/mqueue/msg_max`) and its
/// content without the newline.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpcSysctl {
    pub name: String,
    pub value: String,
}

/// The owner and permission part of every System V object (`struct ipc64_perm`).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IpcPerm {
    /// `IPC_PRIVATE` (0) or the key given to `*get`.
    pub key: i32,
    pub uid: u32,
    pub gid: u32,
    /// Creator ids (the euid/egid of the task that created the object).
    pub cuid: u32,
    pub cgid: u32,
    /// Permission bits (low 9 bits; shm also reports `SHM_LOCKED` here, kept in [`SysvShm::locked`]).
    pub mode: u32,
}

/// A System V shared memory segment; its id is what `shmget` returned, restored exactly.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysvShm {
    pub id: i32,
    pub perm: IpcPerm,
    pub size: u64,
    /// `SHM_LOCK`ed into memory.
    pub locked: bool,
}

/// A System V semaphore set with the value of every semaphore.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysvSem {
    pub id: i32,
    pub perm: IpcPerm,
    pub values: Vec<u16>,
}

/// A System V message queue with its messages, oldest first.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysvMsgQueue {
    pub id: i32,
    pub perm: IpcPerm,
    /// Byte limit of the queue (`msg_qbytes`).
    pub qbytes: u64,
    pub messages: Vec<SysvMsg>,
}

/// One queued message.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysvMsg {
    pub mtype: i64,
    pub text: Vec<u8>,
}

/// A POSIX message queue with its messages in receive order.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosixMq {
    /// Name without the leading `/`.
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits.
    pub mode: u32,
    pub maxmsg: u64,
    pub msgsize: u64,
    pub messages: Vec<PosixMqMsg>,
}

/// One message of a POSIX queue.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosixMqMsg {
    pub priority: u32,
    pub data: Vec<u8>,
}

/// Checks that `ipc-<id>` holds namespace `id` and names each object once.
pub(crate) fn check_ipc(file: &str, id: NsId, ipc: &IpcNamespace, p: &mut Problems) {
    if ipc.id != id {
        p.add(file, format!("holds namespace {}", ipc.id.0));
    }
    for (what, ids) in [
        (
            "shared memory segment",
            ipc.shm.iter().map(|s| s.id).collect::<Vec<_>>(),
        ),
        ("semaphore set", ipc.sem.iter().map(|s| s.id).collect()),
        ("message queue", ipc.msg.iter().map(|q| q.id).collect()),
    ] {
        let mut seen = std::collections::BTreeSet::new();
        for i in ids.into_iter().filter(|i| !seen.insert(*i)) {
            p.add(file, format!("{what} {i} is listed twice"));
        }
    }
}
