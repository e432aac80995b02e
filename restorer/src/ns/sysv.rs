//! Wrappers over the System V IPC calls restore needs: create an object with the id it had (by writing the
//! namespace's `*_next_id` first), set owner and mode, fill contents, remove. Every call acts on the calling
//! thread's ipc namespace. Raw syscalls for the `*ctl` commands (x86-64 `*64_ds` layouts are glibc's structs).

use nix::errno::Errno;

use super::error::{NsRestoreError, Result};

/// The three kinds of System V object, for names and the `/proc/sys/kernel/*_next_id` files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IpcKind {
    Shm,
    Sem,
    Msg,
}

impl IpcKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            IpcKind::Shm => "shm",
            IpcKind::Sem => "sem",
            IpcKind::Msg => "msg",
        }
    }

    fn next_id_file(self) -> &'static str {
        match self {
            IpcKind::Shm => "/proc/sys/kernel/shm_next_id",
            IpcKind::Sem => "/proc/sys/kernel/sem_next_id",
            IpcKind::Msg => "/proc/sys/kernel/msg_next_id",
        }
    }
}

fn check(rc: libc::c_long) -> Result<libc::c_long, Errno> {
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(rc)
    }
}

/// A zeroed C struct for the kernel to fill or read.
fn zeroed<T: Copy>() -> T {
    // SAFETY: only used with the plain-integer C structs of this module, for which all zeroes is valid.
    unsafe { std::mem::zeroed() }
}

/// Asks the namespace to give the next object of `kind` the id `id` (consumed by the next `*get`).
pub(crate) fn set_next_id(kind: IpcKind, id: i32) -> Result<()> {
    std::fs::write(kind.next_id_file(), id.to_string()).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            NsRestoreError::Unsupported(next_id_missing(kind))
        } else {
            NsRestoreError::File {
                what: "writing",
                path: kind.next_id_file().into(),
                source,
            }
        }
    })
}

fn next_id_missing(kind: IpcKind) -> crate::refusal::Unsupported {
    crate::refusal::Unsupported::IpcNextId {
        kind: kind.name(),
        file: kind.next_id_file(),
    }
}

/// Refuses, before anything is created, when this kernel cannot choose ids for `kind`.
pub(crate) fn check_next_id_support(kind: IpcKind) -> Result<()> {
    if std::path::Path::new(kind.next_id_file()).exists() {
        Ok(())
    } else {
        Err(NsRestoreError::Unsupported(next_id_missing(kind)))
    }
}

