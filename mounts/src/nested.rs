//! Mount namespaces nested inside a plain tree: a task that did `unshare(CLONE_NEWNS)` got a copy of its
//! parent's namespace (the dumper's, since the tree's root shares it), then changed it. The dump records
//! every mount of the nested namespace either as a copy of the root namespace's mount at the same place
//! (same parent, mountpoint, filesystem and root) or as a filesystem mounted in it, which must be one
//! dormant recreates; propagation is recorded relative to the root namespace: a peer group carried there is
//! an "outer" group, joined at restore from the mount carrying it.
//!
//! Restore (in a process about to leave for it, see [`restore_nested`]) copies the caller's namespace
//! again, makes the copy private so nothing done in it propagates back, unmounts what the dumped namespace
//! did not have, mounts what it added (with its tmpfs content), sets the per-mount flags, then sets sharing
//! with the planner's own steps (`MOVE_MOUNT_SET_GROUP` from the outer mounts, held by descriptors opened
//! before the copy). It ends by comparing the result with the dump mount by mount.
//!
//! What this does NOT do: namespaces whose root is not the copy of the root namespace's root (pivot_root),
//! binds or other filesystems added in the nested namespace, or peer groups shared with another nested
//! namespace; those are refused at dump.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use dormant_image::records::{ExternalMaster, MountId, MountSource, NestedMount, PeerGroup};
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;

use crate::classify::RECREATED_FS;
use crate::error::{MountError, Result};
use crate::image::MountImage;
use crate::mountinfo::{MountInfo, MountTree};
use crate::plan::{GroupFrom, MountAttrs, Step};
use crate::sys::{self, MountAttr};

/// A nested namespace as dumped: its mounts (tree order) and the outer groups they refer to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NestedDump {
    pub mounts: Vec<NestedMount>,
    pub outer: Vec<ExternalMaster>,
}

fn refuse(pid: i32, mountpoint: &str, why: impl Into<String>) -> MountError {
    MountError::Nested {
        pid,
        mountpoint: mountpoint.to_string(),
        why: why.into(),
    }
}

/// The mount of `outside` that `m` (a child of the inside mount copied from `parent`) is a copy of.
fn copy_of<'a>(
    m: &MountInfo,
    parent: Option<&MountInfo>,
    outside: &'a MountTree,
    used: &BTreeSet<MountId>,
) -> Option<&'a MountInfo> {
    let parent = parent?;
    outside.mounts.iter().find(|o| {
        o.parent == parent.id
            && o.id != parent.id
            && o.mountpoint == m.mountpoint
            && o.dev == m.dev
            && o.root == m.root
            && !used.contains(&o.id)
    })
}

