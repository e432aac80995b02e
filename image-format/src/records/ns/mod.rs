//! Namespaces other than mount and pid: which namespaces each task is in, and the state of the ones dormant
//! recreates (uts names, System V IPC objects, cgroup membership, the network namespace's mode, user
//! namespace id maps).
//!
//! A namespace that the dumping process shares with the task is *external*: it belongs to whoever runs
//! dormant (the host, the Kata agent), so it is named but not dumped, and restore leaves the task in the
//! restorer's own one. A network namespace is external even when it differs (Kata pods share one): the image
//! records that it was private to the tree, and restore joins one given by path or makes a loopback-only one.
//!
//! Each namespace kind whose state is dumped has its file here (uts, ipc, net, user, cgroup, pid).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use super::file_names::NS_IDS;
use super::ids::Pid;
use crate::error::Problems;

pub mod cgroup;
pub mod ipc;
pub mod net;
pub mod pid;
pub mod time;
pub mod user;
pub mod uts;

pub use cgroup::{CgroupLine, TaskCgroups};
pub use ipc::{
    IpcNamespace, IpcPerm, IpcSysctl, PosixMq, PosixMqMsg, SysvMsg, SysvMsgQueue, SysvSem, SysvShm,
};
pub use net::NetNamespace;
pub use time::{ClockOffset, TimeNamespace};
pub use user::{IdMapRange, UserNamespace};
pub use uts::UtsNamespace;

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

impl TaskNamespaces {
    /// The namespace of `kind`, when the kernel had one.
    pub fn get(&self, kind: NsKind) -> Option<&NsRef> {
        self.namespaces.iter().find(|n| n.kind == kind)
    }
}

/// State of a namespace kind that has no record kind of its own (`net-<id>`, `user-<id>`).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NsState {
    Net(NetNamespace),
    User(UserNamespace),
    Time(TimeNamespace),
}

/// Schema 1 of [`NsState`]: before time namespaces.
pub(crate) mod v1 {
    use serde::{Deserialize, Serialize};

    use super::{NetNamespace, UserNamespace};
    use crate::records::upgrade::Upgrade;

    /// Named apart from the current type: the schema tracer knows enums by name.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub enum NsStateV1 {
        Net(NetNamespace),
        User(UserNamespace),
    }

    impl Upgrade<super::NsState> for NsStateV1 {
        fn upgrade(self) -> Result<super::NsState, String> {
            Ok(match self {
                NsStateV1::Net(n) => super::NsState::Net(n),
                NsStateV1::User(u) => super::NsState::User(u),
            })
        }
    }
}

/// File names of the namespace records.
pub mod ns_names {
    pub use crate::records::file_names::{ipc, net, time, user, uts, CGROUPS, NS_IDS};

    /// Page store of one System V shared memory segment of ipc namespace `ns`.
    pub fn sysv_shm_pages(ns: super::NsId, shmid: i32) -> String {
        format!("sysvshm-{}-{}", ns.0, shmid)
    }
}

impl std::fmt::Display for NsId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The namespaces whose state the image carries, each once: every one that is not external, and every
/// network namespace (described even when shared with the dumper).
pub fn dumped_namespaces(tasks: &[TaskNamespaces]) -> BTreeSet<(NsKind, NsId)> {
    tasks
        .iter()
        .flat_map(|t| &t.namespaces)
        .filter(|n| !n.external || n.kind == NsKind::Net)
        .map(|n| (n.kind, n.id))
        .collect()
}

/// The file holding the state of a dumped namespace, for the kinds that have one.
pub fn state_file(kind: NsKind, id: NsId) -> Option<String> {
    Some(match kind {
        NsKind::Uts => ns_names::uts(id),
        NsKind::Ipc => ns_names::ipc(id),
        NsKind::Net => ns_names::net(id),
        NsKind::User => ns_names::user(id),
        NsKind::Time => ns_names::time(id),
        _ => return None,
    })
}

/// Checks `ns-ids`: exactly one entry for every process of the tree, each kind named once per task.
pub(crate) fn check_task_namespaces(
    tasks: &[TaskNamespaces],
    pids: &BTreeSet<Pid>,
    p: &mut Problems,
) {
    check_one_per_task(NS_IDS, tasks.iter().map(|t| t.pid), pids, p);
    for t in tasks {
        let mut kinds = BTreeSet::new();
        for n in t.namespaces.iter().filter(|n| !kinds.insert(n.kind)) {
            p.add(
                NS_IDS,
                format!(
                    "pid {} is in two {} namespaces",
                    t.pid.0,
                    n.kind.proc_name()
                ),
            );
        }
    }
}

/// Checks that `net-<id>`/`user-<id>` holds the namespace of that kind and id.
pub(crate) fn check_ns_state(
    file: &str,
    kind: NsKind,
    id: NsId,
    state: &NsState,
    p: &mut Problems,
) {
    let held = match state {
        NsState::Net(n) => (NsKind::Net, n.id),
        NsState::User(u) => (NsKind::User, u.id),
        NsState::Time(t) => (NsKind::Time, t.id),
    };
    if let NsState::Time(t) = state {
        if t.monotonic.nanos >= 1_000_000_000 || t.boottime.nanos >= 1_000_000_000 {
            p.add(file, "a clock offset has 1e9 nanoseconds or more");
        }
    }
    if held != (kind, id) {
        p.add(
            file,
            format!("holds {} namespace {}", held.0.proc_name(), held.1 .0),
        );
    }
}

/// Checks a file with one entry per task: every entry a process of the tree, every process once.
fn check_one_per_task(
    file: &str,
    entries: impl Iterator<Item = Pid>,
    pids: &BTreeSet<Pid>,
    p: &mut Problems,
) {
    let mut seen = BTreeSet::new();
    for pid in entries {
        if !pids.contains(&pid) {
            p.add(file, format!("pid {} is not in the tree", pid.0));
        } else if !seen.insert(pid) {
            p.add(file, format!("pid {} is listed twice", pid.0));
        }
    }
    for pid in pids.difference(&seen) {
        p.add(file, format!("has no entry for pid {} of the tree", pid.0));
    }
}
