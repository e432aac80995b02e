//! The argument block the restorer host side hands to the no_std restorer blob, and the report the blob
//! sends back.
//!
//! Everything here is `#[repr(C)]` plain data with absolute addresses: the host lays the block out inside
//! the blob area at the address the restored task will see it, so the blob follows pointers without any
//! fixup. What this crate does NOT do: it has no logic, no allocation and no syscalls; it only fixes the
//! layout both sides agree on. Bump [`PROTO_VERSION`] on every layout change.
#![no_std]

use dormant_sys::process::{PrctlMmMap, SchedAttr};
use dormant_sys::signal::{KernelItimerval, KernelSigaction, NSIG, SIGINFO_SIZE};

/// Layout version of [`RestoreArgs`]; the blob refuses a block with another version.
pub const PROTO_VERSION: u32 = 10;

/// Name of the blob's entry symbol for the leader thread: `extern "C" fn(args: *const RestoreArgs) -> !`,
/// entered with a 16-byte aligned stack (it realigns anyway).
pub const ENTRY_SYMBOL: &str = "restorer_entry";

/// How a VMA is created by the blob.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmaKind {
    /// `MAP_PRIVATE | MAP_ANONYMOUS`.
    Anon = 1,
    /// `MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN` (a stack).
    AnonGrowsDown = 2,
    /// `fd` mapped `MAP_PRIVATE` at `pgoff` (a file).
    FilePrivate = 3,
    /// `fd` mapped `MAP_SHARED` at `pgoff` (a shared file or a shared-memory object).
    Shared = 4,
}

/// One mapping to create.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmaArg {
    pub start: u64,
    pub end: u64,
    /// Offset into `fd`, bytes (page aligned); 0 for anonymous kinds.
    pub pgoff: u64,
    /// `PROT_*` the mapping must end up with.
    pub prot: u32,
    /// A [`VmaKind`] as `u32` (kept raw so a corrupt block cannot produce an invalid enum).
    pub kind: u32,
    /// Backing fd for file and shared kinds, -1 otherwise.
    pub fd: i32,
    /// Non-zero when page extents are written into this mapping (it is mapped writable until then).
    pub fill: u32,
    /// Extra `mmap` flags the mapping had (only `MAP_NORESERVE` is passed through).
    pub extra_flags: u32,
    /// `madvise` advice to re-apply: bit `n` set means advice number `n` (all used ones are < 32).
    pub madvise: u32,
    /// The mapping's lock: 0 none, else `mlock2` with these flags plus one (1 = `mlock2(0)`, 2 =
    /// `mlock2(MLOCK_ONFAULT)`).
    pub lock: u32,
    /// Protection key to give the mapping (`pkey_mprotect`); 0 is the default key, left alone.
    pub pkey: u32,
}

/// The mmap flags a restored mapping may carry over from the dumped one.
pub const PASSED_MAP_FLAGS: u32 = dormant_sys::mman::MAP_NORESERVE as u32;

/// One run of pages to read from the page-store fd into the restored address space.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtentArg {
    pub vaddr: u64,
    pub len: u64,
    pub file_offset: u64,
}

/// An rseq registration (`rseq(addr, len, flags, sig)`); `len == 0` means none.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RseqArg {
    pub addr: u64,
    pub len: u32,
    pub sig: u32,
}

/// A thread's credentials, set by the thread itself as its last step (after everything that needs
/// privileges), in the order the kernel demands: groups, securebits keeping the capabilities across the
/// id changes, gids, uids, inheritable set, bounding set drops, ambient set, final securebits, permitted
/// and effective sets, no_new_privs.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CredsArg {
    /// Non-zero: set them (they differ from what the thread inherits from the restorer).
    pub set: u32,
    pub nr_groups: u32,
    /// `*const u32`: the supplementary groups.
    pub groups: u64,
    /// Real, effective, saved, fs.
    pub uids: [u32; 4],
    pub gids: [u32; 4],
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_amb: u64,
    /// Capabilities to drop from the bounding set (held by the restorer, not by the thread).
    pub cap_bnd_drop: u64,
    pub securebits: u32,
    pub no_new_privs: u32,
}

/// Words of CPU affinity mask a thread carries (1024 CPUs).
pub const AFFINITY_WORDS: usize = 16;