/// Classifies the nested namespace `inside` of task `pid` against the root namespace `outside` (see the
/// module docs). Fails, naming the mount, on anything restore could not rebuild exactly.
pub fn classify_nested(inside: &MountTree, outside: &MountTree, pid: i32) -> Result<NestedDump> {
    let order = inside.tree_order();
    let (Some(root), Some(oroot)) = (order.first(), outside.root()) else {
        return Err(MountError::NoRoot { pid });
    };
    if root.dev != oroot.dev || root.root != oroot.root {
        return Err(refuse(
            pid,
            "/",
            "its root mount is not a copy of the root namespace's root",
        ));
    }
    if order.len() != inside.mounts.len() {
        return Err(refuse(
            pid,
            "/",
            "some of its mounts are not reachable from its root",
        ));
    }
    let carriers: BTreeMap<PeerGroup, &MountInfo> = outside
        .mounts
        .iter()
        .filter_map(|o| o.shared.map(|g| (g, o)))
        .collect();
    let internal: BTreeSet<PeerGroup> = order
        .iter()
        .filter_map(|m| m.shared)
        .filter(|g| !carriers.contains_key(g))
        .collect();
    let mut origin: BTreeMap<MountId, &MountInfo> = BTreeMap::new();
    let mut used = BTreeSet::new();
    let mut out = NestedDump::default();
    let mut outer = |g: PeerGroup, key: &str| {
        if !out.outer.iter().any(|x| x.group == g) {
            out.outer.push(ExternalMaster {
                group: g,
                key: key.to_string(),
                found_at: key.to_string(),
            });
        }
    };
    let mut mounts = Vec::with_capacity(order.len());
    for (i, m) in order.iter().enumerate() {
        let o = if i == 0 {
            Some(oroot)
        } else {
            copy_of(m, origin.get(&m.parent).copied(), outside, &used)
        };
        let how = match o {
            Some(_) if i == 0 => MountSource::Root,
            Some(_) => MountSource::External {
                key: m.mountpoint.clone(),
            },
            None if RECREATED_FS.contains(&m.fstype.as_str())
                && m.root == "/"
                && !m.super_opts.split(',').any(|w| w == "ro") =>
            {
                MountSource::NewFs
            }
            None => {
                return Err(refuse(
                    pid,
                    &m.mountpoint,
                    format!(
                        "it ({} {}, root {}) is neither a copy of the root namespace's mount there nor a \
                         filesystem dormant recreates (a new {} mounted at its root, read-write)",
                        m.fstype,
                        m.source,
                        m.root,
                        RECREATED_FS.join(", ")
                    ),
                ))
            }
        };
        if let Some(o) = o {
            origin.insert(m.id, o);
            used.insert(o.id);
        }
        // Propagation, relative to the root namespace.
        if let Some(g) = m.shared.filter(|g| !internal.contains(g)) {
            let c = carriers.get(&g).copied().filter(|c| c.master == m.master);
            let c = c.ok_or_else(|| {
                refuse(pid, &m.mountpoint, format!("its peer group {} is shared with a namespace other than the root's, or its master differs from its peers'", g.0))
            })?;
            outer(g, &c.mountpoint);
        } else if let Some(g) = m.master.filter(|g| !internal.contains(g)) {
            // A slave of a group the root namespace carries, or (its copy unchanged) of its origin's master.
            match (carriers.get(&g), o.filter(|o| o.master == Some(g))) {
                (Some(c), _) => outer(g, &c.mountpoint),
                (None, Some(o)) => outer(g, &o.mountpoint),
                (None, None) => {
                    return Err(refuse(pid, &m.mountpoint, format!("it is a slave of peer group {} that neither the root namespace nor this one carries", g.0)))
                }
            }
        }
        let tmpfs = if how == MountSource::NewFs && m.fstype == "tmpfs" {
            let dir = std::path::PathBuf::from(format!("/proc/{pid}/root{}", m.mountpoint));
            crate::tmpfs::dump_tree(&dir)?
        } else {
            Vec::new()
        };
        mounts.push(NestedMount {
            entry: m.entry((i != 0).then_some(m.parent), how),
            tmpfs,
        });
    }
    out.mounts = mounts;
    // What restore would fail to plan is refused now.
    sharing_plan(&out.mounts, &out.outer)?;
    Ok(out)
}

/// Dumps the nested mount namespace of task `pid` against the caller's (the tree root's). Returns the
/// record and the namespace's mountinfo (whose mount ids tell which fds were opened on it).
pub fn dump_nested(pid: i32) -> Result<(NestedDump, MountTree)> {
    let inside = MountTree::read(Some(pid))?;
    let outside = MountTree::read(None)?;
    Ok((classify_nested(&inside, &outside, pid)?, inside))
}

fn sharing_plan(mounts: &[NestedMount], outer: &[ExternalMaster]) -> Result<Vec<Step>> {
    let img = MountImage {
        mounts: mounts.iter().map(|m| m.entry.clone()).collect(),
        masters: outer.to_vec(),
        tmpfs: BTreeMap::new(),
    };
    crate::plan::sharing_steps(&img)
}

fn sys_err(what: &'static str, mountpoint: &str) -> impl Fn(nix::errno::Errno) -> MountError {
    let mountpoint = mountpoint.to_string();
    move |errno| MountError::Sys {
        what,
        mount: None,
        mountpoint: mountpoint.clone(),
        errno,
    }
}

fn open_path(p: &str, what: &'static str) -> Result<OwnedFd> {
    open(p, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys_err(what, p))
}

