//! cgroup membership at restore: find where each hierarchy of the image is mounted here (cgroup2, or the
//! v1 mount with the same controllers), pick the directory (the dumped path, or one path given by the
//! caller for every hierarchy), create it when missing, and write the pid into its `cgroup.procs`.

use std::path::{Path, PathBuf};

use dormant_image::records::CgroupLine;
use dormant_mounts::mountinfo::unescape;

use super::error::{NsRestoreError, Result};

/// Where the restored tree's cgroups come from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CgroupTarget {
    /// Stay in the restorer's own cgroups.
    #[default]
    Keep,
    /// The paths the image recorded, in every hierarchy it lists.
    AsDumped,
    /// This path (relative to each hierarchy's root, like `/kata/ID`) in every hierarchy the image lists
    /// (`--cgroup-root`).
    Root(PathBuf),
    /// Exactly these cgroup directories (absolute paths where their hierarchies are mounted here), which
    /// the caller created for the restored container (kata-agent's container cgroups); hierarchies not
    /// named stay the restorer's.
    Dirs(Vec<PathBuf>),
}

impl std::str::FromStr for CgroupTarget {
    type Err = std::convert::Infallible;

    /// `keep`, `dumped`, or an absolute path used in every hierarchy (`--cgroup-root`).
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(match s {
            "keep" => CgroupTarget::Keep,
            "dumped" => CgroupTarget::AsDumped,
            path => CgroupTarget::Root(PathBuf::from(path)),
        })
    }
}

/// A cgroup hierarchy mounted here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    pub mountpoint: PathBuf,
    /// The cgroup the mount shows as its root (field 4 of mountinfo).
    pub root: String,
    /// v1 controllers (and `name=NAME`), sorted; empty for cgroup2.
    pub controllers: Vec<String>,
    pub v2: bool,
}

/// The cgroup mounts listed in mountinfo text.
pub fn parse_cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    const V1_OPTS: [&str; 6] = [
        "rw",
        "ro",
        "noprefix",
        "clone_children",
        "xattr",
        "cpuset_v2_mode",
    ];
    let mut mounts = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        let (Some(root), Some(mp), Some(fstype)) = (pre.get(3), pre.get(4), post.first()) else {
            continue;
        };
        let v2 = *fstype == "cgroup2";
        if !v2 && *fstype != "cgroup" {
            continue;
        }
        let mut controllers: Vec<String> = if v2 {
            Vec::new()
        } else {
            post.get(2)
                .unwrap_or(&"")
                .split(',')
                .filter(|o| !V1_OPTS.contains(o) && !o.starts_with("release_agent="))
                .map(str::to_owned)
                .collect()
        };
        controllers.sort();
        mounts.push(CgroupMount {
            mountpoint: PathBuf::from(unescape(mp)),
            root: unescape(root),
            controllers,
            v2,
        });
    }
    mounts
}

/// The mount of the hierarchy an image line names.
fn mount_for<'a>(mounts: &'a [CgroupMount], line: &CgroupLine) -> Option<&'a CgroupMount> {
    let mut want = line.controllers.clone();
    want.sort();
    mounts.iter().find(|m| {
        if line.is_v2() {
            m.v2
        } else {
            !m.v2 && m.controllers == want
        }
    })
}

/// The `cgroup.procs` files to write for `lines` (one task's cgroups from the image) under `target`.
pub fn resolve_cgroups(
    lines: &[CgroupLine],
    target: &CgroupTarget,
    mounts: &[CgroupMount],
) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    match target {
        CgroupTarget::Keep => return Ok(dirs),
        CgroupTarget::Dirs(given) => return Ok(given.clone()),
        _ => {}
    }
    for line in lines {
        let name = if line.is_v2() {
            "cgroup2".to_owned()
        } else {
            line.controllers.join(",")
        };
        let Some(m) = mount_for(mounts, line) else {
            return Err(NsRestoreError::Cgroup {
                path: PathBuf::from(&line.path),
                reason: format!("the image's hierarchy {name} is not mounted here"),
            });
        };
        let wanted = match target {
            CgroupTarget::Keep | CgroupTarget::Dirs(_) => unreachable!("handled above"),
            CgroupTarget::AsDumped => line.path.clone(),
            CgroupTarget::Root(p) => p.to_string_lossy().into_owned(),
        };
        // The mount may show a sub-tree (a container's own cgroup): paths are relative to its root.
        let rel = if m.root == "/" {
            wanted.as_str()
        } else {
            wanted
                .strip_prefix(m.root.as_str())
                .ok_or_else(|| NsRestoreError::Cgroup {
                    path: PathBuf::from(&wanted),
                    reason: format!(
                        "hierarchy {name} is mounted at {} showing only {}",
                        m.mountpoint.display(),
                        m.root
                    ),
                })?
        };
        let rel = Path::new(rel.trim_start_matches('/'));
        if rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(NsRestoreError::Cgroup {
                path: rel.to_owned(),
                reason: "a cgroup path may not contain `..` or `.`".into(),
            });
        }
        dirs.push(m.mountpoint.join(rel));
    }
    Ok(dirs)
}

