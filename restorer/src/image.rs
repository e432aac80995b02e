//! The image as the restorer takes it: loaded whole and checked by [`dormant_image::Image::load`] (every
//! check `verify` runs), then refused for what cannot be restored here, before anything is forked.
//! [`TaskImage`] and [`TreeImage`] are views of one process and of the tree into the loaded image: the
//! tree-wide records (files, descriptions, shared objects) are read once and shared by every task's view.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use dormant_image::records::{
    names, page_flags, ContentDigest, DeletedContent, DeletedFile, Fd, FdFile, FileCheck, FileDesc,
    FileId, FileIdentity, FileLock, FileStat, Mm, Pid, PsTreeEntry, RegFile, ShmemId, ShmemObject,
    TaskCore, ThreadCore, VmaBacking, Zombie, FILE_IDENTITY,
};
use dormant_image::{Image, ImageError, PageStoreReader, TaskRecords};

use crate::error::RestoreError;
use crate::{cpu, procself, sigframe};

/// Everything the image says about the one task being restored: a view into the loaded image.
#[derive(Debug)]
pub struct TaskImage<'a> {
    pub pid: Pid,
    /// The task's entry in the process tree (session and process group).
    pub tree: &'a PsTreeEntry,
    pub core: &'a TaskCore,
    /// The leader thread.
    pub thread: &'a ThreadCore,
    /// Every other thread, in the order the process tree lists them.
    pub other_threads: &'a [ThreadCore],
    pub mm: &'a Mm,
    pub fds: &'a [Fd],
    /// Files reopened by path, of the whole tree (relocated once a container is entered).
    pub files: &'a BTreeMap<FileId, RegFile>,
    /// The files of `files` deleted while mapped or executed, with their content (whole tree).
    pub deleted: &'a [DeletedFile],
    /// The page stores of the deleted files whose content is in one.
    pub deleted_pages: &'a BTreeMap<FileId, PageStoreReader>,
    /// File locks the task held (`locks-<pid>`).
    pub locks: &'a [FileLock],
    /// Shared memory objects of the whole tree, with their pages.
    pub shmem: BTreeMap<ShmemId, (&'a ShmemObject, &'a PageStoreReader)>,
    /// The task's private page store.
    pub pages: Option<&'a PageStoreReader>,
    /// Its threads' seccomp state (`None`: no thread under seccomp).
    pub seccomp: Option<&'a dormant_image::records::TaskSeccomp>,
    /// Its threads' scheduling attributes and OOM score adjustment (`None`: not recorded).
    pub attrs: Option<&'a dormant_image::records::ProcessAttrs>,
    /// The task is in a user namespace other than the restorer's (its ids and capabilities are that
    /// namespace's).
    pub own_user_ns: bool,
}

impl<'a> TaskImage<'a> {
    fn new(img: &'a Image, task: &'a TaskRecords, files: &'a BTreeMap<FileId, RegFile>) -> Self {
        // `Image::load` refuses a task without its leader thread, listed first.
        let (thread, other_threads) = task
            .threads
            .split_first()
            .expect("a loaded task has its leader thread");
        TaskImage {
            pid: task.pid(),
            tree: &task.tree,
            core: &task.core,
            thread,
            other_threads,
            mm: &task.mm,
            fds: &task.fds,
            files,
            deleted: &img.deleted_files,
            deleted_pages: &img.deleted_pages,
            locks: &task.locks,
            shmem: img
                .shmem
                .iter()
                .map(|(id, s)| (*id, (&s.object, &s.pages)))
                .collect(),
            pages: Some(&task.pages),
            seccomp: task.seccomp.as_ref(),
            attrs: task.attrs.as_ref(),
            own_user_ns: img.namespaces.as_ref().is_some_and(|n| {
                n.tasks.iter().any(|t| {
                    t.pid == task.pid()
                        && t.get(dormant_image::records::NsKind::User)
                            .is_some_and(|u| !u.external)
                })
            }),
        }
    }

    /// Every thread, the leader first.
    pub fn threads(&self) -> impl Iterator<Item = &ThreadCore> {
        std::iter::once(self.thread).chain(self.other_threads)
    }

    /// The content of file `id` when it was deleted while mapped or executed (restore recreates it).
    pub fn deleted(&self, id: FileId) -> Option<&'a DeletedContent> {
        self.deleted
            .iter()
            .find(|d| d.file == id)
            .map(|d| &d.content)
    }

    /// The file `id`, or a bad-image error naming who referred to it.
    pub fn file(&self, dir: &Path, id: FileId, user: &str) -> Result<&RegFile, RestoreError> {
        self.files.get(&id).ok_or_else(|| RestoreError::BadImage {
            dir: dir.to_owned(),
            reason: format!(
                "{user} refers to file {} which is not in {}",
                id.0,
                names::REG_FILES
            ),
        })
    }
}

