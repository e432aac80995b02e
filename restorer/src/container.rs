//! Containers: restoring a tree that was dumped with its own mount namespace (see dormant-engine's
//! `container` module).
//!
//! The restoring process, single-threaded and about to fork the tree, moves itself into the container's
//! namespaces in this order: the namespaces [`NsPlan`] recreates (cgroups, net, user, uts, ipc), a new mount
//! namespace rebuilt by `dormant-mounts` the mount-v2 way (external mounts and external masters bound from
//! the paths their keys map to in the restorer's own namespace, then `pivot_root` into the container root),
//! and the launcher forks the tree's root as pid 1 of a new pid namespace (`StartOptions::new_pid_ns`). The restorer
//! itself stays in its pid namespace and traces the tree from there.
//!
//! Before the pivot it keeps an `O_PATH` descriptor of the image directory, through which the rest of the
//! restore reads the image (`/proc/self/fd/N`), and one of its own root, through which files that live
//! outside the container (stdio the agent handed in) are reopened by their path.
//!
//! The tree is then forked by the usual tree restore with `set_tid = [ns pid, outer pid]` (pids from the
//! `NSpid` levels of the pstree, `PsTreeEntry::ns_pids`); a session or group led from outside the container becomes one led by its init. The
//! content of external tmpfs mounts under /dev (Kata's /dev/shm) is put back when the outside tmpfs is
//! empty.
//!
//! The container's proc mounts are created while the restorer rebuilds the mount tree, before the tree's
//! pid namespace has its init, so they show the restorer's pid namespace, which is what the restorer reads
//! while it restores. Once every task is restored, and before any runs, they are swapped for proc mounts
//! of the tree's pid namespace ([`show_tree_pid_namespace`]).
//!
//! What this does NOT do: restore the tmpfs content of mounts it recreates (dormant-mounts does). A file of
//! the tree opened under /proc is reopened through the restorer's view of it (outer pids).

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use dormant_image::records::{MountSource, Pid, TmpfsRecord};
use dormant_image::Image;
use dormant_mounts::{ExternalMap, MountImage, MountTree};
use nix::fcntl::{open, OFlag};
use nix::sched::{unshare, CloneFlags};
use nix::sys::stat::Mode;

use crate::error::RestoreError;
use crate::ns::{NsOptions, NsPlan};
use crate::tree::Member;

/// What the caller chooses for a container restore (CRIU's flag meanings).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerOptions {
    /// `--root`: the directory the container's root mount is bound from. By default the directory the dump
    /// was given as `--root` (recorded in the image), else the outside mount the dumped root mount came
    /// from, found again in the restorer's namespace.
    pub root: Option<PathBuf>,
    /// Where external mounts are bound from.
    pub externals: Vec<crate::external::External>,
    /// `--net`, `--cgroup-root`.
    pub ns: NsOptions,
}

/// A container restore, planned and checked before anything changes.
#[derive(Debug)]
pub struct ContainerPlan {
    mounts: MountImage,
    ext: ExternalMap,
    root: PathBuf,
    ns: NsPlan,
    /// Content of external tmpfs mounts under /dev (mountpoint, records), see `restore_external_tmpfs`.
    ext_tmpfs: Vec<(String, Vec<TmpfsRecord>)>,
    /// Outer pid → pid inside the tree's pid namespace, for every task with two `NSpid` levels.
    ns_pids: BTreeMap<u32, u32>,
}

/// Handles kept across the pivot into the container root.
#[derive(Debug)]
pub struct Entered {
    image_dir: OwnedFd,
    /// The image directory as a path that still resolves inside the container (`/proc/self/fd/N`).
    pub images_dir: PathBuf,
    /// The tree's file paths as opened in the restorer's namespace before the pivot.
    outside: BTreeMap<String, OwnedFd>,
    /// Mountpoints whose content was recreated from the image (see `restore_external_tmpfs`).
    refilled: Vec<String>,
}

fn mount_err(dir: &Path) -> impl Fn(dormant_mounts::MountError) -> RestoreError + '_ {
    move |e| RestoreError::BadImage {
        dir: dir.to_owned(),
        reason: format!("container mounts: {e}"),
    }
}

/// The path in the restorer's namespace of the filesystem directory the dumped root mount showed: the
/// deepest mount of the same filesystem (type and source) whose root contains it.
fn default_root(img: &MountImage, outside: &MountTree) -> Option<PathBuf> {
    let root = img
        .mounts
        .iter()
        .find(|m| matches!(m.how, MountSource::Root))?;
    outside
        .mounts
        .iter()
        .filter(|o| o.fstype == root.fstype && o.source == root.source)
        .filter_map(|o| {
            let rel = dormant_mounts::mountinfo::sub_path(&o.root, &root.root)?;
            Some((o.root.len(), Path::new(&o.mountpoint).join(rel)))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, p)| p)
}

