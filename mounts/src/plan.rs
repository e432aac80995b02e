//! The restore planner ("mount-v2"), pure: turns a [`MountImage`] into the [`Step`]s that rebuild it.
//!
//! Every mount is first created private and flat, then moved into its place (parents first), then the
//! root is pivoted into, and only then is sharing set: a peer group is started by `MS_SHARED` on its first
//! member and joined by the others with `MOVE_MOUNT_SET_GROUP`; a slave first joins its master's group (from
//! a restored member, or from the outside mount of an external master) and then turns `MS_SLAVE`. No step
//! relies on live propagation, so the order of mounts never matters. Read-only comes last.

use std::collections::{BTreeMap, BTreeSet};

use dormant_image::records::{MountEntry, MountId, MountSource, PeerGroup};

use crate::error::{MountError, Result};
use crate::image::MountImage;
use crate::mountinfo::sub_path;

/// How atime is updated (`MOUNT_ATTR__ATIME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Atime {
    #[default]
    Relatime,
    Noatime,
    Strictatime,
}

/// Per-mount flags, as `mount_setattr` sets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MountAttrs {
    pub rdonly: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
    pub atime: Atime,
    pub nodiratime: bool,
    pub nosymfollow: bool,
}

impl MountAttrs {
    /// Parses mountinfo's per-mount options (`rw,nosuid,relatime`); unknown words are logged and ignored.
    pub fn parse(opts: &str) -> MountAttrs {
        let mut a = MountAttrs {
            atime: Atime::Strictatime,
            ..Default::default()
        };
        for o in opts.split(',') {
            match o {
                "ro" => a.rdonly = true,
                "rw" => a.rdonly = false,
                "nosuid" => a.nosuid = true,
                "nodev" => a.nodev = true,
                "noexec" => a.noexec = true,
                "relatime" => a.atime = Atime::Relatime,
                "noatime" => a.atime = Atime::Noatime,
                "nodiratime" => a.nodiratime = true,
                "nosymfollow" => a.nosymfollow = true,
                other => log::debug!("mount option {other:?} is not restored"),
            }
        }
        a
    }

    /// Renders the options the way mountinfo shows them.
    pub fn render(&self) -> String {
        let mut s = String::from(if self.rdonly { "ro" } else { "rw" });
        for (on, word) in [
            (self.nosuid, ",nosuid"),
            (self.nodev, ",nodev"),
            (self.noexec, ",noexec"),
            (self.atime == Atime::Noatime, ",noatime"),
            (self.nodiratime, ",nodiratime"),
            (self.atime == Atime::Relatime, ",relatime"),
            (self.nosymfollow, ",nosymfollow"),
        ] {
            if on {
                s.push_str(word);
            }
        }
        s
    }
}

/// Where a mount joins a peer group from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupFrom {
    /// A restored mount that is already a member.
    Mount(MountId),
    /// The outside mount at the path the key maps to.
    External(String),
}

/// One action of the restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Mount a new filesystem, flat and private.
    NewFs {
        mount: MountId,
        fstype: String,
        source: String,
        data: String,
    },
    /// Bind the container root directory, flat and private.
    BindRoot {
        mount: MountId,
    },
    /// Bind the outside path `key` maps to, flat and private.
    BindExternal {
        mount: MountId,
        key: String,
    },
    /// Clone `subpath` of the (still flat) mount `of`, private.
    BindOf {
        mount: MountId,
        of: MountId,
        subpath: String,
    },
    /// Set the per-mount flags except read-only.
    SetAttrs {
        mount: MountId,
        attrs: MountAttrs,
    },
    /// Move `mount` onto `path` (relative to `parent`'s root; empty: on top of it), creating the mountpoint
    /// if the parent's filesystem lacks it.
    Attach {
        mount: MountId,
        parent: MountId,
        path: String,
    },
    /// Make `root` the namespace's root; the old root stays reachable until [`Step::DropOldRoot`].
    PivotRoot {
        root: MountId,
    },
    /// `MOVE_MOUNT_SET_GROUP`: copy the peer group and master of `from` onto `mount`.
    JoinGroup {
        mount: MountId,
        from: GroupFrom,
    },
    MakeSlave {
        mount: MountId,
    },
    MakeShared {
        mount: MountId,
    },
    MakeUnbindable {
        mount: MountId,
    },
    /// Detach the flat-mount yard and the old root (made a slave first, through a descriptor).
    DropOldRoot,
    SetReadOnly {
        mount: MountId,
    },
}

