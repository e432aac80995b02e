//! Open files of `/proc` ([`DescKind::Proc`]): the file is recorded by what it names under its proc mount
//! (the pid part, the rest of the path, flags, offset, directory or not), and the restored task reopens it
//! itself once every task and thread of the tree exists, so `/proc/PID/...` names the restored process
//! (pids are kept). The link of the fd already names the pid (`/proc/self/maps` reads `/proc/1234/maps`).
//!
//! Refused, naming pid, fd, path and why: a file about a pid that is not a live process or thread of the
//! dump (outside the tree, a zombie, or one that exited: its link ends in ` (deleted)`), a container dump
//! (the container's proc mounts are replaced only right before release), a proc mount that shows another
//! pid namespace than the dumper's, a task whose root is not the dumper's, a description shared with
//! another process (each restored task opens its own), and locks, an owner (`F_SETOWN`) or `O_ASYNC` on it.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;

use dormant_image::records::{DescKind, ProcFile};

use super::error::FdError;

/// What a proc file of the dump may be about.
#[derive(Debug, Default)]
pub struct ProcTargets {
    /// Every live task and thread of the dump (tid), with its process (pid).
    pub tasks: HashMap<u32, u32>,
    /// The dump's zombies.
    pub zombies: HashSet<u32>,
    /// Why no proc file can be carried at all in this dump (a container), if so.
    pub refused: Option<&'static str>,
}

/// What one proc fd is, as fdinfo and the link give it.
#[derive(Debug)]
pub struct ProcFd<'a> {
    pub pid: u32,
    pub fd: i32,
    pub target: &'a str,
    pub pos: u64,
    pub mnt_id: u64,
}

/// The description of a proc fd.
pub fn dump(f: &ProcFd<'_>, targets: &ProcTargets) -> Result<DescKind, FdError> {
    let refuse = |why: String| FdError::ProcFile {
        path: f.target.to_string(),
        why,
    };
    if let Some(why) = targets.refused {
        return Err(refuse(why.into()));
    }
    if f.target.ends_with(super::table::DELETED) {
        return Err(refuse(
            "the process it is about has exited (nothing to reopen it on)".into(),
        ));
    }
    let dir = std::fs::metadata(format!("/proc/{}/fd/{}", f.pid, f.fd))
        .map_err(|e| refuse(format!("stat: {e} (the process it is about has exited?)")))?
        .is_dir();
    same_root(f.pid).map_err(refuse)?;
    let tree = dormant_mounts::mountinfo::MountTree::read(Some(f.pid as i32))
        .map_err(|e| refuse(format!("reading the mounts of pid {}: {e}", f.pid)))?;
    let mnt = tree
        .mounts
        .iter()
        .find(|m| u64::from(m.id.0) == f.mnt_id)
        .ok_or_else(|| refuse(format!("mount {} is not in its mountinfo", f.mnt_id)))?;
    let mount = mnt.mountpoint.clone();
    let rel = relative(f.target, &mount)
        .ok_or_else(|| refuse(format!("not under its proc mount {mount}")))?;
    // A bind of a subdirectory of proc (`/proc/sys` read-only) reopens by path through the same bind.
    let (pid, path) = if mnt.root == "/" {
        split_pid(rel)
    } else {
        if split_pid(&format!("{}/{rel}", mnt.root.trim_start_matches('/')))
            .0
            .is_some()
        {
            return Err(refuse(format!(
                "mount {mount} is a bind of a process's directory {}",
                mnt.root
            )));
        }
        (None, rel.to_string())
    };
    if let Some(p) = pid {
        same_pid_namespace(&mount).map_err(refuse)?;
        check_target(p, &path, targets).map_err(refuse)?;
    }
    Ok(DescKind::Proc(ProcFile {
        mount,
        pid,
        path,
        pos: f.pos,
        dir,
    }))
}

/// `target` relative to `mount` (no leading `/`), if it is under it.
fn relative<'a>(target: &'a str, mount: &str) -> Option<&'a str> {
    if mount == "/" {
        return target.strip_prefix('/');
    }
    let rest = target.strip_prefix(mount)?;
    if rest.is_empty() {
        return Some("");
    }
    rest.strip_prefix('/')
}

/// The pid part of a path relative to a proc root (`1234/maps` → 1234, `maps`), if it starts with one.
fn split_pid(rel: &str) -> (Option<u32>, String) {
    let (first, rest) = rel.split_once('/').unwrap_or((rel, ""));
    match first.parse::<u32>() {
        Ok(p) if !first.starts_with('0') && !first.starts_with('+') => (Some(p), rest.to_string()),
        _ => (None, rel.to_string()),
    }
}

