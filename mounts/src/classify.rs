//! Dump side: decides for every mount of a namespace how restore gets it back ([`MountSource`]), and finds
//! the outside mounts that carry the peer groups its mounts are slaves of.
//!
//! Order of the decision, per mount (tree order, so every source is decided before its binds):
//! 1. named with `--external mnt[MOUNTPOINT]:KEY` → external under KEY;
//! 2. a bind of an earlier dumped mount (same device, that mount's root contains this one's) → clone it;
//! 3. a slave of a group no dumped mount carries, or a filesystem also mounted in the dumper's namespace
//!    (Kata's shared-directory binds, device nodes bound from devtmpfs) → external, keyed by the outside path;
//! 4. a filesystem dormant recreates (proc, sysfs, tmpfs, devpts, mqueue, cgroup2), mounted at its root →
//!    created anew;
//! 5. otherwise the dump fails naming the mount and the option that resolves it.

use std::collections::BTreeSet;

use dormant_image::records::{ExternalMaster, MountSource, PeerGroup};

use crate::error::{MountError, Result};
use crate::external::ExternalMap;
use crate::image::MountImage;
use crate::mountinfo::{sub_path, MountInfo, MountTree};

/// Filesystems restore mounts anew instead of binding them from somewhere.
pub const RECREATED_FS: &[&str] = &["proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup2"];

fn join(base: &str, rel: &str) -> String {
    if rel.is_empty() {
        base.to_string()
    } else if base.ends_with('/') {
        format!("{base}{rel}")
    } else {
        format!("{base}/{rel}")
    }
}

/// The outside mount `m` is a bind of and the path that reaches `m`'s root through it: preferably one that
/// carries `m`'s master group, then the one with the longest root.
fn find_outside<'a>(m: &MountInfo, outside: &'a MountTree) -> Option<(&'a MountInfo, String)> {
    let mut best: Option<(&MountInfo, &str)> = None;
    for o in outside.mounts.iter().filter(|o| o.dev == m.dev) {
        let Some(rel) = sub_path(&o.root, &m.root) else {
            continue;
        };
        let carries = |x: &MountInfo| m.master.is_some() && x.shared == m.master;
        let better = match best {
            None => true,
            Some((b, _)) => (carries(o), o.root.len()) > (carries(b), b.root.len()),
        };
        if better {
            best = Some((o, rel));
        }
    }
    best.map(|(o, rel)| (o, join(&o.mountpoint, rel)))
}

/// Builds the mount image of a namespace whose mountinfo is `inside`, as seen by a dumper whose own
/// namespace's mountinfo is `outside`.
pub fn classify(
    inside: &MountTree,
    outside: &MountTree,
    ext: &ExternalMap,
    pid: i32,
) -> Result<MountImage> {
    let order = inside.tree_order();
    let root = *order.first().ok_or(MountError::NoRoot { pid })?;
    let skipped = inside.mounts.len() - order.len();
    if skipped > 0 {
        log::warn!(
            "pid {pid}: {skipped} mounts are not reachable from the root and are not dumped"
        );
    }
    let internal: BTreeSet<PeerGroup> = order.iter().filter_map(|m| m.shared).collect();
    let mut img = MountImage::default();
    let mut masters: Vec<ExternalMaster> = Vec::new();

    for (i, m) in order.iter().enumerate() {
        let outside_master = m.master.filter(|g| !internal.contains(g));
        let how = if m.id == root.id {
            MountSource::Root
        } else if let Some(key) = ext.get(&m.mountpoint) {
            MountSource::External {
                key: key.to_string(),
            }
        } else if let Some(src) = order[..i]
            .iter()
            .filter(|s| s.dev == m.dev && sub_path(&s.root, &m.root).is_some())
            .max_by_key(|s| s.root.len())
        {
            MountSource::BindOf { of: src.id }
        } else if let Some((_, path)) = find_outside(m, outside) {
            MountSource::External { key: path }
        } else if RECREATED_FS.contains(&m.fstype.as_str())
            && m.root == "/"
            && outside_master.is_none()
        {
            MountSource::NewFs
        } else if outside_master.is_some() {
            return Err(MountError::UnreachableMaster {
                mountpoint: m.mountpoint.clone(),
                group: outside_master.map_or(0, |g| g.0),
            });
        } else {
            return Err(MountError::NotRestorable {
                mountpoint: m.mountpoint.clone(),
                fstype: m.fstype.clone(),
                fs_source: m.source.clone(),
                root: m.root.clone(),
            });
        };

        if let Some(g) = outside_master {
            if !masters.iter().any(|x| x.group == g) {
                let carrier = outside.mounts.iter().find(|o| o.shared == Some(g));
                let entry = match (carrier, &how) {
                    (Some(o), _) => ExternalMaster {
                        group: g,
                        key: ext.get(&o.mountpoint).unwrap_or(&o.mountpoint).to_string(),
                        found_at: o.mountpoint.clone(),
                    },
                    // Named external by the user: restore joins whatever group its source's mount has.
                    (None, MountSource::External { key }) if ext.get(&m.mountpoint).is_some() => {
                        ExternalMaster {
                            group: g,
                            key: key.clone(),
                            found_at: String::new(),
                        }
                    }
                    (None, _) => {
                        return Err(MountError::UnreachableMaster {
                            mountpoint: m.mountpoint.clone(),
                            group: g.0,
                        })
                    }
                };
                log::info!(
                    "pid {pid}: mount {} is a slave of outside group {} carried by {:?} (key {})",
                    m.mountpoint,
                    g.0,
                    entry.found_at,
                    entry.key
                );
                masters.push(entry);
            }
        }

        img.mounts
            .push(m.entry((m.id != root.id).then_some(m.parent), how));
    }
    img.masters = masters;
    Ok(img)
}

