//! The mount half of `check_references`: dangling parents and bind sources, master groups nobody carries,
//! tmpfs content of a mount that is not recreated, the number of roots.

#![allow(clippy::unwrap_used)] // Tests may unwrap: a failure is the test failing.

mod common;

use dormant_image::records::*;
use dormant_image::{ImageReader, ImageWriter};

fn mount(id: u32, parent: Option<u32>, how: MountSource) -> MountEntry {
    MountEntry {
        id: MountId(id),
        parent: parent.map(MountId),
        mountpoint: format!("/m{id}"),
        root: "/".into(),
        fstype: "tmpfs".into(),
        source: "t".into(),
        mount_opts: "rw".into(),
        super_opts: "rw".into(),
        shared: None,
        master: None,
        unbindable: false,
        how,
    }
}

#[test]
fn mount_references_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("img");
    let mut w = ImageWriter::create(&target).unwrap();
    let mounts = vec![
        mount(1, None, MountSource::Root),
        mount(2, Some(9), MountSource::NewFs), // parent 9 missing
        mount(3, Some(1), MountSource::BindOf { of: MountId(8) }), // source 8 missing
        MountEntry {
            master: Some(PeerGroup(77)), // nobody carries 77
            ..mount(4, Some(1), MountSource::External { key: "/x".into() })
        },
        MountEntry {
            master: Some(PeerGroup(5)), // an external master: fine
            ..mount(5, Some(1), MountSource::External { key: "/y".into() })
        },
    ];
    w.write_records(mount_names::MOUNTS, &mounts).unwrap();
    let masters = [ExternalMaster {
        group: PeerGroup(5),
        key: "/y".into(),
        found_at: "/y".into(),
    }];
    w.write_records(mount_names::MOUNT_MASTERS, &masters)
        .unwrap();
    w.write_records::<TmpfsRecord>(&mount_names::tmpfs(MountId(2)), &[])
        .unwrap(); // NewFs: fine
    w.write_records::<TmpfsRecord>(&mount_names::tmpfs(MountId(4)), &[])
        .unwrap(); // external: not
    w.commit(common::info()).unwrap();
    let img = ImageReader::open(&target).unwrap();
    let problems: Vec<String> = dormant_image::image::check_mounts(&img)
        .iter()
        .map(|e| e.to_string())
        .collect();
    let expect = [
        "parent 9 of mount 2",
        "binds mount 8",
        "slave of group 77",
        "tmpfs-4: content of mount 4",
    ];
    for e in expect {
        assert!(
            problems.iter().any(|p| p.contains(e)),
            "{e:?} not in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), expect.len(), "{problems:#?}");
}