/// A thread's own scheduling attributes, set by the thread itself before its credentials (lowering nice,
/// a real-time policy and a real-time I/O class need the restorer's privileges): timer slack, nice, policy
/// with its parameters, CPU affinity, I/O priority; and its parent-death signal, after its credentials
/// (which reset it).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchedArg {
    /// Non-zero: set them (zero: not known, left as inherited).
    pub set: u32,
    pub nice: i32,
    /// `ioprio_set` value.
    pub ioprio: u32,
    /// Words of `affinity` in use.
    pub nr_affinity: u32,
    /// 0: left alone (a real-time thread's slack, which the kernel keeps at 0).
    pub timer_slack_ns: u64,
    /// Policy, flags and parameters for `sched_setattr` (`size` filled in).
    pub attr: SchedAttr,
    pub affinity: [u64; AFFINITY_WORDS],
    /// `PR_SET_PDEATHSIG` after the credentials (threads other than the leader; the leader's is the
    /// process's, see `ProcessCtl`).
    pub pdeathsig: u32,
    pub _pad: u32,
}

/// One seccomp filter to install (`seccomp(SECCOMP_SET_MODE_FILTER, flags, {len, insns})`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FilterArg {
    pub flags: u64,
    /// `*const SockFilter` and its count.
    pub insns: u64,
    pub len: u32,
    pub _pad: u32,
}

/// A thread's seccomp mode. Filters are installed before the credentials (installing one needs
/// CAP_SYS_ADMIN or no_new_privs), with the restorer's tracer holding every thread's seccomp suspended
/// (`PTRACE_O_SUSPEND_SECCOMP`) until the release, so the rest of the blob and the tracer's cleanup run
/// unfiltered. The leader installs its chain while it creates the threads: a thread whose chain starts
/// with the leader's first `inherited` filters is created once the leader has installed exactly those,
/// and so shares them as it did (a thread created after its creator's filters); it installs the rest of
/// its chain itself. Strict mode is set last of all, right before the final report or trap.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeccompArg {
    /// `SECCOMP_MODE_*`: 0 none, 1 strict, 2 filters.
    pub mode: u32,
    /// Leading filters of `filters` inherited from the leader (0 for the leader itself).
    pub inherited: u32,
    /// `*const FilterArg` and its count: the whole chain, oldest first.
    pub filters: u64,
    pub nr_filters: u32,
    pub _pad: u32,
}

/// Per-thread state the blob installs before the thread's final `rt_sigreturn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThreadArgs {
    pub tid: u32,
    /// Non-zero: call `set_tid_address(clear_child_tid)`.
    pub has_clear_child_tid: u32,
    pub clear_child_tid: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    /// The registration to install (after the mappings exist).
    pub rseq: RseqArg,
    /// Address of `frame.uc` of the prepared `rt_sigframe`: the stack pointer for `rt_sigreturn`.
    pub sigframe_uc: u64,
    /// Top of the stack this thread runs the blob on (16-byte aligned); a non-leader thread's stack is
    /// [`THREAD_STACK_SIZE`] bytes below it.
    pub stack_top: u64,
    /// Non-zero: call `set_robust_list(robust_head, robust_len)`.
    pub has_robust_list: u32,
    /// Non-zero: the thread's tid inside the task's (nested) pid namespace; clone3 gets
    /// `set_tid = [ns_tid, tid]`.
    pub ns_tid: u32,
    pub robust_head: u64,
    pub robust_len: u64,
    /// The thread's name, NUL-terminated (`PR_SET_NAME`); all zero: leave the inherited one.
    pub comm: [u8; 16],
    pub creds: CredsArg,
    /// Address of `RestoreArgs::creds_pending` (the same for every thread).
    pub creds_pending: u64,
    pub sched: SchedArg,
    pub seccomp: SeccompArg,
}

/// Size of the blob stack of each thread other than the leader.
pub const THREAD_STACK_SIZE: u64 = 32 * 1024;

