//! The dumper's view of the memfd area shared with the target, and the pidfd used to take fds from it.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

use nix::errno::Errno;

use crate::error::ParasiteError;
use crate::ids::Tid;

/// Plain-data types that may be copied in and out of the shared area: `#[repr(C)]`, integers only, so
/// any bytes the target leaves there are a valid value.
///
/// # Safety
/// Implementors must have no padding-sensitive invariants and accept every bit pattern.
pub(crate) unsafe trait Pod: Copy {}
// SAFETY: all of these are #[repr(C)] structs of integers (see dormant-parasite-proto).
unsafe impl Pod for dormant_parasite_proto::Control {}
// SAFETY: as above.
unsafe impl Pod for dormant_parasite_proto::Snapshot {}
// SAFETY: as above.
unsafe impl Pod for dormant_parasite_proto::ThreadState {}
// SAFETY: as above.
unsafe impl Pod for dormant_parasite_proto::PipeJob {}
// SAFETY: as above.
unsafe impl Pod for dormant_parasite_proto::Iov {}
// SAFETY: an integer array.
unsafe impl Pod for [i32; 2] {}
// SAFETY: an integer.
unsafe impl Pod for u32 {}

/// The dumper's shared mapping of the area; unmapped on drop.
#[derive(Debug)]
pub(crate) struct LocalArea {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; access goes through &self/&mut self.
unsafe impl Send for LocalArea {}

impl LocalArea {
    /// Map `len` bytes of `memfd` read-write and shared.
    pub(crate) fn map(memfd: &OwnedFd, len: usize) -> Result<LocalArea, ParasiteError> {
        // SAFETY: a fresh shared mapping of a file we hold; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                memfd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(ParasiteError::Local {
                what: format!("mapping the {len}-byte parasite memfd"),
                source: Errno::last(),
            });
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| ParasiteError::Local {
            what: "mmap returned NULL".into(),
            source: Errno::EINVAL,
        })?;
        Ok(LocalArea { ptr, len })
    }

    /// The whole area as bytes (the target is stopped whenever the dumper touches it).
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` maps `len` bytes for as long as self lives; &mut self makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    pub(crate) fn write<T: Pod>(&mut self, off: usize, value: &T) -> Result<(), ParasiteError> {
        let end = self.check(off, std::mem::size_of::<T>())?;
        let _ = end;
        // SAFETY: bounds checked above; write_unaligned has no alignment requirement.
        unsafe { std::ptr::write_unaligned(self.ptr.as_ptr().add(off).cast::<T>(), *value) };
        Ok(())
    }

    pub(crate) fn read<T: Pod>(&self, off: usize) -> Result<T, ParasiteError> {
        self.check(off, std::mem::size_of::<T>())?;
        // SAFETY: bounds checked above; T accepts any bit pattern (Pod).
        Ok(unsafe { std::ptr::read_unaligned(self.ptr.as_ptr().add(off).cast::<T>()) })
    }

    fn check(&self, off: usize, size: usize) -> Result<usize, ParasiteError> {
        off.checked_add(size)
            .filter(|&end| end <= self.len)
            .ok_or_else(|| ParasiteError::Blob(format!("access {off}+{size} beyond the area")))
    }
}

impl Drop for LocalArea {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping this value owns; nothing borrows it any more.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A pidfd for the process of `tid` (its thread-group leader must be `tid`).
pub(crate) fn pidfd_open(tid: Tid) -> Result<OwnedFd, ParasiteError> {
    dormant_sys::host::pidfd_open(tid.0, 0).map_err(|source| ParasiteError::Local {
        what: format!("pidfd_open({tid})"),
        source,
    })
}

/// Duplicate fd `target_fd` of the process behind `pidfd` into the dumper (needs ptrace rights).
pub(crate) fn pidfd_getfd(pidfd: &OwnedFd, target_fd: RawFd) -> Result<OwnedFd, ParasiteError> {
    dormant_sys::host::pidfd_getfd(pidfd.as_fd(), target_fd).map_err(|source| {
        ParasiteError::Local {
            what: format!("pidfd_getfd of target fd {target_fd}"),
            source,
        }
    })
}
