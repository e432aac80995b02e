//! The task's filesystem context: working directory, root directory (a chrooted task) and umask. The
//! saved paths are in the dumper's view, like the task's files; the child changes to them before it
//! enters the blob.
//!
//! A working directory that was removed while the task was in it (`/proc/PID/cwd` reads `... (deleted)`)
//! is restored the way unlinked files are: a stand-in with the saved mode and owner is created next to
//! where it was (in the closest ancestor that exists), entered and removed again, so the task is once
//! more in a removed directory. A removed root is restored the same way when the task works in it (its
//! working directory is the same removed directory: `chroot(".")` after the removal); the dump refuses a
//! removed root the task does not work in.

use std::ffi::{CStr, CString};
use std::path::Path;

use dormant_image::records::fs::DELETED_SUFFIX;
use dormant_image::records::RemovedDir;
use dormant_restorer_proto::Step;

use super::ChildFailed;
use crate::error::RestoreError;
use crate::image::TaskImage;

/// The task's fs struct as the child puts it in place; all `None` (the default): left as inherited.
#[derive(Debug, Default)]
pub struct TaskFs {
    /// Working directory to change to (absolute), if known; for a removed one, the stand-in's path.
    pub cwd: Option<CString>,
    /// Root directory to `chroot` into after the `chdir`, when the task was chrooted (and its root was
    /// not removed).
    pub root: Option<CString>,
    pub umask: Option<u32>,
    /// The working directory was removed: `cwd` is a stand-in to create, enter and remove.
    pub removed_cwd: Option<RemovedCwd>,
}

/// A removed working directory to recreate (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemovedCwd {
    pub dir: RemovedDir,
    /// The removed directory is also the task's root: `chroot(".")` once it is removed.
    pub is_root: bool,
}

pub fn prepare(dir: &Path, task: &TaskImage) -> Result<TaskFs, RestoreError> {
    let core = &task.core;
    let bad = |reason: String| RestoreError::BadImage {
        dir: dir.to_owned(),
        reason: format!("pid {}: {reason}", task.pid.0),
    };
    let path = |p: &str, what: &str| {
        CString::new(p).map_err(|_| bad(format!("{what} {p:?} contains NUL")))
    };
    let removed_cwd = match (core.cwd_removed, core.root_removed) {
        (Some(dir), None) => Some(RemovedCwd {
            dir,
            is_root: false,
        }),
        (Some(dir), Some(_)) if core.cwd == core.root => Some(RemovedCwd { dir, is_root: true }),
        (_, Some(_)) => {
            return Err(bad(format!(
                "its root directory {} was removed and it does not work in it",
                core.root
            )))
        }
        (None, None) => None,
    };
    let root = if core.root.is_empty() || core.root == "/" || removed_cwd.is_some_and(|r| r.is_root)
    {
        None
    } else {
        Some(path(&core.root, "root directory")?)
    };
    let cwd = if core.cwd.is_empty() {
        None
    } else if removed_cwd.is_some() {
        Some(path(&stand_in(&core.cwd, task.pid.0), "working directory")?)
    } else {
        Some(path(&core.cwd, "working directory")?)
    };
    Ok(TaskFs {
        cwd,
        root,
        umask: Some(core.umask),
        removed_cwd,
    })
}

/// Where the stand-in of the removed directory `removed` (a path the kernel marked ` (deleted)`) of task
/// `pid` goes: its own path when that is free, else the closest ancestor of its path that still exists,
/// under a name no one uses.
fn stand_in(removed: &str, pid: u32) -> String {
    let path = Path::new(removed.trim_end_matches(DELETED_SUFFIX));
    // Its own name where it was, when that is free: `/proc/PID/cwd` shows the name the removed directory
    // had, so only the original name gives back the original link.
    if path.parent().is_some_and(Path::is_dir) && std::fs::symlink_metadata(path).is_err() {
        return path.to_string_lossy().into_owned();
    }
    let parent = path
        .ancestors()
        .skip(1)
        .find(|a| a.is_dir())
        .unwrap_or(Path::new("/"));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    parent
        .join(format!(".dormant-removed-cwd-{pid}-{nanos}"))
        .to_string_lossy()
        .into_owned()
}

/// In the child: `chdir`, then `chroot` (the saved cwd is a path in the restorer's view, under the root;
/// and this runs after the task forked its children, each of which changes directory itself, from the
/// restorer's view, before its own chroot), then the umask. Allocation-free.
pub fn apply(
    cwd: Option<&CStr>,
    root: Option<&CStr>,
    umask: Option<u32>,
    removed_cwd: Option<RemovedCwd>,
) -> Result<(), ChildFailed> {
    match (cwd, removed_cwd) {
        (Some(dir), Some(removed)) => enter_removed(dir, removed)?,
        (Some(dir), None) => {
            // SAFETY: `dir` is a NUL-terminated path prepared before the fork.
            if unsafe { libc::chdir(dir.as_ptr()) } != 0 {
                return Err(ChildFailed::errno(Step::ChildChdir, 0));
            }
        }
        (None, _) => {}
    }
    if let Some(dir) = root {
        // SAFETY: `dir` is a NUL-terminated path prepared before the fork.
        if unsafe { libc::chroot(dir.as_ptr()) } != 0 {
            return Err(ChildFailed::errno(Step::ChildChroot, 0));
        }
    }
    if let Some(mask) = umask {
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(mask as libc::mode_t) };
    }
    Ok(())
}

/// Creates the stand-in `dir` with the removed directory's owner and mode, enters it and removes it (and
/// makes it the root when it was). Allocation-free.
fn enter_removed(dir: &CStr, removed: RemovedCwd) -> Result<(), ChildFailed> {
    let fail = |which: u64| ChildFailed::errno(Step::ChildRemovedDir, which);
    let p = dir.as_ptr();
    let RemovedDir { mode, uid, gid } = removed.dir;
    // SAFETY: `p` is a NUL-terminated path prepared before the fork; each call only takes it.
    unsafe {
        if libc::mkdir(p, 0o700) != 0 {
            return Err(fail(1));
        }
        // From here on a failure leaves the stand-in behind: remove it on the way out.
        let undo = |e: ChildFailed| {
            libc::rmdir(p);
            e
        };
        if libc::chown(p, uid, gid) != 0 {
            return Err(undo(fail(2)));
        }
        // After the chown, which clears set-id bits; mkdir's mode passes through the umask.
        if libc::chmod(p, mode as libc::mode_t) != 0 {
            return Err(undo(fail(3)));
        }
        if libc::chdir(p) != 0 {
            return Err(undo(fail(4)));
        }
        if libc::rmdir(p) != 0 {
            return Err(fail(5));
        }
        if removed.is_root && libc::chroot(c".".as_ptr()) != 0 {
            return Err(fail(6));
        }
    }
    Ok(())
}
