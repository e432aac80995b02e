//! Plain-data values copied between the dumper and the blob (over the socket, or through
//! /proc/PID/mem), as bytes.

use dormant_parasite_proto::{
    BootArgs, Iov, PipeInfo, PipeJob, Reply, Request, Snapshot, ThreadState,
};

/// Types that may be turned into bytes and back: `#[repr(C)]`, integers only, no padding, so every
/// byte is initialised and any bytes the target sends are a valid value.
///
/// # Safety
/// Implementors must have no padding and accept every bit pattern.
pub(crate) unsafe trait Pod: Copy {}
// SAFETY: the protocol structs are #[repr(C)] integers laid out without padding (dormant-parasite-proto).
unsafe impl Pod for Request {}
// SAFETY: as above.
unsafe impl Pod for Reply {}
// SAFETY: as above.
unsafe impl Pod for BootArgs {}
// SAFETY: as above.
unsafe impl Pod for PipeJob {}
// SAFETY: as above.
unsafe impl Pod for PipeInfo {}
// SAFETY: as above.
unsafe impl Pod for Iov {}
// SAFETY: as above (its sigaction, itimerval and stack_t members are u64/i64/i32 pairs).
unsafe impl Pod for Snapshot {}
// SAFETY: as above.
unsafe impl Pod for ThreadState {}
// SAFETY: an integer.
unsafe impl Pod for i32 {}
// SAFETY: an integer.
unsafe impl Pod for u32 {}

/// The bytes of `v`.
pub(crate) fn as_bytes<T: Pod>(v: &T) -> &[u8] {
    // SAFETY: T is Pod: every one of its size_of bytes is initialised.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

/// The bytes of a slice of `T`.
pub(crate) fn slice_as_bytes<T: Pod>(v: &[T]) -> &[u8] {
    // SAFETY: as above, for every element; the slice is contiguous.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// A `T` from the first bytes of `b`, if there are enough.
pub(crate) fn from_bytes<T: Pod>(b: &[u8]) -> Option<T> {
    if b.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: enough bytes (checked); T accepts any bit pattern; read_unaligned needs no alignment.
    Some(unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<T>()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_short_input() {
        let j = PipeJob {
            fd: 7,
            iov_first: 1,
            iov_count: 2,
            pad: 0,
        };
        assert_eq!(from_bytes::<PipeJob>(as_bytes(&j)), Some(j));
        assert_eq!(from_bytes::<PipeJob>(&[0u8; 3]), None);
        assert_eq!(slice_as_bytes(&[j, j]).len(), 32);
        assert_eq!(std::mem::size_of::<Request>(), 72);
        assert_eq!(std::mem::size_of::<Reply>(), 24);
        assert_eq!(std::mem::size_of::<BootArgs>(), 64);
    }
}
