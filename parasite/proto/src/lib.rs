//! The protocol between the dumper (host side of dormant-parasite) and the no_std parasite blob running
//! inside the target.
//!
//! How the blob gets there: the host maps an anonymous area in the target with one injected `mmap`
//! (the bootstrap code at the syscall site, see dormant-parasite's `site` module), writes the relocated
//! blob and a [`BootArgs`] block (its last page) into it, [`BOOT_MAGIC`] last, and lets the task jump to
//! [`ENTRY_SYMBOL`] with `rdi` = the area's base and `rsi` = its length. The blob creates a socketpair,
//! the host takes one end with `pidfd_getfd`, the blob closes that end on its side and from then on
//! answers [`Request`]s read from its end with [`Reply`]s, one per request, until the socket reads EOF
//! or fails: then it closes every descriptor it made, unmaps its area (with the `munmap` at the site,
//! outside the area) and `rt_sigreturn`s through the frame the host left on the thread's stack. So a
//! host that dies at any moment leaves a task that cleans up after itself and continues its own code.
//!
//! What it is NOT: no logic, no allocation, no std; both sides must be built from the same version
//! ([`PROTO_VERSION`] is in the boot block and in every request).
#![no_std]

use dormant_sys::signal::{KernelItimerval, KernelSigaction, StackT, NSIG};

/// Bumped on any layout change.
pub const PROTO_VERSION: u32 = 3;
/// The last word the host writes: the bootstrap code only jumps into the area when the boot block starts
/// with it ("DORMBOOT"), so a host that dies while loading the blob never has it run half-written.
pub const BOOT_MAGIC: u64 = 0x544f_4f42_4d52_4f44;
/// First word of every [`Request`] ("DORM").
pub const REQUEST_MAGIC: u32 = 0x4d52_4f44;
/// Name of the blob's entry symbol (`rdi` = area base, `rsi` = area length, `rsp` = the rescue frame).
pub const ENTRY_SYMBOL: &str = "parasite_entry";
/// Size of the boot block page at the end of the area.
pub const BOOT_PAGE: u64 = 4096;
/// Most descriptors the blob keeps at once (its socket and the page pipes).
pub const MAX_FDS: usize = 64;
/// Largest request or reply, header included.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// `BootArgs::flags`: SIGPIPE was pending in the thread's own queue before the injection, so a SIGPIPE
/// the blob's writes raise merges with it and must not be taken away.
pub const BOOT_SIGPIPE_PENDING: u32 = 1;

/// The block at the start of the area's last page, written by the host before [`BOOT_MAGIC`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct BootArgs {
    /// [`BOOT_MAGIC`], written last.
    pub magic: u64,
    /// [`PROTO_VERSION`].
    pub version: u32,
    /// `BOOT_*` bits.
    pub flags: u32,
    /// The stack pointer the site's `rt_sigreturn` wants (the rescue frame + 8).
    pub frame_sp: u64,
    /// Address of the site's `munmap` syscall instruction, followed by `mov eax, 15; syscall`.
    pub munmap_syscall: u64,
    /// Top of the blob's own stack (inside the area, 16-byte aligned).
    pub stack_top: u64,
    /// The message buffer inside the area.
    pub buf: u64,
    pub buf_len: u64,
    /// Out: the blob's socketpair, `[ours, the host's]`; the host takes the second with pidfd_getfd.
    pub sock: [i32; 2],
}

