//! The task's address space as the blob rebuilds it: each mapping with the file or shared-memory object
//! behind it, the executable, the mm layout (`PR_SET_MM_MAP`) with the auxv, and where the vDSO goes.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use dormant_image::records::{FileId, RegFile, ShmemId, VmaBacking};
use dormant_restorer_proto::{VmaArg, VmaKind};
use dormant_sys::process::PrctlMmMap;

use super::helpers::HelperFds;
use super::open_file;
use crate::error::RestoreError;
use crate::files::{ghost, OpenedFiles};
use crate::image::TaskImage;

/// The mappings and mm layout of one task.
#[derive(Debug)]
pub struct TaskMm {
    pub vmas: Vec<VmaArg>,
    pub map: PrctlMmMap,
    pub auxv: Vec<u64>,
}

/// What the mappings of the tasks of one tree share: each shared-memory object and each recreated
/// deleted file, created once (see [`crate::files::ghost`]).
#[derive(Debug, Default)]
pub struct MmShared {
    pub shmem: BTreeMap<ShmemId, OwnedFd>,
    /// Deleted files recreated (and unlinked again), open read-only, by file id.
    pub deleted: BTreeMap<FileId, OwnedFd>,
}

/// Opens what the task's mappings and exe need (as blob fds of `helpers`); a shared-memory object or a
/// deleted file is created once per tree, in `shared` (a deleted file also open through an fd is that
/// fd's description in `opened`).
pub fn prepare(
    dir: &Path,
    task: &TaskImage,
    shared: &mut MmShared,
    opened: &OpenedFiles,
    helpers: &mut HelperFds,
) -> Result<TaskMm, RestoreError> {
    let vmas = vmas(dir, task, shared, opened, helpers)?;
    let exe_fd = exe(dir, task, shared, opened, helpers)?;
    let l = &task.mm.layout;
    let map = PrctlMmMap {
        start_code: l.start_code,
        end_code: l.end_code,
        start_data: l.start_data,
        end_data: l.end_data,
        start_brk: l.start_brk,
        brk: l.brk,
        start_stack: l.start_stack,
        arg_start: l.arg_start,
        arg_end: l.arg_end,
        env_start: l.env_start,
        env_end: l.env_end,
        auxv: 0,
        auxv_size: 0,
        exe_fd,
    };
    Ok(TaskMm {
        vmas,
        map,
        auxv: task.mm.auxv.clone(),
    })
}

/// Every mapping the blob creates (the vDSO, vvar and vsyscall are the kernel's).
fn vmas(
    dir: &Path,
    task: &TaskImage,
    shared_objs: &mut MmShared,
    opened: &OpenedFiles,
    helpers: &mut HelperFds,
) -> Result<Vec<VmaArg>, RestoreError> {
    let mut file_fds: BTreeMap<(FileId, bool), RawFd> = BTreeMap::new();
    let mut shmem_fds: BTreeMap<ShmemId, RawFd> = BTreeMap::new();
    let mut vmas = Vec::new();
    for v in &task.mm.vmas {
        let shared = v.map_flags & libc::MAP_SHARED as u32 != 0;
        let (kind, fd) = match &v.backing {
            VmaBacking::Anon if v.map_flags & libc::MAP_GROWSDOWN as u32 != 0 => {
                (VmaKind::AnonGrowsDown, -1)
            }
            VmaBacking::Anon => (VmaKind::Anon, -1),
            VmaBacking::File(id) => {
                let f = task.file(dir, *id, &format!("mapping {:#x}", v.start))?;
                // A shared mapping made from a writable open may be made writable later (VM_MAYWRITE):
                // the dump gives such a file O_RDWR.
                let writable = shared
                    && (v.prot & libc::PROT_WRITE as u32 != 0
                        || f.flags as i32 & libc::O_ACCMODE == libc::O_RDWR);
                let fd = match file_fds.get(&(*id, writable)) {
                    Some(fd) => *fd,
                    None => {
                        let flags = if writable {
                            libc::O_RDWR
                        } else {
                            libc::O_RDONLY
                        };
                        let file = open_mapped(task, f, flags, shared_objs, opened)?;
                        let fd = helpers.lift_for_blob(&file, &f.path)?;
                        file_fds.insert((*id, writable), fd);
                        fd
                    }
                };
                let kind = if shared {
                    VmaKind::Shared
                } else {
                    VmaKind::FilePrivate
                };
                (kind, fd)
            }
            VmaBacking::Shmem(id) => {
                let fd = match shmem_fds.get(id) {
                    Some(fd) => *fd,
                    None => {
                        // One object per id for the whole tree: processes that shared it at dump time
                        // map the same object again.
                        let obj = match shared_objs.shmem.entry(*id) {
                            Entry::Occupied(e) => e.into_mut(),
                            Entry::Vacant(e) => e.insert(create_shmem(dir, task, *id)?),
                        };
                        let fd =
                            helpers.lift_for_blob(&*obj, &format!("shared object {}", id.0))?;
                        shmem_fds.insert(*id, fd);
                        fd
                    }
                };
                (VmaKind::Shared, fd)
            }
            VmaBacking::SysvShm { shmid } => {
                let obj = crate::sysv_map::segment_fd(*shmid, v.prot)?;
                let fd = helpers.lift_for_blob(&obj, &format!("SysV segment {shmid}"))?;
                (VmaKind::Shared, fd)
            }
            VmaBacking::Vdso | VmaBacking::Vvar | VmaBacking::Vsyscall => continue,
        };
        let lock = if v.map_flags & libc::MAP_LOCKED as u32 == 0 {
            0
        } else if v.lock_on_fault {
            1 + libc::MLOCK_ONFAULT
        } else {
            1
        };
        vmas.push(VmaArg {
            start: v.start,
            end: v.end,
            pgoff: if fd >= 0 { v.pgoff } else { 0 },
            prot: v.prot,
            kind: kind as u32,
            fd,
            fill: 0,
            extra_flags: v.map_flags & dormant_restorer_proto::PASSED_MAP_FLAGS,
            madvise: v
                .madvise
                .iter()
                .filter(|a| **a < 32)
                .fold(0, |m, a| m | 1 << a),
            lock,
            pkey: v.pkey.unwrap_or(0),
        });
    }
    Ok(vmas)
}

