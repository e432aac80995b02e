//! Containers: a dumped tree whose root task lives in a mount namespace other than the dumper's.
//!
//! Such a tree is dumped with its mount tree (through `dormant-mounts`: mounts it recreates, binds of other
//! dumped mounts, external mounts such as the container root and Kata's shared-directory binds, and the
//! outside peer groups its mounts are slaves of) and its other namespaces (uts, ipc, cgroup, net, user,
//! through [`crate::ns::dump_namespaces`]). External mounts and external masters are looked up in the
//! dumper's own mount namespace, so `dormant dump` is run where kata-agent runs (its mount namespace), and
//! no flag is needed for the layout kata-agent builds. `--root DIR` names the container's root filesystem
//! as a directory of the dumper's namespace: checked against `/proc/PID/root` (device and inode) and
//! recorded for the restore. The dump itself needs no dumper-side path of the root: the mount tree is
//! classified from mountinfo, tmpfs contents are read through `/proc/PID/root`.
//!
//! A task that shares the dumper's mount namespace is a plain process dump: nothing here is written, and
//! its namespaces stay the restorer's.
//!
//! What this does NOT do: dump tmpfs file contents (the mounts crate's job) or translate paths of open
//! files between the two namespaces.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use dormant_image::records::{container_names, ContainerRoot, Pid};
use dormant_image::ImageWriter;
use dormant_mounts::{ExternalMap, MountImage};

use crate::error::{DumpError, Result};
use crate::external::External;
use crate::ns::{self, NsDumpSummary};

/// What the caller tells the dumper about a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerOptions {
    /// Mounts to record as external ([`External::Mount`]; other kinds are not about mounts).
    pub externals: Vec<External>,
    /// `--root DIR`: the container's root filesystem as a directory of the dumper's mount namespace. It
    /// must be the root of the tree's mount namespace (checked); it is recorded (`container-root`) as the
    /// default root of a restore given none.
    pub root: Option<PathBuf>,
}

/// What [`dump_container`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSummary {
    pub mounts: usize,
    pub external_mounts: usize,
    pub external_masters: usize,
    pub namespaces: NsDumpSummary,
}

/// The mount namespace inode of `/proc/<who>/ns/mnt`.
fn mnt_ns(who: &str, pid: u32) -> Result<u64> {
    let path = PathBuf::from(format!("/proc/{who}/ns/mnt"));
    std::fs::metadata(&path)
        .map(|m| m.ino())
        .map_err(|source| DumpError::ProcRead { pid, path, source })
}

/// The `NSpid` line of a `/proc/PID/status` text: the pid in every pid namespace, the reader's first.
pub fn parse_ns_pids(status: &str) -> Option<Vec<u32>> {
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    line.split_whitespace().map(|f| f.parse().ok()).collect()
}

