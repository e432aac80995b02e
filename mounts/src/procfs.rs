//! Giving a rebuilt mount namespace's proc mounts the restored tree's pid namespace.
//!
//! A restore rebuilds the mount tree before the tree's first task is forked, and a pid namespace can be
//! named (`/proc/PID/ns/pid`) only once its init exists, so the proc mounts the executor creates show the
//! restorer's pid namespace. That is what the restorer itself needs while it restores (it reads
//! `/proc/self/...` and `/proc/PID/...` by its own pids). Once the tree is restored, and before it runs,
//! [`replace_proc_mounts`] swaps each of them for a proc of the tree's pid namespace (`fsconfig` `pidns`):
//! the new proc is mounted beneath the old one (`MOVE_MOUNT_BENEATH`), the old one's submounts (masked
//! paths) are moved onto it, keeping their identity, and the old one is detached. Per-mount flags, the
//! superblock options and the peer group carry over. A submount that is a bind of a subdirectory of the
//! old proc itself (a container's read-only paths: `/proc/sys`, `/proc/bus`, ...) is bound again from the
//! new proc, with its flags, peer group and own submounts: moved, it would keep the restorer's superblock,
//! which nothing in the container can name (a later dump could not place it).
//!
//! What this does NOT do: swap a proc mount with another mount stacked at its own or one of its
//! children's mountpoints (left as it is, with a warning).

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::fcntl::{open, OFlag};
use nix::mount::{umount2, MntFlags};
use nix::sys::stat::Mode;

use crate::error::{MountError, Result};
use crate::mountinfo::{MountInfo, MountTree};
use crate::sys::{self, FsParam};

fn sys_err(what: &'static str, m: &MountInfo) -> impl Fn(nix::errno::Errno) -> MountError {
    let (id, mountpoint) = (m.id, m.mountpoint.clone());
    move |errno| MountError::Sys {
        what,
        mount: Some(id),
        mountpoint: mountpoint.clone(),
        errno,
    }
}

fn cstr(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| MountError::Plan(format!("{s:?} holds a NUL byte")))
}

/// `MOUNT_ATTR_*` flags from mountinfo's per-mount options.
fn attrs_of(mount_opts: &str) -> u64 {
    mount_opts
        .split(',')
        .map(|o| match o {
            "ro" => sys::MOUNT_ATTR_RDONLY,
            "nosuid" => sys::MOUNT_ATTR_NOSUID,
            "nodev" => sys::MOUNT_ATTR_NODEV,
            "noexec" => sys::MOUNT_ATTR_NOEXEC,
            "noatime" => sys::MOUNT_ATTR_NOATIME,
            "nodiratime" => sys::MOUNT_ATTR_NODIRATIME,
            "nosymfollow" => sys::MOUNT_ATTR_NOSYMFOLLOW,
            _ => 0,
        })
        .fold(0, |a, b| a | b)
}

/// Per-mount flags as `mount_setattr` wants them: exactly those of `mount_opts`.
fn exact_attrs(mount_opts: &str) -> sys::MountAttr {
    sys::MountAttr {
        attr_set: attrs_of(mount_opts),
        attr_clr: sys::MOUNT_ATTR_RDONLY
            | sys::MOUNT_ATTR_NOSUID
            | sys::MOUNT_ATTR_NODEV
            | sys::MOUNT_ATTR_NOEXEC
            | sys::MOUNT_ATTR_ATIME_MASK
            | sys::MOUNT_ATTR_NODIRATIME
            | sys::MOUNT_ATTR_NOSYMFOLLOW,
        ..Default::default()
    }
}

/// A direct submount of a mount being replaced, held by a descriptor of its own root, with its path
/// relative to the parent's mountpoint.
struct Sub<'a> {
    info: &'a MountInfo,
    rel: CString,
    fd: OwnedFd,
}

/// The direct submounts of `m`; `None` when one has another mount stacked on it (it cannot be held).
fn direct_submounts<'a>(tree: &'a MountTree, m: &MountInfo) -> Result<Option<Vec<Sub<'a>>>> {
    let mut subs = Vec::new();
    for c in tree
        .mounts
        .iter()
        .filter(|c| c.parent == m.id && c.id != m.id)
    {
        let Some(rel) = crate::mountinfo::sub_path(&m.mountpoint, &c.mountpoint) else {
            continue;
        };
        let Some(fd) = open_exact(&c.mountpoint, c)? else {
            log::warn!(
                "proc at {}: {} has a mount stacked on it; the proc keeps the restorer's pid namespace",
                m.mountpoint,
                c.mountpoint
            );
            return Ok(None);
        };
        subs.push(Sub {
            info: c,
            rel: cstr(rel)?,
            fd,
        });
    }
    Ok(Some(subs))
}

