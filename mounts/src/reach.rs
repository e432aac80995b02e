//! Reaching one mount of another process's namespace by itself, also when it is hidden.
//!
//! A path such as `/proc/PID/root/MOUNTPOINT` reaches the topmost mount at that path and, through it, the
//! mounts stacked inside it: a tmpfs hidden by an over-mount cannot be read that way, nor can the
//! directories of a tmpfs that mounts below it cover. So the content of a mount is read through a detached
//! clone of that mount alone (`open_tree(OPEN_TREE_CLONE)`, not recursive: no submounts), taken in a
//! private copy of the process's mount namespace where whatever hides the mount has been detached.
//!
//! The copy is made by a thread of our own (`unshare(CLONE_FS)`, `setns` into the namespace,
//! `unshare(CLONE_NEWNS)`, everything made private first so that detaching there propagates nowhere). Its
//! mounts have new ids: they are matched to the dumped ones by their place in the tree (parent, mountpoint,
//! root, device, filesystem type); a place two mounts share is refused rather than guessed.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use dormant_image::records::MountId;
use nix::fcntl::{openat, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::Mode;

use crate::error::{MountError, Result};
use crate::mountinfo::{MountInfo, MountTree};

fn sys(what: &'static str, mountpoint: &str) -> impl Fn(nix::errno::Errno) -> MountError {
    let mountpoint = mountpoint.to_string();
    move |errno| MountError::Sys {
        what,
        mount: None,
        mountpoint: mountpoint.clone(),
        errno,
    }
}

/// Detached clones of the mounts `ids` of the namespace of `pid` (whose mountinfo, as dumped, is
/// `inside`), each of the mount alone. Runs in a thread of its own; the caller's namespaces do not change.
pub fn clone_mounts(
    pid: i32,
    inside: &MountTree,
    ids: &[MountId],
) -> Result<Vec<(MountId, OwnedFd)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ns_path = format!("/proc/{pid}/ns/mnt");
    let ns = nix::fcntl::open(
        ns_path.as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("opening the mount namespace", &ns_path))?;
    let proc_dir = nix::fcntl::open(
        "/proc",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("opening /proc", "/proc"))?;
    std::thread::scope(|s| {
        s.spawn(|| clone_in_copy(&ns, &proc_dir, inside, ids))
            .join()
            .unwrap_or_else(|_| {
                Err(MountError::Plan(format!(
                    "pid {pid}: the thread cloning mounts panicked"
                )))
            })
    })
}