/// The whole argument block (one per restored process).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RestoreArgs {
    /// [`PROTO_VERSION`].
    pub version: u32,
    /// Pipe the blob writes its [`Report`] to.
    pub report_fd: i32,
    /// The task's page-store data file (or -1 when it has no stored pages).
    pub pages_fd: i32,
    /// Non-zero: `sigactions` holds every action to install; zero: reset every action to the default.
    pub has_sigactions: u32,
    /// The blob's own area `[area_start, area_end)`: the only memory kept while everything else is unmapped.
    pub area_start: u64,
    pub area_end: u64,
    /// The restorer's (caller's) rseq registration inherited through fork; unregistered first, since its
    /// memory is about to disappear. `len == 0`: none.
    pub inherited_rseq: RseqArg,
    /// `*const VmaArg` and its count.
    pub vmas: u64,
    pub nr_vmas: u64,
    /// `*const ExtentArg` and its count, sorted by address.
    pub extents: u64,
    pub nr_extents: u64,
    /// `*const i32` and its count: every helper fd to close before the final report (page store, mapping
    /// files, exe), except `report_fd`, which is closed last.
    pub close_fds: u64,
    pub nr_close_fds: u64,
    /// Non-zero: map the vDSO with `ARCH_MAP_VDSO_64` at `vdso_map_addr` (the first vvar page).
    pub has_vdso: u32,
    /// Non-zero: call `PR_SET_MM_MAP` with `mm_map`.
    pub has_mm_map: u32,
    pub vdso_map_addr: u64,
    pub mm_map: PrctlMmMap,
    /// Index 0 = signal 1.
    pub sigactions: [KernelSigaction; NSIG],
    /// Non-zero: `setitimer` each of `itimers` (real, virtual, prof).
    pub has_itimers: u32,
    /// Number of entries in `threads` (at least 1, the leader).
    pub nr_threads: u32,
    pub itimers: [KernelItimerval; 3],
    /// `*const ThreadArgs`, leader first.
    pub threads: u64,
    /// `*const TimerArg` and its count: POSIX timers to recreate with their saved ids.
    pub timers: u64,
    pub nr_timers: u64,
    /// `*const QueuedSigArg` and its count: pending signals to re-queue, in queue order.
    pub siginfos: u64,
    pub nr_siginfos: u64,
    /// Non-zero: apply `mlock_future` and `thp_disable` (zero: not known, left as a new process has them).
    pub has_mm_attrs: u32,
    /// `mlockall` flags for future mappings (`MCL_FUTURE`, `MCL_ONFAULT`); 0: none.
    pub mlock_future: u32,
    /// `PR_GET_THP_DISABLE`'s value: bit 0 disabled, bit 1 `PR_THP_DISABLE_EXCEPT_ADVISED`.
    pub thp_disable: u32,
    /// Threads other than the leader that have not set their credentials yet (`nr_threads - 1` at
    /// start; each decrements it and wakes the leader). The leader sets its own, and the process's
    /// dumpable flag, only once it is 0: a thread's id change resets dumpable.
    pub creds_pending: u32,
    pub _pad: u32,
    /// `*const LockArg` and its count: the task's POSIX record locks, taken once `close_fds` are closed
    /// (closing any fd of a file drops the process's POSIX locks on it, and a mapped file's helper fd may
    /// be one).
    pub locks: u64,
    pub nr_locks: u64,
}

/// One POSIX record lock the task takes on its fd `fd` (`F_SETLK`, `SEEK_SET`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LockArg {
    pub fd: i32,
    /// Non-zero: a write lock; zero: a read lock.
    pub write: u32,
    pub start: u64,
    /// 0: to the end of the file.
    pub len: u64,
}

/// One POSIX timer: created with `timer_create` under `PR_TIMER_CREATE_RESTORE_IDS` so it gets `id`
/// again, then armed with `timer_settime` (relative).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimerArg {
    pub id: i32,
    pub clock: i32,
    /// `SIGEV_*` (with `SIGEV_THREAD_ID` when a thread is the target).
    pub notify: i32,
    pub signo: i32,
    /// Target thread for `SIGEV_THREAD_ID`.
    pub notify_tid: i32,
    pub _pad: i32,
    /// `sigev_value`.
    pub value: u64,
    pub interval_sec: i64,
    pub interval_nsec: i64,
    /// Time to the next expiry; both zero = leave disarmed.
    pub value_sec: i64,
    pub value_nsec: i64,
}

/// One pending signal to re-queue into the restored task itself (`rt_sigqueueinfo` for a process-wide
/// one, `rt_tgsigqueueinfo` for a thread's own).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedSigArg {
    /// Non-zero: process-wide (shared) queue.
    pub shared: u32,
    pub signo: i32,
    /// The thread whose private queue gets it, as seen inside the task's pid namespace (ignored when
    /// `shared`); that thread queues it itself.
    pub tid: i32,
    pub _pad: i32,
    pub info: [u8; SIGINFO_SIZE],
}

/// What the blob writes to `report_fd`: `step == 0` is success, else the failing [`Step`] and the errno.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Report {
    pub step: u32,
    pub errno: i32,
    /// Step-specific detail (e.g. the VMA start or signal number).
    pub detail: u64,
}

/// Size of [`Report`] on the wire.
pub const REPORT_SIZE: usize = core::mem::size_of::<Report>();