impl ContainerPlan {
    /// Plans the container restore of the tree rooted at `root_pid`; `None` when the image has no mount
    /// namespace (a plain process dump, restored in the restorer's namespaces).
    /// `ns_pids` maps outer pids to the pids inside (see [`ns_pid_map`]).
    pub fn from_image(
        img: &Image,
        root_pid: Pid,
        ns_pids: BTreeMap<u32, u32>,
        opts: &ContainerOptions,
    ) -> Result<Option<ContainerPlan>, RestoreError> {
        let dir = img.dir();
        let Some(recs) = &img.mounts else {
            return Ok(None);
        };
        let mounts = MountImage {
            mounts: recs.mounts.clone(),
            masters: recs.masters.clone(),
            tmpfs: recs.tmpfs.clone(),
        };
        let mut ext = ExternalMap::new();
        for e in &opts.externals {
            let crate::external::External::Mount { key, path } = e;
            ext.insert(key.as_str(), path.to_string_lossy());
        }
        let recorded = img.container_root.clone();
        let (root, why) = match (&opts.root, recorded) {
            (Some(r), _) => (r.clone(), "given with --root"),
            (None, Some(r)) if Path::new(&r.path).is_dir() => {
                (PathBuf::from(r.path), "recorded by dump --root")
            }
            (None, recorded) => {
                if let Some(r) = recorded {
                    log::warn!(
                        "container restore: the root recorded by dump --root, {}, is no directory here; \
                         looking for the root filesystem's mount instead",
                        r.path
                    );
                }
                let outside = MountTree::read(None).map_err(mount_err(dir))?;
                let found =
                    default_root(&mounts, &outside).ok_or_else(|| RestoreError::BadImage {
                        dir: dir.to_owned(),
                        reason:
                            "the container's root filesystem is mounted nowhere in the restorer's \
                             namespace; give it with --root DIR"
                                .into(),
                    })?;
                (found, "found where the dumped root filesystem is mounted")
            }
        };
        log::info!(
            "container restore: root {} ({why}; {} mounts, {} external masters)",
            root.display(),
            mounts.mounts.len(),
            mounts.masters.len()
        );
        refuse_mounts(&mounts, &ext).map_err(mount_err(dir))?;
        let ns = NsPlan::from_image(img.reader(), root_pid, &opts.ns)?;
        let mut ext_tmpfs = Vec::new();
        for m in &mounts.mounts {
            if let Some(content) = recs.ext_tmpfs.get(&m.id) {
                ext_tmpfs.push((m.mountpoint.clone(), content.clone()));
            }
        }
        if let Some(&inner) = ns_pids.get(&root_pid.0) {
            if inner != 1 {
                return Err(RestoreError::BadImage {
                    dir: dir.to_owned(),
                    reason: format!(
                        "the container's root task {} was pid {inner}, not the init (pid 1) of its pid \
                         namespace",
                        root_pid.0
                    ),
                });
            }
        }
        Ok(Some(ContainerPlan {
            mounts,
            ext,
            root,
            ns,
            ext_tmpfs,
            ns_pids,
        }))
    }

    /// Moves the calling process into the container's namespaces (see the module doc). `images_dir` is
    /// the image directory, still reachable by path here. On error the caller's namespaces are half
    /// changed: the caller (a restore process) must fail and exit.
    ///
    /// `file_paths` are the paths of the tree's files as the dumper saw them: each is opened (`O_PATH`) here
    /// first, so one that turns out not to exist inside the container (stdio the agent handed in) can
    /// be reopened from the restorer's namespace afterwards ([`Entered::relocate`]).
    pub fn enter<'a>(
        &self,
        images_dir: &Path,
        file_paths: impl IntoIterator<Item = &'a str>,
    ) -> Result<Entered, RestoreError> {
        let image_dir = open(
            images_dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| RestoreError::sys(format!("open {}", images_dir.display()), e))?;
        let mut outside = BTreeMap::new();
        for p in file_paths {
            if outside.contains_key(p) {
                continue;
            }
            // Not there outside: it can only be the container's own (or missing, reported later).
            if let Ok(fd) = open(p, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()) {
                outside.insert(p.to_string(), fd);
            }
        }
        self.ns.enter()?;
        unshare(CloneFlags::CLONE_NEWNS)
            .map_err(|e| RestoreError::sys("unshare(CLONE_NEWNS)".to_string(), e))?;
        dormant_mounts::restore_namespace(&self.mounts, &self.root, &self.ext)
            .map_err(mount_err(images_dir))?;
        let refilled = self.restore_external_tmpfs(images_dir)?;
        log::info!("container restore: namespaces entered, mount tree rebuilt");
        let path = PathBuf::from(format!("/proc/self/fd/{}", image_dir.as_raw_fd()));
        Ok(Entered {
            image_dir,
            images_dir: path,
            outside,
            refilled,
        })
    }
}