/// A private copy of the namespace `ns`, entered by the calling thread, and its mountinfo.
fn enter_copy(ns: &OwnedFd, proc_dir: &OwnedFd) -> Result<MountTree> {
    setns(ns.as_fd(), CloneFlags::CLONE_NEWNS).map_err(sys("entering the mount namespace", "/"))?;
    unshare(CloneFlags::CLONE_NEWNS).map_err(sys("copying the mount namespace", "/"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(sys("making the namespace copy private", "/"))?;
    let fd = openat(
        proc_dir,
        "thread-self/mountinfo",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("opening the copy's mountinfo", "/proc/thread-self"))?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text).map_err(|source| {
        MountError::Io {
            what: "reading the copy's mountinfo".into(),
            path: "/proc/thread-self/mountinfo".into(),
            source,
        }
    })?;
    MountTree::parse(&text)
}

fn clone_in_copy(
    ns: &OwnedFd,
    proc_dir: &OwnedFd,
    inside: &MountTree,
    ids: &[MountId],
) -> Result<Vec<(MountId, OwnedFd)>> {
    unshare(CloneFlags::CLONE_FS).map_err(sys("unsharing the fs struct", "/"))?;
    let mut out = Vec::new();
    let mut copy: Option<(MountTree, BTreeMap<MountId, MountId>)> = None;
    for &id in ids {
        let m = inside
            .get(id)
            .ok_or_else(|| MountError::Plan(format!("mount {} is not in the namespace", id.0)))?;
        let (tree, map) = match copy.take() {
            Some(c) => c,
            None => {
                let tree = enter_copy(ns, proc_dir)?;
                let map = match_trees(inside, &tree)?;
                (tree, map)
            }
        };
        let target = *map.get(&id).ok_or_else(|| {
            MountError::Plan(format!(
                "mount {} ({}) has no counterpart in a copy of its namespace",
                id.0, m.mountpoint
            ))
        })?;
        let detached = uncover(&tree, target, &m.mountpoint)?;
        let path = CString::new(m.mountpoint.as_str())
            .map_err(|_| MountError::Plan(format!("mountpoint {:?} holds a NUL", m.mountpoint)))?;
        let fd = crate::sys::clone_tree(nix::fcntl::AT_FDCWD, &path)
            .map_err(sys("cloning the mount (open_tree)", &m.mountpoint))?;
        log::debug!(
            "mount {} ({}): cloned (fd {}), {detached} covering mounts detached in the copy",
            id.0,
            m.mountpoint,
            fd.as_raw_fd()
        );
        out.push((id, fd));
        if detached == 0 {
            copy = Some((tree, map));
        }
    }
    Ok(out)
}

/// The mount id `statx` reports for `path` (the topmost mount there).
fn mount_at(path: &str) -> Result<u64> {
    let fd = nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(sys("opening a mountpoint", path))?;
    crate::sys::mount_id_of(fd.as_fd()).map_err(sys("statx(STATX_MNT_ID)", path))
}

/// Detaches, in the copy `tree`, every mount that hides `target` at `mountpoint`; returns how many.
fn uncover(tree: &MountTree, target: MountId, mountpoint: &str) -> Result<usize> {
    let mut keep = BTreeSet::from([target.0 as u64]);
    let mut cur = tree.get(target);
    while let Some(m) = cur {
        keep.insert(m.parent.0 as u64);
        cur = tree.get(m.parent).filter(|p| p.id != m.id);
    }
    let prefixes: Vec<String> = std::iter::once("/".to_string())
        .chain(
            mountpoint
                .match_indices('/')
                .skip(1)
                .map(|(i, _)| mountpoint[..i].to_string()),
        )
        .chain(std::iter::once(mountpoint.to_string()))
        .collect();
    let mut detached = 0;
    for _ in 0..=tree.mounts.len() {
        // Not found (ENOENT) when what hides it lacks the path: detach that below.
        if mount_at(mountpoint).is_ok_and(|at| at == target.0 as u64) {
            return Ok(detached);
        }
        let mut hider = None;
        for p in &prefixes {
            if !keep.contains(&mount_at(p)?) {
                hider = Some(p);
                break;
            }
        }
        let Some(p) = hider else { break };
        umount2(p.as_str(), MntFlags::MNT_DETACH)
            .map_err(sys("detaching an over-mount in the copy", p))?;
        detached += 1;
    }
    Err(MountError::Plan(format!(
        "mount {} at {mountpoint} stays hidden in a copy of its namespace after {detached} over-mounts \
         were detached",
        target.0
    )))
}

/// Dumped mount id → id of the same mount in the copy, matched by place in the tree.
fn match_trees(orig: &MountTree, copy: &MountTree) -> Result<BTreeMap<MountId, MountId>> {
    let key = |m: &MountInfo| {
        (
            m.mountpoint.clone(),
            m.root.clone(),
            m.dev,
            m.fstype.clone(),
        )
    };
    let (Some(r0), Some(r1)) = (orig.root(), copy.root()) else {
        return Err(MountError::Plan(
            "a copy of the namespace has no root".into(),
        ));
    };
    let mut map = BTreeMap::from([(r0.id, r1.id)]);
    for m in orig.tree_order().into_iter().skip(1) {
        let Some(&parent) = map.get(&m.parent) else {
            continue;
        };
        let same: Vec<&MountInfo> = copy
            .mounts
            .iter()
            .filter(|c| c.parent == parent && c.id != parent && key(c) == key(m))
            .collect();
        match same.as_slice() {
            [one] => {
                map.insert(m.id, one.id);
            }
            [] => {}
            _ => {
                return Err(MountError::Plan(format!(
                "{} mounts share the place of mount {} at {} (same parent, mountpoint, root and \
                     device); which one is which cannot be told",
                same.len(),
                m.id.0,
                m.mountpoint
            )))
            }
        }
    }
    Ok(map)
}
