//! `cg_root` at RESTORE: the cgroups the restored tree is put in. The restored tasks are forked by this
//! process, so joining each cgroup ourselves before the restore puts the whole tree there (a runtime
//! usually moved us already; joining again is harmless and honours what the request says).

use std::path::{Path, PathBuf};

use dormant_restorer::ns::{join_cgroups, own_cgroup_mounts, CgroupMount};

use crate::error::RpcError;
use crate::opts::CgroupJoin;

/// Whether mount `m` is the hierarchy `ctrl` names (`""`: cgroup2; `"cpu"` matches a v1 `cpu,cpuacct`
/// mount; `"name=systemd"` a named one).
fn names(m: &CgroupMount, ctrl: &str) -> bool {
    if ctrl.is_empty() {
        return m.v2;
    }
    !m.v2
        && ctrl
            .split(',')
            .all(|c| m.controllers.iter().any(|x| x == c))
}

/// The directory of cgroup `path` (from its hierarchy's root) under mount `m`.
fn dir_under(m: &CgroupMount, path: &str) -> Result<PathBuf, RpcError> {
    let rel = if m.root == "/" {
        path
    } else {
        path.strip_prefix(m.root.as_str())
            .ok_or_else(|| RpcError::Cgroup {
                path: PathBuf::from(path),
                what: format!(
                    "its hierarchy is mounted at {} showing only {}",
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
        return Err(RpcError::Cgroup {
            path: rel.to_owned(),
            what: "a cgroup path may not contain `..` or `.`".into(),
        });
    }
    Ok(m.mountpoint.join(rel))
}

/// The directories to join for `joins`, in our mount namespace's cgroup mounts.
pub fn resolve(joins: &[CgroupJoin], mounts: &[CgroupMount]) -> Result<Vec<PathBuf>, RpcError> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for j in joins {
        let matching: Vec<&CgroupMount> = mounts
            .iter()
            .filter(|m| j.ctrl.as_deref().is_none_or(|c| names(m, c)))
            .collect();
        if matching.is_empty() {
            log::warn!(
                "cg_root {:?}:{}: no such cgroup hierarchy is mounted here; ignored",
                j.ctrl.as_deref().unwrap_or("*"),
                j.path
            );
        }
        for m in matching {
            let d = dir_under(m, &j.path)?;
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
    }
    Ok(dirs)
}

/// Moves this process into the cgroups of `joins`.
pub fn join(joins: &[CgroupJoin]) -> Result<(), RpcError> {
    if joins.is_empty() {
        return Ok(());
    }
    let mounts = own_cgroup_mounts().map_err(|e| RpcError::Cgroup {
        path: PathBuf::from("/proc/self/mountinfo"),
        what: e.to_string(),
    })?;
    let dirs = resolve(joins, &mounts)?;
    for d in &dirs {
        if !d.is_dir() {
            return Err(RpcError::Cgroup {
                path: d.clone(),
                what: "does not exist (cg_root names a cgroup the runtime has not created)".into(),
            });
        }
    }
    join_cgroups(0, &dirs).map_err(|e| RpcError::Cgroup {
        path: dirs.first().cloned().unwrap_or_default(),
        what: e.to_string(),
    })?;
    log::info!("joined {} cgroup(s) of cg_root", dirs.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(mp: &str, root: &str, ctrls: &[&str], v2: bool) -> CgroupMount {
        CgroupMount {
            mountpoint: mp.into(),
            root: root.into(),
            controllers: ctrls.iter().map(|s| s.to_string()).collect(),
            v2,
        }
    }

    #[test]
    fn cg_roots_resolve_per_hierarchy() {
        let mounts = vec![
            mount(
                "/sys/fs/cgroup/cpu,cpuacct",
                "/",
                &["cpu", "cpuacct"],
                false,
            ),
            mount("/sys/fs/cgroup/memory", "/", &["memory"], false),
            mount("/sys/fs/cgroup/systemd", "/", &["name=systemd"], false),
            mount("/sys/fs/cgroup/unified", "/", &[], true),
        ];
        let j = |ctrl: Option<&str>, path: &str| CgroupJoin {
            ctrl: ctrl.map(str::to_string),
            path: path.into(),
        };
        let dirs = resolve(
            &[
                j(Some("cpu"), "/ct1"),
                j(Some("cpuacct"), "/ct1"),
                j(Some("memory"), "/x/ct1"),
                j(Some("name=systemd"), "/ct1"),
                j(Some(""), "/ct1"),
                j(Some("net_cls"), "/ct1"),
            ],
            &mounts,
        )
        .unwrap();
        let want: Vec<PathBuf> = [
            "/sys/fs/cgroup/cpu,cpuacct/ct1",
            "/sys/fs/cgroup/memory/x/ct1",
            "/sys/fs/cgroup/systemd/ct1",
            "/sys/fs/cgroup/unified/ct1",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(dirs, want);
        let all = resolve(&[j(None, "/k")], &mounts).unwrap();
        assert_eq!(all.len(), 4);
        assert!(resolve(&[j(Some("memory"), "/a/../b")], &mounts).is_err());
    }
}
