//! The table of record kinds: one entry per kind, from which everything else about kinds follows (the
//! [`RecordKind`] enum and its numbers, the [`Record`] impl of the kind's type, its schema version and the
//! decoders kept for older versions, the names of its files and the dispatch of generic code over kinds).
//!
//! To add a kind: add one entry, with a number never used before (retired numbers are listed in
//! [`RETIRED_KINDS`]), `version 1`, `older []` and its file names. To change the encoding of a kind (a field,
//! an enum variant, a type): raise its `version`, keep the old type as a decoder under `older` with an
//! [`Upgrade`] into the new one, and record the new schema (see `docs/image-format.md`). The schema lock
//! test (`image-format/tests/schema_lock.rs`) fails until both are done.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::attrs::{ProcessAttrs, TaskCore};
use super::container::ContainerRoot;
use super::file_identity::FileIdentity;
use super::files::{
    DeletedFile, Fd, FileDesc, FileLock, InodeAttrs, InotifyCarriedWatch, RegFile, StoredContent,
    UdpQueue,
};
use super::ids::{Pid, Tid};
use super::mm::{Mm, ShmemObject};
use super::mounts::{ExternalMaster, MountEntry, MountId, NestedMountNs, TmpfsRecord};
use super::ns::{IpcNamespace, NsId, NsState, TaskCgroups, TaskNamespaces, UtsNamespace};
use super::pages::PageExtent;
use super::seccomp::TaskSeccomp;
use super::threads::{ThreadCore, ThreadCoreV1};
use super::tree::{PsTreeEntry, SharedTables, Zombie};
pub use super::upgrade::{decode_upgraded, Upgrade};
use crate::inventory::Inventory;

/// A typed record: one type per [`RecordKind`]. A record file holds entries of exactly one kind, and the
/// kind and schema version in its header are checked by every reader.
pub trait Record: Serialize + DeserializeOwned + std::fmt::Debug {
    const KIND: RecordKind;
    /// The schema version of this type's encoding: what this build writes, and the newest it reads.
    const VERSION: u16 = Self::KIND.version();

    /// Decodes one entry written at an older schema `version` of this kind through the decoder kept for
    /// it; `None` when no decoder for that version is kept.
    fn decode_older(version: u16, payload: &[u8]) -> Option<Result<Self, String>> {
        let _ = (version, payload);
        None
    }
}

