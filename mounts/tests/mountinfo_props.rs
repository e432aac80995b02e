//! Property tests of the mountinfo parser: what the renderer writes parses back to the same mounts, and no
//! input makes the parser panic.

#![allow(clippy::unwrap_used)]

use dormant_image::records::MountId;
use dormant_mounts::mountinfo::{DevId, MountInfo, MountTree, PeerGroup};
use proptest::prelude::*;

fn path() -> impl Strategy<Value = String> {
    // Include the characters the kernel escapes, and some that it does not.
    proptest::collection::vec("[a-z0-9 \t\n\\\\#:é-]{1,6}", 0..4)
        .prop_map(|parts| format!("/{}", parts.join("/")))
}

fn word() -> impl Strategy<Value = String> {
    "[a-z0-9 \t\\\\_.-]{1,10}"
}

fn opts() -> impl Strategy<Value = String> {
    "(rw|ro)(,[a-z0-9=_]{1,8}){0,4}"
}

prop_compose! {
    fn mount_info()(
        id in 1u32..100_000, parent in 0u32..100_000, major in 0u32..4096, minor in 0u32..1_000_000,
        root in path(), mountpoint in path(), mount_opts in opts(),
        shared in proptest::option::of(1u32..5000), master in proptest::option::of(1u32..5000),
        propagate_from in proptest::option::of(1u32..5000), unbindable in any::<bool>(),
        fstype in word(), source in word(), super_opts in opts(),
    ) -> MountInfo {
        MountInfo {
            id: MountId(id), parent: MountId(parent), dev: DevId { major, minor }, root, mountpoint,
            mount_opts, shared: shared.map(PeerGroup), master: master.map(PeerGroup),
            propagate_from: propagate_from.map(PeerGroup), unbindable, fstype, source, super_opts,
        }
    }
}

proptest! {
    #[test]
    fn render_then_parse_is_identity(mounts in proptest::collection::vec(mount_info(), 0..8)) {
        let tree = MountTree { mounts };
        let text = tree.render();
        prop_assert_eq!(text.lines().count(), tree.mounts.len(), "escaped lines stay lines");
        prop_assert_eq!(MountTree::parse(&text).unwrap(), tree);
    }

    #[test]
    fn parse_never_panics(text in "\\PC{0,300}") {
        let _ = MountTree::parse(&text);
    }

    #[test]
    fn parse_never_panics_on_near_lines(
        m in mount_info(), cut in 0usize..200, junk in "[ \\\\0-9:-]{0,6}",
    ) {
        let line = m.render();
        let cut = line.char_indices().map(|(i, _)| i).nth(cut).unwrap_or(line.len());
        let _ = MountInfo::parse(&format!("{}{}", &line[..cut], junk));
    }
}

#[test]
fn parses_a_real_line_with_escapes_and_optional_fields() {
    let l = "36 35 98:0 /mnt\\0401 /mnt/par\\134ent rw,noatime shared:2 master:1 propagate_from:3 unbindable - ext3 /dev/root rw,errors=continue";
    let m = MountInfo::parse(l).unwrap();
    assert_eq!(m.id, MountId(36));
    assert_eq!(m.parent, MountId(35));
    assert_eq!(
        m.dev,
        DevId {
            major: 98,
            minor: 0
        }
    );
    assert_eq!(m.root, "/mnt 1");
    assert_eq!(m.mountpoint, "/mnt/par\\ent");
    assert_eq!(
        (m.shared, m.master, m.propagate_from),
        (Some(PeerGroup(2)), Some(PeerGroup(1)), Some(PeerGroup(3)))
    );
    assert!(m.unbindable);
    assert_eq!(
        (m.fstype.as_str(), m.source.as_str()),
        ("ext3", "/dev/root")
    );
    assert_eq!(m.render(), l);
    assert!(MountInfo::parse("36 35 98:0 / / rw shared:x - a b c").is_err());
    assert!(MountInfo::parse("36 35 98:0 / / rw").is_err());
}

#[test]
fn parses_this_machines_mountinfo() {
    let tree = MountTree::read(None).unwrap();
    assert!(tree.root().is_some(), "the own namespace has a root");
    assert_eq!(MountTree::parse(&tree.render()).unwrap(), tree);
}
