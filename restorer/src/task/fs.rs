//! The task's filesystem context: working directory, root directory (a chrooted task) and umask. The
//! saved paths are in the dumper's view, like the task's files; the child changes to them before it
//! enters the blob.

use std::ffi::{CStr, CString};
use std::path::Path;

use dormant_restorer_proto::Step;

use super::ChildFailed;
use crate::error::RestoreError;
use crate::image::TaskImage;

#[derive(Debug)]
pub struct TaskFs {
    /// Working directory to change to (absolute), if known.
    pub cwd: Option<CString>,
    /// Root directory to `chroot` into after the `chdir`, when the task was chrooted.
    pub root: Option<CString>,
    pub umask: Option<u32>,
}

pub fn prepare(dir: &Path, task: &TaskImage) -> Result<TaskFs, RestoreError> {
    let core = &task.core;
    let path = |p: &str, what: &str| {
        CString::new(p).map_err(|_| RestoreError::BadImage {
            dir: dir.to_owned(),
            reason: format!("pid {}: {what} {p:?} contains NUL", task.pid.0),
        })
    };
    let root = if core.root.is_empty() || core.root == "/" {
        None
    } else {
        Some(path(&core.root, "root directory")?)
    };
    let cwd = if core.cwd.is_empty() {
        None
    } else {
        Some(path(&core.cwd, "working directory")?)
    };
    Ok(TaskFs {
        cwd,
        root,
        umask: Some(core.umask),
    })
}

/// In the child: `chdir`, then `chroot` (the saved cwd is a path in the restorer's view, under the root;
/// and this runs after the task forked its children, each of which changes directory itself, from the
/// restorer's view, before its own chroot), then the umask. Allocation-free.
pub fn apply(
    cwd: Option<&CStr>,
    root: Option<&CStr>,
    umask: Option<u32>,
) -> Result<(), ChildFailed> {
    if let Some(dir) = cwd {
        // SAFETY: `dir` is a NUL-terminated path prepared before the fork.
        if unsafe { libc::chdir(dir.as_ptr()) } != 0 {
            return Err(ChildFailed::errno(Step::ChildChdir, 0));
        }
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