/// Whether an object of `kind` with exactly this id exists (`IPC_STAT` succeeds on it).
pub(crate) fn exists(kind: IpcKind, id: i32) -> Result<bool, Errno> {
    let rc = match kind {
        IpcKind::Shm => {
            let mut ds: libc::shmid_ds = zeroed();
            // SAFETY: IPC_STAT writes one shmid64_ds into `ds`.
            unsafe { libc::syscall(libc::SYS_shmctl, id, libc::IPC_STAT, &mut ds) }
        }
        IpcKind::Sem => {
            let mut ds: libc::semid_ds = zeroed();
            // SAFETY: IPC_STAT writes one semid64_ds into `ds` (the semun argument is the pointer).
            unsafe { libc::syscall(libc::SYS_semctl, id, 0, libc::IPC_STAT, &mut ds) }
        }
        IpcKind::Msg => {
            let mut ds: libc::msqid_ds = zeroed();
            // SAFETY: IPC_STAT writes one msqid64_ds into `ds`.
            unsafe { libc::syscall(libc::SYS_msgctl, id, libc::IPC_STAT, &mut ds) }
        }
    };
    match check(rc) {
        Ok(_) => Ok(true),
        Err(Errno::EINVAL) | Err(Errno::EIDRM) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The id of the object at slot `idx` (`*_STAT_ANY`), if one uses it.
pub(crate) fn id_at_index(kind: IpcKind, idx: i32) -> Option<i32> {
    const SHM_STAT_ANY: i32 = 15;
    const SEM_STAT_ANY: i32 = 20;
    const MSG_STAT_ANY: i32 = 13;
    let mut buf = [0u64; 32];
    // SAFETY: each *_STAT_ANY writes one *64_ds (at most 120 bytes) into `buf` (256 bytes).
    let rc = unsafe {
        match kind {
            IpcKind::Shm => libc::syscall(libc::SYS_shmctl, idx, SHM_STAT_ANY, buf.as_mut_ptr()),
            IpcKind::Sem => libc::syscall(libc::SYS_semctl, idx, 0, SEM_STAT_ANY, buf.as_mut_ptr()),
            IpcKind::Msg => libc::syscall(libc::SYS_msgctl, idx, MSG_STAT_ANY, buf.as_mut_ptr()),
        }
    };
    check(rc).ok().map(|id| id as i32)
}

/// Removes object `id` (`IPC_RMID`).
pub(crate) fn remove(kind: IpcKind, id: i32) -> Result<(), Errno> {
    // SAFETY: IPC_RMID takes no buffer; the last argument is ignored.
    let rc = unsafe {
        match kind {
            IpcKind::Shm => libc::syscall(libc::SYS_shmctl, id, libc::IPC_RMID, 0usize),
            IpcKind::Sem => libc::syscall(libc::SYS_semctl, id, 0, libc::IPC_RMID, 0usize),
            IpcKind::Msg => libc::syscall(libc::SYS_msgctl, id, libc::IPC_RMID, 0usize),
        }
    };
    check(rc).map(drop)
}

pub(crate) fn shmget(key: i32, size: u64, flags: i32) -> Result<i32, Errno> {
    // SAFETY: plain syscall without pointers.
    check(unsafe { libc::syscall(libc::SYS_shmget, key, size, flags) }).map(|id| id as i32)
}

pub(crate) fn semget(key: i32, nsems: usize, flags: i32) -> Result<i32, Errno> {
    // SAFETY: plain syscall without pointers.
    check(unsafe { libc::syscall(libc::SYS_semget, key, nsems, flags) }).map(|id| id as i32)
}

pub(crate) fn msgget(key: i32, flags: i32) -> Result<i32, Errno> {
    // SAFETY: plain syscall without pointers.
    check(unsafe { libc::syscall(libc::SYS_msgget, key, flags) }).map(|id| id as i32)
}

/// Owner and permission bits of an object (`IPC_SET`); for queues also the byte limit.
pub(crate) fn set_owner(
    kind: IpcKind,
    id: i32,
    uid: u32,
    gid: u32,
    mode: u32,
    qbytes: Option<u64>,
) -> Result<(), Errno> {
    let rc = match kind {
        IpcKind::Shm => {
            let mut ds: libc::shmid_ds = zeroed();
            ds.shm_perm.uid = uid;
            ds.shm_perm.gid = gid;
            ds.shm_perm.mode = (mode & 0o777) as u16;
            // SAFETY: IPC_SET reads uid, gid and mode from one shmid64_ds.
            unsafe { libc::syscall(libc::SYS_shmctl, id, libc::IPC_SET, &ds) }
        }
        IpcKind::Sem => {
            let mut ds: libc::semid_ds = zeroed();
            ds.sem_perm.uid = uid;
            ds.sem_perm.gid = gid;
            ds.sem_perm.mode = (mode & 0o777) as u16;
            // SAFETY: IPC_SET reads uid, gid and mode from one semid64_ds (the semun argument is the pointer).
            unsafe { libc::syscall(libc::SYS_semctl, id, 0, libc::IPC_SET, &ds) }
        }
        IpcKind::Msg => {
            let mut ds: libc::msqid_ds = zeroed();
            // Read first: IPC_SET also sets msg_qbytes, which must keep its value when none is given.
            // SAFETY: IPC_STAT writes one msqid64_ds into `ds`.
            check(unsafe { libc::syscall(libc::SYS_msgctl, id, libc::IPC_STAT, &mut ds) })?;
            ds.msg_perm.uid = uid;
            ds.msg_perm.gid = gid;
            ds.msg_perm.mode = (mode & 0o777) as u16;
            if let Some(q) = qbytes {
                ds.msg_qbytes = q;
            }
            // SAFETY: IPC_SET reads uid, gid, mode and qbytes from one msqid64_ds.
            unsafe { libc::syscall(libc::SYS_msgctl, id, libc::IPC_SET, &ds) }
        }
    };
    check(rc).map(drop)
}

pub(crate) fn shm_lock(id: i32) -> Result<(), Errno> {
    // SAFETY: SHM_LOCK takes no buffer.
    check(unsafe { libc::syscall(libc::SYS_shmctl, id, libc::SHM_LOCK, 0usize) }).map(drop)
}

pub(crate) fn sem_set_all(id: i32, values: &[u16]) -> Result<(), Errno> {
    // SAFETY: SETALL reads one unsigned short per semaphore of the set, which was created with
    // `values.len()` semaphores.
    check(unsafe { libc::syscall(libc::SYS_semctl, id, 0, libc::SETALL, values.as_ptr()) })
        .map(drop)
}

/// Queues one message without blocking.
pub(crate) fn msgsnd(id: i32, mtype: i64, text: &[u8]) -> Result<(), Errno> {
    let mut buf = Vec::with_capacity(8 + text.len());
    buf.extend_from_slice(&mtype.to_ne_bytes());
    buf.extend_from_slice(text);
    // SAFETY: msgsnd reads a long mtype followed by `text.len()` bytes from `buf`.
    check(unsafe {
        libc::syscall(
            libc::SYS_msgsnd,
            id,
            buf.as_ptr(),
            text.len(),
            libc::IPC_NOWAIT,
        )
    })
    .map(drop)
}

/// A segment attached read-write; detached on drop.
#[derive(Debug)]
pub(crate) struct ShmAttach {
    addr: *mut libc::c_void,
    len: usize,
}

impl ShmAttach {
    pub(crate) fn new(id: i32, len: usize) -> Result<ShmAttach, Errno> {
        // SAFETY: a null address lets the kernel pick a free range that nothing else uses.
        let addr = unsafe { libc::shmat(id, std::ptr::null(), 0) };
        if addr as isize == -1 {
            return Err(Errno::last());
        }
        Ok(ShmAttach { addr, len })
    }

    /// The segment's bytes.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the attachment maps at least `len` (the segment size) bytes read-write until drop, and the
        // &mut self borrow keeps this the only slice over it.
        unsafe { std::slice::from_raw_parts_mut(self.addr.cast::<u8>(), self.len) }
    }
}

impl Drop for ShmAttach {
    fn drop(&mut self) {
        // SAFETY: `addr` is this attachment; no slice over it outlives `self`.
        if unsafe { libc::shmdt(self.addr) } != 0 {
            log::warn!("shmdt of a restored segment failed: {}", Errno::last());
        }
    }
}

/// Runs `f` with the effective uid and gid set to `uid`/`gid` (the creator ids System V records), then
/// switches back. Raw syscalls: they change the calling thread only, which is all restore needs, and keep
/// the saved uid 0 that lets us return.
pub(crate) fn as_creator<T>(uid: u32, gid: u32, f: impl FnOnce() -> T) -> Result<T, Errno> {
    // SAFETY: geteuid/getegid cannot fail.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if (euid, egid) == (uid, gid) {
        return Ok(f());
    }
    const KEEP: libc::c_long = -1;
    // SAFETY: setresgid/setresuid with -1 keep the real and saved ids; only this thread changes.
    check(unsafe { libc::syscall(libc::SYS_setresgid, KEEP, gid, KEEP) })?;
    // SAFETY: as above.
    if let Err(e) = check(unsafe { libc::syscall(libc::SYS_setresuid, KEEP, uid, KEEP) }) {
        // SAFETY: as above; back to the original egid.
        unsafe { libc::syscall(libc::SYS_setresgid, KEEP, egid, KEEP) };
        return Err(e);
    }
    let out = f();
    // SAFETY: as above; the saved uid is still the original euid, so switching back is allowed.
    let back_uid = check(unsafe { libc::syscall(libc::SYS_setresuid, KEEP, euid, KEEP) });
    // SAFETY: as above.
    let back_gid = check(unsafe { libc::syscall(libc::SYS_setresgid, KEEP, egid, KEEP) });
    back_uid?;
    back_gid?;
    Ok(out)
}