fn image_err(dir: &Path) -> impl Fn(ImageError) -> RestoreError + '_ {
    move |source| RestoreError::Image {
        dir: dir.to_owned(),
        source,
    }
}

fn bad(dir: &Path, reason: impl Into<String>) -> RestoreError {
    RestoreError::BadImage {
        dir: dir.to_owned(),
        reason: reason.into(),
    }
}

/// The whole tree as views into the loaded image: every live process (pstree order: root first, parents
/// before children), the zombies and the tree's open file descriptions.
#[derive(Debug)]
pub struct TreeImage<'a> {
    pub tasks: Vec<TaskImage<'a>>,
    pub zombies: &'a [Zombie],
    /// Open file descriptions not reachable by path (`file-descs`), in image order.
    pub descs: &'a [FileDesc],
    /// Owner, mode and times of the inodes of unlinked files and memfds (`inode-attrs`).
    pub inode_attrs: &'a [dormant_image::records::InodeAttrs],
    /// The unlinked files and memfds whose content is in a page store: size and store.
    pub desc_contents: &'a BTreeMap<dormant_image::records::DescId, (u64, PageStoreReader)>,
    /// inotify watches on carried inodes (`inotify-carried`).
    pub inotify_carried: &'a [dormant_image::records::InotifyCarriedWatch],
    pub udp_queues: &'a [dormant_image::records::UdpQueue],
    /// Processes that share an fd table or an fs struct (`shared-tables`).
    pub shared_tables: &'a [dormant_image::records::SharedTables],
}

impl<'a> TreeImage<'a> {
    /// The tree of `img`, its tasks' files taken from `files` (the image's, or a relocated copy).
    pub fn new(img: &'a Image, files: &'a BTreeMap<FileId, RegFile>) -> Self {
        TreeImage {
            tasks: img
                .tasks
                .iter()
                .map(|t| TaskImage::new(img, t, files))
                .collect(),
            zombies: &img.zombies,
            descs: &img.descs,
            inode_attrs: &img.inode_attrs,
            desc_contents: &img.desc_contents,
            inotify_carried: &img.inotify_carried,
            udp_queues: &img.udp_queues,
            shared_tables: &img.shared_tables,
        }
    }
}

/// Loads the image at `dir` with every check `verify` runs, then refuses what restore cannot rebuild
/// ([`dormant_restorable::check`]), before anything is forked.
pub fn load(dir: &Path) -> Result<Image, RestoreError> {
    let img = Image::load(dir).map_err(image_err(dir))?;
    // What this release cannot restore (credentials, a removed directory, namespaces not carried, pid
    // namespaces nested deeper than it rebuilds), refused before anything is forked; the dump refused the
    // same state first, from the same list.
    let facts = dormant_restorable::facts_from_image(&img);
    dormant_restorable::check(&facts, &dormant_restorable::Runner::current())
        .map_err(crate::refusal::Unsupported::from)?;
    Ok(img)
}

/// Refuses an image whose FPU state this CPU cannot load.
pub fn check_xstate(img: &Image, task: &TaskImage) -> Result<(), RestoreError> {
    let cpu = cpu::xcr0();
    let image = img.inventory().xsave_features;
    let ours = cpu::xsave_size() as usize;
    for thread in task.threads() {
        let thread_bv = sigframe::xstate_bv(&thread.xstate).unwrap_or(0);
        for wanted in [image, thread_bv] {
            if wanted & !cpu != 0 {
                return Err(RestoreError::XsaveFeatures {
                    image: wanted,
                    cpu,
                    missing: wanted & !cpu,
                });
            }
        }
        let len = thread.xstate.len();
        if len != 0 && len > ours {
            return Err(RestoreError::Xstate {
                tid: thread.tid.0,
                len,
                reason: format!("larger than this CPU's XSAVE area of {ours} bytes"),
            });
        }
    }
    Ok(())
}

/// The dumped vDSO/vvar placement: where ARCH_MAP_VDSO_64 must map (the first vvar page), if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VdsoPlacement {
    pub map_addr: u64,
}

