//! Record schemas: what a dormant image says about a process tree.
//!
//! Every record type here is one [`RecordKind`]; a record file holds entries of exactly one kind. Field
//! layout is the postcard encoding of these structs, so changing a field is a format change: add fields
//! only at the end of a struct with `#[serde(default)]`, bump the minor version, and keep old readers working.
//! Kernel ABI blobs (xsave area, siginfo) are carried as length-tagged bytes, never re-interpreted here.
//!
//! File naming (one place, so the dumper, the restorer and `verify` agree): see [`names`].

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use crate::Record;

mod container;
mod file_identity;
mod files;
mod mounts;
mod ns;
mod tree;
pub use container::*;
pub use file_identity::*;
pub use files::*;
pub use mounts::*;
pub use ns::*;
pub use tree::*;

/// The kind of entries a record file holds; written in its header and checked by every reader.
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecordKind {
    Inventory = 1,
    PageIndex = 2,
    PsTree = 3,
    TaskCore = 4,
    ThreadCore = 5,
    Mm = 6,
    RegFiles = 7,
    Fds = 8,
    ShmemObjects = 9,
    // 10-19: threads and process trees (records/tree.rs)
    Zombie = 10,
    // 20-29: open file descriptions (records/files.rs)
    FileDescs = 20,
    FileLocks = 21,
    /// How restore checks mapped files and executables (records/file_identity.rs).
    FileIdentity = 22,
    // 30-34: mount namespaces (records/mounts.rs)
    Mounts = 30,
    ExternalMasters = 31,
    TmpfsContent = 32,
    // 35-39: namespaces (records/ns.rs)
    TaskNamespaces = 35,
    UtsNamespace = 36,
    IpcNamespace = 37,
    TaskCgroups = 38,
    NsState = 39,
    // 40-44: containers (records/container.rs). 40 was `ns-pids`, retired (its content is
    // `PsTreeEntry::ns_pids`): reserved, never to be reused.
    ContainerRoot = 41,
}

impl RecordKind {
    /// Maps a header value back to a kind; `None` for values this build does not know.
    pub fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            1 => Self::Inventory,
            2 => Self::PageIndex,
            3 => Self::PsTree,
            4 => Self::TaskCore,
            5 => Self::ThreadCore,
            6 => Self::Mm,
            7 => Self::RegFiles,
            8 => Self::Fds,
            9 => Self::ShmemObjects,
            10 => Self::Zombie,
            20 => Self::FileDescs,
            21 => Self::FileLocks,
            22 => Self::FileIdentity,
            30 => Self::Mounts,
            31 => Self::ExternalMasters,
            32 => Self::TmpfsContent,
            35 => Self::TaskNamespaces,
            36 => Self::UtsNamespace,
            37 => Self::IpcNamespace,
            38 => Self::TaskCgroups,
            39 => Self::NsState,
            41 => Self::ContainerRoot,
            _ => return None,
        })
    }
}

/// File names inside an image directory.
pub mod names {
    use super::{Pid, ShmemId, Tid};

    pub const PSTREE: &str = "pstree";
    pub const REG_FILES: &str = "reg-files";
    pub const SHMEM: &str = "shmem";
    /// Open file descriptions not reachable by path (pipes, sockets, eventfd, ...).
    pub const FILE_DESCS: &str = "file-descs";
    /// Zombies of the tree (absent when there are none).
    pub const ZOMBIES: &str = "zombies";

    pub fn core(pid: Pid) -> String {
        format!("core-{}", pid.0)
    }
    pub fn thread(tid: Tid) -> String {
        format!("thread-{}", tid.0)
    }
    pub fn mm(pid: Pid) -> String {
        format!("mm-{}", pid.0)
    }
    pub fn fds(pid: Pid) -> String {
        format!("fds-{}", pid.0)
    }
    /// File locks a task held.
    pub fn locks(pid: Pid) -> String {
        format!("locks-{}", pid.0)
    }
    /// Page store of a task's private memory.
    pub fn task_pages(pid: Pid) -> String {
        format!("task-{}", pid.0)
    }
    /// Page store of one shared-memory object.
    pub fn shmem_pages(id: ShmemId) -> String {
        format!("shmem-{}", id.0)
    }
}

/// A process id as seen in the namespace dormant runs in (the outermost one of the dumped tree).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Pid(pub u32);

/// A thread id; the leader's tid equals its [`Pid`].
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Tid(pub u32);

/// An open file description in `reg-files`; shared by every fd (of any task) that shared it at dump time.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FileId(pub u32);