/// How the files of one kind are named inside an image directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilePattern {
    /// Exactly this name (one file per image).
    Exact(&'static str),
    /// This prefix and a decimal id (one file per process, thread, namespace, mount, ...).
    Numbered(&'static str),
    /// This prefix and a page store's name (`pagemap-task-42`).
    Store(&'static str),
}

impl FilePattern {
    /// Whether `name` is a file of this pattern.
    pub fn matches(self, name: &str) -> bool {
        match self {
            FilePattern::Exact(n) => name == n,
            FilePattern::Numbered(p) => name.strip_prefix(p).is_some_and(|id| {
                !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())
            }),
            FilePattern::Store(p) => name.strip_prefix(p).is_some_and(|s| !s.is_empty()),
        }
    }
}

/// Generic code over every kind (the JSON view of `dormant show`, round-trip tests): [`RecordKind::visit`]
/// calls `visit` with the kind's record type.
pub trait KindVisitor {
    type Output;
    fn visit<R: Record + Clone + PartialEq>(self) -> Self::Output;
}

/// Generic code over the encoding of every schema version a build reads (the schema lock test):
/// [`RecordKind::visit_schema`] calls `visit` with the type that decodes a version: the kind's record type
/// for the current one, the kept decoder for an older one.
pub trait SchemaVisitor {
    type Output;
    fn visit<T: DeserializeOwned>(self) -> Self::Output;
}

/// [`KindVisitor`] for code that also generates records (property tests).
#[cfg(feature = "arbitrary")]
pub trait ArbitraryKindVisitor {
    type Output;
    fn visit<R: Record + Clone + PartialEq + proptest::arbitrary::Arbitrary>(self) -> Self::Output;
}

macro_rules! file_pattern {
    (name($const:ident, $name:literal)) => {
        FilePattern::Exact($name)
    };
    (numbered($fn:ident, $id:ty, $prefix:literal)) => {
        FilePattern::Numbered($prefix)
    };
    (store($prefix:literal)) => {
        FilePattern::Store($prefix)
    };
}

macro_rules! file_name_item {
    ($kind:ident name($const:ident, $name:literal)) => {
        #[doc = concat!("The `", stringify!($kind), "` file.")]
        pub const $const: &str = $name;
    };
    ($kind:ident numbered($fn:ident, $id:ty, $prefix:literal)) => {
        #[doc = concat!("The `", stringify!($kind), "` file of one `", stringify!($id), "`: `", $prefix, "<id>`.")]
        pub fn $fn(id: $id) -> String {
            format!("{}{}", $prefix, id.0)
        }
    };
    ($kind:ident store($prefix:literal)) => {};
}

macro_rules! record_kinds {
    ($(
        $(#[doc = $doc:literal])*
        $num:literal $variant:ident($ty:ty) version $ver:literal
            older [$($old:literal => $oldty:ty),* $(,)?]
            files [$($pat:ident($($arg:tt)*)),* $(,)?];
    )*) => {
        /// The kind of entries a record file holds; written in its header and checked by every reader.
        #[repr(u16)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum RecordKind {
            $( $(#[doc = $doc])* $variant = $num, )*
        }

        impl RecordKind {
            /// Every kind this build knows, ascending by number.
            pub const ALL: &'static [RecordKind] = &[$(RecordKind::$variant),*];

            /// Maps a header value back to a kind; `None` for values this build does not know.
            pub const fn from_u16(v: u16) -> Option<Self> {
                match v {
                    $($num => Some(Self::$variant),)*
                    _ => None,
                }
            }

            /// The schema version this build writes for the kind (and the newest it reads).
            pub const fn version(self) -> u16 {
                match self {
                    $(Self::$variant => $ver,)*
                }
            }

            /// The older schema versions this build still decodes (through kept decoders).
            pub const fn older_versions(self) -> &'static [u16] {
                match self {
                    $(Self::$variant => &[$($old),*],)*
                }
            }

            /// The Rust type of the kind's records, for messages.
            pub const fn type_name(self) -> &'static str {
                match self {
                    $(Self::$variant => stringify!($ty),)*
                }
            }

            /// How the kind's files are named.
            pub const fn file_patterns(self) -> &'static [FilePattern] {
                match self {
                    $(Self::$variant => &[$(file_pattern!($pat($($arg)*))),*],)*
                }
            }

            /// Calls `v` with the kind's record type.
            pub fn visit<V: KindVisitor>(self, v: V) -> V::Output {
                match self {
                    $(Self::$variant => v.visit::<$ty>(),)*
                }
            }

            /// Calls `v` with the type that decodes schema `version` of the kind; `None` for a version
            /// this build does not read.
            pub fn visit_schema<V: SchemaVisitor>(self, version: u16, v: V) -> Option<V::Output> {
                match self {
                    $(Self::$variant => match version {
                        $ver => Some(v.visit::<$ty>()),
                        $($old => Some(v.visit::<$oldty>()),)*
                        _ => None,
                    },)*
                }
            }

            /// Calls `v` with the kind's record type (for property tests).
            #[cfg(feature = "arbitrary")]
            pub fn visit_arbitrary<V: ArbitraryKindVisitor>(self, v: V) -> V::Output {
                match self {
                    $(Self::$variant => v.visit::<$ty>(),)*
                }
            }
        }

        $(
            impl Record for $ty {
                const KIND: RecordKind = RecordKind::$variant;
                const VERSION: u16 = $ver;

                fn decode_older(version: u16, payload: &[u8]) -> Option<Result<Self, String>> {
                    match version {
                        $($old => Some(decode_upgraded::<$oldty, Self>(payload)),)*
                        _ => {
                            let _ = payload;
                            None
                        }
                    }
                }
            }
        )*

        /// The names of every kind's files, as the table gives them (re-exported by
        /// [`crate::records::names`]).
        pub mod file_names {
            #[allow(unused_imports)]
            use super::*;
            $( $( file_name_item!($variant $pat($($arg)*)); )* )*
        }
    };
}

