//! A model of the kernel's mount and propagation rules, enough to run a restore plan without privileges:
//! the planner's property tests execute every plan here and compare the resulting mountinfo with the
//! dumped one. The rules checked are the ones restore depends on (`MOVE_MOUNT_SET_GROUP` needs the same
//! superblock, a wider source root, a private target and a non-private source; `MS_SLAVE` turns a member
//! with peers into a slave of its group; nothing is attached under a shared parent, so no step relies on
//! propagation).

use std::collections::BTreeMap;

use dormant_image::records::{MountId, PeerGroup};

use crate::mountinfo::sub_path;
use crate::mountinfo::{DevId, MountInfo, MountTree};
use crate::plan::{GroupFrom, MountAttrs, Step};

/// A mount of the namespace the restorer starts in (the outside), reachable at `path`.
#[derive(Debug, Clone)]
pub struct OutsideMount {
    pub path: String,
    pub sb: u32,
    pub root: String,
    pub fstype: String,
    pub source: String,
    pub super_opts: String,
    pub shared: Option<PeerGroup>,
    pub master: Option<PeerGroup>,
}

#[derive(Debug, Clone)]
struct SimMount {
    sb: u32,
    root: String,
    fstype: String,
    source: String,
    super_opts: String,
    attrs: MountAttrs,
    /// Index of the parent and the path below the parent's root; `None` while flat.
    at: Option<(usize, String)>,
    shared: Option<PeerGroup>,
    master: Option<PeerGroup>,
    unbindable: bool,
    outside: bool,
}

/// The simulated kernel.
#[derive(Debug)]
pub struct Sim {
    mounts: Vec<SimMount>,
    outside: Vec<(String, usize)>,
    by_image: BTreeMap<MountId, usize>,
    root_path: String,
    ns_root: Option<usize>,
    next_sb: u32,
    next_group: u32,
}

fn join(base: &str, rel: &str) -> String {
    match (base, rel) {
        (b, "") => b.to_string(),
        ("/", r) => format!("/{r}"),
        (b, r) => format!("{b}/{r}"),
    }
}

impl Sim {
    /// A kernel whose outside namespace has `outside` mounted; `root_path` is the container root restore
    /// is given.
    pub fn new(outside: &[OutsideMount], root_path: &str) -> Sim {
        let mut s = Sim {
            mounts: Vec::new(),
            outside: Vec::new(),
            by_image: BTreeMap::new(),
            root_path: root_path.to_string(),
            ns_root: None,
            next_sb: 1 + outside.iter().map(|o| o.sb).max().unwrap_or(0),
            next_group: 100_000,
        };
        for o in outside {
            s.outside.push((o.path.clone(), s.mounts.len()));
            s.mounts.push(SimMount {
                sb: o.sb,
                root: o.root.clone(),
                fstype: o.fstype.clone(),
                source: o.source.clone(),
                super_opts: o.super_opts.clone(),
                attrs: MountAttrs::default(),
                at: None,
                shared: o.shared,
                master: o.master,
                unbindable: false,
                outside: true,
            });
        }
        s
    }

    fn resolve_outside(&self, key: &str) -> Result<(usize, String), String> {
        self.outside
            .iter()
            .filter_map(|(p, i)| sub_path(p, key).map(|rel| (p.len(), *i, rel)))
            .max_by_key(|(len, _, _)| *len)
            .map(|(_, i, rel)| (i, rel.to_string()))
            .ok_or_else(|| format!("no outside mount reaches {key}"))
    }

    fn idx(&self, m: MountId) -> Result<usize, String> {
        self.by_image
            .get(&m)
            .copied()
            .ok_or_else(|| format!("mount {} was never created", m.0))
    }

    /// A private clone of `src` at `rel` below its root.
    fn clone_of(&mut self, image: MountId, src: usize, rel: &str) -> Result<(), String> {
        if self.mounts[src].unbindable {
            return Err(format!("bind of unbindable mount for {}", image.0));
        }
        let mut m = self.mounts[src].clone();
        m.root = join(&m.root, rel);
        m.at = None;
        m.shared = None;
        m.master = None;
        m.outside = false;
        m.attrs = MountAttrs::default();
        self.by_image.insert(image, self.mounts.len());
        self.mounts.push(m);
        Ok(())
    }