/// A shared-memory object (the shmem inode number of an anonymous shared mapping).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShmemId(pub u64);

// ---------------------------------------------------------------------------------------------------------
// Process tree
// ---------------------------------------------------------------------------------------------------------

/// One process of the dumped tree (`pstree`, one entry per process, root first).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsTreeEntry {
    pub pid: Pid,
    /// Parent inside the tree; `None` for the root.
    pub ppid: Option<Pid>,
    pub pgid: Pid,
    pub sid: Pid,
    /// Every thread, leader first.
    pub threads: Vec<Tid>,
    /// `NSpid`: the pid in each pid namespace from the dumper's (= `pid`) down to the process's own; one
    /// entry when the process is in the dumper's pid namespace, empty when the kernel did not say.
    #[serde(default)]
    pub ns_pids: Vec<Pid>,
}

impl Record for PsTreeEntry {
    const KIND: RecordKind = RecordKind::PsTree;
}

// ---------------------------------------------------------------------------------------------------------
// Per-process core state
// ---------------------------------------------------------------------------------------------------------

/// Process-wide state (`core-<pid>`, one entry).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCore {
    pub pid: Pid,
    /// `/proc/pid/comm` of the leader.
    pub comm: String,
    pub personality: u32,
    pub umask: u32,
    pub rlimits: Vec<Rlimit>,
    /// All 64 signal actions, index 0 = signal 1. `None` when the dump could not ask the task (no parasite);
    /// the restorer then leaves every action at its default and says so.
    pub sigactions: Option<Vec<SigAction>>,
    /// Real, virtual and profiling interval timers, in that order (from inside the task).
    pub itimers: Option<[ITimer; 3]>,
    pub creds: Creds,
    /// `PR_GET_DUMPABLE`, `PR_GET_PDEATHSIG`, `PR_GET_CHILD_SUBREAPER`, when known.
    pub dumpable: Option<u32>,
    pub pdeathsig: Option<u32>,
    pub child_subreaper: Option<bool>,
    /// Process-wide pending signals (`PTRACE_PEEKSIGINFO` with the shared flag), raw `siginfo_t`s.
    pub shared_pending: Vec<SigInfo>,
    /// The task was stopped (job control) at dump time and must be stopped again after restore.
    pub stopped: bool,
    /// Working directory and root directory (`/proc/pid/cwd`, `/proc/pid/root`), as paths in the task's
    /// mount namespace.
    pub cwd: String,
    pub root: String,
    /// POSIX timers (`timer_create`), ascending by id.
    pub posix_timers: Vec<PosixTimer>,
}

/// One POSIX timer: how it notifies (from `/proc/pid/timers`) and where it stands (`timer_gettime` and
/// `timer_getoverrun` inside the task).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosixTimer {
    pub id: i32,
    pub clock: i32,
    /// `SIGEV_*` (with `SIGEV_THREAD_ID` when a thread is the target).
    pub notify: i32,
    pub signo: i32,
    /// `sigev_value` as the task gave it.
    pub value: u64,
    /// Target thread for `SIGEV_THREAD_ID`.
    pub notify_tid: Option<Tid>,
    pub interval_ns: u64,
    /// Time to the next expiry; 0 = disarmed.
    pub value_ns: u64,
    pub overrun: i32,
}

impl Record for TaskCore {
    const KIND: RecordKind = RecordKind::TaskCore;
}

/// One resource limit (`RLIMIT_*` number, soft, hard; `u64::MAX` = infinity).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    pub resource: u32,
    pub soft: u64,
    pub hard: u64,
}

/// One signal's disposition as the image stores it; the fields of the kernel's x86-64 `struct
/// sigaction` ([`dormant_sys::signal::KernelSigaction`], which `rt_sigaction` reads and writes).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SigAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

// The one conversion each way between the kernel layout and the record.
impl From<dormant_sys::signal::KernelSigaction> for SigAction {
    fn from(k: dormant_sys::signal::KernelSigaction) -> Self {
        SigAction {
            handler: k.handler,
            flags: k.flags,
            restorer: k.restorer,
            mask: k.mask,
        }
    }
}

impl From<SigAction> for dormant_sys::signal::KernelSigaction {
    fn from(a: SigAction) -> Self {
        dormant_sys::signal::KernelSigaction {
            handler: a.handler,
            flags: a.flags,
            restorer: a.restorer,
            mask: a.mask,
        }
    }
}

/// `struct itimerval` in microseconds.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ITimer {
    pub interval_us: u64,
    pub value_us: u64,
}

