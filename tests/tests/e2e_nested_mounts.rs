//! Mount namespaces nested inside a plain tree (issue 13): `wl_nestedmnt`'s children each made one (a
//! slave copy with a tmpfs of its own, a shared copy) and keep fds opened before and after their
//! `unshare`. Dumped and restored for real, each child checks its mountinfo, its namespace, its
//! propagation relative to the root's and on which mount each fd is open.

use std::sync::Mutex;

use dormant_tests::harness::{self, Result, Spec};

/// One at a time: each workload mounts in the namespace the tests share, and a child's copy of it would
/// include the other test's mounts, which may be gone by the time it is restored.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn nested() -> Spec {
    Spec::workload("wl_nestedmnt", env!("CARGO_BIN_EXE_wl_nestedmnt"))
}

#[test]
fn nested_mounts_pass_untouched() -> Result<()> {
    harness::require_root()?;
    let _one = ONE_AT_A_TIME.lock();
    harness::self_check(nested())?;
    Ok(())
}

/// The inherited fd reopened on the child's own copy and its tmpfs gone (what the defect of issue 13
/// and a restore that skips the nested namespace leave): the checks notice.
#[test]
fn nested_mounts_detect_damage() -> Result<()> {
    harness::require_root()?;
    let _one = ONE_AT_A_TIME.lock();
    harness::self_check_fails(
        nested().args([dormant_tests::workload::INJECT_FAULT]),
        &[
            "slave-inherited-fd",
            "slave-mountinfo",
            "slave-own-fd",
            "slave-tmpfs",
        ],
    )?;
    Ok(())
}

#[test]
fn nested_mounts_dump_restore() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock();
    harness::dump_restore(nested())?;
    Ok(())
}