/// A POSIX message queue opened for restore; closed on drop.
#[derive(Debug)]
pub(crate) struct PosixQueue(libc::mqd_t);

impl PosixQueue {
    /// Creates queue `/name` (it must not exist) with the given attributes.
    pub(crate) fn create(name: &str, mode: u32, maxmsg: i64, msgsize: i64) -> Result<Self, Errno> {
        let cname = std::ffi::CString::new(format!("/{name}")).map_err(|_| Errno::EINVAL)?;
        let mut attr: libc::mq_attr = zeroed();
        attr.mq_maxmsg = maxmsg;
        attr.mq_msgsize = msgsize;
        // SAFETY: mq_open reads the name and, with O_CREAT, a mode and one mq_attr.
        let fd = unsafe {
            libc::mq_open(
                cname.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
                (mode & 0o777) as libc::mode_t,
                &attr as *const libc::mq_attr,
            )
        };
        if fd < 0 {
            return Err(Errno::last());
        }
        Ok(PosixQueue(fd))
    }

    pub(crate) fn send(&self, priority: u32, data: &[u8]) -> Result<(), Errno> {
        // SAFETY: mq_send reads `data.len()` bytes.
        if unsafe { libc::mq_send(self.0, data.as_ptr().cast(), data.len(), priority) } != 0 {
            return Err(Errno::last());
        }
        Ok(())
    }

    /// Owner and mode (the mode given at creation was narrowed by the umask).
    pub(crate) fn set_owner(&self, uid: u32, gid: u32, mode: u32) -> Result<(), Errno> {
        // SAFETY: a queue descriptor is a file descriptor on Linux; plain calls without pointers.
        unsafe {
            if libc::fchown(self.0, uid, gid) != 0
                || libc::fchmod(self.0, (mode & 0o777) as libc::mode_t) != 0
            {
                return Err(Errno::last());
            }
        }
        Ok(())
    }
}

impl Drop for PosixQueue {
    fn drop(&mut self) {
        // SAFETY: closes the descriptor this value owns.
        unsafe { libc::mq_close(self.0) };
    }
}
