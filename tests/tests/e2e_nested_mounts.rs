//! Mount namespaces nested inside a plain tree (issue 13): `wl_nestedmnt`'s children each made one (a
//! slave copy with a tmpfs of its own, a shared copy) and keep fds opened before and after their
//! `unshare`. Dumped and restored for real, each child checks its mountinfo, its namespace, its
//! propagation relative to the root's and on which mount each fd is open.

use dormant_tests::harness::{self, Result, Spec};

fn nested() -> Spec {
    Spec::workload("wl_nestedmnt", env!("CARGO_BIN_EXE_wl_nestedmnt"))
}

#[test]
fn nested_mounts_pass_untouched() -> Result<()> {
    harness::require_root()?;
    harness::self_check(nested())?;
    Ok(())
}

/// The inherited fd reopened on the child's own copy and its tmpfs gone (what the defect of issue 13
/// and a restore that skips the nested namespace leave): the checks notice.
#[test]
fn nested_mounts_detect_damage() -> Result<()> {
    harness::require_root()?;
    harness::self_check_fails(
        nested().args([dormant_tests::workload::INJECT_FAULT]),
        &["slave-inherited-fd", "slave-mountinfo", "slave-tmpfs"],
    )?;
    Ok(())
}

#[test]
fn nested_mounts_dump_restore() -> Result<()> {
    harness::dump_restore(nested())?;
    Ok(())
}