/// Puts submount `c` of the old proc (`old_dev`) onto the new proc `new`: moved, or bound again from the
/// new proc when it is a bind of the old proc itself (its own submounts `grand` follow it).
fn place_submount(
    new: BorrowedFd<'_>,
    old_dev: &crate::mountinfo::DevId,
    c: &Sub<'_>,
    grand: &[Sub<'_>],
) -> Result<()> {
    let info = c.info;
    if info.fstype != "proc" || info.dev != *old_dev {
        return sys::move_mount(c.fd.as_fd(), c"", new, &c.rel, sys::MOVE_MOUNT_F_EMPTY_PATH)
            .map_err(sys_err("moving a submount onto the new proc", info));
    }
    let sub = cstr(info.root.trim_start_matches('/'))?;
    let bind = sys::clone_tree(new, &sub).map_err(sys_err("binding from the new proc", info))?;
    sys::mount_setattr(bind.as_fd(), &exact_attrs(&info.mount_opts))
        .map_err(sys_err("setting a proc bind's flags", info))?;
    sys::move_mount(bind.as_fd(), c"", new, &c.rel, sys::MOVE_MOUNT_F_EMPTY_PATH)
        .map_err(sys_err("mounting a bind of the new proc", info))?;
    if info.shared.is_some() || info.master.is_some() {
        sys::move_mount(
            c.fd.as_fd(),
            c"",
            bind.as_fd(),
            c"",
            sys::MOVE_MOUNT_SET_GROUP | sys::MOVE_MOUNT_F_EMPTY_PATH | sys::MOVE_MOUNT_T_EMPTY_PATH,
        )
        .map_err(sys_err("giving a proc bind its peer group", info))?;
    }
    for g in grand {
        sys::move_mount(
            g.fd.as_fd(),
            c"",
            bind.as_fd(),
            &g.rel,
            sys::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(sys_err("moving a submount onto a proc bind", g.info))?;
    }
    Ok(())
}

/// The mount at `path` if it is the topmost there and is `want` (checked by mount id).
fn open_exact(path: &str, want: &MountInfo) -> Result<Option<OwnedFd>> {
    let fd = open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(sys_err("opening a proc mount", want))?;
    let id = sys::mount_id_of(fd.as_fd()).map_err(sys_err("statx of a proc mount", want))?;
    Ok((id == u64::from(want.id.0)).then_some(fd))
}

/// Replaces every proc mount at a proc root in the caller's mount namespace with one showing the pid
/// namespace `pidns` (see the module doc). Returns how many were replaced.
pub fn replace_proc_mounts(pidns: BorrowedFd<'_>) -> Result<usize> {
    let tree = MountTree::read(None)?;
    let procs: Vec<&MountInfo> = tree
        .mounts
        .iter()
        .filter(|m| m.fstype == "proc" && m.root == "/")
        .collect();
    let mut done = 0;
    for p in procs {
        if replace_one(&tree, p, pidns)? {
            done += 1;
        }
    }
    Ok(done)
}

fn replace_one(tree: &MountTree, p: &MountInfo, pidns: BorrowedFd<'_>) -> Result<bool> {
    let Some(old) = open_exact(&p.mountpoint, p)? else {
        log::warn!(
            "proc at {}: another mount is stacked on it; it keeps the restorer's pid namespace",
            p.mountpoint
        );
        return Ok(false);
    };
    // The direct submounts, each by a descriptor of its own root, taken before anything moves; for the
    // binds of the old proc itself, their own submounts too.
    let Some(children) = direct_submounts(tree, p)? else {
        return Ok(false);
    };
    let mut grand = Vec::with_capacity(children.len());
    for c in &children {
        if c.info.fstype == "proc" && c.info.dev == p.dev {
            let Some(g) = direct_submounts(tree, c.info)? else {
                return Ok(false);
            };
            grand.push(g);
        } else {
            grand.push(Vec::new());
        }
    }

    let fs = sys::fsopen(c"proc").map_err(sys_err("fsopen(proc)", p))?;
    let source = cstr(&p.source)?;
    sys::fsconfig(fs.as_fd(), FsParam::Str(c"source", &source))
        .map_err(sys_err("fsconfig(source)", p))?;
    for opt in p.super_opts.split(',').filter(|o| !o.is_empty()) {
        if opt == "rw" || opt == "ro" {
            continue;
        }
        let set = match opt.split_once('=') {
            Some((k, v)) => sys::fsconfig(fs.as_fd(), FsParam::Str(&cstr(k)?, &cstr(v)?)),
            None => sys::fsconfig(fs.as_fd(), FsParam::Flag(&cstr(opt)?)),
        };
        set.map_err(sys_err("fsconfig(proc option)", p))?;
    }
    sys::fsconfig(fs.as_fd(), FsParam::Fd(c"pidns", pidns))
        .map_err(sys_err("fsconfig(pidns)", p))?;
    let new =
        sys::fsmount(fs.as_fd(), attrs_of(&p.mount_opts)).map_err(sys_err("fsmount(proc)", p))?;

    let mp = cstr(&p.mountpoint)?;
    let cwd = at_fdcwd();
    sys::move_mount(
        new.as_fd(),
        c"",
        cwd,
        &mp,
        sys::MOVE_MOUNT_F_EMPTY_PATH | sys::MOVE_MOUNT_BENEATH,
    )
    .map_err(sys_err("mounting the new proc beneath the old one", p))?;
    if p.shared.is_some() || p.master.is_some() {
        sys::move_mount(
            old.as_fd(),
            c"",
            new.as_fd(),
            c"",
            sys::MOVE_MOUNT_SET_GROUP | sys::MOVE_MOUNT_F_EMPTY_PATH | sys::MOVE_MOUNT_T_EMPTY_PATH,
        )
        .map_err(sys_err("giving the new proc the old one's peer group", p))?;
    }
    for (c, g) in children.iter().zip(&grand) {
        place_submount(new.as_fd(), &p.dev, c, g)?;
    }
    drop(old);
    umount2(p.mountpoint.as_str(), MntFlags::MNT_DETACH)
        .map_err(sys_err("detaching the restorer's proc", p))?;
    log::info!(
        "proc at {}: now shows the restored tree's pid namespace ({} submount(s) moved)",
        p.mountpoint,
        children.len()
    );
    Ok(true)
}

/// `AT_FDCWD` as a borrowed descriptor, for `move_mount` targets given as paths.
fn at_fdcwd() -> BorrowedFd<'static> {
    // SAFETY: AT_FDCWD is a constant the kernel reads as "the current directory", never closed.
    unsafe { BorrowedFd::borrow_raw(libc::AT_FDCWD) }
}
