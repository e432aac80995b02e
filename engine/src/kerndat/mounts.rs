//! Mount probes: open_tree/move_mount with MOVE_MOUNT_SET_GROUP (in a child with its own mount
//! namespace) and statmount/listmount (read-only, on the caller's namespace).

use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::statfs::statfs;

use super::child::in_child;
use super::error::ProbeError;
use super::procfs::{self_mountinfo, MountLine};
use super::sys;
use super::Found;

/// Directories one of which the child covers with a scratch tmpfs, in its private namespace only.
const SCRATCH_CANDIDATES: [&str; 4] = ["/tmp", "/mnt", "/run", "/dev"];

fn peer_group(mounts: &[MountLine], at: &Path) -> Option<Option<u64>> {
    mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == at)
        .map(|m| m.shared)
}

fn tmpfs(source: &str, at: &Path) -> Result<(), String> {
    mount(
        Some(source),
        at,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=64k"),
    )
    .map_err(|e| format!("mounting tmpfs on {} failed: {e}", at.display()))
}

fn propagation(at: &Path, flags: MsFlags, what: &str) -> Result<(), String> {
    mount(None::<&str>, at, None::<&str>, flags, None::<&str>)
        .map_err(|e| format!("making {} {what} failed: {e}", at.display()))
}

/// In a child with a private mount namespace: mount a shared tmpfs A, clone it with open_tree and
/// attach the clone as B with move_mount, make B private, then copy A's peer group to B with
/// MOVE_MOUNT_SET_GROUP. mountinfo must then show both in the same `shared:N` group.
pub(crate) fn move_mount_set_group() -> Result<Found, ProbeError> {
    in_child(|| {
        unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(CLONE_NEWNS) failed: {e}"))?;
        propagation(Path::new("/"), MsFlags::MS_REC | MsFlags::MS_PRIVATE, "private")?;
        let scratch = SCRATCH_CANDIDATES
            .iter()
            .map(Path::new)
            .find(|p| p.is_dir())
            .ok_or("none of /tmp, /mnt, /run, /dev is a directory")?;
        tmpfs("dormant-probe", scratch)?;
        let a: PathBuf = scratch.join("a");
        let b: PathBuf = scratch.join("b");
        for dir in [&a, &b] {
            std::fs::create_dir(dir).map_err(|e| format!("mkdir {} failed: {e}", dir.display()))?;
        }
        tmpfs("dormant-probe-a", &a)?;
        propagation(&a, MsFlags::MS_SHARED, "shared")?;
        let tree = sys::open_tree_clone(&a).map_err(|e| format!("open_tree(OPEN_TREE_CLONE) failed: {e}"))?;
        sys::move_mount_fd(std::os::fd::AsFd::as_fd(&tree), &b).map_err(|e| format!("move_mount of the clone failed: {e}"))?;
        propagation(&b, MsFlags::MS_PRIVATE, "private")?;
        let mounts = self_mountinfo().map_err(|e| e.to_string())?;
        let group_a = peer_group(&mounts, &a).flatten().ok_or("mount A is not shared")?;
        if peer_group(&mounts, &b) != Some(None) {
            return Err("mount B is not a private mount before MOVE_MOUNT_SET_GROUP".to_string());
        }
        sys::move_mount_paths(&a, &b, sys::MOVE_MOUNT_SET_GROUP)
            .map_err(|e| format!("move_mount(MOVE_MOUNT_SET_GROUP) failed: {e}"))?;
        let mounts = self_mountinfo().map_err(|e| e.to_string())?;
        match peer_group(&mounts, &b) {
            Some(Some(group)) if group == group_a => Ok(format!(
                "open_tree + move_mount attached a clone; SET_GROUP made it a peer of shared:{group_a}"
            )),
            other => Err(format!(
                "after MOVE_MOUNT_SET_GROUP mount B has peer group {other:?}, expected shared:{group_a}"
            )),
        }
    })
    .map(Found::detail)
}

const PROC_MOUNT: &str = "/proc";
const LISTMOUNT_BATCH: usize = 256;

/// statmount/listmount: listmount over the caller's namespace must list the mount of /proc (its
/// unique id from statx), and statmount of that id must report procfs's superblock magic.
pub(crate) fn statmount_listmount() -> Result<Found, ProbeError> {
    let proc_id = sys::unique_mount_id(Path::new(PROC_MOUNT))
        .map_err(|e| ProbeError::sys("statx(STATX_MNT_ID_UNIQUE) of /proc", e))?;
    let mut ids = Vec::new();
    let mut batch = [0u64; LISTMOUNT_BATCH];
    let mut last = 0;
    loop {
        let n = sys::listmount(sys::LSMT_ROOT, last, &mut batch)
            .map_err(|e| ProbeError::sys("listmount", e))?;
        ids.extend_from_slice(batch.get(..n).unwrap_or(&[]));
        match batch.get(..n).and_then(|b| b.last()) {
            Some(&id) if n == LISTMOUNT_BATCH => last = id,
            _ => break,
        }
    }
    if !ids.contains(&proc_id) {
        return Err(ProbeError::unexpected(format!(
            "listmount returned {} mounts, not the one of /proc ({proc_id:#x})",
            ids.len()
        )));
    }
    let sm = sys::statmount(proc_id, sys::STATMOUNT_SB_BASIC | sys::STATMOUNT_MNT_BASIC)
        .map_err(|e| ProbeError::sys("statmount", e))?;
    let magic = statfs(PROC_MOUNT)
        .map_err(|e| ProbeError::sys("statfs(/proc)", e))?
        .filesystem_type()
        .0 as u64;
    let wanted_mask = sys::STATMOUNT_SB_BASIC | sys::STATMOUNT_MNT_BASIC;
    if sm.mask & wanted_mask != wanted_mask || sm.mnt_id != proc_id || sm.sb_magic != magic {
        return Err(ProbeError::unexpected(format!(
            "statmount of /proc's mount {proc_id:#x} answered {sm:x?}, expected magic {magic:#x}"
        )));
    }
    Ok(Found::detail(format!(
        "listmount saw {} mounts; statmount of /proc (id {proc_id:#x}, parent {:#x}) says magic {magic:#x}",
        ids.len(),
        sm.mnt_parent_id
    )))
}
