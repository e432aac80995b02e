//! A process's file-system context: working directory, root directory and umask, carried in
//! [`super::TaskCore`] (`cwd`, `root`, `umask`) as paths in the task's mount namespace, and what a
//! removed working or root directory looked like ([`RemovedDir`]).

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use crate::error::Problems;

/// Suffix the kernel appends to the path of a removed directory.
pub const DELETED_SUFFIX: &str = " (deleted)";

/// A working or root directory that was removed (`rmdir`) while the task was in it. Nothing else is left
/// of it: a removed directory is empty and has no name, so its permission bits and owner are all a
/// restore can give the stand-in it creates, enters and removes again.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedDir {
    /// Permission bits (`st_mode & 07777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Checks that the paths can be handed to `chdir`/`chroot` (no NUL byte), the umask is a mode, and a
/// removed directory's record goes with a path the kernel marked removed.
/// `cwd` and `root` are each the path with its removed directory's record.
pub(crate) fn check_fs(
    file: &str,
    cwd: (&str, Option<RemovedDir>),
    root: (&str, Option<RemovedDir>),
    umask: u32,
    p: &mut Problems,
) {
    let dirs = [
        ("working directory", cwd.0, cwd.1),
        ("root directory", root.0, root.1),
    ];
    for (what, path, removed) in dirs {
        if path.contains('\0') {
            p.add(file, format!("{what} {path:?} contains NUL"));
        }
        if let Some(dir) = removed {
            if !path.ends_with(DELETED_SUFFIX) {
                p.add(
                    file,
                    format!("{what} {path:?} has a removed directory's record but was not removed"),
                );
            }
            if dir.mode & !0o7777 != 0 {
                p.add(
                    file,
                    format!(
                        "removed {what}: mode {:#o} is not a permission mode",
                        dir.mode
                    ),
                );
            }
        }
    }
    if umask & !0o777 != 0 {
        p.add(file, format!("umask {umask:#o} is not a permission mode"));
    }
}
