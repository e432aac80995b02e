//! A restore that fails (an external mount whose path does not exist) names the mount and leaves no yard
//! directory behind in the temp dir.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;

use common::*;
use dormant_mounts::{
    restore_namespace, ExternalMap, MountEntry, MountId, MountImage, MountSource,
};
use nix::sched::{unshare, CloneFlags};

fn entry(id: u32, parent: Option<u32>, mp: &str, how: MountSource) -> MountEntry {
    MountEntry {
        id: MountId(id),
        parent: parent.map(MountId),
        mountpoint: mp.into(),
        root: "/".into(),
        fstype: "tmpfs".into(),
        source: "x".into(),
        mount_opts: "rw,relatime".into(),
        super_opts: "rw".into(),
        shared: None,
        master: None,
        unbindable: false,
        how,
    }
}

#[test]
fn failed_restore_names_the_mount_and_leaves_no_yard() {
    require_root();
    let dir = scratch();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("data")).unwrap();
    let img = MountImage {
        mounts: vec![
            entry(1, None, "/", MountSource::Root),
            entry(2, Some(1), "/tmp", MountSource::NewFs),
            entry(
                3,
                Some(1),
                "/data",
                MountSource::External {
                    key: "/nonexistent/dormant-test".into(),
                },
            ),
        ],
        ..Default::default()
    };
    let mut report = Chan::new();
    let pid = spawn(&mut report.clone(), || {
        ctx(unshare(CloneFlags::CLONE_NEWNS), "unshare")?;
        match restore_namespace(&img, &root, &ExternalMap::new()) {
            Ok(()) => Err("restore succeeded".into()),
            Err(e) => {
                report.send(&format!("OK {e}"));
                Ok(())
            }
        }
    });
    wait_ok(pid, "restoring child").unwrap();
    let msg = report.recv();
    assert!(msg.starts_with("OK ") && msg.contains("/data"), "{msg}");
    let prefix = format!(".dormant-mnt-yard-{}-", pid.as_raw());
    let left: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "{left:?} left behind");
}