/// The blob's steps, as reported on failure. The blob's exit code on failure is `EXIT_BASE + step`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Done = 0,
    BadArgs = 1,
    RseqUnregister = 2,
    UnmapLow = 3,
    UnmapHigh = 4,
    MapVma = 5,
    ReadPages = 6,
    Protect = 7,
    MapVdso = 8,
    SetMm = 9,
    SigAction = 10,
    SetTidAddress = 11,
    RseqRegister = 12,
    SetItimer = 13,
    SetFs = 14,
    SetGs = 15,
    CloseFd = 16,
    WriteReport = 17,
    SigReturn = 18,
    TimerRestoreIds = 19,
    TimerCreate = 20,
    TimerSettime = 21,
    BlockSignals = 22,
    QueueSignal = 23,
    SetRobustList = 24,
    CloneThread = 25,
    ThreadComm = 26,
    Mlock = 52,
    PkeyAlloc = 53,
    PkeyProtect = 54,
    MlockAll = 55,
    ThpDisable = 56,
    SetGroups = 27,
    SetSecurebits = 28,
    SetGids = 29,
    SetUids = 30,
    Capset = 31,
    /// Steps of the forked child before it enters the blob (host code, same report format).
    ChildSync = 32,
    ChildDupFd = 33,
    ChildCloseFds = 34,
    ChildRlimit = 35,
    ChildUmask = 36,
    ChildRseq = 37,
    ChildChdir = 38,
    ChildSession = 39,
    ChildComm = 40,
    ChildPersonality = 41,
    ChildFork = 42,
    CapBoundDrop = 43,
    CapAmbient = 44,
    NoNewPrivs = 45,
    KeepPrctl = 46,
    CredsWait = 47,
    ChildChroot = 50,
    ChildPrctl = 51,
    // 70-79: seccomp and per-thread attributes.
    SeccompFilter = 70,
    SeccompStrict = 71,
    TimerSlack = 72,
    Nice = 73,
    SchedSetattr = 74,
    Affinity = 75,
    Ioprio = 76,
    ThreadPdeathsig = 77,
    /// Recreating a removed working (or root) directory, entering it and removing it again; the detail
    /// says which call failed (1 mkdir, 2 chown, 3 chmod, 4 chdir, 5 rmdir, 6 chroot).
    ChildRemovedDir = 80,
    // 110-119: descriptor edges.
    /// `fcntl(F_SETLK)` of a POSIX record lock (detail: the fd).
    PosixLock = 110,
    // 140-149: nested mount namespaces.
    /// `setns` into the task's nested mount namespace (child; detail: the namespace fd).
    ChildMountNs = 140,
}

/// Exit status base of a failing blob.
pub const EXIT_BASE: i32 = 100;

impl Step {
    /// Maps a reported number back to a step.
    pub fn from_u32(v: u32) -> Option<Step> {
        use Step::*;
        Some(match v {
            0 => Done,
            1 => BadArgs,
            2 => RseqUnregister,
            3 => UnmapLow,
            4 => UnmapHigh,
            5 => MapVma,
            6 => ReadPages,
            7 => Protect,
            8 => MapVdso,
            9 => SetMm,
            10 => SigAction,
            11 => SetTidAddress,
            12 => RseqRegister,
            13 => SetItimer,
            14 => SetFs,
            15 => SetGs,
            16 => CloseFd,
            17 => WriteReport,
            18 => SigReturn,
            19 => TimerRestoreIds,
            20 => TimerCreate,
            21 => TimerSettime,
            22 => BlockSignals,
            23 => QueueSignal,
            24 => SetRobustList,
            25 => CloneThread,
            26 => ThreadComm,
            52 => Mlock,
            53 => PkeyAlloc,
            54 => PkeyProtect,
            55 => MlockAll,
            56 => ThpDisable,
            27 => SetGroups,
            28 => SetSecurebits,
            29 => SetGids,
            30 => SetUids,
            31 => Capset,
            43 => CapBoundDrop,
            44 => CapAmbient,
            45 => NoNewPrivs,
            46 => KeepPrctl,
            47 => CredsWait,
            32 => ChildSync,
            33 => ChildDupFd,
            34 => ChildCloseFds,
            35 => ChildRlimit,
            36 => ChildUmask,
            37 => ChildRseq,
            38 => ChildChdir,
            39 => ChildSession,
            40 => ChildComm,
            50 => ChildChroot,
            51 => ChildPrctl,
            41 => ChildPersonality,
            42 => ChildFork,
            70 => SeccompFilter,
            71 => SeccompStrict,
            72 => TimerSlack,
            73 => Nice,
            74 => SchedSetattr,
            75 => Affinity,
            76 => Ioprio,
            77 => ThreadPdeathsig,
            80 => ChildRemovedDir,
            110 => PosixLock,
            140 => ChildMountNs,
            _ => return None,
        })
    }