/// Credentials from `/proc/pid/status` (real, effective, saved, fs ids; capability sets).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Creds {
    pub uids: [u32; 4],
    pub gids: [u32; 4],
    pub groups: Vec<u32>,
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
    pub no_new_privs: bool,
    pub securebits: Option<u32>,
}

/// A raw `siginfo_t` (128 bytes on x86-64), re-queued with `rt_tgsigqueueinfo` at restore.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigInfo(pub Vec<u8>);

// ---------------------------------------------------------------------------------------------------------
// Per-thread state
// ---------------------------------------------------------------------------------------------------------

/// One thread's CPU and signal state (`thread-<tid>`, one entry).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadCore {
    pub tid: Tid,
    /// General registers after the syscall-restart rule was applied (see the engine's `regs` module).
    pub regs: GpRegs,
    /// The `NT_X86_XSTATE` regset exactly as the kernel returned it (standard, uncompacted XSAVE layout).
    pub xstate: Vec<u8>,
    /// Blocked signals (`PTRACE_GETSIGMASK`).
    pub sigmask: u64,
    /// Thread-private pending signals, raw `siginfo_t`s, in queue order.
    pub pending: Vec<SigInfo>,
    pub rseq: Option<Rseq>,
    pub sigaltstack: Option<SigAltStack>,
    /// `set_tid_address` value (`PR_GET_TID_ADDRESS`), when known.
    pub clear_child_tid: Option<u64>,
    pub comm: String,
    /// The robust futex list registration, when the thread had one.
    #[serde(default)]
    pub robust_list: Option<RobustList>,
    /// `NSpid` of the thread: its tid in each pid namespace from the dumper's down to its own (one entry
    /// outside nested pid namespaces). A thread of a task restored in a nested pid namespace is created
    /// with both levels.
    #[serde(default)]
    pub ns_tids: Vec<Tid>,
}

impl Record for ThreadCore {
    const KIND: RecordKind = RecordKind::ThreadCore;
}

/// x86-64 `struct user_regs_struct`, field for field.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GpRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub orig_rax: u64,
    pub rip: u64,
    pub cs: u64,
    pub eflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

/// An rseq registration (`PTRACE_GET_RSEQ_CONFIGURATION`).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rseq {
    pub addr: u64,
    pub len: u32,
    pub signature: u32,
}

/// `stack_t`.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigAltStack {
    pub sp: u64,
    pub flags: u32,
    pub size: u64,
}

// ---------------------------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------------------------

/// A process's address space (`mm-<pid>`, one entry). Its private pages are in the page store
/// [`names::task_pages`]; pages of shared objects are in [`names::shmem_pages`].
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mm {
    pub layout: MmLayout,
    /// `/proc/pid/auxv` as native words (pairs of type, value), terminated by `AT_NULL`.
    pub auxv: Vec<u64>,
    /// The executable (`/proc/pid/exe`).
    pub exe: FileId,
    /// Every mapping, ascending by address, as `/proc/pid/smaps` listed it.
    pub vmas: Vec<Vma>,
}

impl Record for Mm {
    const KIND: RecordKind = RecordKind::Mm;
}

/// The mm fields `PR_SET_MM_MAP` restores (from `/proc/pid/stat` and, for `brk`, the task itself).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MmLayout {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
}

/// One mapping.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    /// `PROT_*` bits.
    pub prot: u32,
    /// `MAP_SHARED` or `MAP_PRIVATE`, plus `MAP_GROWSDOWN` etc. as the kernel reported them.
    pub map_flags: u32,
    /// `madvise` state from smaps `VmFlags` (`MADV_*` advice numbers to re-apply, e.g. DONTFORK, DONTDUMP).
    pub madvise: Vec<u32>,
    /// Offset into the backing object, in bytes.
    pub pgoff: u64,
    pub backing: VmaBacking,
    /// The name column of `/proc/pid/maps` (`[heap]`, `[stack]`, a path, or empty), for humans and checks.
    pub name: String,
}