/// The dumped mounts matched with the live ones of `tree` (dumped id → live mount): the root with the
/// root, every other mount with the live child of its parent's match at the same mountpoint with the same
/// filesystem type and root. `only_copies`: match copies alone (added mounts do not exist yet).
fn match_live<'a>(
    dumped: &[NestedMount],
    tree: &'a MountTree,
    only_copies: bool,
) -> BTreeMap<MountId, &'a MountInfo> {
    let order = tree.tree_order();
    let mut map: BTreeMap<MountId, &MountInfo> = BTreeMap::new();
    let mut used = BTreeSet::new();
    for d in dumped {
        let e = &d.entry;
        if only_copies && e.how == MountSource::NewFs {
            continue;
        }
        let found = match e.parent {
            None => order.first().copied(),
            Some(p) => map.get(&p).and_then(|lp| {
                order.iter().copied().find(|l| {
                    l.parent == lp.id
                        && l.id != lp.id
                        && l.mountpoint == e.mountpoint
                        && !used.contains(&l.id)
                })
            }),
        };
        if let Some(l) = found.filter(|l| l.fstype == e.fstype && l.root == e.root) {
            used.insert(l.id);
            map.insert(e.id, l);
        }
    }
    map
}

/// Unmounts every live mount no dumped copy matches, one at a time (each detach may take others along).
fn trim(dumped: &[NestedMount]) -> Result<()> {
    let copies = dumped
        .iter()
        .filter(|d| d.entry.how != MountSource::NewFs)
        .count();
    let mut rounds = 0;
    loop {
        let tree = MountTree::read(None)?;
        let map = match_live(dumped, &tree, true);
        let live: BTreeSet<MountId> = map.values().map(|l| l.id).collect();
        let extra = tree
            .tree_order()
            .into_iter()
            .find(|l| !live.contains(&l.id));
        match extra {
            Some(l) if rounds <= tree.mounts.len() => {
                rounds += 1;
                umount2(l.mountpoint.as_str(), MntFlags::MNT_DETACH).map_err(sys_err(
                    "unmounting a mount the nested namespace lacks",
                    &l.mountpoint,
                ))?;
            }
            Some(l) => {
                return Err(MountError::Plan(format!(
                    "nested namespace: mount {} does not go away",
                    l.mountpoint
                )))
            }
            None if map.len() == copies => return Ok(()),
            None => {
                let missing = dumped
                    .iter()
                    .find(|d| d.entry.how != MountSource::NewFs && !map.contains_key(&d.entry.id))
                    .map_or("?", |d| d.entry.mountpoint.as_str());
                return Err(MountError::Plan(format!(
                    "nested namespace: mount {missing} has no counterpart in the restorer's namespace"
                )));
            }
        }
    }
}

/// Mounts the filesystems the nested namespace added, parents first, each filled with its tmpfs content.
fn add_new(dumped: &[NestedMount]) -> Result<()> {
    for d in dumped.iter().filter(|d| d.entry.how == MountSource::NewFs) {
        let e = &d.entry;
        let data = crate::plan::fs_data(&e.super_opts);
        let data = (!data.is_empty()).then_some(data.as_str());
        mount(
            Some(e.source.as_str()),
            e.mountpoint.as_str(),
            Some(e.fstype.as_str()),
            MsFlags::empty(),
            data,
        )
        .map_err(sys_err(
            "mounting a nested namespace's filesystem",
            &e.mountpoint,
        ))?;
        if !d.tmpfs.is_empty() {
            crate::tmpfs::restore_tree(Path::new(&e.mountpoint), &d.tmpfs)?;
        }
    }
    Ok(())
}