/// Checks that pid `p` (and the thread of `task/TID/...` in `path`) is a live task of the dump.
fn check_target(p: u32, path: &str, targets: &ProcTargets) -> Result<(), String> {
    if targets.zombies.contains(&p) {
        return Err(format!(
            "pid {p} is a zombie of the dump (it is recreated only to be reaped)"
        ));
    }
    let Some(&process) = targets.tasks.get(&p) else {
        return Err(format!("pid {p} is not a process or thread of the dump"));
    };
    let mut comps = path.split('/');
    if comps.next() == Some("task") {
        if let Some(t) = comps.next().filter(|t| !t.is_empty()) {
            let tid: u32 = t
                .parse()
                .map_err(|_| format!("task/{t} is not a thread id"))?;
            if targets.tasks.get(&tid) != Some(&process) {
                return Err(format!(
                    "thread {tid} is not a thread of pid {process} in the dump"
                ));
            }
        }
    }
    Ok(())
}

/// The task's root must be the dumper's: the recorded mount point is a path of the dumper's view.
fn same_root(pid: u32) -> Result<(), String> {
    let theirs = std::fs::metadata(format!("/proc/{pid}/root"))
        .map_err(|e| format!("stat of its root: {e}"))?;
    let ours = std::fs::metadata("/").map_err(|e| format!("stat of /: {e}"))?;
    if (theirs.dev(), theirs.ino()) != (ours.dev(), ours.ino()) {
        return Err("the process's root directory is not the dumper's".into());
    }
    Ok(())
}

/// The proc mount must show the dumper's pid namespace, in which the dump's pids are read: its `self`
/// is the dumper's pid.
pub fn same_pid_namespace(mount: &str) -> Result<(), String> {
    let me = std::process::id().to_string();
    match std::fs::read_link(format!("{}/self", mount.trim_end_matches('/'))) {
        Ok(p) if p.as_os_str() == me.as_str() => Ok(()),
        Ok(p) => Err(format!(
            "proc mount {mount} shows another pid namespace (its self is {}, the dumper is {me})",
            p.display()
        )),
        Err(e) => Err(format!(
            "proc mount {mount}: reading self: {e} (another pid namespace?)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(relative("/proc/12/maps", "/proc"), Some("12/maps"));
        assert_eq!(relative("/proc", "/proc"), Some(""));
        assert_eq!(relative("/procx/1", "/proc"), None);
        assert_eq!(relative("/x/y", "/"), Some("x/y"));
        assert_eq!(split_pid("12/maps"), (Some(12), "maps".into()));
        assert_eq!(split_pid("12"), (Some(12), String::new()));
        assert_eq!(split_pid("meminfo"), (None, "meminfo".into()));
        assert_eq!(
            split_pid("sys/kernel/pid_max"),
            (None, "sys/kernel/pid_max".into())
        );
    }

    #[test]
    fn targets() {
        let t = ProcTargets {
            tasks: [(10, 10), (11, 10), (20, 20)].into(),
            zombies: [30].into(),
            refused: None,
        };
        assert!(check_target(10, "maps", &t).is_ok());
        assert!(check_target(11, "comm", &t).is_ok());
        assert!(check_target(10, "task/11/comm", &t).is_ok());
        assert!(check_target(10, "task", &t).is_ok());
        assert!(check_target(10, "task/20/comm", &t)
            .unwrap_err()
            .contains("thread 20"));
        assert!(check_target(30, "stat", &t).unwrap_err().contains("zombie"));
        assert!(check_target(40, "stat", &t)
            .unwrap_err()
            .contains("pid 40 is not"));
    }

    /// This process's own `/proc/self/status`: recorded with its pid, and refused when the pid is not
    /// in the dump.
    #[test]
    fn own_status() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let me = std::process::id();
        let mut f = std::fs::File::open("/proc/self/status").unwrap();
        let mut buf = [0u8; 5];
        f.read_exact(&mut buf).unwrap();
        let fd = f.as_raw_fd();
        let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        let target = target.to_str().unwrap();
        let info = crate::proc::fdinfo::parse(
            &std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap(),
        )
        .unwrap();
        let pf = ProcFd {
            pid: me,
            fd,
            target,
            pos: info.pos,
            mnt_id: info.mnt_id,
        };
        let mut t = ProcTargets::default();
        let e = dump(&pf, &t).unwrap_err().to_string();
        assert!(e.contains(&format!("pid {me} is not")), "{e}");
        t.tasks.insert(me, me);
        let DescKind::Proc(got) = dump(&pf, &t).unwrap() else {
            panic!()
        };
        assert_eq!(got.pid, Some(me));
        assert_eq!(got.path, "status");
        assert_eq!(got.pos, 5);
        assert!(!got.dir);
        assert_eq!(got.full_path(), format!("/proc/{me}/status"));
        t.refused = Some("container");
        assert!(dump(&pf, &t).is_err());
    }
}