/// What a mapping is backed by, and so where restore gets its contents.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmaBacking {
    /// Private anonymous memory (heap, stack, malloc arenas): pages in the task's page store.
    Anon,
    /// Anonymous shared memory (`MAP_SHARED|MAP_ANONYMOUS`, or `/dev/zero` shared): one object, dumped once.
    Shmem(ShmemId),
    /// A file mapping. Private: clean pages are re-read from the file, written (COW'd) ones are in the task's
    /// page store. Shared: the data is the file's.
    File(FileId),
    /// The vDSO; its bytes are in the page store so restore can compare them with the running kernel's.
    Vdso,
    /// `[vvar]`, `[vvar_vclock]`: never restored from the image (the running kernel provides them).
    Vvar,
    /// `[vsyscall]`: fixed by the kernel, skipped.
    Vsyscall,
    /// An attachment of System V shared memory segment `shmid` (`/SYSV<key>` in maps). The segment and its
    /// contents belong to the ipc namespace's records; restore maps the segment restored under this id.
    SysvShm { shmid: u32 },
}

/// One shared-memory object (`shmem`, one entry per object across the whole tree).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShmemObject {
    pub id: ShmemId,
    /// Object size in bytes (the largest end offset of any mapping of it).
    pub size: u64,
    /// The process whose mapping was read; the page store's virtual addresses are object offsets.
    pub owner: Pid,
}

impl Record for ShmemObject {
    const KIND: RecordKind = RecordKind::ShmemObjects;
}

/// Page-store extent flags.
pub mod page_flags {
    /// Private anonymous or COW'd file page content.
    pub const PRIVATE: u32 = 1 << 0;
    /// vDSO bytes kept for comparison, not to be written into the restored task.
    pub const VDSO: u32 = 1 << 1;
    /// Offsets are object offsets of a shared-memory object, not virtual addresses.
    pub const SHMEM: u32 = 1 << 2;
}

// ---------------------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------------------

/// An open file description reachable by path (`reg-files`, one entry per description). Also used for the
/// files behind mappings and for the executable, where `flags`/`pos` do not matter.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegFile {
    pub id: FileId,
    /// Absolute path in the dumped task's mount namespace.
    pub path: String,
    /// `O_*` flags from fdinfo (without `O_CLOEXEC`, which belongs to the fd).
    pub flags: u32,
    pub pos: u64,
    /// What the file was at dump time; restore refuses a file that differs.
    pub stat: FileStat,
}

impl Record for RegFile {
    const KIND: RecordKind = RecordKind::RegFiles;
}

/// Identity of a file at dump time.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FileStat {
    pub dev: u64,
    pub ino: u64,
    /// `st_mode` (type and permission bits).
    pub mode: u32,
    pub size: u64,
    pub mtime_ns: i128,
    /// `st_rdev` for device nodes.
    pub rdev: u64,
}

/// One task's fd table (`fds-<pid>`, one entry per fd, ascending).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fd {
    pub fd: i32,
    pub cloexec: bool,
    pub file: FdFile,
}

impl Record for Fd {
    const KIND: RecordKind = RecordKind::Fds;
}

/// What an fd refers to.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FdFile {
    /// A regular file, directory or device reopened by path.
    Reg(FileId),
    /// The controlling terminal of a shell job: restore uses the terminal dormant itself was started on.
    InheritedTty,
    /// A description in `file-descs` (pipe, socket, eventfd, ...).
    Desc(DescId),
}

// ---------------------------------------------------------------------------------------------------------
// Naming and cross references
// ---------------------------------------------------------------------------------------------------------

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
    let kind = match name {
        crate::INVENTORY_FILE => RecordKind::Inventory,
        names::PSTREE => RecordKind::PsTree,
        names::REG_FILES => RecordKind::RegFiles,
        names::SHMEM => RecordKind::ShmemObjects,
        names::FILE_DESCS => RecordKind::FileDescs,
        names::ZOMBIES => RecordKind::Zombie,
        file_identity::FILE_IDENTITY => RecordKind::FileIdentity,
        _ if name.starts_with("pages-") && name.ends_with(".img") => {
            return Some(FileRole::PageData)
        }
        _ if name.starts_with("pagemap-") => RecordKind::PageIndex,
        _ if name.starts_with("core-") => RecordKind::TaskCore,
        _ if name.starts_with("thread-") => RecordKind::ThreadCore,
        _ if name.starts_with("mm-") => RecordKind::Mm,
        _ if name.starts_with("fds-") => RecordKind::Fds,
        _ if name.starts_with("locks-") => RecordKind::FileLocks,
        _ => match mounts::mounts_file_kind(name) {
            Some(k) => k,
            None => match container::container_file_kind(name) {
                Some(k) => k,
                None => ns::ns_file_kind(name)?,
            },
        },
    };
    Some(FileRole::Records(kind))
}