/// Run one raw syscall in the blob's thread: `args[0]` = number, `args[1..7]` = arguments.
pub const CMD_SYSCALL: u32 = 1;
/// Reply with a [`Snapshot`]: process-wide state and the blob thread's [`ThreadState`].
pub const CMD_SNAPSHOT: u32 = 2;
/// Reply with the blob thread's [`ThreadState`].
pub const CMD_THREAD_STATE: u32 = 3;
/// Vmsplice page ranges into pipes: the payload is `args[0]` [`PipeJob`]s then the [`Iov`] array they
/// index (at byte `args[1]` of the payload). The reply's payload is one `u32` crc32 (IEEE, as crc32fast
/// computes it) per iovec, taken right before the bytes are vmspliced; `ret` = total bytes moved.
///
/// Why the crc is taken in the target: the task is frozen (only the thread running the blob runs, and it
/// runs nothing but this command), so the bytes cannot change between the crc and the vmsplice, and
/// reading them in place is the only read that costs no copy.
pub const CMD_VMSPLICE: u32 = 4;
/// Create `args[0]` pipes (O_CLOEXEC) of at most `args[1]` bytes each (F_SETPIPE_SZ, capped by the
/// kernel); the reply's payload is one [`PipeInfo`] per pipe.
pub const CMD_PIPES: u32 = 5;
/// Close the descriptors listed in the payload (`i32`s; only ones the blob made).
pub const CMD_CLOSE: u32 = 6;

/// One request: this header, then `len` bytes of payload.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Request {
    /// [`REQUEST_MAGIC`].
    pub magic: u32,
    /// [`PROTO_VERSION`].
    pub version: u32,
    /// One of the `CMD_*` numbers.
    pub command: u32,
    pub len: u32,
    pub args: [u64; 7],
}

/// One reply: this header, then `len` bytes of payload.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Reply {
    /// The answer: >= 0 on success, -errno on failure (from the failing syscall).
    pub ret: i64,
    /// Which step of a multi-syscall command failed (0 = none); see [`step`].
    pub failed_step: u32,
    pub len: u32,
    /// The command this answers (a host can tell a stale reply from the one it waits for).
    pub command: u32,
    /// Requests answered so far, this one included.
    pub serial: u32,
}

/// Per-thread state (what differs between threads of one process).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadState {
    pub altstack: StackT,
    /// clear_child_tid, valid when `tid_address_ok` is 1 (PR_GET_TID_ADDRESS needs
    /// CONFIG_CHECKPOINT_RESTORE).
    pub tid_address: u64,
    pub tid_address_ok: u32,
    /// gettid() as the thread sees itself (proves the command ran in the thread it was sent to).
    pub tid: i32,
}

/// Process-wide state plus the calling thread's [`ThreadState`], gathered in one command.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    /// Index `n - 1` = signal `n`.
    pub sigactions: [KernelSigaction; NSIG],
    /// ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF.
    pub itimers: [KernelItimerval; 3],
    pub brk: u64,
    pub thread: ThreadState,
    pub pdeathsig: i32,
    pub dumpable: i32,
    pub child_subreaper: i32,
    pub securebits: i32,
}

/// Failed-step numbers of the commands.
pub mod step {
    pub const SIGACTION: u32 = 1;
    pub const ITIMER: u32 = 2;
    pub const BRK: u32 = 3;
    pub const SIGALTSTACK: u32 = 4;
    pub const TID_ADDRESS: u32 = 5;
    pub const PDEATHSIG: u32 = 6;
    pub const DUMPABLE: u32 = 7;
    pub const CHILD_SUBREAPER: u32 = 8;
    pub const SECUREBITS: u32 = 9;
    pub const VMSPLICE: u32 = 10;
    pub const BAD_COMMAND: u32 = 11;
    pub const PIPE: u32 = 12;
    pub const PIPE_SIZE: u32 = 13;
    pub const TOO_MANY_FDS: u32 = 14;
    pub const NOT_OURS: u32 = 15;
}

/// One pipe made by [`CMD_PIPES`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipeInfo {
    pub read_fd: i32,
    pub write_fd: i32,
    /// Its capacity after F_SETPIPE_SZ.
    pub capacity: u32,
    pub pad: u32,
}

/// One pipe's share of a [`CMD_VMSPLICE`]: `iov_count` entries starting at `iov_first`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipeJob {
    /// Write end of the pipe, as a file descriptor of the target.
    pub fd: i32,
    pub iov_first: u32,
    pub iov_count: u32,
    pub pad: u32,
}

/// `struct iovec`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Iov {
    pub base: u64,
    pub len: u64,
}
