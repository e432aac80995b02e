//! Memory-mapping constants (include/uapi/asm-generic/mman*.h) the blobs use.

pub const PROT_READ: u64 = 0x1;
pub const PROT_WRITE: u64 = 0x2;
pub const PROT_EXEC: u64 = 0x4;
pub const MAP_SHARED: u64 = 0x01;
pub const MAP_PRIVATE: u64 = 0x02;
pub const MAP_FIXED: u64 = 0x10;
pub const MAP_ANONYMOUS: u64 = 0x20;
pub const MAP_GROWSDOWN: u64 = 0x100;
pub const MAP_NORESERVE: u64 = 0x4000;
/// `MADV_POPULATE_WRITE` (5.14): fault in writable pages in one call.
pub const MADV_POPULATE_WRITE: u64 = 23;
/// `mlockall` flags: lock future mappings, and lock pages as they fault in rather than at once.
pub const MCL_FUTURE: u64 = 2;
pub const MCL_ONFAULT: u64 = 4;
/// `mlock2` flag: lock pages as they fault in.
pub const MLOCK_ONFAULT: u64 = 1;
/// Protection keys an x86-64 address space can hold (PKRU has two bits for each).
pub const NR_PKEYS: u32 = 16;