/// Moves process `pid` (0 = the caller) into every directory of `dirs`, creating missing ones.
pub fn join_cgroups(pid: u32, dirs: &[PathBuf]) -> Result<()> {
    for dir in dirs {
        std::fs::create_dir_all(dir).map_err(|source| NsRestoreError::File {
            what: "creating cgroup",
            path: dir.clone(),
            source,
        })?;
        let procs = dir.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string()).map_err(|source| NsRestoreError::File {
            what: "joining cgroup",
            path: procs,
            source,
        })?;
        log::debug!("pid {pid} joined cgroup {}", dir.display());
    }
    Ok(())
}

/// The cgroup mounts of the calling process's mount namespace.
pub fn own_cgroup_mounts() -> Result<Vec<CgroupMount>> {
    let path = PathBuf::from("/proc/self/mountinfo");
    let text = std::fs::read_to_string(&path).map_err(|source| NsRestoreError::File {
        what: "reading",
        path,
        source,
    })?;
    Ok(parse_cgroup_mounts(&text))
}

/// The cgroup directories the root task joins (none with `CgroupTarget::Keep`).
pub(super) fn plan(
    src: &super::read::Source<'_>,
    root: dormant_image::records::Pid,
    target: &CgroupTarget,
) -> Result<Vec<PathBuf>> {
    use dormant_image::records::{ns_names, TaskCgroups};
    if *target == CgroupTarget::Keep {
        return Ok(Vec::new());
    }
    let all: Vec<TaskCgroups> = src.records(ns_names::CGROUPS)?;
    let lines = all
        .into_iter()
        .find(|t| t.pid == root)
        .map(|t| t.lines)
        .ok_or_else(|| {
            src.bad(format!(
                "{} has no entry for the root task {}",
                ns_names::CGROUPS,
                root.0
            ))
        })?;
    resolve_cgroups(&lines, target, &own_cgroup_mounts()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: &str = "\
30 1 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpuacct,cpu
33 30 0:29 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
34 30 0:30 /sub /sys/fs/cgroup/uni\\040fied rw - cgroup2 cgroup2 rw
";

    fn line(h: u32, c: &[&str], p: &str) -> CgroupLine {
        CgroupLine {
            hierarchy: h,
            controllers: c.iter().map(|s| s.to_string()).collect(),
            path: p.into(),
        }
    }

    #[test]
    fn finds_hierarchies_and_paths() {
        let m = parse_cgroup_mounts(MI);
        assert_eq!(m.len(), 4);
        assert_eq!(m[1].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(m[2].controllers, vec!["name=systemd"]);
        assert_eq!(m[3].mountpoint, PathBuf::from("/sys/fs/cgroup/uni fied"));
        let lines = [line(3, &["cpuacct", "cpu"], "/a/b"), line(0, &[], "/sub/c")];
        let dirs = resolve_cgroups(&lines, &CgroupTarget::AsDumped, &m).unwrap();
        assert_eq!(
            dirs,
            vec![
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/a/b"),
                PathBuf::from("/sys/fs/cgroup/uni fied/c")
            ]
        );
        let dirs = resolve_cgroups(&lines[..1], &CgroupTarget::Root("/x".into()), &m).unwrap();
        assert_eq!(dirs, vec![PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/x")]);
        assert!(resolve_cgroups(&lines, &CgroupTarget::Keep, &m)
            .unwrap()
            .is_empty());
        // Not mounted, outside the mount's root, or escaping with `..`: refused.
        assert!(
            resolve_cgroups(&[line(5, &["memory"], "/")], &CgroupTarget::AsDumped, &m).is_err()
        );
        assert!(resolve_cgroups(&[line(0, &[], "/other")], &CgroupTarget::AsDumped, &m).is_err());
        assert!(resolve_cgroups(
            &[line(3, &["cpu", "cpuacct"], "/a/../..")],
            &CgroupTarget::AsDumped,
            &m
        )
        .is_err());
    }
}