/// The executable's fd for `PR_SET_MM_MAP`, or `u32::MAX` when it is already the restorer's own
/// (PR_SET_MM_MAP refuses to replace an exe still mapped).
fn exe(
    dir: &Path,
    task: &TaskImage,
    shared: &mut MmShared,
    opened: &OpenedFiles,
    helpers: &mut HelperFds,
) -> Result<u32, RestoreError> {
    let exe = task.file(dir, task.mm.exe, "the executable")?;
    if task.deleted(exe.id).is_some() {
        // The copy is recreated, so it is never the restorer's own.
        let exe_file = open_mapped(task, exe, libc::O_RDONLY, shared, opened)?;
        return Ok(helpers.lift_for_blob(&exe_file, &exe.path)? as u32);
    }
    let exe_file = open_file(&exe.path, libc::O_RDONLY, "cannot open the executable")?;
    let own_exe = std::fs::metadata("/proc/self/exe").ok();
    if own_exe.is_some_and(|m| m.dev() == exe.stat.dev && m.ino() == exe.stat.ino) {
        log::debug!(
            "pid {}: executable {} is the restorer's own; /proc/pid/exe already right",
            task.pid.0,
            exe.path
        );
        return Ok(u32::MAX);
    }
    Ok(helpers.lift_for_blob(&exe_file, &exe.path)? as u32)
}

/// Opens file `f` for a mapping or as the executable with access mode `flags`: by path, or, for a file
/// deleted at dump time, from its copy recreated once per tree (a new description of it: a shared
/// writable mapping needs `O_RDWR`, and every other user keeps the copy read-only, which
/// `PR_SET_MM_MAP` needs of an executable).
fn open_mapped(
    task: &TaskImage,
    f: &RegFile,
    flags: i32,
    shared: &mut MmShared,
    opened: &OpenedFiles,
) -> Result<OwnedFd, RestoreError> {
    let Some(content) = task.deleted(f.id) else {
        return Ok(open_file(&f.path, flags, "cannot open mapped file")?.into());
    };
    let fail = |(what, e): (String, nix::errno::Errno)| {
        RestoreError::sys(format!("deleted file {}: {what}", f.path), e)
    };
    let copy = match shared.deleted.entry(f.id) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(e) => {
            let fd =
                ghost::recreate_deleted(&f.path, content, task.deleted_pages.get(&f.id), |id| {
                    opened.get(id)
                })
                .map_err(fail)?;
            log::debug!(
                "pid {}: recreated deleted file {} (file {})",
                task.pid.0,
                f.path,
                f.id.0
            );
            e.insert(fd)
        }
    };
    ghost::reopen(copy, flags).map_err(fail)
}

/// Creates shared-memory object `id` of `size` bytes filled from its page store, as an fd.
fn create_shmem(dir: &Path, task: &TaskImage, id: ShmemId) -> Result<OwnedFd, RestoreError> {
    let (obj, store) = task.shmem.get(&id).ok_or_else(|| RestoreError::BadImage {
        dir: dir.to_owned(),
        reason: format!("shared object {} is not in the image", id.0),
    })?;
    let size = usize::try_from(obj.size)
        .ok()
        .filter(|s| *s > 0 && *s % 4096 == 0)
        .ok_or_else(|| RestoreError::BadImage {
            dir: dir.to_owned(),
            reason: format!("shared object {} has size {}", id.0, obj.size),
        })?;
    // SAFETY: a new shared anonymous mapping owned by this function until the munmap below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(RestoreError::sys(
            format!("creating shared object {} of {size} bytes", id.0),
            nix::Error::last(),
        ));
    }
    let result = (|| {
        // SAFETY: `p` is a fresh writable mapping of `size` bytes, used only through this slice here.
        let mem = unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), size) };
        for e in store.extents() {
            let range = usize::try_from(e.vaddr)
                .ok()
                .and_then(|s| Some(s..s.checked_add(e.len as usize)?));
            let dst = range
                .and_then(|r| mem.get_mut(r))
                .ok_or_else(|| RestoreError::BadImage {
                    dir: dir.to_owned(),
                    reason: format!(
                        "shared object {}: pages at {:#x} lie past its size",
                        id.0, e.vaddr
                    ),
                })?;
            store
                .read_extent(e, dst)
                .map_err(|source| RestoreError::Image {
                    dir: dir.to_owned(),
                    source,
                })?;
        }
        let start = p as u64;
        let path = format!("/proc/self/map_files/{start:x}-{:x}", start + size as u64);
        let f = open_file(&path, libc::O_RDWR, "opening shared memory through")?;
        Ok(OwnedFd::from(f))
    })();
    // SAFETY: unmaps the mapping created above; the object lives on through the fd.
    unsafe { libc::munmap(p, size) };
    result
}
