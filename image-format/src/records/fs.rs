//! A process's file-system context: working directory, root directory and umask, carried in
//! [`super::TaskCore`] (`cwd`, `root`, `umask`) as paths in the task's mount namespace.

use crate::error::Problems;

/// Checks that the paths can be handed to `chdir`/`chroot` (no NUL byte) and the umask is a mode.
pub(crate) fn check_fs(file: &str, cwd: &str, root: &str, umask: u32, p: &mut Problems) {
    for (what, path) in [("working directory", cwd), ("root directory", root)] {
        if path.contains('\0') {
            p.add(file, format!("{what} {path:?} contains NUL"));
        }
    }
    if umask & !0o777 != 0 {
        p.add(file, format!("umask {umask:#o} is not a permission mode"));
    }
}
