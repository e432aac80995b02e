//! The shared-area protocol between the dumper (host side of dormant-parasite) and the no_std parasite
//! blob running inside the target.
//!
//! What it is: plain `#[repr(C)]` structs and numbers, laid out in the memfd area both sides map. The host
//! writes a [`Control`] block (command and arguments), points the target's registers at the blob entry
//! with `rdi` = the block's address in the target, and resumes it; the blob runs the command, writes the
//! answer into the same block and returns to the task's own registers through `rt_sigreturn` from the
//! frame at [`Control::frame`].
//!
//! What it is NOT: no logic, no allocation, no std; both sides must be built from the same version
//! ([`PROTO_VERSION`] is checked by the blob before it touches anything else).
#![no_std]

use dormant_sys::signal::{KernelItimerval, KernelSigaction, StackT, NSIG};

/// Bumped on any layout change.
pub const PROTO_VERSION: u32 = 2;
/// First word of a valid [`Control`] block ("DORMPARA").
pub const CONTROL_MAGIC: u64 = 0x4152_4150_4d52_4f44;
/// Name of the blob's entry symbol (`rdi` = address of the [`Control`] block).
pub const ENTRY_SYMBOL: &str = "parasite_entry";

/// Run one raw syscall: `args[0]` = number, `args[1..7]` = arguments; `ret` = raw result.
pub const CMD_SYSCALL: u32 = 1;
/// Fill a [`Snapshot`] at [`Control::data`] with the process-wide and calling-thread state.
pub const CMD_SNAPSHOT: u32 = 2;
/// Fill a [`ThreadState`] at [`Control::data`] for the calling thread.
pub const CMD_THREAD_STATE: u32 = 3;
/// Vmsplice page ranges into pipes: `args[0]` = number of [`PipeJob`]s at [`Control::data`], followed by
/// the [`Iov`] array they index (`args[1]` = its offset from `data`) and, when `args[2]` is not 0, a
/// `u32` array at `data + args[2]` (one per iovec) where the blob stores the crc32 (IEEE, as
/// crc32fast computes it) of each iovec's bytes, read right before they are vmspliced. `ret` = total
/// bytes moved or -errno.
///
/// Why the crc is taken in the target: the task is frozen (only the thread running the blob runs, and
/// it runs nothing but this command), so the bytes cannot change between the crc and the vmsplice, and
/// reading them in place is the only read that costs no copy. The dumper would otherwise have to read
/// every spliced extent back from the page store.
pub const CMD_VMSPLICE: u32 = 4;

/// The command block at the start of the shared area's control page.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Control {
    /// [`CONTROL_MAGIC`].
    pub magic: u64,
    /// [`PROTO_VERSION`].
    pub version: u32,
    /// One of the `CMD_*` numbers.
    pub command: u32,
    pub args: [u64; 7],
    /// The answer: >= 0 on success, -errno on failure (from the failing syscall).
    pub ret: i64,
    /// Which step of a multi-syscall command failed (0 = none); command-specific numbering.
    pub failed_step: u32,
    /// Incremented by the blob each time it finishes a command (lets the host see it really ran).
    pub completed: u32,
    /// Target address of the rt_sigframe the blob returns through.
    pub frame: u64,
    /// Target address and length of the data region commands read and write.
    pub data: u64,
    pub data_len: u64,
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

/// Failed-step numbers of [`CMD_SNAPSHOT`] / [`CMD_THREAD_STATE`].
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
    /// Out: bytes moved into this pipe.
    pub moved: u64,
}

/// `struct iovec`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Iov {
    pub base: u64,
    pub len: u64,
}
