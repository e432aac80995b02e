//! Namespaces other than mount and pid: which namespaces each task is in, and the state of the ones dormant
//! recreates (uts names, System V IPC objects, cgroup membership, the network namespace's mode, user
//! namespace id maps).
//!
//! A namespace that the dumping process shares with the task is *external*: it belongs to whoever runs
//! dormant (the host, the Kata agent), so it is named but not dumped, and restore leaves the task in the
//! restorer's own one. A network namespace is external even when it differs (Kata pods share one): the image
//! records that it was private to the tree, and restore joins one given by path or makes a loopback-only one.

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use super::Pid;
use crate::Record;

/// A namespace, named by its nsfs inode number (`/proc/PID/ns/KIND` links to `KIND:[INODE]`); unique per
/// kind on one boot.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NsId(pub u64);

/// The kinds of namespace `/proc/PID/ns` shows.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum NsKind {
    User,
    Uts,
    Ipc,
    Net,
    Mnt,
    Pid,
    Cgroup,
    Time,
}

impl NsKind {
    pub const ALL: [NsKind; 8] = [
        NsKind::User,
        NsKind::Uts,
        NsKind::Ipc,
        NsKind::Net,
        NsKind::Mnt,
        NsKind::Pid,
        NsKind::Cgroup,
        NsKind::Time,
    ];

    /// The entry name under `/proc/PID/ns/` (and the prefix of its link target).
    pub fn proc_name(self) -> &'static str {
        match self {
            NsKind::User => "user",
            NsKind::Uts => "uts",
            NsKind::Ipc => "ipc",
            NsKind::Net => "net",
            NsKind::Mnt => "mnt",
            NsKind::Pid => "pid",
            NsKind::Cgroup => "cgroup",
            NsKind::Time => "time",
        }
    }
}

/// One namespace a task is in.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsRef {
    pub kind: NsKind,
    pub id: NsId,
    /// The dumping process was in the same namespace: it is not dumped, restore keeps the restorer's own.
    pub external: bool,
}

/// The namespaces of one task (`ns-ids`, one entry per task, in tree order).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskNamespaces {
    pub pid: Pid,
    /// Every kind the kernel showed, in [`NsKind::ALL`] order.
    pub namespaces: Vec<NsRef>,
}

impl Record for TaskNamespaces {
    const KIND: super::RecordKind = super::RecordKind::TaskNamespaces;
}

impl TaskNamespaces {
    /// The namespace of `kind`, when the kernel had one.
    pub fn get(&self, kind: NsKind) -> Option<&NsRef> {
        self.namespaces.iter().find(|n| n.kind == kind)
    }
}

/// A dumped uts namespace (`uts-<id>`, one entry).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UtsNamespace {
    pub id: NsId,
    pub hostname: String,
    pub domainname: String,
}

impl Record for UtsNamespace {
    const KIND: super::RecordKind = super::RecordKind::UtsNamespace;
}

/// A dumped ipc namespace (`ipc-<id>`, one entry). Shared memory contents are in the page stores
/// [`ns_names::sysv_shm_pages`], one per segment, offsets in the segment.
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

impl Record for IpcNamespace {
    const KIND: super::RecordKind = super::RecordKind::IpcNamespace;
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

/// The cgroups of one task (`cgroups`, one entry per task), as `/proc/PID/cgroup` listed them.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCgroups {
    pub pid: Pid,
    pub lines: Vec<CgroupLine>,
}

impl Record for TaskCgroups {
    const KIND: super::RecordKind = super::RecordKind::TaskCgroups;
}

/// One line of `/proc/PID/cgroup`: `HIERARCHY:CONTROLLERS:PATH`. Hierarchy 0 with no controllers is the
/// cgroup v2 unified hierarchy; v1 hierarchies list their controllers (and `name=NAME` for named ones).
/// The path is relative to the reader's cgroup namespace root.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupLine {
    pub hierarchy: u32,
    pub controllers: Vec<String>,
    pub path: String,
}

impl CgroupLine {
    /// The unified (v2) hierarchy line.
    pub fn is_v2(&self) -> bool {
        self.hierarchy == 0 && self.controllers.is_empty()
    }
}

/// State of a namespace kind that has no record kind of its own (`net-<id>`, `user-<id>`).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NsState {
    Net(NetNamespace),
    User(UserNamespace),
}

impl Record for NsState {
    const KIND: super::RecordKind = super::RecordKind::NsState;
}

/// The network namespace of the tree. Its devices, addresses, routes and sockets are not dumped: restore
/// joins an existing namespace (the default) or makes a loopback-only one.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetNamespace {
    pub id: NsId,
    /// The dumper shared it (`false`: the tree had a namespace of its own, which is still not dumped).
    pub external: bool,
    /// `lo` was up.
    pub loopback_up: bool,
    /// Every interface name the namespace had, for the log and for checks at restore.
    pub interfaces: Vec<String>,
}

/// A user namespace of the tree with its id maps (`/proc/PID/uid_map`, `gid_map`, `setgroups`).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNamespace {
    pub id: NsId,
    pub uid_map: Vec<IdMapRange>,
    pub gid_map: Vec<IdMapRange>,
    /// `/proc/PID/setgroups` said `allow`.
    pub setgroups_allowed: bool,
}