/// What rebuilding the mount tree would refuse, found before anything changes: a plan that does not hold,
/// or an external mount or master whose outside path does not exist here.
fn refuse_mounts(mounts: &MountImage, ext: &ExternalMap) -> dormant_mounts::Result<()> {
    dormant_mounts::plan(mounts)?;
    let keys = mounts
        .mounts
        .iter()
        .filter_map(|m| match &m.how {
            MountSource::External { key } => Some(key.as_str()),
            _ => None,
        })
        .chain(mounts.masters.iter().map(|m| m.key.as_str()));
    for key in keys {
        let path = ext.resolve(key);
        std::fs::symlink_metadata(&path).map_err(|source| dormant_mounts::MountError::Io {
            what: format!(
                "external mount {key}: its outside path (give it with --external mnt[{key}]:PATH)"
            ),
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

/// For a file the restorer writes after entering the container (the pidfile): holds its directory in
/// the restorer's own namespace, before the pivot, and returns it with the file's name, for
/// [`write_at`]. (Not a `/proc/self/fd/N` path: the container's /proc shows the tree's pid namespace by
/// the time the pidfile is written.)
pub fn hold_outside_path(path: &Path) -> Result<(OwnedFd, std::ffi::OsString), RestoreError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| RestoreError::Pidfile {
        path: path.to_owned(),
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })?;
    let fd = open(
        parent,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RestoreError::Pidfile {
        path: path.to_owned(),
        source: e.into(),
    })?;
    Ok((fd, name.to_owned()))
}

/// Writes `data` to `name` in the directory `dir` (created or truncated, mode 0644).
pub fn write_at(dir: &OwnedFd, name: &std::ffi::OsStr, data: &[u8]) -> std::io::Result<()> {
    let fd = nix::fcntl::openat(
        dir,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )?;
    std::io::Write::write_all(&mut std::fs::File::from(fd), data)
}

/// Gives the container's proc mounts the restored tree's pid namespace (the one `root`, its init by its
/// outer pid, is pid 1 of). Runs once the tree is restored and before it is let go: until then the
/// restorer reads /proc by its own pids, which the proc mounted while the mount tree was rebuilt shows.
pub fn show_tree_pid_namespace(root: u32) -> Result<(), RestoreError> {
    let path = format!("/proc/{root}/ns/pid");
    let ns = open(
        path.as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RestoreError::sys(format!("open {path}"), e))?;
    let n = dormant_mounts::procfs::replace_proc_mounts(std::os::fd::AsFd::as_fd(&ns)).map_err(
        |e| RestoreError::BadImage {
            dir: PathBuf::from(format!("/proc/{root}")),
            reason: format!("container proc for pid {root}'s pid namespace: {e}"),
        },
    )?;
    log::info!("container restore: {n} proc mount(s) now show the container's pid namespace");
    Ok(())
}

/// Outer pid → pid inside the tree's pid namespace, from the `NSpid` levels the image has for each task
/// (`PsTreeEntry::ns_pids`): one level below the restorer's at most (deeper nesting is refused).
pub fn ns_pid_map<'a>(
    levels: impl IntoIterator<Item = &'a [Pid]>,
) -> Result<BTreeMap<u32, u32>, RestoreError> {
    let mut map = BTreeMap::new();
    for l in levels {
        match l {
            [] | [_] => {}
            [outer, inner] => {
                map.insert(outer.0, inner.0);
            }
            deeper => {
                return Err(crate::refusal::Unsupported::from(
                    dormant_restorable::Refusal::PidNesting {
                        pid: deeper[0].0,
                        levels: deeper.iter().map(|p| p.0).collect(),
                    },
                )
                .into())
            }
        }
    }
    Ok(map)
}

impl ContainerPlan {
    /// Puts back the dumped content of external tmpfs mounts (Kata's /dev/shm) when the outside tmpfs they
    /// are bound from is empty (a new sandbox); a non-empty one is the same sandbox's, still holding the
    /// files (and shared with any other container using it), and is left alone.
    fn restore_external_tmpfs(&self, images_dir: &Path) -> Result<Vec<String>, RestoreError> {
        let mut refilled = Vec::new();
        for (mountpoint, recs) in &self.ext_tmpfs {
            let dir = Path::new(mountpoint);
            let empty = std::fs::read_dir(dir)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if empty {
                dormant_mounts::tmpfs::restore_tree(dir, recs).map_err(mount_err(images_dir))?;
                log::info!("container restore: {mountpoint} was empty outside: content restored from the image");
                refilled.push(mountpoint.clone());
            } else {
                log::info!(
                    "container restore: {mountpoint} still holds its files outside: kept as is"
                );
            }
        }
        Ok(refilled)
    }

    /// The pid task `pid` (outer) gets inside the tree's pid namespace.
    pub fn ns_pid(&self, pid: Pid) -> Option<u32> {
        self.ns_pids.get(&pid.0).copied()
    }

    /// A container's init may be in a session or process group led from outside its pid namespace (the
    /// agent's, when it did not call setsid). That leader cannot be restored: such a session or group
    /// becomes one led by the root task (pid 1 inside), and the log says so.
    pub fn adopt_outside_session(&self, members: &mut [Member]) {
        let Some(root) = members.first().copied() else {
            return;
        };
        let inside: Vec<u32> = members.iter().map(|m| m.pid).collect();
        if !inside.contains(&root.sid) {
            log::warn!(
                "container init {}: its session {} is led from outside the container; restoring it as a \
                 new session led by the init",
                root.pid,
                root.sid
            );
            for m in members.iter_mut().filter(|m| m.sid == root.sid) {
                m.sid = root.pid;
            }
        }
        if !inside.contains(&root.pgid) {
            log::warn!(
                "container init {}: its process group {} is led from outside the container; restoring \
                 it as a group led by the init",
                root.pid,
                root.pgid
            );
            for m in members.iter_mut().filter(|m| m.pgid == root.pgid) {
                m.pgid = root.pid;
            }
        }
    }
}

impl Entered {
    /// A file of the tree that lies in a tmpfs whose content was just recreated from the image is that
    /// content, under a new inode: its dumped identity (device, inode, mtime) is replaced by the recreated
    /// file's, so the checks against the dump hold it to type and size only.
    pub fn adopt_refilled(&self, file: &mut dormant_image::records::RegFile) {
        use std::os::unix::fs::MetadataExt;
        let inside = self.refilled.iter().any(|mp| {
            dormant_mounts::mountinfo::sub_path(mp, &file.path).is_some_and(|rel| !rel.is_empty())
        });
        if !inside {
            return;
        }
        let Ok(meta) = std::fs::metadata(&file.path) else {
            return;
        };
        if meta.mode() & libc::S_IFMT != file.stat.mode & libc::S_IFMT
            || meta.size() != file.stat.size
        {
            return;
        }
        file.stat.dev = meta.dev();
        file.stat.ino = meta.ino();
        file.stat.mtime_ns =
            i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
        log::debug!("{}: recreated from the image, identity updated", file.path);
    }

    /// Points `path` (a file of the tree, as dumped) at the copy opened outside before the pivot when it
    /// does not exist inside the container: files outside the container's mount namespace, such as the
    /// log file an agent handed in as stdio, are reopened from the restorer's namespace by their path.
    /// A path that exists inside is the container's own and is left alone.
    pub fn relocate(&self, path: &mut String) {
        if Path::new(path.as_str()).symlink_metadata().is_ok() {
            return;
        }
        if let Some(fd) = self.outside.get(path.as_str()) {
            log::info!(
                "{path} is not in the container's mount namespace: reopened from the restorer's namespace"
            );
            *path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        }
    }

    /// Keeps the image directory open until the restore is done.
    pub fn image_dir(&self) -> &OwnedFd {
        &self.image_dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_pid_map_takes_the_pstree_levels() {
        let levels = [
            vec![Pid(100), Pid(1)],
            vec![Pid(101), Pid(7)],
            vec![Pid(5)],
            vec![],
        ];
        let map = ns_pid_map(levels.iter().map(Vec::as_slice)).unwrap();
        assert_eq!(map, BTreeMap::from([(100, 1), (101, 7)]));
        let deep = [vec![Pid(100), Pid(10), Pid(1)]];
        let err = ns_pid_map(deep.iter().map(Vec::as_slice))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pid 100: nested pid namespaces [100, 10, 1]"),
            "{err}"
        );
    }
}