record_kinds! {
    /// The image's inventory (written by the image writer only).
    1 Inventory(Inventory) version 1 older [] files [name(INVENTORY, "inventory")];
    /// A page store's index (written by the image writer only).
    2 PageIndex(PageExtent) version 1 older [] files [store("pagemap-")];
    /// The process tree, root first, parents before children (records/tree.rs).
    3 PsTree(PsTreeEntry) version 1 older [] files [name(PSTREE, "pstree")];
    /// One process's process-wide state (records/attrs.rs).
    4 TaskCore(TaskCore) version 2 older [1 => super::attrs::TaskCoreV1] files [numbered(core, Pid, "core-")];
    /// One thread's registers and signal state (records/threads.rs).
    5 ThreadCore(ThreadCore) version 2 older [1 => ThreadCoreV1] files [numbered(thread, Tid, "thread-")];
    /// One process's address space (records/mm.rs).
    6 Mm(Mm) version 2 older [1 => super::mm::v1::Mm] files [numbered(mm, Pid, "mm-")];
    /// Files reopened by path (records/files/reg.rs).
    7 RegFiles(RegFile) version 1 older [] files [name(REG_FILES, "reg-files")];
    /// One process's fd table (records/files/mod.rs).
    8 Fds(Fd) version 1 older [] files [numbered(fds, Pid, "fds-")];
    /// Anonymous shared memory objects (records/mm.rs).
    9 ShmemObjects(ShmemObject) version 1 older [] files [name(SHMEM, "shmem")];
    // 10-19: threads and process trees.
    /// Zombies of the tree (records/tree.rs).
    10 Zombie(Zombie) version 1 older [] files [name(ZOMBIES, "zombies")];
    /// One process's seccomp modes and filters, when a thread is under seccomp (records/seccomp.rs).
    15 Seccomp(TaskSeccomp) version 1 older [] files [numbered(seccomp, Pid, "seccomp-")];
    /// One process's per-thread attributes and OOM score adjustment (records/attrs.rs).
    16 ProcessAttrs(ProcessAttrs) version 1 older [] files [numbered(attrs, Pid, "attrs-")];
    // 20-29: open file descriptions.
    /// Open file descriptions not reopened by path (records/files/mod.rs).
    20 FileDescs(FileDesc) version 4 older [1 => super::files::v1::FileDescV1, 2 => super::files::v2::FileDescV2, 3 => super::files::v3::FileDescV3] files [name(FILE_DESCS, "file-descs")];
    /// One process's file locks (records/files/locks.rs).
    21 FileLocks(FileLock) version 2 older [1 => super::files::locks::v1::FileLockV1] files [numbered(locks, Pid, "locks-")];
    /// How restore recognises mapped files and executables (records/file_identity.rs).
    22 FileIdentity(FileIdentity) version 1 older [] files [name(FILE_IDENTITY, "file-identity")];
    /// Owner, mode and times of the inodes of unlinked files and memfds (records/files/inode.rs).
    27 InodeAttrs(InodeAttrs) version 1 older [] files [name(INODE_ATTRS, "inode-attrs")];
    // 30-34: mount namespaces.
    /// The mounts of the tree's mount namespace (records/mounts.rs).
    30 Mounts(MountEntry) version 1 older [] files [name(MOUNTS, "mounts")];
    /// Outside peer groups dumped mounts are slaves of (records/mounts.rs).
    31 ExternalMasters(ExternalMaster) version 1 older [] files [name(MOUNT_MASTERS, "mnt-masters")];
    /// Content of a tmpfs: one the restore creates, or an external one (records/mounts.rs).
    32 TmpfsContent(TmpfsRecord) version 1 older []
        files [numbered(tmpfs, MountId, "tmpfs-"), numbered(ext_tmpfs, MountId, "ext-tmpfs-")];
    // 35-39: namespaces.
    /// The namespaces of every task (records/ns/mod.rs).
    35 TaskNamespaces(TaskNamespaces) version 1 older [] files [name(NS_IDS, "ns-ids")];
    /// A uts namespace (records/ns/uts.rs).
    36 UtsNamespace(UtsNamespace) version 1 older [] files [numbered(uts, NsId, "uts-")];
    /// An ipc namespace (records/ns/ipc.rs).
    37 IpcNamespace(IpcNamespace) version 1 older [] files [numbered(ipc, NsId, "ipc-")];
    /// The cgroups of every task (records/ns/cgroup.rs).
    38 TaskCgroups(TaskCgroups) version 1 older [] files [name(CGROUPS, "cgroups")];
    /// A net or user namespace (records/ns/net.rs, records/ns/user.rs).
    39 NsState(NsState) version 2 older [1 => super::ns::v1::NsStateV1] files [numbered(net, NsId, "net-"), numbered(user, NsId, "user-"), numbered(time, NsId, "time-")];
    // 40-44: containers. 40 was `ns-pids`, retired (its content is `PsTreeEntry::ns_pids`).
    /// The container's root directory as `dump --root` named it (records/container.rs).
    41 ContainerRoot(ContainerRoot) version 1 older [] files [name(CONTAINER_ROOT, "container-root")];
    /// Files deleted while mapped or executed, with their content (records/files/ghost.rs).
    42 DeletedFiles(DeletedFile) version 2 older [1 => super::files::ghost::v1::DeletedFileV1] files [name(DELETED_FILES, "deleted-files")];
    // 50-54: descriptor edges.
    /// inotify watches on inodes the image carries (records/files/inotify.rs).
    50 InotifyCarried(InotifyCarriedWatch) version 1 older [] files [name(INOTIFY_CARRIED, "inotify-carried")];
    // 60-64: shared process tables.
    /// Which processes share an fd table or an fs struct (records/tree.rs).
    60 SharedTables(SharedTables) version 1 older [] files [name(SHARED_TABLES, "shared-tables")];
    // 65-69: nested mount namespaces.
    /// Mount namespaces inside a plain tree (records/mounts.rs).
    65 NestedMountNs(NestedMountNs) version 1 older [] files [name(NESTED_MNT_NS, "nested-mntns")];
    // 70-74: socket queues.
    /// Datagrams waiting in UDP sockets' receive queues (records/files/inet.rs).
    70 UdpQueues(UdpQueue) version 1 older [] files [name(UDP_QUEUES, "udp-queues")];
    // 75-79: carried content.
    /// Unlinked files and memfds whose content is in a page store (records/files/inode.rs).
    75 DescContents(StoredContent) version 1 older [] files [name(DESC_CONTENTS, "desc-contents")];
}

