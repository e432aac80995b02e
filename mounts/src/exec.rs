//! Restore executor: runs a [`plan`](crate::plan::plan) with real mount calls, in a process that has
//! already unshared its mount namespace (a copy of the restorer's, so the outside mounts of external binds
//! and external masters are there, still peers of the originals).
//!
//! Flat mounts are made in a "yard": a private tmpfs on a fresh directory under the temp dir. Every mount is
//! held by an `O_PATH` fd on its root from creation on, so later steps never depend on paths (a mount may be
//! overmounted by the time its sharing is set). Before anything is mounted, `/` and the mount holding the
//! yard are made slaves if shared, so nothing done here propagates out; before the old root is detached it
//! is made a slave recursively for the same reason (through a descriptor taken before the pivot: after it,
//! a path would name the new root, and the restored tree would lose its peer groups). The yard is detached
//! through the working directory, not `/proc/self/fd`: the restored tree need not have a /proc.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use dormant_image::records::MountId;
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::{fchdir, pivot_root};

use crate::error::{MountError, Result};
use crate::external::ExternalMap;
use crate::image::MountImage;
use crate::mountinfo::MountTree;
use crate::plan::{plan, Atime, GroupFrom, MountAttrs, Step};
use crate::sys::{self, MountAttr};

/// Rebuilds the dumped mount namespace `img` in the caller's (fresh, unshared) mount namespace and pivots
/// into it. `root` is the container root directory (the namespace's root mount is a bind of it); external
/// keys are resolved through `ext` (a key not mapped is a path). On error the namespace is left half built
/// (the yard is removed): the caller's process is expected to exit, which takes the namespace with it.
/// proc is mounted for the caller's pid namespace; a restorer outside the tree's pid namespace swaps the
/// proc mounts with [`crate::procfs::replace_proc_mounts`] once that namespace has its init.
pub fn restore_namespace(img: &MountImage, root: &Path, ext: &ExternalMap) -> Result<()> {
    let steps = plan(img)?;
    let mut x = Executor::new(img, root, ext, &steps)?;
    for s in &steps {
        log::debug!("mount restore: {s:?}");
        x.apply(s)?;
    }
    Ok(())
}

fn sys_err(
    what: &'static str,
    mount: Option<MountId>,
    mountpoint: &str,
) -> impl Fn(Errno) -> MountError {
    let mountpoint = mountpoint.to_string();
    move |errno| MountError::Sys {
        what,
        mount,
        mountpoint: mountpoint.clone(),
        errno,
    }
}

fn io_err(what: &str, path: &Path) -> impl Fn(std::io::Error) -> MountError {
    let (what, path) = (what.to_string(), path.to_path_buf());
    move |source| MountError::Io {
        what: what.clone(),
        path: path.clone(),
        source,
    }
}

fn cpath(p: &str) -> Result<CString> {
    CString::new(p).map_err(|_| MountError::Plan(format!("path {p:?} holds a NUL byte")))
}

fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn open_path(p: &Path, what: &'static str) -> Result<OwnedFd> {
    open(p, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).map_err(|errno| MountError::Sys {
        what,
        mount: None,
        mountpoint: p.display().to_string(),
        errno,
    })
}

/// Makes the mount at `path` (its root) a slave if it is shared, so mounting below it propagates nowhere.
fn unshare_propagation(tree: &MountTree, path: &Path) -> Result<()> {
    let p = path.to_string_lossy();
    let holder = tree
        .mounts
        .iter()
        .filter(|m| crate::mountinfo::sub_path(&m.mountpoint, &p).is_some())
        .max_by_key(|m| m.mountpoint.len());
    if let Some(m) = holder.filter(|m| m.shared.is_some()) {
        mount(
            None::<&str>,
            m.mountpoint.as_str(),
            None::<&str>,
            MsFlags::MS_SLAVE,
            None::<&str>,
        )
        .map_err(sys_err(
            "making the yard's mount a slave",
            None,
            &m.mountpoint,
        ))?;
    }
    Ok(())
}

/// Creates the yard directory `.dormant-mnt-yard-<pid>-<n>` (0700) in `tmp`, the first `n` free. A name
/// can be taken by the yard of a killed restore whose pid was ours, or by a restore in another pid
/// namespace: neither is ours to remove (the other one's may be mounted on in its own mount namespace).
fn create_yard(tmp: &Path) -> Result<PathBuf> {
    let pid = std::process::id();
    let mut n = 0u32;
    loop {
        let yard = tmp.join(format!(".dormant-mnt-yard-{pid}-{n}"));
        match std::fs::DirBuilder::new().mode(0o700).create(&yard) {
            Ok(()) => return Ok(yard),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
            Err(e) => return Err(io_err("creating the mount yard", &yard)(e)),
        }
    }
}