/// Turns a mount image into restore steps. Fails on an image whose references do not hold.
pub fn plan(img: &MountImage) -> Result<Vec<Step>> {
    let by_id: BTreeMap<MountId, &MountEntry> = img.mounts.iter().map(|m| (m.id, m)).collect();
    let roots: Vec<&MountEntry> = img.mounts.iter().filter(|m| m.parent.is_none()).collect();
    let [root] = roots.as_slice() else {
        return Err(MountError::Plan(format!(
            "{} root mounts, want exactly one",
            roots.len()
        )));
    };
    let mut steps = Vec::new();
    create_flat(img, &by_id, &mut steps)?;
    attach(img, &by_id, root.id, &mut steps)?;
    steps.push(Step::PivotRoot { root: root.id });
    share(img, &mut steps)?;
    for m in img.mounts.iter().filter(|m| m.unbindable) {
        steps.push(Step::MakeUnbindable { mount: m.id });
    }
    steps.push(Step::DropOldRoot);
    for m in &img.mounts {
        if MountAttrs::parse(&m.mount_opts).rdonly {
            steps.push(Step::SetReadOnly { mount: m.id });
        }
    }
    Ok(steps)
}

/// Every mount created flat and private, with its flags but read-only (binds after their sources).
fn create_flat(
    img: &MountImage,
    by_id: &BTreeMap<MountId, &MountEntry>,
    steps: &mut Vec<Step>,
) -> Result<()> {
    let mut created = BTreeSet::new();
    for m in &img.mounts {
        let step = match &m.how {
            MountSource::Root => {
                if m.parent.is_some() {
                    return Err(MountError::Plan(format!(
                        "mount {} ({}) is marked root but has a parent",
                        m.id.0, m.mountpoint
                    )));
                }
                Step::BindRoot { mount: m.id }
            }
            MountSource::NewFs => Step::NewFs {
                mount: m.id,
                fstype: m.fstype.clone(),
                source: m.source.clone(),
                data: fs_data(&m.super_opts),
            },
            MountSource::External { key } => Step::BindExternal {
                mount: m.id,
                key: key.clone(),
            },
            MountSource::BindOf { of } => {
                let src = by_id
                    .get(of)
                    .filter(|_| created.contains(of))
                    .ok_or_else(|| {
                        MountError::Plan(format!(
                            "mount {} ({}) binds mount {} that is not restored before it",
                            m.id.0, m.mountpoint, of.0
                        ))
                    })?;
                let subpath = sub_path(&src.root, &m.root).ok_or_else(|| {
                    MountError::Plan(format!(
                        "mount {} root {} is not inside its source's root {}",
                        m.id.0, m.root, src.root
                    ))
                })?;
                Step::BindOf {
                    mount: m.id,
                    of: *of,
                    subpath: subpath.to_string(),
                }
            }
        };
        steps.push(step);
        let mut attrs = MountAttrs::parse(&m.mount_opts);
        attrs.rdonly = false;
        steps.push(Step::SetAttrs { mount: m.id, attrs });
        created.insert(m.id);
    }
    Ok(())
}

/// Every mount but the root moved onto its mountpoint, parents first.
fn attach(
    img: &MountImage,
    by_id: &BTreeMap<MountId, &MountEntry>,
    root: MountId,
    steps: &mut Vec<Step>,
) -> Result<()> {
    let mut attached = BTreeSet::from([root]);
    for m in &img.mounts {
        let Some(parent) = m.parent else { continue };
        let p = by_id
            .get(&parent)
            .filter(|_| attached.contains(&parent))
            .ok_or_else(|| {
                MountError::Plan(format!(
                    "mount {} ({}) has parent {} that is not restored before it",
                    m.id.0, m.mountpoint, parent.0
                ))
            })?;
        let path = sub_path(&p.mountpoint, &m.mountpoint).ok_or_else(|| {
            MountError::Plan(format!(
                "mountpoint {} is not below its parent's {}",
                m.mountpoint, p.mountpoint
            ))
        })?;
        steps.push(Step::Attach {
            mount: m.id,
            parent,
            path: path.to_string(),
        });
        attached.insert(m.id);
    }
    Ok(())
}