/// Kind numbers once used and retired: never to be reused, so an old image's file can never be misread as
/// a new record. 40: `ns-pids`, each task's `NSpid` levels, a duplicate of `PsTreeEntry::ns_pids`.
pub const RETIRED_KINDS: &[u16] = &[40];

/// Checked when this crate compiles: no table entry uses a retired number, every version is at least 1 and
/// every older version of a kind still has its decoder.
const _: () = {
    let mut i = 0;
    while i < RETIRED_KINDS.len() {
        assert!(
            RecordKind::from_u16(RETIRED_KINDS[i]).is_none(),
            "a retired record kind number is used again"
        );
        i += 1;
    }
    let mut k = 0;
    while k < RecordKind::ALL.len() {
        let kind = RecordKind::ALL[k];
        let older = kind.older_versions();
        assert!(kind.version() >= 1, "schema versions start at 1");
        assert!(
            older.len() == kind.version() as usize - 1,
            "every older schema version of a kind must keep its decoder"
        );
        let mut v = 0;
        while v < older.len() {
            assert!(
                older[v] == v as u16 + 1,
                "older versions are listed as 1, 2, ..."
            );
            v += 1;
        }
        k += 1;
    }
};

impl RecordKind {
    /// Whether this build decodes files of the kind at schema `version`.
    pub fn reads_version(self, version: u16) -> bool {
        version == self.version() || self.older_versions().contains(&version)
    }

    /// The kind whose files are named like `name`, if any.
    pub fn of_file(name: &str) -> Option<RecordKind> {
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.file_patterns().iter().any(|p| p.matches(name)))
    }
}

impl std::fmt::Display for RecordKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({:?})", *self as u16, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No name can match two patterns: a file's kind does not depend on the order of the table.
    #[test]
    fn file_patterns_are_disjoint() {
        let all: Vec<(RecordKind, FilePattern)> = RecordKind::ALL
            .iter()
            .flat_map(|k| k.file_patterns().iter().map(move |p| (*k, *p)))
            .collect();
        let text = |p: FilePattern| match p {
            FilePattern::Exact(s) | FilePattern::Numbered(s) | FilePattern::Store(s) => s,
        };
        for (i, (ka, a)) in all.iter().enumerate() {
            for (kb, b) in &all[i + 1..] {
                let (ta, tb) = (text(*a), text(*b));
                let overlap = match (a, b) {
                    (FilePattern::Exact(_), FilePattern::Exact(_)) => ta == tb,
                    (FilePattern::Exact(_), _) => b.matches(ta),
                    (_, FilePattern::Exact(_)) => a.matches(tb),
                    _ => ta.starts_with(tb) || tb.starts_with(ta),
                };
                assert!(!overlap, "{ka:?} {a:?} and {kb:?} {b:?} overlap");
            }
            assert!(
                !text(*a).starts_with(crate::pages::DATA_PREFIX),
                "{ka:?}: names of page data files are not record files"
            );
        }
    }

    #[test]
    fn every_kind_has_a_file_name_and_round_trips_its_number() {
        for k in RecordKind::ALL {
            assert!(!k.file_patterns().is_empty(), "{k:?}");
            assert_eq!(RecordKind::from_u16(*k as u16), Some(*k));
        }
        assert_eq!(RecordKind::of_file("core-12"), Some(RecordKind::TaskCore));
        assert_eq!(RecordKind::of_file("core-"), None);
        assert_eq!(RecordKind::of_file("core-x"), None);
        assert_eq!(
            RecordKind::of_file("ext-tmpfs-3"),
            Some(RecordKind::TmpfsContent)
        );
        assert_eq!(
            RecordKind::of_file("pagemap-task-1"),
            Some(RecordKind::PageIndex)
        );
        assert_eq!(RecordKind::of_file("ns-pids"), None);
    }
}