/// Checks that the running vDSO is byte-identical to the dumped one and that vvar/vdso sit the same way
/// relative to each other, so mapping a fresh one at the dumped address recreates the dumped layout.
pub fn check_vdso(dir: &Path, task: &TaskImage) -> Result<Option<VdsoPlacement>, RestoreError> {
    let vmas = &task.mm.vmas;
    let Some(dumped) = vmas.iter().find(|v| v.backing == VmaBacking::Vdso) else {
        return Ok(None);
    };
    let mismatch = |detail: String| RestoreError::VdsoMismatch { detail };
    let dumped_vvars: Vec<_> = vmas
        .iter()
        .filter(|v| v.backing == VmaBacking::Vvar)
        .collect();
    let own = procself::vdso()?.ok_or_else(|| mismatch("this process has no vDSO".into()))?;
    let len = (dumped.end - dumped.start) as usize;
    if len != own.bytes.len() {
        return Err(mismatch(format!(
            "size {len:#x} in the image, {:#x} here",
            own.bytes.len()
        )));
    }
    // Rebuild the dumped bytes from the page store (pages never stored are zero).
    let mut bytes = vec![0u8; len];
    let store = task
        .pages
        .as_ref()
        .ok_or_else(|| bad(dir, "the vDSO's bytes are missing (no page store)"))?;
    let mut found = false;
    for e in store
        .extents()
        .iter()
        .filter(|e| e.flags & page_flags::VDSO != 0)
    {
        let end = e.vend().unwrap_or(u64::MAX);
        if e.vaddr < dumped.start || end > dumped.end {
            return Err(bad(
                dir,
                format!(
                    "vDSO pages {:#x}-{end:#x} lie outside the vDSO mapping",
                    e.vaddr
                ),
            ));
        }
        let off = (e.vaddr - dumped.start) as usize;
        store
            .read_extent(e, &mut bytes[off..off + e.len as usize])
            .map_err(image_err(dir))?;
        found = true;
    }
    if !found {
        return Err(bad(dir, "the vDSO's bytes are missing from the page store"));
    }
    if let Some(at) = bytes.iter().zip(&own.bytes).position(|(a, b)| a != b) {
        return Err(mismatch(format!("first difference at byte {at:#x}")));
    }
    // Layout: each vvar mapping's size and its distance to the vDSO must match.
    let own_layout: Vec<(u64, u64)> = own
        .vvars
        .iter()
        .map(|m| (own.vdso_start - m.start, m.end - m.start))
        .collect();
    let dumped_layout: Vec<(u64, u64)> = dumped_vvars
        .iter()
        .map(|v| (dumped.start.wrapping_sub(v.start), v.end - v.start))
        .collect();
    if own_layout != dumped_layout {
        return Err(mismatch(format!(
            "vvar layout (offset before vdso, size) {dumped_layout:x?} in the image, {own_layout:x?} here"
        )));
    }
    let map_addr = dumped_vvars
        .iter()
        .map(|v| v.start)
        .min()
        .unwrap_or(dumped.start);
    Ok(Some(VdsoPlacement { map_addr }))
}

/// What differs between a file's dumped identity and what is at its path now; `None` when it matches.
/// With [`FileCheck::Content`] device and inode may differ (another VM, the same root filesystem image).
pub fn stat_difference(
    saved: &FileStat,
    now: &std::fs::Metadata,
    check: FileCheck,
) -> Option<String> {
    let mtime_now = i128::from(now.mtime()) * 1_000_000_000 + i128::from(now.mtime_nsec());
    let mut diffs = Vec::new();
    if check == FileCheck::DevIno && saved.dev != now.dev() {
        diffs.push(format!("device {:#x} -> {:#x}", saved.dev, now.dev()));
    }
    if check == FileCheck::DevIno && saved.ino != now.ino() {
        diffs.push(format!("inode {} -> {}", saved.ino, now.ino()));
    }
    if saved.mode & libc::S_IFMT != now.mode() & libc::S_IFMT {
        diffs.push(format!(
            "file type {:o} -> {:o}",
            saved.mode & libc::S_IFMT,
            now.mode() & libc::S_IFMT
        ));
    }
    let regular = now.mode() & libc::S_IFMT == libc::S_IFREG;
    if regular && saved.size != now.size() {
        diffs.push(format!("size {} -> {}", saved.size, now.size()));
    }
    if regular && saved.mtime_ns != mtime_now {
        diffs.push(format!("mtime {}ns -> {}ns", saved.mtime_ns, mtime_now));
    }
    (!diffs.is_empty()).then(|| diffs.join(", "))
}

/// The image's `file-identity` record; an image without one is checked by device and inode.
pub fn file_identity(img: &Image) -> Result<FileIdentity, RestoreError> {
    let identity = img.file_identity.clone().unwrap_or_default();
    if identity.check == FileCheck::Content {
        log::info!(
            "image {}: mapped files and executables are checked by content (size, mtime, digest), not \
             by device and inode",
            img.dir().display()
        );
    }
    Ok(identity)
}

