//! tmpfs content dump/restore on a freshly mounted tmpfs pair, in a forked child with its own mount
//! namespace: everything `fill_tmp` makes comes back, and a second dump of the copy equals the first.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;

use common::*;
use dormant_mounts::tmpfs::{dump_tree, restore_tree};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

#[test]
fn tmpfs_content_round_trips() {
    require_root();
    let dir = scratch();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    fs::create_dir(&a).unwrap();
    fs::create_dir(&b).unwrap();
    let mut report = Chan::new();
    let pid = spawn(&mut report.clone(), || {
        ctx(unshare(CloneFlags::CLONE_NEWNS), "unshare")?;
        propagation(
            std::path::Path::new("/"),
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        )?;
        for d in [&a, &b] {
            ctx(
                mount(Some("t"), d, Some("tmpfs"), MsFlags::empty(), None::<&str>),
                "mount tmpfs",
            )?;
        }
        fill_tmp(&a)?;
        let recs = dump_tree(&a).map_err(|e| format!("dump: {e}"))?;
        restore_tree(&b, &recs).map_err(|e| format!("restore: {e}"))?;
        check_tmp(&b)?;
        // Dumping the restored copy gives the same records: same nodes, modes, owners, times, xattrs, data.
        let again = dump_tree(&b).map_err(|e| format!("dump again: {e}"))?;
        if again != recs {
            return Err(format!("second dump differs:\n{recs:?}\n{again:?}"));
        }
        Ok(())
    });
    if let Err(e) = wait_ok(pid, "child") {
        panic!("{e}: {}", report.recv());
    }
}