    /// What the step does, for error messages.
    pub fn describe(self) -> &'static str {
        use Step::*;
        match self {
            Done => "done",
            BadArgs => "checking the argument block",
            RseqUnregister => "unregistering the inherited rseq area",
            UnmapLow => "unmapping memory below the blob area",
            UnmapHigh => "unmapping memory above the blob area",
            MapVma => "mapping a VMA",
            ReadPages => "reading pages from the page store",
            Protect => "setting the saved protection of a VMA",
            MapVdso => "mapping the vDSO (ARCH_MAP_VDSO_64)",
            SetMm => "PR_SET_MM_MAP",
            SigAction => "installing a signal action",
            SetTidAddress => "set_tid_address",
            RseqRegister => "registering rseq",
            SetItimer => "setitimer",
            SetFs => "setting fs_base",
            SetGs => "setting gs_base",
            CloseFd => "closing helper fds",
            WriteReport => "writing the report",
            SigReturn => "rt_sigreturn",
            TimerRestoreIds => "prctl(PR_TIMER_CREATE_RESTORE_IDS) (needs Linux 6.17 or later)",
            TimerCreate => "re-creating a POSIX timer with its saved id",
            TimerSettime => "arming a POSIX timer",
            BlockSignals => "blocking signals before re-queueing pending ones",
            QueueSignal => "re-queueing a pending signal",
            SetRobustList => "set_robust_list",
            CloneThread => "creating a thread with its saved tid (clone3 set_tid)",
            ThreadComm => "setting a thread's name",
            Mlock => "locking a mapping in memory (mlock2)",
            PkeyAlloc => "allocating the saved protection keys (pkey_alloc)",
            PkeyProtect => "giving a mapping its protection key (pkey_mprotect)",
            MlockAll => "locking future mappings (mlockall)",
            ThpDisable => "disabling transparent huge pages (PR_SET_THP_DISABLE)",
            SetGroups => "setgroups (credentials)",
            SetSecurebits => "prctl(PR_SET_SECUREBITS) (credentials)",
            SetGids => "setresgid/setfsgid (credentials)",
            SetUids => "setresuid/setfsuid (credentials)",
            Capset => "capset (credentials)",
            CapBoundDrop => "dropping a capability from the bounding set (credentials)",
            CapAmbient => "raising an ambient capability (credentials)",
            NoNewPrivs => "prctl(PR_SET_NO_NEW_PRIVS) (credentials)",
            KeepPrctl => "setting dumpable or pdeathsig again after the credentials",
            CredsWait => "waiting for the threads to set their credentials",
            ChildSync => "waiting for the tracer (child)",
            ChildDupFd => "putting an fd in place (child)",
            ChildCloseFds => "closing fds the task must not have (child)",
            ChildRlimit => "setting a resource limit (child)",
            ChildUmask => "setting the umask (child)",
            ChildRseq => "unregistering the inherited rseq area (child)",
            ChildChdir => "changing to the saved working directory (child)",
            ChildSession => "creating the saved session or process group (child)",
            ChildComm => "setting the task's name (child)",
            ChildChroot => "changing to the saved root directory (child)",
            ChildPrctl => "setting subreaper, dumpable or pdeathsig (child)",
            ChildPersonality => "setting the execution domain (child)",
            ChildFork => "forking a child of the restored tree with its pid (child)",
            SeccompFilter => "installing a seccomp filter",
            SeccompStrict => "entering seccomp strict mode",
            TimerSlack => "setting a thread's timer slack (PR_SET_TIMERSLACK)",
            Nice => "setting a thread's nice value (setpriority)",
            SchedSetattr => "setting a thread's scheduling policy (sched_setattr)",
            Affinity => "setting a thread's CPU affinity (sched_setaffinity)",
            Ioprio => "setting a thread's I/O priority (ioprio_set)",
            ThreadPdeathsig => "setting a thread's parent-death signal after its credentials",
            ChildRemovedDir => {
                "recreating the removed working or root directory, entering it and removing it (child)"
            }
            PosixLock => "taking a POSIX record lock",
            ChildMountNs => "entering the task's nested mount namespace (child)",
        }
    }
}