/// Checks every file the task refers to (fds, mappings, exe) against its dumped identity.
///
/// Files behind mappings and the executable must be exactly what they were: clean pages of private
/// mappings are re-read from them. By default that is the same device, inode, size and mtime; an image
/// dumped with [`FileCheck::Content`] asks for the same size, mtime and content digest (build-id or crc32)
/// instead, wherever the file lives now. A file that is only open through an fd is data the process (or
/// others) may legitimately have changed since, as a log that is still appended to after a
/// `--leave-running` dump: it must still be the same kind of file, and any other difference is logged.
pub fn check_files(
    dir: &Path,
    task: &TaskImage,
    identity: &FileIdentity,
) -> Result<(), RestoreError> {
    // (file, who uses it, must it be unchanged)
    let mut used: Vec<(FileId, String, bool)> = Vec::new();
    for fd in task.fds {
        if let FdFile::Reg(id) = fd.file {
            used.push((id, format!("fd {}", fd.fd), false));
        }
    }
    for v in &task.mm.vmas {
        if let VmaBacking::File(id) = v.backing {
            used.push((id, format!("mapping {:#x}", v.start), true));
        }
    }
    used.push((task.mm.exe, "the executable".to_owned(), true));
    let strict: std::collections::BTreeSet<FileId> =
        used.iter().filter(|u| u.2).map(|u| u.0).collect();
    for (id, user, _) in used {
        let f = task.file(dir, id, &user)?;
        if task.deleted(id).is_some() {
            // Deleted at dump time: restore recreates it from the image, whatever is at the path now.
            continue;
        }
        let meta = std::fs::metadata(&f.path).map_err(|source| RestoreError::File {
            what: "cannot stat",
            path: f.path.clone(),
            source,
        })?;
        let what = match stat_difference(&f.stat, &meta, identity.check) {
            None if identity.check == FileCheck::Content && strict.contains(&id) => {
                content_difference(dir, f, identity)?
            }
            other => other,
        };
        if let Some(what) = what {
            let same_type = f.stat.mode & libc::S_IFMT == meta.mode() & libc::S_IFMT;
            if strict.contains(&id) || !same_type {
                return Err(RestoreError::FileChanged {
                    path: f.path.clone(),
                    what,
                });
            }
            log::warn!(
                "pid {}: {user} ({}) changed since the dump ({what}); reopening it as it is now",
                task.pid.0,
                f.path
            );
        }
    }
    Ok(())
}

/// The content digest of `f` now against the recorded one; `Some(difference)` when they differ.
fn content_difference(
    dir: &Path,
    f: &RegFile,
    identity: &FileIdentity,
) -> Result<Option<String>, RestoreError> {
    let recorded = identity
        .digests
        .iter()
        .find(|d| d.id == f.id)
        .ok_or_else(|| RestoreError::BadImage {
            dir: dir.to_owned(),
            reason: format!(
                "{FILE_IDENTITY}: no content digest for {} (file {}), which a mapping or the executable uses",
                f.path, f.id.0
            ),
        })?;
    let read_err = |source| RestoreError::File {
        what: "cannot read for its content digest",
        path: f.path.clone(),
        source,
    };
    let mut file = std::fs::File::open(&f.path).map_err(read_err)?;
    let now = ContentDigest::of(&mut file).map_err(read_err)?;
    Ok((now != recorded.digest).then(|| format!("content {} -> {now}", recorded.digest)))
}

/// Refuses a pid that is in use, naming its owner.
pub fn check_pid_free(pid: Pid) -> Result<(), RestoreError> {
    let proc_dir = PathBuf::from(format!("/proc/{}", pid.0));
    if proc_dir.exists() {
        let owner = std::fs::read_to_string(proc_dir.join("comm"))
            .ok()
            .map(|c| c.trim().to_owned());
        return Err(RestoreError::PidTaken { pid: pid.0, owner });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_difference_names_what_changed() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), b"abc").unwrap();
        let meta = std::fs::metadata(file.path()).unwrap();
        let saved = FileStat {
            dev: meta.dev(),
            ino: meta.ino(),
            mode: meta.mode(),
            size: 3,
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            rdev: 0,
        };
        assert_eq!(stat_difference(&saved, &meta, FileCheck::DevIno), None);
        let moved = FileStat {
            dev: saved.dev + 1,
            ino: saved.ino + 1,
            ..saved
        };
        assert_eq!(stat_difference(&moved, &meta, FileCheck::Content), None);
        assert!(stat_difference(&moved, &meta, FileCheck::DevIno).is_some());
        let grown = FileStat { size: 4, ..saved };
        assert_eq!(
            stat_difference(&grown, &meta, FileCheck::Content).unwrap(),
            "size 4 -> 3"
        );
        let other = FileStat {
            ino: saved.ino + 1,
            ..saved
        };
        assert!(stat_difference(&other, &meta, FileCheck::DevIno)
            .unwrap()
            .starts_with("inode"));
    }
}
