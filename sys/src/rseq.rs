//! Restartable sequences: the ptrace view of a registration and the bits of `struct rseq` the dumper reads.

/// `struct ptrace_rseq_configuration` (include/uapi/linux/ptrace.h), what
/// `PTRACE_GET_RSEQ_CONFIGURATION` fills.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RseqConfiguration {
    pub rseq_abi_pointer: u64,
    pub rseq_abi_size: u32,
    pub signature: u32,
    pub flags: u32,
    pub pad: u32,
}

/// `flags` of the rseq syscall: unregister.
pub const RSEQ_FLAG_UNREGISTER: u64 = 1;
/// Offset of `rseq_cs` (the current critical-section descriptor) in `struct rseq`.
pub const RSEQ_CS_OFFSET: u64 = 8;
/// Bytes glibc registers (2.40+ exports the 20-byte feature size as `__rseq_size` but registers 32).
pub const RSEQ_GLIBC_LEN: u32 = 32;
/// `struct rseq_cs`: version, flags, then the three words below at these offsets.
pub const RSEQ_CS_START_IP: usize = 8;
pub const RSEQ_CS_POST_COMMIT_OFFSET: usize = 16;
pub const RSEQ_CS_ABORT_IP: usize = 24;
pub const RSEQ_CS_LEN: usize = 32;
