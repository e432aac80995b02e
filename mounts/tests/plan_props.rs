//! Property test of the restore planner: over random mount trees (new filesystems, external binds, binds
//! of dumped mounts, stacked mounts, peer groups, slaves of dumped and of outside groups, unbindable and
//! read-only mounts), every plan, executed on the simulated kernel, yields a namespace whose mountinfo
//! equals the dumped one modulo ids.

#![allow(clippy::unwrap_used)]

use dormant_image::records::{ExternalMaster, MountEntry, MountId, MountSource, PeerGroup};
use dormant_mounts::plan::{plan, MountAttrs};
use dormant_mounts::sim::{OutsideMount, Sim};
use dormant_mounts::MountImage;
use proptest::prelude::*;

/// One superblock of the generated tree.
#[derive(Debug, Clone)]
struct Sb {
    /// Outside group of an external filesystem (its outside mount is shared in it).
    ext_group: Option<PeerGroup>,
    /// The peer group inside the tree, its first member's root, and its master.
    group: Option<(PeerGroup, String, Option<PeerGroup>)>,
}

/// Random choices for one mount.
type Choice = (u8, u8, u8, u8, bool, bool);

fn build(root_master: bool, choices: &[Choice]) -> (MountImage, Vec<OutsideMount>) {
    let mut outside = vec![OutsideMount {
        path: "/outside0".into(),
        sb: 0,
        root: "/".into(),
        fstype: "ext4".into(),
        source: "/dev/vda".into(),
        super_opts: "rw".into(),
        shared: root_master.then_some(PeerGroup(900)),
        master: None,
    }];
    let mut sbs = vec![Sb {
        ext_group: root_master.then_some(PeerGroup(900)),
        group: None,
    }];
    let mut mounts = vec![MountEntry {
        id: MountId(1),
        parent: None,
        mountpoint: "/".into(),
        root: "/rootfs".into(),
        fstype: "ext4".into(),
        source: "/dev/vda".into(),
        mount_opts: MountAttrs::parse("rw,relatime").render(),
        super_opts: "rw".into(),
        shared: None,
        master: root_master.then_some(PeerGroup(900)),
        unbindable: false,
        how: MountSource::Root,
    }];
    let mut sb_of = vec![0usize];
    let mut next_group = 10u32;
    for (i, &(kind, parent_sel, share, root_sel, unbindable, ro)) in choices.iter().enumerate() {
        let id = MountId(i as u32 + 2);
        let parent = &mounts[parent_sel as usize % mounts.len()];
        let taken = mounts
            .iter()
            .any(|m| m.parent == Some(parent.id) && m.mountpoint == parent.mountpoint);
        let mountpoint = if root_sel % 7 == 0 && parent.parent.is_some() && !taken {
            parent.mountpoint.clone() // stacked on its parent (one mount per spot, as the kernel has it)
        } else if parent.mountpoint == "/" {
            format!("/m{}", id.0)
        } else {
            format!("{}/m{}", parent.mountpoint, id.0)
        };
        let parent_id = parent.id;
        let (sb, root, fstype, source, how) = match kind % 3 {
            0 => {
                sbs.push(Sb {
                    ext_group: None,
                    group: None,
                });
                (
                    sbs.len() - 1,
                    "/".to_string(),
                    "tmpfs".to_string(),
                    format!("t{}", id.0),
                    MountSource::NewFs,
                )
            }
            1 => {
                let sb = sbs.len();
                let g = (root_sel % 2 == 0).then_some(PeerGroup(900 + sb as u32));
                sbs.push(Sb {
                    ext_group: g,
                    group: None,
                });
                let path = format!("/outside{sb}");
                outside.push(OutsideMount {
                    path: path.clone(),
                    sb: sb as u32,
                    root: "/".into(),
                    fstype: "ext4".into(),
                    source: format!("/dev/vd{sb}"),
                    super_opts: "rw".into(),
                    shared: g,
                    master: None,
                });
                let (root, key) = if root_sel % 3 == 0 {
                    ("/d".to_string(), format!("{path}/d"))
                } else {
                    ("/".to_string(), path)
                };
                (
                    sb,
                    root,
                    "ext4".into(),
                    format!("/dev/vd{sb}"),
                    MountSource::External { key },
                )
            }
            _ => {
                let src_i = root_sel as usize % mounts.len();
                let src = &mounts[src_i];
                let root = if root_sel % 2 == 0 {
                    src.root.clone()
                } else if src.root == "/" {
                    "/b".to_string()
                } else {
                    format!("{}/b", src.root)
                };
                (
                    sb_of[src_i],
                    root,
                    src.fstype.clone(),
                    src.source.clone(),
                    MountSource::BindOf { of: src.id },
                )
            }
        };
        let under = |outer: &str, inner: &str| {
            outer == "/" || inner == outer || inner.starts_with(&format!("{outer}/"))
        };
        let s = &mut sbs[sb];
        let (mut shared, mut master) = (None, None);
        match share % 5 {
            1 => match &s.group {
                Some((g, r, m)) if under(r, &root) => (shared, master) = (Some(*g), *m),
                Some(_) => {}
                None => {
                    let m = s.ext_group.filter(|_| root_sel % 4 < 2);
                    s.group = Some((PeerGroup(next_group), root.clone(), m));
                    (shared, master) = (Some(PeerGroup(next_group)), m);
                    next_group += 1;
                }
            },
            2 | 3 => {
                if let Some((g, r, _)) = &s.group {
                    if under(r, &root) {
                        master = Some(*g);
                        if share % 5 == 3 {
                            shared = Some(PeerGroup(next_group));
                            next_group += 1;
                        }
                    }
                }
            }
            4 => master = s.ext_group,
            _ => {}
        }
        let unbindable = unbindable && shared.is_none() && master.is_none();
        let attrs = MountAttrs::parse(match root_sel % 4 {
            0 => "rw,nosuid,nodev,noexec,relatime",
            1 => "rw,noatime",
            2 => "rw",
            _ => "rw,nodev,relatime,nosymfollow",
        });
        mounts.push(MountEntry {
            id,
            parent: Some(parent_id),
            mountpoint,
            root,
            fstype,
            source,
            mount_opts: MountAttrs {
                rdonly: ro,
                ..attrs
            }
            .render(),
            super_opts: "rw".into(),
            shared,
            master,
            unbindable,
            how,
        });
        sb_of.push(sb);
    }
    let masters = sbs
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.ext_group.map(|g| (i, g)))
        .filter(|(_, g)| mounts.iter().any(|m| m.master == Some(*g)))
        .map(|(i, g)| ExternalMaster {
            group: g,
            key: format!("/outside{i}"),
            found_at: format!("/outside{i}"),
        })
        .collect();
    (
        MountImage {
            mounts,
            masters,
            tmpfs: Default::default(),
        },
        outside,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn every_plan_rebuilds_the_tree(
        root_master in any::<bool>(),
        choices in proptest::collection::vec(any::<Choice>(), 0..14),
    ) {
        let (img, outside) = build(root_master, &choices);
        let steps = plan(&img).unwrap();
        let mut sim = Sim::new(&outside, "/outside0/rootfs");
        for s in &steps {
            sim.apply(s).map_err(|e| TestCaseError::fail(format!("{s:?}: {e}\nimage: {img:#?}")))?;
        }
        let got = sim.mountinfo().canonical();
        let want = img.as_tree().canonical();
        prop_assert_eq!(got, want, "steps: {:#?}", steps);
    }
}

#[test]
fn a_slave_of_an_outside_group_joins_it_then_turns_slave() {
    use dormant_mounts::plan::{GroupFrom, Step};
    let (img, _) = build(true, &[]);
    let steps = plan(&img).unwrap();
    let join = steps.iter().position(|s| {
        matches!(s, Step::JoinGroup { mount: MountId(1), from: GroupFrom::External(k) } if k == "/outside0")
    });
    let slave = steps
        .iter()
        .position(|s| matches!(s, Step::MakeSlave { mount: MountId(1) }));
    let pivot = steps
        .iter()
        .position(|s| matches!(s, Step::PivotRoot { .. }));
    assert!(pivot < join && join < slave, "{steps:#?}");
}
