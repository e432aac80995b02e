//! System V shared memory attachments: a restored task's attachment maps the segment restored (by the ipc
//! namespace restore) under the same id.
//!
//! The blob maps files, not segments, so the restorer attaches the segment in its own address space, opens
//! the attachment's backing file through `/proc/self/map_files` and detaches again; the blob maps that file
//! `MAP_SHARED` at the saved address, which shares the segment's pages. What this does NOT give back: the
//! kernel does not count such a mapping in `shm_nattch`, and `shmdt()` on it fails with EINVAL (`munmap`
//! works).

use std::os::fd::OwnedFd;

use crate::error::RestoreError;

const PAGE: u64 = 4096;

/// An fd of segment `shmid`'s memory, readable (and writable when `prot` has `PROT_WRITE`).
pub(crate) fn segment_fd(shmid: u32, prot: u32) -> Result<OwnedFd, RestoreError> {
    let id = i32::try_from(shmid)
        .map_err(|_| RestoreError::sys(format!("SysV segment id {shmid}"), nix::Error::ERANGE))?;
    let writable = prot & libc::PROT_WRITE as u32 != 0;
    // SAFETY: shmid_ds is plain data the kernel fills.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a valid out-pointer for IPC_STAT.
    if unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) } < 0 {
        return Err(RestoreError::sys(
            format!("SysV segment {shmid}: shmctl(IPC_STAT) (was the ipc namespace restored?)"),
            nix::Error::last(),
        ));
    }
    let size = (ds.shm_segsz as u64).div_ceil(PAGE) * PAGE;
    let flags = if writable { 0 } else { libc::SHM_RDONLY };
    // SAFETY: attaches at an address the kernel chooses; detached below before returning.
    let addr = unsafe { libc::shmat(id, std::ptr::null(), flags) };
    if addr as isize == -1 {
        return Err(RestoreError::sys(
            format!("SysV segment {shmid}: shmat"),
            nix::Error::last(),
        ));
    }
    let start = addr as u64;
    let path = format!("/proc/self/map_files/{start:x}-{:x}", start + size);
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(writable)
        .open(&path)
        .map(OwnedFd::from)
        .map_err(|source| RestoreError::File {
            what: "opening the memory of a SysV segment through",
            path,
            source,
        });
    // SAFETY: detaches the attachment made above; the segment lives on in its namespace.
    unsafe { libc::shmdt(addr) };
    opened
}
