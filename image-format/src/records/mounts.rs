//! Mount namespaces: every mount of the dumped tree's mount namespace, how restore gets each one back, and
//! the peer groups outside the namespace that some of its mounts are slaves of ("external masters").
//!
//! Restore builds the tree the "mount-v2" way (every mount private and flat, moved into place, sharing set
//! last), so the records describe the final state only, never an order of mount calls.

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use std::collections::BTreeSet;

use crate::error::Problems;
use crate::records::file_names::{tmpfs, MOUNTS, MOUNT_MASTERS, NESTED_MNT_NS};

/// A mount id as the dumped namespace's mountinfo showed it; only a label inside one image.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MountId(pub u32);

/// A peer group id (`shared:N` / `master:N`). Groups of dumped mounts are labels; the group of an external
/// master is the outside namespace's id at dump time, kept for diagnostics.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PeerGroup(pub u32);

/// How restore gets a mount back.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountSource {
    /// The namespace's root mount: a bind of the directory restore is given as the container root.
    Root,
    /// A filesystem dormant creates anew (proc, sysfs, tmpfs, devpts, mqueue, cgroup2) from `fstype`,
    /// `source` and `super_opts`.
    NewFs,
    /// A bind of another dumped mount: restore clones `of` at `root` relative to `of`'s root.
    BindOf { of: MountId },
    /// A bind of something outside the namespace, reached at restore through the path mapped to `key`
    /// (`--external mnt[KEY]:PATH`; by default the key is itself the outside path).
    External { key: String },
}

/// One mount (`mounts`, one entry per mount, parents before children).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountEntry {
    pub id: MountId,
    /// `None` for the namespace's root mount.
    pub parent: Option<MountId>,
    /// Absolute path in the dumped namespace.
    pub mountpoint: String,
    /// Path of the mount's root inside its filesystem.
    pub root: String,
    pub fstype: String,
    pub source: String,
    /// Per-mount options as mountinfo showed them (`rw,nosuid,relatime`).
    pub mount_opts: String,
    /// Superblock options as mountinfo showed them.
    pub super_opts: String,
    pub shared: Option<PeerGroup>,
    pub master: Option<PeerGroup>,
    pub unbindable: bool,
    pub how: MountSource,
}

/// A peer group outside the dumped namespace that dumped mounts are slaves of (`mnt-masters`, one entry per
/// group). Restore joins the group from the outside mount at the path `key` maps to.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalMaster {
    pub group: PeerGroup,
    pub key: String,
    /// Where the dumper found the group (its own namespace's path), for messages.
    pub found_at: String,
}

/// File names of the mount records.
pub mod mount_names {
    pub use crate::records::file_names::{tmpfs, MOUNTS, MOUNT_MASTERS, NESTED_MNT_NS};
}

/// A mount namespace of a plain tree other than the tree root's (one a task made with
/// `unshare(CLONE_NEWNS)`): the tasks in it, the regular files opened on its mounts, and its mounts as a
/// copy of the root's namespace plus changes (`nested-mntns`, one entry per namespace). Restore copies the
/// restorer's namespace, removes what is not listed, adds what is new and sets propagation; fds in
/// `files` are opened through the rebuilt namespace, every other one in the root's.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NestedMountNs {
    /// The namespace's inode at dump time, only a label.
    pub ns: u64,
    /// The tasks in it.
    pub pids: Vec<crate::records::Pid>,
    /// Regular files (`reg-files`) opened on one of its mounts.
    pub files: Vec<crate::records::FileId>,
    /// Its mounts in tree order (parents first).
    pub mounts: Vec<NestedMount>,
    /// Peer groups of the root's namespace its mounts are peers or slaves of, each with the root-namespace
    /// mountpoint (`key`) of a mount carrying it.
    pub outer: Vec<ExternalMaster>,
}

/// One mount of a [`NestedMountNs`]: `entry.how` is [`MountSource::Root`] for its root,
/// [`MountSource::External`] keyed by the mountpoint for a copy of the root namespace's mount there, and
/// [`MountSource::NewFs`] for a filesystem mounted in it (with its tmpfs content).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NestedMount {
    pub entry: MountEntry,
    pub tmpfs: Vec<TmpfsRecord>,
}