struct Executor<'a> {
    img: &'a MountImage,
    root: PathBuf,
    yard: PathBuf,
    yard_fd: Option<OwnedFd>,
    /// The root before the pivot, detached at the end ([`Step::DropOldRoot`]).
    old_root: Option<OwnedFd>,
    yard_parent: OwnedFd,
    fds: BTreeMap<MountId, OwnedFd>,
    outside: BTreeMap<String, OwnedFd>,
    ext: &'a ExternalMap,
}

impl<'a> Executor<'a> {
    fn new(img: &'a MountImage, root: &Path, ext: &'a ExternalMap, steps: &[Step]) -> Result<Self> {
        let tmp = std::env::temp_dir();
        let tree = MountTree::read(None)?;
        unshare_propagation(&tree, Path::new("/"))?;
        unshare_propagation(&tree, &tmp)?;
        let yard = create_yard(&tmp)?;
        mount(
            Some("dormant-yard"),
            &yard,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("mode=0700"),
        )
        .map_err(sys_err(
            "mounting the yard tmpfs",
            None,
            &yard.to_string_lossy(),
        ))?;
        mount(
            None::<&str>,
            &yard,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(sys_err(
            "making the yard private",
            None,
            &yard.to_string_lossy(),
        ))?;
        let yard_fd = open_path(&yard, "opening the yard")?;
        let old_root = open_path(Path::new("/"), "opening the old root")?;
        let yard_parent = open(&tmp, OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(sys_err(
                "opening the temp dir",
                None,
                &tmp.to_string_lossy(),
            ))?;
        // Outside mounts that groups are joined from, opened while they are reachable by path.
        let mut outside = BTreeMap::new();
        for s in steps {
            if let Step::JoinGroup {
                from: GroupFrom::External(key),
                ..
            } = s
            {
                if !outside.contains_key(key) {
                    let p = ext.resolve(key);
                    outside.insert(
                        key.clone(),
                        open_path(&p, "opening an external master's mount")?,
                    );
                }
            }
        }
        Ok(Executor {
            img,
            root: root.to_path_buf(),
            yard,
            yard_fd: Some(yard_fd),
            old_root: Some(old_root),
            yard_parent,
            fds: BTreeMap::new(),
            outside,
            ext,
        })
    }

    fn mountpoint(&self, id: MountId) -> &str {
        self.img
            .mounts
            .iter()
            .find(|m| m.id == id)
            .map_or("?", |m| m.mountpoint.as_str())
    }

    fn fd(&self, id: MountId) -> Result<BorrowedFd<'_>> {
        self.fds
            .get(&id)
            .map(|f| f.as_fd())
            .ok_or_else(|| MountError::Plan(format!("mount {} used before it was created", id.0)))
    }

    /// A flat spot in the yard for `id`, shaped like `like` (a directory unless `like` is not one).
    fn spot(&self, id: MountId, like: Option<&Path>) -> Result<PathBuf> {
        let p = self.yard.join(id.0.to_string());
        let is_dir = like.is_none_or(|l| l.is_dir());
        if is_dir {
            std::fs::create_dir(&p).map_err(io_err("creating a yard directory", &p))?;
        } else {
            std::fs::File::create(&p).map_err(io_err("creating a yard file", &p))?;
        }
        Ok(p)
    }

    fn bind_flat(&mut self, id: MountId, src: &Path) -> Result<()> {
        let spot = self.spot(id, Some(src))?;
        let mp = self.mountpoint(id).to_string();
        mount(
            Some(src),
            &spot,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys_err("bind mount", Some(id), &mp))?;
        self.finish_flat(id, &spot)
    }

    fn finish_flat(&mut self, id: MountId, spot: &Path) -> Result<()> {
        let mp = self.mountpoint(id).to_string();
        mount(
            None::<&str>,
            spot,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(sys_err("making a flat mount private", Some(id), &mp))?;
        let fd = open_path(spot, "opening a flat mount")?;
        self.fds.insert(id, fd);
        Ok(())
    }

    fn setattr(&self, id: MountId, attr: MountAttr, what: &'static str) -> Result<()> {
        sys::mount_setattr(self.fd(id)?, &attr).map_err(sys_err(
            what,
            Some(id),
            self.mountpoint(id),
        ))
    }

    /// A new filesystem, flat in the yard: mounted, filled with its tmpfs content, its superblock made
    /// read-only if it was (runc's /sys, masked directories: only once the content is in; the per-mount
    /// flags are set apart, later).
    fn new_fs(&mut self, id: MountId, fstype: &str, source: &str, data: &str) -> Result<()> {
        let spot = self.spot(id, None)?;
        let data = (!data.is_empty()).then_some(data);
        mount(Some(source), &spot, Some(fstype), MsFlags::empty(), data).map_err(sys_err(
            "mounting a new filesystem",
            Some(id),
            self.mountpoint(id),
        ))?;
        if let Some(recs) = self.img.tmpfs.get(&id) {
            crate::tmpfs::restore_tree(&spot, recs)?;
        }
        let sb_ro = self
            .img
            .mounts
            .iter()
            .find(|m| m.id == id)
            .is_some_and(|m| m.super_opts.split(',').any(|o| o == "ro"));
        if sb_ro {
            mount(
                None::<&str>,
                &spot,
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                data,
            )
            .map_err(sys_err(
                "making a superblock read-only",
                Some(id),
                self.mountpoint(id),
            ))?;
        }
        self.finish_flat(id, &spot)
    }

    fn apply(&mut self, step: &Step) -> Result<()> {
        match step {
            Step::NewFs {
                mount: id,
                fstype,
                source,
                data,
            } => self.new_fs(*id, fstype, source, data)?,
            Step::BindRoot { mount: id } => {
                let root = self.root.clone();
                self.bind_flat(*id, &root)?;
            }
            Step::BindExternal { mount: id, key } => {
                let src = self.ext.resolve(key);
                self.bind_flat(*id, &src)?;
            }
            Step::BindOf {
                mount: id,
                of,
                subpath,
            } => {
                // Not joined when empty: a trailing slash would make a bind of a file fail (ENOTDIR).
                let mut src = fd_path(self.fd(*of)?);
                if !subpath.is_empty() {
                    src = src.join(subpath);
                }
                self.bind_flat(*id, &src)?;
            }
            Step::SetAttrs { mount: id, attrs } => {
                self.setattr(*id, attr_of(attrs), "setting mount flags")?;
            }
            Step::Attach {
                mount: id,
                parent,
                path,
            } => {
                let child = self.fd(*id)?;
                let parent_fd = self.fd(*parent)?;
                let mp = self.mountpoint(*id);
                let mut flags = sys::MOVE_MOUNT_F_EMPTY_PATH;
                if path.is_empty() {
                    flags |= sys::MOVE_MOUNT_T_EMPTY_PATH;
                } else {
                    let target = fd_path(parent_fd).join(path);
                    if std::fs::symlink_metadata(&target).is_err() {
                        let is_dir = fd_path(child).is_dir();
                        let made = if is_dir {
                            std::fs::DirBuilder::new().recursive(true).create(&target)
                        } else {
                            if let Some(dir) = target.parent() {
                                std::fs::create_dir_all(dir)
                                    .map_err(io_err("creating a mountpoint's directory", dir))?;
                            }
                            std::fs::File::create(&target).map(drop)
                        };
                        made.map_err(io_err("creating a mountpoint", &target))?;
                        log::info!("created missing mountpoint {mp}");
                    }
                }
                let to = cpath(path)?;
                sys::move_mount(child, c"", parent_fd, &to, flags).map_err(sys_err(
                    "moving a mount into place",
                    Some(*id),
                    mp,
                ))?;
            }
            Step::PivotRoot { root } => {
                let mp = self.mountpoint(*root).to_string();
                let fd = open(
                    &fd_path(self.fd(*root)?),
                    OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(sys_err("opening the new root", Some(*root), &mp))?;
                fchdir(&fd).map_err(sys_err("entering the new root", Some(*root), &mp))?;
                pivot_root(".", ".").map_err(sys_err("pivot_root", Some(*root), &mp))?;
            }
            Step::JoinGroup { mount: id, from } => {
                let from_fd = match from {
                    GroupFrom::Mount(m) => self.fd(*m)?,
                    GroupFrom::External(key) => {
                        self.outside.get(key).map(|f| f.as_fd()).ok_or_else(|| {
                            MountError::Plan(format!("external master {key} not opened"))
                        })?
                    }
                };
                sys::move_mount(
                    from_fd,
                    c"",
                    self.fd(*id)?,
                    c"",
                    sys::MOVE_MOUNT_SET_GROUP
                        | sys::MOVE_MOUNT_F_EMPTY_PATH
                        | sys::MOVE_MOUNT_T_EMPTY_PATH,
                )
                .map_err(sys_err(
                    "joining a peer group (MOVE_MOUNT_SET_GROUP)",
                    Some(*id),
                    self.mountpoint(*id),
                ))?;
            }
            Step::MakeSlave { mount: id } => self.propagation(*id, MsFlags::MS_SLAVE)?,
            Step::MakeShared { mount: id } => self.propagation(*id, MsFlags::MS_SHARED)?,
            Step::MakeUnbindable { mount: id } => self.propagation(*id, MsFlags::MS_UNBINDABLE)?,
            Step::DropOldRoot => self.drop_old_root()?,
            Step::SetReadOnly { mount: id } => {
                let attr = MountAttr {
                    attr_set: sys::MOUNT_ATTR_RDONLY,
                    ..Default::default()
                };
                self.setattr(*id, attr, "making a mount read-only")?;
            }
        }
        Ok(())
    }

    fn propagation(&self, id: MountId, flag: MsFlags) -> Result<()> {
        let attr = MountAttr {
            propagation: flag.bits(),
            ..Default::default()
        };
        self.setattr(id, attr, "setting propagation")
    }

    /// Detaches the yard (with whatever flat mounts are still in it) and removes its directory. Runs at
    /// the end of a restore and, through `Drop`, after a failed one, so no yard is left in the temp dir.
    fn remove_yard(&mut self) -> Result<()> {
        if let Some(yard) = self.yard_fd.take() {
            // Through the working directory, not /proc/self/fd: the restored tree may have no /proc. The
            // working directory comes back afterwards (the new root, once pivoted into).
            let here = open(".", OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(sys_err("opening the working directory", None, "."))?;
            let yard_path = self.yard.to_string_lossy().into_owned();
            fchdir(&yard).map_err(sys_err("entering the yard", None, &yard_path))?;
            let detached = umount2(".", MntFlags::MNT_DETACH);
            fchdir(&here).map_err(sys_err("leaving the yard", None, &yard_path))?;
            detached.map_err(sys_err("detaching the yard", None, &yard_path))?;
            if let Some(name) = self.yard.file_name() {
                nix::unistd::unlinkat(
                    &self.yard_parent,
                    name.as_bytes(),
                    nix::unistd::UnlinkatFlags::RemoveDir,
                )
                .map_err(sys_err(
                    "removing the yard directory",
                    None,
                    &self.yard.to_string_lossy(),
                ))?;
            }
        }
        Ok(())
    }

    fn drop_old_root(&mut self) -> Result<()> {
        self.outside.clear();
        self.remove_yard()?;
        // The old root sits on top of the new one: make it and everything below it slaves first, so
        // detaching it propagates nowhere, then detach it. Both through the descriptor taken before the
        // pivot: a path (".") would name the new root for the one call and the old for the other, and
        // making the restored tree slaves would undo its peer groups.
        let Some(old) = self.old_root.take() else {
            return Err(MountError::Plan("the old root is dropped twice".into()));
        };
        let slave = MountAttr {
            propagation: MsFlags::MS_SLAVE.bits(),
            ..Default::default()
        };
        sys::mount_setattr_recursive(old.as_fd(), &slave).map_err(sys_err(
            "making the old root a slave",
            None,
            "/",
        ))?;
        fchdir(&old).map_err(sys_err("entering the old root", None, "/"))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(sys_err("detaching the old root", None, "/"))?;
        nix::unistd::chdir("/").map_err(sys_err("entering the new root", None, "/"))?;
        Ok(())
    }
}

impl Drop for Executor<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.remove_yard() {
            log::warn!("mount restore: cleaning up the yard: {e}");
        }
    }
}

pub(crate) fn attr_of(a: &MountAttrs) -> MountAttr {
    let mut set = 0;
    for (on, bit) in [
        (a.nosuid, sys::MOUNT_ATTR_NOSUID),
        (a.nodev, sys::MOUNT_ATTR_NODEV),
        (a.noexec, sys::MOUNT_ATTR_NOEXEC),
        (a.nodiratime, sys::MOUNT_ATTR_NODIRATIME),
        (a.nosymfollow, sys::MOUNT_ATTR_NOSYMFOLLOW),
    ] {
        if on {
            set |= bit;
        }
    }
    set |= match a.atime {
        Atime::Relatime => sys::MOUNT_ATTR_RELATIME,
        Atime::Noatime => sys::MOUNT_ATTR_NOATIME,
        Atime::Strictatime => sys::MOUNT_ATTR_STRICTATIME,
    };
    MountAttr {
        attr_set: set,
        attr_clr: sys::MOUNT_ATTR_NOSUID
            | sys::MOUNT_ATTR_NODEV
            | sys::MOUNT_ATTR_NOEXEC
            | sys::MOUNT_ATTR_ATIME_MASK
            | sys::MOUNT_ATTR_NODIRATIME
            | sys::MOUNT_ATTR_NOSYMFOLLOW,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The yard of a killed restore that had our pid does not stop a restore: the next free name is used
    /// and the stale one is left alone.
    #[test]
    fn a_stale_yard_with_our_pid_is_stepped_over() {
        let tmp = std::env::temp_dir().join(format!("dormant-yard-test-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let stale = tmp.join(format!(".dormant-mnt-yard-{}-0", std::process::id()));
        std::fs::create_dir_all(&stale).unwrap();
        let yard = create_yard(&tmp).unwrap();
        assert_ne!(yard, stale);
        assert!(yard.is_dir() && stale.is_dir());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
