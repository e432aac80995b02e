//! Record schemas: what a dormant image says about a process tree, one file per kind of state.
//!
//! Every record type is one [`RecordKind`] of the table in [`kind`]; a record file holds entries of
//! exactly one kind. A kind's encoding is the postcard encoding of its type at the kind's schema version
//! (in the table, and in every file's header). Changing the encoding (a field, an enum variant, a type)
//! raises that kind's version and keeps the old type as a decoder, so images written before are still read
//! and images written after are refused by older builds naming both versions: see `docs/image-format.md`.
//! Kernel ABI blobs (xsave area, siginfo) are carried as length-tagged bytes, never re-interpreted here.
//!
//! Each kind's file also holds its checks (`check_*`): what must hold of its records alone and of what they
//! refer to in other records. [`crate::Image::load`] runs all of them; `verify` and restore both load.
//!
//! File naming (one place, so the dumper, the restorer and `verify` agree): see [`names`].

pub mod attrs;
pub mod container;
pub mod creds;
pub mod file_identity;
pub mod files;
pub mod fs;
pub(crate) mod ids;
pub mod kind;
pub mod mm;
pub mod mounts;
pub mod ns;
pub mod pages;
pub mod regs;
pub mod rlimits;
pub mod seccomp;
pub mod signals;
pub mod threads;
pub mod timers;
pub mod tree;
pub mod upgrade;

pub use attrs::{JobStop, ProcessAttrs, SchedParams, TaskCore, ThreadAttrs};
pub use container::{container_names, ContainerRoot};
pub use creds::Creds;
pub use file_identity::{
    elf_build_id, ContentDigest, FileCheck, FileDigest, FileIdentity, FILE_IDENTITY,
};
pub use files::unix;
pub use files::{
    DeletedContent, DeletedFile, DescId, DescKind, EpollTarget, Fd, FdFile, FileDesc, FileLock,
    FileOwner, FileStat, FileTime, InetSocket, InodeAttrs, InotifyCarriedWatch, InotifyWatch,
    LockKind, LockLineError, ProcFile, PtyState, RegFile, StoredContent, TcpConnection, TcpWindow,
    UdpDatagram, UdpQueue, UnixDatagram, UnixPending,
};
pub use fs::RemovedDir;
pub use ids::{FileId, Pid, ShmemId, Tid};
#[cfg(feature = "arbitrary")]
pub use kind::ArbitraryKindVisitor;
pub use kind::{
    decode_upgraded, file_names, FilePattern, KindVisitor, Record, RecordKind, SchemaVisitor,
    Upgrade, RETIRED_KINDS,
};
pub use mm::{Mm, MmAttrs, MmLayout, ShmemObject, Vma, VmaBacking};
pub use mounts::{
    mount_names, ExternalMaster, MountEntry, MountId, MountSource, NestedMount, NestedMountNs,
    PeerGroup, TmpfsNode, TmpfsNodeKind, TmpfsRecord, Xattr, TMPFS_CHUNK,
};
pub use ns::{
    ns_names, CgroupLine, IdMapRange, IpcNamespace, IpcPerm, IpcSysctl, NetNamespace, NsId, NsKind,
    NsRef, NsState, PosixMq, PosixMqMsg, SysvMsg, SysvMsgQueue, SysvSem, SysvShm, TaskCgroups,
    TaskNamespaces, UserNamespace, UtsNamespace,
};
pub use ns::{ClockOffset, TimeNamespace};
pub use pages::{page_flags, PageExtent};
pub use regs::GpRegs;
pub use rlimits::Rlimit;
pub use seccomp::{BpfInsn, SeccompFilter, SeccompMode, TaskSeccomp, ThreadSeccomp};
pub use signals::{SigAction, SigAltStack, SigInfo};
pub use threads::{RobustList, Rseq, ThreadCore};
pub use timers::{ITimer, PosixTimer};
pub use tree::{PsTreeEntry, SharedTables, Zombie};

/// File names inside an image directory: every kind's files (from the kind table) and the page stores.
pub mod names {
    pub use super::file_names::*;
    use super::{DescId, FileId, Pid, ShmemId};

    /// Page store of a task's private memory.
    pub fn task_pages(pid: Pid) -> String {
        format!("task-{}", pid.0)
    }
    /// Page store of one shared-memory object.
    pub fn shmem_pages(id: ShmemId) -> String {
        format!("shmem-{}", id.0)
    }
    /// Page store of the content of unlinked-file or memfd description `id` (`desc-contents`).
    pub fn desc_pages(id: DescId) -> String {
        format!("desc-{}", id.0)
    }
    /// Page store of the content of file `id`, deleted while mapped or executed (`deleted-files`).
    pub fn deleted_pages(id: FileId) -> String {
        format!("deleted-{}", id.0)
    }
}

/// What a file of an image holds, judged by its name (the header of a record file says it again, and the
/// readers check that both agree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRole {
    Records(RecordKind),
    /// Raw page data of a page store.
    PageData,
}

/// The role of image file `name`, or `None` for a name this format does not use.
pub fn file_role(name: &str) -> Option<FileRole> {
    if crate::pages::store_of_data_file(name).is_some_and(|s| !s.is_empty()) {
        return Some(FileRole::PageData);
    }
    RecordKind::of_file(name).map(FileRole::Records)
}