/// One line of an id map: `count` ids from `inside` in the namespace are `outside` in its parent.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// File names of the namespace records.
pub mod ns_names {
    use super::NsId;

    pub const NS_IDS: &str = "ns-ids";
    pub const CGROUPS: &str = "cgroups";

    pub fn uts(id: NsId) -> String {
        format!("uts-{}", id.0)
    }
    pub fn ipc(id: NsId) -> String {
        format!("ipc-{}", id.0)
    }
    pub fn net(id: NsId) -> String {
        format!("net-{}", id.0)
    }
    pub fn user(id: NsId) -> String {
        format!("user-{}", id.0)
    }
    /// Page store of one System V shared memory segment of ipc namespace `ns`.
    pub fn sysv_shm_pages(ns: NsId, shmid: i32) -> String {
        format!("sysvshm-{}-{}", ns.0, shmid)
    }
}

/// The role of a namespace record file by its name, or `None` when the name is not one of ours.
pub(super) fn ns_file_kind(name: &str) -> Option<super::RecordKind> {
    use super::RecordKind;
    Some(match name {
        ns_names::NS_IDS => RecordKind::TaskNamespaces,
        ns_names::CGROUPS => RecordKind::TaskCgroups,
        _ if name.starts_with("uts-") => RecordKind::UtsNamespace,
        _ if name.starts_with("ipc-") => RecordKind::IpcNamespace,
        _ if name.starts_with("net-") || name.starts_with("user-") => RecordKind::NsState,
        _ => return None,
    })
}

/// The namespace half of `check_references`: every task named in `ns-ids` and `cgroups` is in the tree,
/// every non-external uts/ipc/user namespace and every net namespace has its file, and every shm segment
/// has its page store within its size. Images without `ns-ids` (dumps of plain processes) have nothing to
/// check. Returns one line per problem.
pub fn check_ns_references(
    img: &crate::ImageReader,
    pids: &std::collections::BTreeSet<Pid>,
) -> Vec<String> {
    let mut problems = Vec::new();
    check_ns_into(img, pids, &mut problems);
    problems
}

fn check_ns_into(
    img: &crate::ImageReader,
    pids: &std::collections::BTreeSet<Pid>,
    problems: &mut Vec<String>,
) {
    if !img.has_file(ns_names::NS_IDS) {
        return;
    }
    let tasks: Vec<TaskNamespaces> = match img.read_records(ns_names::NS_IDS) {
        Ok(t) => t,
        Err(e) => {
            problems.push(format!("{}: {e}", ns_names::NS_IDS));
            return;
        }
    };
    let mut dumped = std::collections::BTreeSet::new();
    for t in &tasks {
        if !pids.contains(&t.pid) {
            problems.push(format!(
                "{}: pid {} is not in the tree",
                ns_names::NS_IDS,
                t.pid.0
            ));
        }
        for n in t
            .namespaces
            .iter()
            .filter(|n| !n.external || n.kind == NsKind::Net)
        {
            dumped.insert((n.kind, n.id));
        }
    }
    for (kind, id) in dumped {
        let file = match kind {
            NsKind::Uts => ns_names::uts(id),
            NsKind::Ipc => ns_names::ipc(id),
            NsKind::Net => ns_names::net(id),
            NsKind::User => ns_names::user(id),
            _ => continue,
        };
        if !img.has_file(&file) {
            problems.push(format!(
                "{}: {} namespace {} is dumped but {file} is missing",
                ns_names::NS_IDS,
                kind.proc_name(),
                id.0
            ));
            continue;
        }
        if kind != NsKind::Ipc {
            continue;
        }
        let ipc = match img.read_single::<IpcNamespace>(&file) {
            Ok(i) => i,
            Err(e) => {
                problems.push(format!("{file}: {e}"));
                continue;
            }
        };
        if ipc.id != id {
            problems.push(format!("{file}: holds namespace {}", ipc.id.0));
        }
        for seg in &ipc.shm {
            let store = ns_names::sysv_shm_pages(id, seg.id);
            match img.page_store(&store) {
                Ok(ps) => {
                    if let Some(e) = ps
                        .extents()
                        .iter()
                        .find(|e| e.vaddr.saturating_add(e.len) > seg.size.next_multiple_of(4096))
                    {
                        problems.push(format!(
                            "pagemap-{store}: pages at offset {:#x} lie past segment {} of {:#x} bytes",
                            e.vaddr, seg.id, seg.size
                        ));
                    }
                }
                Err(e) => problems.push(format!("page store {store}: {e}")),
            }
        }
    }
    if img.has_file(ns_names::CGROUPS) {
        match img.read_records::<TaskCgroups>(ns_names::CGROUPS) {
            Ok(cg) => {
                for t in cg.iter().filter(|t| !pids.contains(&t.pid)) {
                    problems.push(format!(
                        "{}: pid {} is not in the tree",
                        ns_names::CGROUPS,
                        t.pid.0
                    ));
                }
            }
            Err(e) => problems.push(format!("{}: {e}", ns_names::CGROUPS)),
        }
    }
}

impl std::fmt::Display for NsId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}