/// Checks the nested namespaces: tasks of the tree, each in one namespace; each namespace rooted once,
/// parents before children; files known.
pub(crate) fn check_nested(
    nested: &[NestedMountNs],
    pids: &std::collections::BTreeSet<crate::records::Pid>,
    files: &std::collections::BTreeSet<crate::records::FileId>,
    p: &mut Problems,
) {
    let mut seen = BTreeSet::new();
    for n in nested {
        let file = NESTED_MNT_NS;
        for pid in &n.pids {
            if !pids.contains(pid) || !seen.insert(*pid) {
                p.add(
                    file,
                    format!(
                        "namespace {}: pid {} is not a task of the tree or is in two namespaces",
                        n.ns, pid.0
                    ),
                );
            }
        }
        if let Some(f) = n.files.iter().find(|f| !files.contains(f)) {
            p.add(
                file,
                format!("namespace {}: file {} is not in reg-files", n.ns, f.0),
            );
        }
        let mut ids = BTreeSet::new();
        for (i, m) in n.mounts.iter().enumerate() {
            let e = &m.entry;
            let ok = match e.parent {
                None => i == 0 && e.how == MountSource::Root,
                Some(parent) => i > 0 && ids.contains(&parent) && e.how != MountSource::Root,
            };
            if !ok || !ids.insert(e.id) {
                p.add(
                    file,
                    format!(
                        "namespace {}: mount {} ({}) is out of tree order",
                        n.ns, e.id.0, e.mountpoint
                    ),
                );
            }
        }
    }
}

/// Checks the mount records: exactly one root, parents and bind sources dumped, every master group either
/// carried by a dumped mount or listed as an external master, tmpfs content only for recreated mounts
/// (`content` names the mounts that have a `tmpfs-<id>` file).
pub(crate) fn check_mounts(
    mounts: &[MountEntry],
    masters: &[ExternalMaster],
    content: impl Iterator<Item = MountId>,
    p: &mut Problems,
) {
    let ids: BTreeSet<MountId> = mounts.iter().map(|m| m.id).collect();
    if ids.len() != mounts.len() {
        p.add(MOUNTS, "a mount id is listed twice");
    }
    let groups: BTreeSet<PeerGroup> = mounts.iter().filter_map(|m| m.shared).collect();
    let ext: BTreeSet<PeerGroup> = masters.iter().map(|m| m.group).collect();
    let roots = mounts.iter().filter(|m| m.parent.is_none()).count();
    if roots != 1 {
        p.add(
            MOUNTS,
            format!("{roots} mounts without a parent, want exactly one root"),
        );
    }
    for m in mounts {
        if let Some(parent) = m.parent.filter(|pm| !ids.contains(pm)) {
            p.add(
                MOUNTS,
                format!(
                    "parent {} of mount {} ({}) is not dumped",
                    parent.0, m.id.0, m.mountpoint
                ),
            );
        }
        if let MountSource::BindOf { of } = m.how {
            if !ids.contains(&of) {
                p.add(
                    MOUNTS,
                    format!(
                        "mount {} ({}) binds mount {} that is not dumped",
                        m.id.0, m.mountpoint, of.0
                    ),
                );
            }
        }
        if let Some(g) = m.master.filter(|g| !groups.contains(g) && !ext.contains(g)) {
            p.add(
                MOUNTS,
                format!(
                    "mount {} ({}) is a slave of group {} that neither a dumped mount nor {MOUNT_MASTERS} carries",
                    m.id.0, m.mountpoint, g.0
                ),
            );
        }
    }
    for id in content {
        if !mounts
            .iter()
            .any(|m| m.id == id && m.how == MountSource::NewFs)
        {
            p.add(
                tmpfs(id),
                format!(
                    "content of mount {}, which is not a recreated mount in {MOUNTS}",
                    id.0
                ),
            );
        }
    }
}

/// One record of a tmpfs's content (`tmpfs-<MOUNT ID>`): the nodes in pre-order (a directory before what
/// it holds), each file's data chunks after its node. Only the data segments of sparse files are stored.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TmpfsRecord {
    Node(TmpfsNode),
    /// Bytes of node `node` at `offset` (at most [`TMPFS_CHUNK`] per record).
    Data {
        node: u32,
        offset: u64,
        bytes: Vec<u8>,
    },
}

/// Largest data chunk per [`TmpfsRecord::Data`].
pub const TMPFS_CHUNK: usize = 1 << 20;

/// One file, directory, link or special node of a tmpfs.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsNode {
    /// Position in pre-order; `Data` and `HardLink` refer to it.
    pub index: u32,
    /// Path relative to the mount's root (raw bytes; empty for the root itself).
    pub path: Vec<u8>,
    pub kind: TmpfsNodeKind,
    /// Permission bits including set-id and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i128,
    pub xattrs: Vec<Xattr>,
}

#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TmpfsNodeKind {
    Dir,
    File {
        size: u64,
    },
    Symlink {
        target: Vec<u8>,
    },
    Fifo,
    CharDev {
        rdev: u64,
    },
    BlockDev {
        rdev: u64,
    },
    /// Another name of the regular file at index `to`.
    HardLink {
        to: u32,
    },
}

/// One extended attribute.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}
