//! ptrace requests, options and structs that libc or nix lack.

/// `PTRACE_GETSIGMASK` / `PTRACE_SETSIGMASK`: the blocked mask, `addr` = its size (8).
pub const PTRACE_GETSIGMASK: u32 = 0x420a;
pub const PTRACE_SETSIGMASK: u32 = 0x420b;
/// `PTRACE_PEEKSIGINFO`: queued siginfos without dequeuing them.
pub const PTRACE_PEEKSIGINFO: u32 = 0x4209;
/// `flags` of [`PeekSiginfoArgs`]: the process-wide queue instead of the thread's.
pub const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
/// `PTRACE_GET_RSEQ_CONFIGURATION` (5.13), fills a [`crate::rseq::RseqConfiguration`].
pub const PTRACE_GET_RSEQ_CONFIGURATION: u32 = 0x420f;
/// `PTRACE_O_SUSPEND_SECCOMP`: the tracee's seccomp filters are not applied while it is traced (needs
/// CAP_SYS_ADMIN, and a tracer that is not itself under seccomp).
pub const PTRACE_O_SUSPEND_SECCOMP: u32 = 1 << 21;
/// `PTRACE_SECCOMP_GET_FILTER`: `addr` is the filter's index counted from the oldest (0), `data` a buffer
/// of `sock_filter`s (or null to ask for the count); returns the number of instructions, ENOENT past the
/// newest. Needs CAP_SYS_ADMIN and a stopped tracee.
pub const PTRACE_SECCOMP_GET_FILTER: u32 = 0x420c;
/// `PTRACE_SECCOMP_GET_METADATA`: `addr` is the size of a [`SeccompMetadata`], `data` points at one with
/// `filter_off` set; the kernel fills in `flags`.
pub const PTRACE_SECCOMP_GET_METADATA: u32 = 0x420d;

/// `struct seccomp_metadata`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeccompMetadata {
    pub filter_off: u64,
    pub flags: u64,
}
/// `PTRACE_EVENTMSG_SYSCALL_ENTRY` / `_EXIT`: the event message of a syscall stop.
pub const PTRACE_EVENTMSG_SYSCALL_ENTRY: u64 = 1;
pub const PTRACE_EVENTMSG_SYSCALL_EXIT: u64 = 2;

/// `struct ptrace_peeksiginfo_args`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeekSiginfoArgs {
    /// Index of the first siginfo to copy.
    pub off: u64,
    pub flags: u32,
    /// How many at most.
    pub nr: i32,
}