/// Dumps the mount namespace of `pid` as seen from the caller's own mount namespace (whose mounts are the
/// candidates for external mounts and external masters).
pub fn dump_namespace(pid: i32, ext: &ExternalMap) -> Result<MountImage> {
    let inside = MountTree::read(Some(pid))?;
    let outside = MountTree::read(None)?;
    let mut img = classify(&inside, &outside, ext, pid)?;
    // What the restore would fail to plan is refused now, before anything is written.
    crate::plan::plan(&img)?;
    // Each tmpfs is read through a clone of that mount alone: what its submounts cover and the whole of
    // a tmpfs an over-mount hides are part of its content.
    let ids: Vec<_> = img
        .mounts
        .iter()
        .filter(|m| m.how == MountSource::NewFs && m.fstype == "tmpfs")
        .map(|m| m.id)
        .collect();
    for (id, fd) in crate::reach::clone_mounts(pid, &inside, &ids)? {
        use std::os::fd::AsRawFd;
        // The trailing slash makes the walk follow the descriptor's link to the clone's root.
        let dir = std::path::PathBuf::from(format!("/proc/self/fd/{}/", fd.as_raw_fd()));
        let recs = crate::tmpfs::dump_tree(&dir)?;
        let mp = inside.get(id).map_or("?", |m| m.mountpoint.as_str());
        log::info!("pid {pid}: tmpfs {mp}: {} records", recs.len());
        img.tmpfs.insert(id, recs);
    }
    Ok(img)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sub_path_is_component_wise() {
        assert_eq!(sub_path("/", "/a/b"), Some("a/b"));
        assert_eq!(sub_path("/", "/"), Some(""));
        assert_eq!(sub_path("/a", "/a"), Some(""));
        assert_eq!(sub_path("/a", "/a/b"), Some("b"));
        assert_eq!(sub_path("/a", "/ab"), None);
        assert_eq!(sub_path("/a/b", "/a"), None);
    }

    const OUTSIDE: &str = "\
20 1 0:30 / /agent rw,relatime - tmpfs agent rw
21 20 0:31 / /agent/shared rw,relatime shared:5 - tmpfs kata-shared rw
22 20 0:32 / /agent/sandbox/shm rw,relatime shared:6 - tmpfs sandbox-shm rw
23 1 0:5 / /dev rw,nosuid - devtmpfs udev rw
";

    const INSIDE: &str = "\
100 99 0:31 /ctr0/rootfs / rw,relatime master:5 - tmpfs kata-shared rw
101 100 0:40 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
102 100 0:41 / /dev rw,relatime - tmpfs ctr-dev rw,mode=755
103 102 0:5 /null /dev/null rw,nosuid - devtmpfs udev rw
104 102 0:32 / /dev/shm rw,relatime master:6 - tmpfs sandbox-shm rw
105 100 0:31 /ctr0/hosts /etc/hosts rw,relatime master:5 - tmpfs kata-shared rw
";

    #[test]
    fn kata_layout_classifies_with_external_masters() {
        let inside = MountTree::parse(INSIDE).unwrap();
        let outside = MountTree::parse(OUTSIDE).unwrap();
        let img = classify(&inside, &outside, &ExternalMap::new(), 1).unwrap();
        let how: Vec<_> = img
            .mounts
            .iter()
            .map(|m| (m.mountpoint.as_str(), m.how.clone()))
            .collect();
        assert_eq!(
            how,
            vec![
                ("/", MountSource::Root),
                ("/proc", MountSource::NewFs),
                ("/dev", MountSource::NewFs),
                (
                    "/etc/hosts",
                    MountSource::External {
                        key: "/agent/shared/ctr0/hosts".into()
                    }
                ),
                (
                    "/dev/null",
                    MountSource::External {
                        key: "/dev/null".into()
                    }
                ),
                (
                    "/dev/shm",
                    MountSource::External {
                        key: "/agent/sandbox/shm".into()
                    }
                ),
            ]
        );
        let masters: Vec<_> = img
            .masters
            .iter()
            .map(|m| (m.group.0, m.key.as_str()))
            .collect();
        assert_eq!(
            masters,
            vec![(5, "/agent/shared"), (6, "/agent/sandbox/shm")]
        );
    }

    #[test]
    fn unreachable_master_names_mount_group_and_flag() {
        let inside = MountTree::parse(INSIDE).unwrap();
        // The dumper's namespace has the sandbox shm, but private: group 6 is nowhere.
        let outside = MountTree::parse(&OUTSIDE.replace(" shared:6", "")).unwrap();
        let err = classify(&inside, &outside, &ExternalMap::new(), 1).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, MountError::UnreachableMaster { group: 6, .. }),
            "{text}"
        );
        assert!(
            text.contains("/dev/shm") && text.contains("master:6"),
            "{text}"
        );
        assert!(text.contains("--external mnt[/dev/shm]:KEY"), "{text}");
    }

    #[test]
    fn named_external_accepts_an_unfindable_master() {
        let inside = MountTree::parse(INSIDE).unwrap();
        let outside = MountTree::parse(&OUTSIDE.replace(" shared:6", "")).unwrap();
        let mut ext = ExternalMap::new();
        ext.insert("/dev/shm", "shm");
        let img = classify(&inside, &outside, &ext, 1).unwrap();
        let shm = img.masters.iter().find(|m| m.group.0 == 6).unwrap();
        assert_eq!(shm.key, "shm");
    }
}