/// Checks what no single file can: that every record the others point to exists and agrees with them.
/// Returns one line per problem, each naming the file and the reference; empty when the image is coherent.
/// Files that fail to parse are reported by the container checks of [`crate::ImageReader::verify`]; here they
/// are reported once more as unreadable references.
pub fn check_references(img: &crate::ImageReader) -> Vec<String> {
    use std::collections::{BTreeMap, BTreeSet};

    let mut problems = Vec::new();
    let inv = img.inventory();
    for f in &inv.files {
        if file_role(&f.name).is_none() {
            problems.push(format!("{}: not a file of this image format", f.name));
        }
    }
    let tree: Vec<PsTreeEntry> = match img.read_records(names::PSTREE) {
        Ok(t) => t,
        Err(e) => {
            problems.push(format!("{}: {e}", names::PSTREE));
            return problems;
        }
    };
    if tree.first().map(|t| t.pid) != Some(inv.root_pid) {
        problems.push(format!(
            "{}: first task is {:?}, the inventory's root is {:?}",
            names::PSTREE,
            tree.first().map(|t| t.pid),
            inv.root_pid
        ));
    }
    let pids: BTreeSet<Pid> = tree.iter().map(|t| t.pid).collect();
    let files: BTreeSet<FileId> = match img.read_records::<RegFile>(names::REG_FILES) {
        Ok(v) => v.iter().map(|f| f.id).collect(),
        Err(e) => {
            problems.push(format!("{}: {e}", names::REG_FILES));
            BTreeSet::new()
        }
    };
    let descs: BTreeSet<DescId> = if img.has_file(names::FILE_DESCS) {
        match img.read_records::<FileDesc>(names::FILE_DESCS) {
            Ok(v) => v.iter().map(|d| d.id).collect(),
            Err(e) => {
                problems.push(format!("{}: {e}", names::FILE_DESCS));
                BTreeSet::new()
            }
        }
    } else {
        BTreeSet::new()
    };
    let shmem: BTreeMap<ShmemId, ShmemObject> = if img.has_file(names::SHMEM) {
        match img.read_records::<ShmemObject>(names::SHMEM) {
            Ok(v) => v.into_iter().map(|o| (o.id, o)).collect(),
            Err(e) => {
                problems.push(format!("{}: {e}", names::SHMEM));
                BTreeMap::new()
            }
        }
    } else {
        BTreeMap::new()
    };
    let file_ref = |what: String, id: FileId, problems: &mut Vec<String>| {
        if !files.contains(&id) {
            problems.push(format!(
                "{what}: file {} is not in {}",
                id.0,
                names::REG_FILES
            ));
        }
    };
    for t in &tree {
        if let Some(pp) = t.ppid {
            if !pids.contains(&pp) {
                problems.push(format!(
                    "{}: parent {} of pid {} is not in the tree",
                    names::PSTREE,
                    pp.0,
                    t.pid.0
                ));
            }
        }
        if t.threads.first().map(|x| x.0) != Some(t.pid.0) {
            problems.push(format!(
                "{}: pid {} does not list its leader thread first",
                names::PSTREE,
                t.pid.0
            ));
        }
        match img.read_records::<TaskCore>(&names::core(t.pid)) {
            Ok(c) if c.len() == 1 && c[0].pid == t.pid => {}
            Ok(_) => problems.push(format!(
                "{}: must hold exactly the core of pid {}",
                names::core(t.pid),
                t.pid.0
            )),
            Err(e) => problems.push(format!("{}: {e}", names::core(t.pid))),
        }
        for tid in &t.threads {
            match img.read_records::<ThreadCore>(&names::thread(*tid)) {
                Ok(c) if c.len() == 1 && c[0].tid == *tid => {}
                Ok(_) => problems.push(format!(
                    "{}: must hold exactly thread {}",
                    names::thread(*tid),
                    tid.0
                )),
                Err(e) => problems.push(format!("{}: {e}", names::thread(*tid))),
            }
        }
        match img.read_records::<Fd>(&names::fds(t.pid)) {
            Ok(fds) => {
                if img.has_file(&names::locks(t.pid)) {
                    match img.read_records::<FileLock>(&names::locks(t.pid)) {
                        Ok(locks) => {
                            for l in locks.iter().filter(|l| !fds.iter().any(|f| f.fd == l.fd)) {
                                problems.push(format!(
                                    "{}: lock on fd {} which is not in {}",
                                    names::locks(t.pid),
                                    l.fd,
                                    names::fds(t.pid)
                                ));
                            }
                        }
                        Err(e) => problems.push(format!("{}: {e}", names::locks(t.pid))),
                    }
                }
                for fd in fds {
                    match fd.file {
                        FdFile::Reg(id) => file_ref(
                            format!("{} fd {}", names::fds(t.pid), fd.fd),
                            id,
                            &mut problems,
                        ),
                        FdFile::Desc(id) if !descs.contains(&id) => problems.push(format!(
                            "{} fd {}: description {} is not in {}",
                            names::fds(t.pid),
                            fd.fd,
                            id.0,
                            names::FILE_DESCS
                        )),
                        _ => {}
                    }
                }
            }
            Err(e) => problems.push(format!("{}: {e}", names::fds(t.pid))),
        }
        let mm = match img.read_records::<Mm>(&names::mm(t.pid)) {
            Ok(mut m) if m.len() == 1 => m.remove(0),
            Ok(_) => {
                problems.push(format!("{}: must hold exactly one entry", names::mm(t.pid)));
                continue;
            }
            Err(e) => {
                problems.push(format!("{}: {e}", names::mm(t.pid)));
                continue;
            }
        };
        file_ref(format!("{} exe", names::mm(t.pid)), mm.exe, &mut problems);
        let mut prev_end = 0;
        for v in &mm.vmas {
            if v.start >= v.end || v.start < prev_end || v.start % 4096 != 0 || v.end % 4096 != 0 {
                problems.push(format!(
                    "{}: mapping {:#x}-{:#x} is empty, unaligned or overlaps",
                    names::mm(t.pid),
                    v.start,
                    v.end
                ));
            }
            prev_end = v.end;
            match &v.backing {
                VmaBacking::File(id) => file_ref(
                    format!("{} mapping {:#x}", names::mm(t.pid), v.start),
                    *id,
                    &mut problems,
                ),
                VmaBacking::Shmem(id) if !shmem.contains_key(id) => problems.push(format!(
                    "{}: mapping {:#x} uses shared object {} that is not in {}",
                    names::mm(t.pid),
                    v.start,
                    id.0,
                    names::SHMEM
                )),
                _ => {}
            }
        }
        let store = names::task_pages(t.pid);
        match img.page_store(&store) {
            Ok(ps) => {
                for e in ps.extents() {
                    let end = e.vaddr.saturating_add(e.len);
                    let inside = mm.vmas.iter().any(|v| {
                        v.start <= e.vaddr
                            && end <= v.end
                            && matches!(
                                v.backing,
                                VmaBacking::Anon | VmaBacking::File(_) | VmaBacking::Vdso
                            )
                    });
                    if !inside {
                        problems.push(format!(
                            "pagemap-{store}: pages {:#x}-{end:#x} lie outside every private mapping of pid {}",
                            e.vaddr, t.pid.0
                        ));
                    }
                }
            }
            Err(e) => problems.push(format!("page store {store}: {e}")),
        }
    }
    if img.has_file(names::ZOMBIES) {
        match img.read_records::<Zombie>(names::ZOMBIES) {
            Ok(zs) => {
                for z in zs {
                    if !pids.contains(&z.ppid) {
                        problems.push(format!(
                            "{}: parent {} of zombie {} is not in the tree",
                            names::ZOMBIES,
                            z.ppid.0,
                            z.pid.0
                        ));
                    }
                    if pids.contains(&z.pid) {
                        problems.push(format!(
                            "{}: zombie {} is also a live process of the tree",
                            names::ZOMBIES,
                            z.pid.0
                        ));
                    }
                }
            }
            Err(e) => problems.push(format!("{}: {e}", names::ZOMBIES)),
        }
    }
    problems.extend(ns::check_ns_references(img, &pids));
    problems.extend(mounts::check_mount_references(img));
    problems.extend(container::check_container_references(img));
    for obj in shmem.values() {
        if !pids.contains(&obj.owner) {
            problems.push(format!(
                "{}: object {} is owned by pid {}, not in the tree",
                names::SHMEM,
                obj.id.0,
                obj.owner.0
            ));
        }
        match img.page_store(&names::shmem_pages(obj.id)) {
            Ok(ps) => {
                if let Some(e) = ps
                    .extents()
                    .iter()
                    .find(|e| e.vaddr.saturating_add(e.len) > obj.size)
                {
                    problems.push(format!(
                        "pagemap-{}: pages at offset {:#x} lie past the object's size {:#x}",
                        names::shmem_pages(obj.id),
                        e.vaddr,
                        obj.size
                    ));
                }
            }
            Err(e) => problems.push(format!("page store {}: {e}", names::shmem_pages(obj.id))),
        }
    }
    problems
}