    fn has_peers(&self, i: usize) -> bool {
        let g = self.mounts[i].shared;
        g.is_some()
            && self
                .mounts
                .iter()
                .enumerate()
                .any(|(j, m)| j != i && m.shared == g)
    }

    /// The mount a path below `parent` lands on and the rest of the path, as a lookup from `parent`'s root
    /// sees it: each component crosses into the mount on it (the first one met), and an empty rest ends on
    /// the topmost mount stacked there.
    fn land(&self, parent: usize, path: &str) -> (usize, String) {
        let (mut cur, mut rest) = (parent, path.to_string());
        loop {
            let kids = self
                .mounts
                .iter()
                .enumerate()
                .filter_map(|(j, m)| match &m.at {
                    Some((p, at)) if *p == cur => Some((j, at.as_str())),
                    _ => None,
                });
            let next = if rest.is_empty() {
                kids.filter(|(_, at)| at.is_empty())
                    .map(|(j, _)| (j, String::new()))
                    .next()
            } else {
                kids.filter(|(_, at)| !at.is_empty())
                    .filter_map(|(j, at)| sub_path(at, &rest).map(|r| (j, at.len(), r.to_string())))
                    .min_by_key(|(_, len, _)| *len)
                    .map(|(j, _, r)| (j, r))
            };
            match next {
                Some((j, r)) => {
                    cur = j;
                    rest = r;
                }
                None => return (cur, rest),
            }
        }
    }

