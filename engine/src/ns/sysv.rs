//! Small wrappers over the System V IPC syscalls the dumper needs: enumerate objects by index (`*_STAT_ANY`,
//! which neither the permission bits nor the object's owner can hide), read semaphore values, copy messages
//! without dequeuing them (`MSG_COPY`), and attach a segment read-only. Raw syscalls, not glibc's wrappers:
//! glibc rewrites some commands, and on x86-64 the kernel's `*64_ds` layouts are glibc's structs.
//!
//! Every call acts on the calling thread's ipc namespace.

use std::os::fd::OwnedFd;

use nix::errno::Errno;

const SHM_INFO: i32 = 14;
const SHM_STAT_ANY: i32 = 15;
const SEM_INFO: i32 = 19;
const SEM_STAT_ANY: i32 = 20;
const MSG_INFO: i32 = 12;
const MSG_STAT_ANY: i32 = 13;
const MSG_COPY: i64 = 0o40000;

fn check(rc: libc::c_long) -> Result<libc::c_long, Errno> {
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(rc)
    }
}

/// A zeroed C struct for the kernel to fill.
fn zeroed<T: Copy>() -> T {
    // SAFETY: only used with the plain-integer C structs of this module, for which all zeroes is valid.
    unsafe { std::mem::zeroed() }
}

/// Result of a `*_STAT_ANY` on an index: `None` when no object uses it.
fn by_index<T>(r: Result<libc::c_long, Errno>, buf: T) -> Result<Option<(i32, T)>, Errno> {
    match r {
        Ok(id) => Ok(Some((id as i32, buf))),
        Err(Errno::EINVAL) | Err(Errno::EIDRM) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Highest index in use among the namespace's shared memory segments (-1 when none; `SHM_INFO`).
pub(super) fn shm_max_index() -> Result<i32, Errno> {
    let mut info = [0u64; 16];
    // SAFETY: SHM_INFO writes a `struct shm_info` (48 bytes) into `info` (128 bytes).
    let rc = unsafe { libc::syscall(libc::SYS_shmctl, 0, SHM_INFO, info.as_mut_ptr()) };
    check(rc).map(|i| i as i32)
}

pub(super) fn shm_stat_index(idx: i32) -> Result<Option<(i32, libc::shmid_ds)>, Errno> {
    let mut ds: libc::shmid_ds = zeroed();
    // SAFETY: SHM_STAT_ANY writes one `struct shmid64_ds` (glibc's `shmid_ds` on x86-64) into `ds`.
    let rc = unsafe { libc::syscall(libc::SYS_shmctl, idx, SHM_STAT_ANY, &mut ds) };
    by_index(check(rc), ds)
}

pub(super) fn sem_max_index() -> Result<i32, Errno> {
    let mut info = [0i32; 16];
    // SAFETY: SEM_INFO writes a `struct seminfo` (10 ints) into `info` (16 ints); the 4th argument is the
    // semun union, passed as the pointer it holds.
    let rc = unsafe { libc::syscall(libc::SYS_semctl, 0, 0, SEM_INFO, info.as_mut_ptr()) };
    check(rc).map(|i| i as i32)
}

pub(super) fn sem_stat_index(idx: i32) -> Result<Option<(i32, libc::semid_ds)>, Errno> {
    let mut ds: libc::semid_ds = zeroed();
    // SAFETY: SEM_STAT_ANY writes one `struct semid64_ds` (glibc's `semid_ds` on x86-64) into `ds`.
    let rc = unsafe { libc::syscall(libc::SYS_semctl, idx, 0, SEM_STAT_ANY, &mut ds) };
    by_index(check(rc), ds)
}

/// The values of all `nsems` semaphores of set `id` (`GETALL`).
pub(super) fn sem_values(id: i32, nsems: usize) -> Result<Vec<u16>, Errno> {
    let mut values = vec![0u16; nsems];
    // SAFETY: GETALL writes exactly `sem_nsems` unsigned shorts; `values` holds `nsems` (from IPC_STAT of the
    // same set; a set's size never changes).
    let rc = unsafe { libc::syscall(libc::SYS_semctl, id, 0, libc::GETALL, values.as_mut_ptr()) };
    check(rc).map(|_| values)
}

pub(super) fn msg_max_index() -> Result<i32, Errno> {
    let mut info = [0i32; 16];
    // SAFETY: MSG_INFO writes a `struct msginfo` (8 ints) into `info` (16 ints).
    let rc = unsafe { libc::syscall(libc::SYS_msgctl, 0, MSG_INFO, info.as_mut_ptr()) };
    check(rc).map(|i| i as i32)
}

pub(super) fn msg_stat_index(idx: i32) -> Result<Option<(i32, libc::msqid_ds)>, Errno> {
    let mut ds: libc::msqid_ds = zeroed();
    // SAFETY: MSG_STAT_ANY writes one `struct msqid64_ds` (glibc's `msqid_ds` on x86-64) into `ds`.
    let rc = unsafe { libc::syscall(libc::SYS_msgctl, idx, MSG_STAT_ANY, &mut ds) };
    by_index(check(rc), ds)
}

/// A copy of message number `index` (0 = oldest) of queue `id`, left in the queue (`MSG_COPY`, which needs
/// CONFIG_CHECKPOINT_RESTORE). `None` when the queue has fewer messages. `max_text` bounds the text.
pub(super) fn msg_copy(
    id: i32,
    index: i64,
    max_text: usize,
) -> Result<Option<(i64, Vec<u8>)>, Errno> {
    let mut buf = vec![0u8; 8 + max_text];
    // SAFETY: msgrcv writes at most 8 + max_text bytes (a long mtype, then the text) into `buf`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_msgrcv,
            id,
            buf.as_mut_ptr(),
            max_text,
            index,
            i64::from(libc::IPC_NOWAIT) | MSG_COPY,
        )
    };
    match check(rc) {
        Ok(len) => {
            let mut mtype = [0u8; 8];
            mtype.copy_from_slice(&buf[..8]);
            let text = buf[8..8 + len as usize].to_vec();
            Ok(Some((i64::from_ne_bytes(mtype), text)))
        }
        Err(Errno::ENOMSG) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens the shmem file behind segment `id` without leaving it attached: attach read-only (the segment's
/// contents cannot change through us), open the mapping's `/proc/self/map_files` entry, detach. The file
/// supports `SEEK_DATA`, so the caller reads only pages that exist, never allocating holes.
pub(super) fn open_shm_file(id: i32, size: u64) -> Result<OwnedFd, std::io::Error> {
    // SAFETY: shmat with a null address lets the kernel pick a free range; nothing else uses that range
    // until the shmdt below.
    let addr = unsafe { libc::shmat(id, std::ptr::null(), libc::SHM_RDONLY) };
    if addr as isize == -1 {
        return Err(std::io::Error::last_os_error());
    }
    let start = addr as u64;
    let end = start + size.next_multiple_of(4096);
    let opened = std::fs::File::open(format!("/proc/self/map_files/{start:x}-{end:x}"));
    // SAFETY: `addr` is the attachment made above, not used by anything else.
    let rc = unsafe { libc::shmdt(addr) };
    let file = opened?;
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file.into())
}