/// Checks that `given` (`dump --root`) is the root directory of task `root`'s mount namespace: the same
/// device and inode as `/proc/ROOT/root`. Returns the record to store.
pub fn check_root(root: Pid, given: &Path) -> Result<ContainerRoot> {
    let proc_root = PathBuf::from(format!("/proc/{}/root", root.0));
    let actual = std::fs::metadata(&proc_root).map_err(|source| DumpError::ProcRead {
        pid: root.0,
        path: proc_root.clone(),
        source,
    })?;
    let wrong = |reason: String| DumpError::WrongRoot {
        pid: root.0,
        given: given.to_owned(),
        reason,
    };
    if !given.is_absolute() {
        return Err(wrong("not an absolute path".into()));
    }
    let meta = std::fs::metadata(given).map_err(|e| wrong(e.to_string()))?;
    if (meta.dev(), meta.ino()) != (actual.dev(), actual.ino()) {
        return Err(wrong(format!(
            "it is device {:#x} inode {}, but {} is device {:#x} inode {}",
            meta.dev(),
            meta.ino(),
            proc_root.display(),
            actual.dev(),
            actual.ino()
        )));
    }
    let path = given
        .to_str()
        .ok_or_else(|| wrong("not valid UTF-8".into()))?;
    Ok(ContainerRoot {
        path: path.to_string(),
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// Before a dumped tree is killed: when its root (`pids[0]`) is the init of a pid namespace, sends
/// SIGKILL to every task and returns true, meaning the tasks must be collected in reverse (children
/// first); otherwise does nothing and returns false (parents first, the usual order).
pub fn kill_order(pids: &[u32]) -> bool {
    let Some(&root) = pids.first() else {
        return false;
    };
    let is_init = std::fs::read_to_string(format!("/proc/{root}/status"))
        .ok()
        .and_then(|s| parse_ns_pids(&s))
        .is_some_and(|levels| levels.len() > 1 && levels.last() == Some(&1));
    if !is_init {
        return false;
    }
    for &pid in pids {
        if let Ok(pid) = i32::try_from(pid) {
            // A task already gone is fine: it is collected below all the same.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    log::debug!(
        "pid {root} is a pid namespace init: its tree is killed at once, collected children first"
    );
    true
}

/// Stores the content of external tmpfs directories mounted under `/dev` in the container (Kata's /dev/shm,
/// a bind of the sandbox's shm tmpfs): its files belong to the container's state even though the mount
/// comes from outside. Other external mounts (the rootfs, shared-directory volumes) are not copied.
fn dump_external_tmpfs(
    pid: i32,
    img: &MountImage,
    w: &mut ImageWriter,
) -> dormant_mounts::Result<()> {
    for m in &img.mounts {
        let external = matches!(m.how, dormant_image::records::MountSource::External { .. });
        if !external || m.fstype != "tmpfs" || !m.mountpoint.starts_with("/dev/") {
            continue;
        }
        let dir = PathBuf::from(format!("/proc/{pid}/root{}", m.mountpoint));
        if !dir.is_dir() {
            continue;
        }
        let recs = dormant_mounts::tmpfs::dump_tree(&dir)?;
        log::info!(
            "pid {pid}: external tmpfs {}: {} content records",
            m.mountpoint,
            recs.len()
        );
        w.write_records(&container_names::ext_tmpfs(m.id), &recs)?;
    }
    Ok(())
}

/// Whether task `root` is in a mount namespace other than the dumper's (a container).
pub fn is_container(root: Pid) -> Result<bool> {
    Ok(mnt_ns(&root.0.to_string(), root.0)? != mnt_ns("self", root.0)?)
}

/// Dumps the mount tree and namespaces of the container whose init is `pids[0]` (every pid of the seized
/// tree follows, the tasks frozen). Returns `None`, writing nothing, when the root shares the dumper's
/// mount namespace. Fails before anything is written when a mount cannot be restored or one of its masters
/// cannot be found outside (the error names the mount, its group and the flag).
pub fn dump_container(
    pids: &[Pid],
    opts: &ContainerOptions,
    w: &mut ImageWriter,
) -> Result<Option<ContainerSummary>> {
    let Some(&root) = pids.first() else {
        return Ok(None);
    };
    // Checked first, container or not: a wrong --root refuses the dump before anything is written.
    let checked_root = match &opts.root {
        Some(dir) => {
            let r = check_root(root, dir)?;
            log::info!(
                "pid {}: --root {} is the root of its mount namespace (device {:#x}, inode {})",
                root.0,
                r.path,
                r.dev,
                r.ino
            );
            Some(r)
        }
        None => None,
    };
    if !is_container(root)? {
        return Ok(None);
    }
    let mount_err = |source| DumpError::Mounts {
        pid: root.0,
        source,
    };
    let mut ext = ExternalMap::new();
    for e in &opts.externals {
        if let External::Mount { mountpoint, key } = e {
            ext.insert(mountpoint.as_str(), key.as_str());
        }
    }
    let pid = i32::try_from(root.0).map_err(|_| DumpError::Config {
        pid: root.0,
        reason: "pid out of range",
    })?;
    let img: MountImage = dormant_mounts::dump_namespace(pid, &ext).map_err(mount_err)?;
    img.write(w).map_err(mount_err)?;
    let external_mounts = img
        .mounts
        .iter()
        .filter(|m| matches!(m.how, dormant_image::records::MountSource::External { .. }))
        .count();
    for m in &img.masters {
        log::info!(
            "pid {}: peer group {} is an external master, found at {} (key {:?})",
            root.0,
            m.group.0,
            m.found_at,
            m.key
        );
    }
    if let Some(r) = &checked_root {
        w.write_records(container_names::CONTAINER_ROOT, std::slice::from_ref(r))
            .map_err(|source| DumpError::Image {
                pid: root.0,
                what: container_names::CONTAINER_ROOT.to_string(),
                source,
            })?;
    }
    dump_external_tmpfs(pid, &img, w).map_err(mount_err)?;
    let namespaces = ns::dump_namespaces(pids, w)?;
    let summary = ContainerSummary {
        mounts: img.mounts.len(),
        external_mounts,
        external_masters: img.masters.len(),
        namespaces,
    };
    log::info!("pid {}: container dumped: {summary:?}", root.0);
    Ok(Some(summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_must_be_the_mount_namespace_root() {
        let me = Pid(std::process::id());
        let r = check_root(me, Path::new("/")).unwrap();
        assert_eq!(r.path, "/");
        let err = check_root(me, Path::new("/proc")).unwrap_err().to_string();
        assert!(
            err.contains("--root /proc: not the root of the tree's mount namespace")
                && err.contains(&format!("/proc/{}/root", me.0))
                && err.contains("inode"),
            "{err}"
        );
        let err = check_root(me, Path::new("relative"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an absolute path"), "{err}");
    }

    #[test]
    fn ns_pids_from_status() {
        let status = "Name:\tsh\nTgid:\t4242\nNSpid:\t4242\t1\nNSpgid:\t4242\t1\n";
        assert_eq!(parse_ns_pids(status), Some(vec![4242, 1]));
        assert_eq!(parse_ns_pids("NSpid:\t7\n"), Some(vec![7]));
        assert_eq!(parse_ns_pids("NSpid:\t7\tx\n"), None);
        assert_eq!(parse_ns_pids("Name:\tsh\n"), None);
    }
}