    /// Applies one step; `Err` is what the kernel would refuse (or an unsafe reliance on propagation).
    pub fn apply(&mut self, step: &Step) -> Result<(), String> {
        match step {
            Step::NewFs {
                mount,
                fstype,
                source,
                data,
            } => {
                let sb = self.next_sb;
                self.next_sb += 1;
                self.by_image.insert(*mount, self.mounts.len());
                self.mounts.push(SimMount {
                    sb,
                    root: "/".into(),
                    fstype: fstype.clone(),
                    source: source.clone(),
                    super_opts: if data.is_empty() {
                        "rw".into()
                    } else {
                        format!("rw,{data}")
                    },
                    attrs: MountAttrs::default(),
                    at: None,
                    shared: None,
                    master: None,
                    unbindable: false,
                    outside: false,
                });
            }
            Step::BindRoot { mount } => {
                let (src, rel) = self.resolve_outside(&self.root_path.clone())?;
                self.clone_of(*mount, src, &rel)?;
            }
            Step::BindExternal { mount, key } => {
                let (src, rel) = self.resolve_outside(key)?;
                self.clone_of(*mount, src, &rel)?;
            }
            Step::BindOf { mount, of, subpath } => {
                let src = self.idx(*of)?;
                if self.mounts[src].at.is_some() {
                    return Err(format!("bind source {} is no longer flat", of.0));
                }
                self.clone_of(*mount, src, subpath)?;
            }
            Step::SetAttrs { mount, attrs } => {
                let i = self.idx(*mount)?;
                self.mounts[i].attrs = MountAttrs {
                    rdonly: self.mounts[i].attrs.rdonly,
                    ..*attrs
                };
            }
            Step::Attach {
                mount,
                parent,
                path,
            } => {
                let i = self.idx(*mount)?;
                let p = self.idx(*parent)?;
                let (onto, rest) = self.land(p, path);
                if self.mounts[onto].shared.is_some() {
                    return Err(format!(
                        "attaching {} under a shared mount would propagate",
                        mount.0
                    ));
                }
                if self.mounts[i].at.is_some() {
                    return Err(format!("mount {} attached twice", mount.0));
                }
                self.mounts[i].at = Some((onto, rest));
            }
            Step::PivotRoot { root } => {
                let i = self.idx(*root)?;
                if self.mounts[i].shared.is_some() || self.mounts[i].at.is_some() {
                    return Err("pivot_root into a shared or attached mount".into());
                }
                self.ns_root = Some(i);
            }
            Step::JoinGroup { mount, from } => {
                let to = self.idx(*mount)?;
                let from = match from {
                    GroupFrom::Mount(m) => self.idx(*m)?,
                    GroupFrom::External(key) => {
                        let (i, rel) = self.resolve_outside(key)?;
                        if !rel.is_empty() {
                            return Err(format!("{key} is not the root of an outside mount"));
                        }
                        i
                    }
                };
                let (f, t) = (&self.mounts[from], &self.mounts[to]);
                if f.sb != t.sb {
                    return Err(format!("set_group across superblocks for {}", mount.0));
                }
                if sub_path(&f.root, &t.root).is_none() {
                    return Err(format!(
                        "set_group: root {} not inside source root {} for {}",
                        t.root, f.root, mount.0
                    ));
                }
                if t.shared.is_some() || t.master.is_some() {
                    return Err(format!("set_group onto non-private mount {}", mount.0));
                }
                if f.shared.is_none() && f.master.is_none() {
                    return Err(format!("set_group from a private mount for {}", mount.0));
                }
                let (shared, master) = (f.shared, f.master);
                self.mounts[to].shared = shared;
                self.mounts[to].master = master;
            }
            Step::MakeSlave { mount } => {
                let i = self.idx(*mount)?;
                if self.has_peers(i) {
                    self.mounts[i].master = self.mounts[i].shared;
                }
                self.mounts[i].shared = None;
            }
            Step::MakeShared { mount } => {
                let i = self.idx(*mount)?;
                if self.mounts[i].shared.is_none() {
                    self.mounts[i].shared = Some(PeerGroup(self.next_group));
                    self.next_group += 1;
                }
            }
            Step::MakeUnbindable { mount } => {
                let i = self.idx(*mount)?;
                let m = &mut self.mounts[i];
                m.shared = None;
                m.master = None;
                m.unbindable = true;
            }
            Step::DropOldRoot => {
                let root = self.ns_root.ok_or("old root dropped before pivot_root")?;
                for (id, &i) in &self.by_image {
                    let mut cur = i;
                    while cur != root {
                        match &self.mounts[cur].at {
                            Some((p, _)) => cur = *p,
                            None => return Err(format!("mount {} is not in the tree", id.0)),
                        }
                    }
                }
            }
            Step::SetReadOnly { mount } => {
                let i = self.idx(*mount)?;
                self.mounts[i].attrs.rdonly = true;
            }
        }
        Ok(())
    }

    /// The restored namespace's mountinfo, as the kernel would show it.
    pub fn mountinfo(&self) -> MountTree {
        let Some(root) = self.ns_root else {
            return MountTree::default();
        };
        let mut mps: BTreeMap<usize, String> = BTreeMap::from([(root, "/".to_string())]);
        let mut order = vec![root];
        let mut k = 0;
        while k < order.len() {
            let cur = order[k];
            for (j, m) in self.mounts.iter().enumerate() {
                if let Some((p, at)) = &m.at {
                    if *p == cur && !m.outside {
                        let mp = join(&mps[&cur], at);
                        mps.insert(j, mp);
                        order.push(j);
                    }
                }
            }
            k += 1;
        }
        let id = |i: usize| MountId(1000 + i as u32);
        MountTree {
            mounts: order
                .iter()
                .map(|&i| {
                    let m = &self.mounts[i];
                    MountInfo {
                        id: id(i),
                        parent: m.at.as_ref().map_or(MountId(1), |(p, _)| id(*p)),
                        dev: DevId {
                            major: 0,
                            minor: m.sb,
                        },
                        root: m.root.clone(),
                        mountpoint: mps[&i].clone(),
                        mount_opts: m.attrs.render(),
                        shared: m.shared,
                        master: m.master,
                        propagate_from: None,
                        unbindable: m.unbindable,
                        fstype: m.fstype.clone(),
                        source: m.source.clone(),
                        super_opts: m.super_opts.clone(),
                    }
                })
                .collect(),
        }
    }
}