/// Rebuilds the nested namespace `dumped` (with outer groups `outer`) in a new mount namespace of the
/// calling process, a copy of its current one (the tree root's). The caller must be single-threaded and
/// is expected to end once it is done (its namespace is kept through `/proc/PID/ns/mnt`). On error the
/// caller's new namespace is half built: it goes with the process.
pub fn restore_nested(dumped: &[NestedMount], outer: &[ExternalMaster]) -> Result<()> {
    let steps = sharing_plan(dumped, outer)?;
    // Outer mounts, opened in the root namespace before the copy.
    let mut outside = BTreeMap::new();
    for s in &steps {
        if let Step::JoinGroup {
            from: GroupFrom::External(key),
            ..
        } = s
        {
            if !outside.contains_key(key) {
                outside.insert(key.clone(), open_path(key, "opening an outer mount")?);
            }
        }
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(sys_err("unshare(CLONE_NEWNS)", "/"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(sys_err("making the copied namespace private", "/"))?;
    trim(dumped)?;
    add_new(dumped)?;
    let tree = MountTree::read(None)?;
    let live = match_live(dumped, &tree, false);
    let mut fds = BTreeMap::new();
    for d in dumped {
        let e = &d.entry;
        let fd = open_path(&e.mountpoint, "opening a nested namespace's mount")?;
        if live.get(&e.id).is_none_or(|l| l.mount_opts != e.mount_opts) {
            let a = MountAttrs::parse(&e.mount_opts);
            let mut attr = crate::exec::attr_of(&a);
            if a.rdonly {
                attr.attr_set |= sys::MOUNT_ATTR_RDONLY;
            } else {
                attr.attr_clr |= sys::MOUNT_ATTR_RDONLY;
            }
            sys::mount_setattr(fd.as_fd(), &attr)
                .map_err(sys_err("setting a nested mount's flags", &e.mountpoint))?;
        }
        fds.insert(e.id, fd);
    }
    for s in &steps {
        apply_sharing(s, &fds, &outside)?;
    }
    verify(dumped)
}

fn apply_sharing(
    s: &Step,
    fds: &BTreeMap<MountId, OwnedFd>,
    outside: &BTreeMap<String, OwnedFd>,
) -> Result<()> {
    let fd = |id: &MountId| {
        fds.get(id)
            .ok_or_else(|| MountError::Plan(format!("nested mount {} not opened", id.0)))
    };
    let propagation = |id: &MountId, flag: MsFlags| {
        let attr = MountAttr {
            propagation: flag.bits(),
            ..Default::default()
        };
        sys::mount_setattr(fd(id)?.as_fd(), &attr).map_err(sys_err(
            "setting a nested mount's propagation",
            &id.0.to_string(),
        ))
    };
    match s {
        Step::JoinGroup { mount: id, from } => {
            let from_fd = match from {
                GroupFrom::Mount(m) => fd(m)?,
                GroupFrom::External(key) => outside
                    .get(key)
                    .ok_or_else(|| MountError::Plan(format!("outer mount {key} not opened")))?,
            };
            sys::move_mount(
                from_fd.as_fd(),
                c"",
                fd(id)?.as_fd(),
                c"",
                sys::MOVE_MOUNT_SET_GROUP
                    | sys::MOVE_MOUNT_F_EMPTY_PATH
                    | sys::MOVE_MOUNT_T_EMPTY_PATH,
            )
            .map_err(sys_err(
                "joining a peer group (MOVE_MOUNT_SET_GROUP)",
                &id.0.to_string(),
            ))
        }
        Step::MakeSlave { mount: id } => propagation(id, MsFlags::MS_SLAVE),
        Step::MakeShared { mount: id } => propagation(id, MsFlags::MS_SHARED),
        Step::MakeUnbindable { mount: id } => propagation(id, MsFlags::MS_UNBINDABLE),
        other => Err(MountError::Plan(format!(
            "nested namespace: unexpected step {other:?}"
        ))),
    }
}

/// Compares the caller's namespace with the dump, mount by mount: the same mounts (matched as in
/// [`match_live`]), options, filesystem and propagation, peer groups mapped one to one.
pub fn verify(dumped: &[NestedMount]) -> Result<()> {
    let tree = MountTree::read(None)?;
    let live = match_live(dumped, &tree, false);
    let differs = |what: String| {
        Err(MountError::Plan(format!(
            "nested namespace rebuilt wrong: {what}"
        )))
    };
    if live.len() != dumped.len() || tree.mounts.len() != dumped.len() {
        return differs(format!(
            "{} mounts, {} matched, {} dumped",
            tree.mounts.len(),
            live.len(),
            dumped.len()
        ));
    }
    let mut groups: BTreeMap<PeerGroup, PeerGroup> = BTreeMap::new();
    let mut back: BTreeMap<PeerGroup, PeerGroup> = BTreeMap::new();
    let mut same_group = |d: Option<PeerGroup>, l: Option<PeerGroup>| match (d, l) {
        (None, None) => true,
        (Some(d), Some(l)) => {
            *groups.entry(d).or_insert(l) == l && *back.entry(l).or_insert(d) == d
        }
        _ => false,
    };
    for d in dumped {
        let (e, l) = (&d.entry, live[&d.entry.id]);
        let ok = e.mount_opts == l.mount_opts
            && e.source == l.source
            && e.unbindable == l.unbindable
            && same_group(e.shared, l.shared)
            && same_group(e.master, l.master);
        if !ok {
            return differs(format!(
                "{} is {:?}, dumped {:?}",
                e.mountpoint,
                l.render(),
                e
            ));
        }
    }
    Ok(())
}