/// A restored member of group `g` whose root contains `m`'s, once the group has one (`None` before).
fn source_in(
    started: &BTreeMap<PeerGroup, Vec<&MountEntry>>,
    g: PeerGroup,
    m: &MountEntry,
) -> Option<Result<MountId>> {
    let members = started.get(&g)?;
    Some(
        members
            .iter()
            .find(|r| sub_path(&r.root, &m.root).is_some())
            .map(|r| r.id)
            .ok_or_else(|| MountError::Sharing {
                id: m.id,
                mountpoint: m.mountpoint.clone(),
                group: g,
                why: format!(
                    "no restored member of the group has a root containing {} (members with disjoint \
                     roots are not supported)",
                    m.root
                ),
            }),
    )
}

/// The sharing steps alone ([`share`], then unbindable), for a namespace whose mounts already exist (a
/// nested namespace, see [`crate::nested`]).
pub fn sharing_steps(img: &MountImage) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    share(img, &mut steps)?;
    for m in img.mounts.iter().filter(|m| m.unbindable) {
        steps.push(Step::MakeUnbindable { mount: m.id });
    }
    Ok(steps)
}

/// Sharing. A mount can be done once its master group exists (restored or outside); the first member of
/// a group to be done starts it. Members with the widest root go first: joining a group needs the source's
/// root to contain the joiner's.
fn share(img: &MountImage, steps: &mut Vec<Step>) -> Result<()> {
    let ext: BTreeMap<PeerGroup, &str> = img
        .masters
        .iter()
        .map(|m| (m.group, m.key.as_str()))
        .collect();
    let mut pending: Vec<&MountEntry> = img
        .mounts
        .iter()
        .filter(|m| m.shared.is_some() || m.master.is_some())
        .collect();
    pending.sort_by_key(|m| m.root.len());
    // Members of each group already done; a joiner copies from one whose root contains its own.
    let mut started: BTreeMap<PeerGroup, Vec<&MountEntry>> = BTreeMap::new();
    while !pending.is_empty() {
        let before = pending.len();
        let mut rest = Vec::new();
        for m in pending {
            // A peer of an outside group (a nested namespace's copy): joining copies its master too.
            if let Some(key) = m.shared.and_then(|n| ext.get(&n)) {
                steps.push(Step::JoinGroup {
                    mount: m.id,
                    from: GroupFrom::External(key.to_string()),
                });
                continue;
            }
            let master_from = match m.master {
                None => None,
                Some(g) => match (source_in(&started, g, m), ext.get(&g)) {
                    (Some(r), _) => Some(GroupFrom::Mount(r?)),
                    (None, Some(key)) => Some(GroupFrom::External(key.to_string())),
                    (None, None) if img.mounts.iter().any(|x| x.shared == Some(g)) => {
                        rest.push(m);
                        continue;
                    }
                    (None, None) => {
                        return Err(MountError::Sharing {
                            id: m.id,
                            mountpoint: m.mountpoint.clone(),
                            group: g,
                            why: "master group is neither dumped nor an external master".into(),
                        })
                    }
                },
            };
            if let Some(r) = m.shared.and_then(|n| source_in(&started, n, m)) {
                steps.push(Step::JoinGroup {
                    mount: m.id,
                    from: GroupFrom::Mount(r?),
                });
                if let Some(n) = m.shared {
                    started.entry(n).or_default().push(m);
                }
                continue;
            }
            if let Some(from) = master_from {
                steps.push(Step::JoinGroup { mount: m.id, from });
                steps.push(Step::MakeSlave { mount: m.id });
            }
            if let Some(n) = m.shared {
                steps.push(Step::MakeShared { mount: m.id });
                started.entry(n).or_default().push(m);
            }
        }
        if rest.len() == before {
            return Err(MountError::Plan(format!(
                "peer groups of mounts {:?} are slaves of each other in a cycle",
                rest.iter().map(|m| &m.mountpoint).collect::<Vec<_>>()
            )));
        }
        pending = rest;
    }
    Ok(())
}

/// Mount data for a new filesystem: the superblock options without `rw`/`ro` (per-mount state, set apart).
pub fn fs_data(super_opts: &str) -> String {
    super_opts
        .split(',')
        .filter(|o| !o.is_empty() && *o != "rw" && *o != "ro")
        .collect::<Vec<_>>()
        .join(",")
}
