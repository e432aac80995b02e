//! The argument block the restorer host side hands to the no_std restorer blob, and the report the blob
//! sends back.
//!
//! Everything here is `#[repr(C)]` plain data with absolute addresses: the host lays the block out inside
//! the blob area at the address the restored task will see it, so the blob follows pointers without any
//! fixup. What this crate does NOT do: it has no logic, no allocation and no syscalls; it only fixes the
//! layout both sides agree on. Bump [`PROTO_VERSION`] on every layout change.
#![no_std]

/// Layout version of [`RestoreArgs`]; the blob refuses a block with another version.
pub const PROTO_VERSION: u32 = 4;

/// Name of the blob's entry symbol for the leader thread: `extern "C" fn(args: *const RestoreArgs) -> !`,
/// entered with a 16-byte aligned stack (it realigns anyway).
pub const ENTRY_SYMBOL: &str = "restorer_entry";

/// Highest address of user space on x86-64 with 4-level paging (`TASK_SIZE_MAX`).
pub const TASK_SIZE: u64 = 0x7fff_ffff_f000;

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
}

/// The mmap flags a restored mapping may carry over from the dumped one.
pub const PASSED_MAP_FLAGS: u32 = 0x4000; // MAP_NORESERVE

/// One run of pages to read from the page-store fd into the restored address space.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtentArg {
    pub vaddr: u64,
    pub len: u64,
    pub file_offset: u64,
}

/// The kernel's `struct prctl_mm_map` (`PR_SET_MM`, `PR_SET_MM_MAP`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrctlMmMap {
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
    /// Address of the saved auxv (native words).
    pub auxv: u64,
    /// Size of the auxv in bytes.
    pub auxv_size: u32,
    /// fd of the executable, or `u32::MAX` to leave `/proc/self/exe` alone.
    pub exe_fd: u32,
}

/// The kernel's `struct sigaction` as `rt_sigaction` takes it on x86-64.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KSigAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// `struct itimerval`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ITimerVal {
    pub interval_sec: i64,
    pub interval_usec: i64,
    pub value_sec: i64,
    pub value_usec: i64,
}

/// An rseq registration (`rseq(addr, len, flags, sig)`); `len == 0` means none.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RseqArg {
    pub addr: u64,
    pub len: u32,
    pub sig: u32,
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
    pub sigactions: [KSigAction; NSIG],
    /// Non-zero: `setitimer` each of `itimers` (real, virtual, prof).
    pub has_itimers: u32,
    /// Number of entries in `threads` (at least 1, the leader).
    pub nr_threads: u32,
    pub itimers: [ITimerVal; 3],
    /// `*const ThreadArgs`, leader first.
    pub threads: u64,
    /// `*const TimerArg` and its count: POSIX timers to recreate with their saved ids.
    pub timers: u64,
    pub nr_timers: u64,
    /// `*const QueuedSigArg` and its count: pending signals to re-queue, in queue order.
    pub siginfos: u64,
    pub nr_siginfos: u64,
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

/// Size of a raw `siginfo_t` on x86-64.
pub const SIGINFO_SIZE: usize = 128;

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

/// Number of signals `rt_sigaction` knows on x86-64.
pub const NSIG: usize = 64;

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
    ChildChroot = 50,
    ChildPrctl = 51,
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
            ChildPrctl => "setting subreaper, dumpable, securebits or pdeathsig (child)",
            ChildPersonality => "setting the execution domain (child)",
            ChildFork => "forking a child of the restored tree with its pid (child)",
        }
    }
}

/// x86-64 signal frame layout (`struct rt_sigframe`, `struct ucontext`, `struct sigcontext`), as byte
/// offsets: the host writes the frame, the blob only points `rsp` at it.
pub mod sigframe {
    /// `rt_sigframe`: `pretcode` (8), then `ucontext`, then `siginfo` (128).
    pub const UC_OFFSET: usize = 8;
    /// Size of `struct ucontext` on x86-64.
    pub const UCONTEXT_SIZE: usize = 304;
    /// Size of `struct rt_sigframe` without the FPU area.
    pub const FRAME_SIZE: usize = UC_OFFSET + UCONTEXT_SIZE + 128;
    /// Offsets inside `ucontext`.
    pub const UC_FLAGS: usize = 0;
    pub const UC_LINK: usize = 8;
    pub const UC_STACK_SP: usize = 16;
    pub const UC_STACK_FLAGS: usize = 24;
    pub const UC_STACK_SIZE: usize = 32;
    pub const UC_MCONTEXT: usize = 40;
    pub const UC_SIGMASK: usize = 296;
    /// Offsets inside `sigcontext` (from `UC_MCONTEXT`).
    pub const SC_R8: usize = 0;
    pub const SC_R9: usize = 8;
    pub const SC_R10: usize = 16;
    pub const SC_R11: usize = 24;
    pub const SC_R12: usize = 32;
    pub const SC_R13: usize = 40;
    pub const SC_R14: usize = 48;
    pub const SC_R15: usize = 56;
    pub const SC_RDI: usize = 64;
    pub const SC_RSI: usize = 72;
    pub const SC_RBP: usize = 80;
    pub const SC_RBX: usize = 88;
    pub const SC_RDX: usize = 96;
    pub const SC_RAX: usize = 104;
    pub const SC_RCX: usize = 112;
    pub const SC_RSP: usize = 120;
    pub const SC_RIP: usize = 128;
    pub const SC_EFLAGS: usize = 136;
    pub const SC_CS: usize = 144;
    pub const SC_GS: usize = 146;
    pub const SC_FS: usize = 148;
    pub const SC_SS: usize = 150;
    pub const SC_ERR: usize = 152;
    pub const SC_TRAPNO: usize = 160;
    pub const SC_OLDMASK: usize = 168;
    pub const SC_CR2: usize = 176;
    pub const SC_FPSTATE: usize = 184;
    /// `uc_flags` bits.
    pub const UC_FP_XSTATE: u64 = 0x1;
    pub const UC_SIGCONTEXT_SS: u64 = 0x2;
    pub const UC_STRICT_RESTORE_SS: u64 = 0x4;
    /// `struct _fpx_sw_bytes` lives at this offset of the XSAVE area (`sw_reserved` of the FXSAVE part).
    pub const FPX_SW_OFFSET: usize = 464;
    pub const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
    pub const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
    /// Offset of `xstate_bv` (the XSAVE header's first word).
    pub const XSTATE_BV_OFFSET: usize = 512;
    /// Minimum XSAVE area: legacy FXSAVE region plus the XSAVE header.
    pub const XSAVE_MIN_SIZE: usize = 576;
    /// Required alignment of the XSAVE area.
    pub const XSAVE_ALIGN: usize = 64;
    /// `SS_DISABLE` for `uc_stack.ss_flags`.
    pub const SS_DISABLE: u32 = 2;
}
