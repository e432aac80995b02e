//! Open files of `/proc` ([`super::DescKind::Proc`]): what the file names under its proc mount, so restore
//! reopens it about the restored process. A file under `/proc/PID/` is carried only when PID is a live
//! process or thread of the dumped tree (restore keeps pids); the others (`/proc/meminfo`,
//! `/proc/sys/...`) are reopened by path.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use super::DescId;
use crate::error::Problems;
use crate::records::file_names::FILE_DESCS;
use crate::records::ids::Pid;

/// One open file (or directory) of a proc mount. Its access mode and status flags are
/// [`super::FileDesc::flags`].
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcFile {
    /// Where the proc mount is mounted, absolute, in the dumped tree's mount namespace (which was the
    /// dumper's): `/proc` as a rule.
    pub mount: String,
    /// The process or thread the file is about: the first component under the mount (`/proc/PID/...`,
    /// also for a thread's own `/proc/TID/...`), in the pid namespace the mount shows (the dumper's).
    /// `None` for files about no process.
    pub pid: Option<u32>,
    /// The rest of the path, relative to `mount/PID` (or to `mount` when `pid` is `None`), without a
    /// leading `/`; empty for that directory itself.
    pub path: String,
    /// The file position (for a directory, the `getdents` position).
    pub pos: u64,
    /// Whether it is a directory.
    pub dir: bool,
}

impl ProcFile {
    /// The path to open: `mount/PID/path` or `mount/path`.
    pub fn full_path(&self) -> String {
        let mut p = self.mount.trim_end_matches('/').to_string();
        if let Some(pid) = self.pid {
            p.push('/');
            p.push_str(&pid.to_string());
        }
        if !self.path.is_empty() {
            p.push('/');
            p.push_str(&self.path);
        }
        p
    }
}

/// Checks that a proc file names a process or thread of the image, and a path that stays under its mount.
pub(crate) fn check_proc(desc: DescId, f: &ProcFile, tasks: &BTreeSet<Pid>, p: &mut Problems) {
    let mut bad = |why: String| p.add(FILE_DESCS, format!("proc file {}: {why}", desc.0));
    if !f.mount.starts_with('/') {
        bad(format!("mount {:?} is not absolute", f.mount));
    }
    if f.path.starts_with('/') || f.path.split('/').any(|c| c == "..") {
        bad(format!("path {:?} leaves its directory", f.path));
    }
    if let Some(pid) = f.pid {
        if !tasks.contains(&Pid(pid)) {
            bad(format!("pid {pid} is no process or thread of the image"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let f = ProcFile {
            mount: "/proc".into(),
            pid: Some(12),
            path: "task/13/comm".into(),
            pos: 0,
            dir: false,
        };
        assert_eq!(f.full_path(), "/proc/12/task/13/comm");
        let g = ProcFile {
            mount: "/proc/".into(),
            pid: None,
            path: "sys/kernel/pid_max".into(),
            ..f.clone()
        };
        assert_eq!(g.full_path(), "/proc/sys/kernel/pid_max");
        let h = ProcFile {
            path: String::new(),
            ..f
        };
        assert_eq!(h.full_path(), "/proc/12");
    }
}
