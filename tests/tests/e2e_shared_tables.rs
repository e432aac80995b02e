//! End-to-end: processes sharing an fd table (`CLONE_FILES`) or an fs struct (`CLONE_FS`) are restored
//! sharing exactly what they shared (issue 13), by real `dormant dump` + `dormant restore` runs of
//! `wl_sharedfs`: kcmp over every pair, a fd opened or closed by one seen by the other, a chdir and umask
//! of one seen by the others, offsets and flags kept; a sharer cloned by a sharer (not by the table's
//! first holder) included. Privileged (root); needs the dormant binary.

use dormant_tests::harness::{self, Result, Spec, Workload};

fn sharedfs() -> Spec {
    Spec::workload("wl_sharedfs", env!("CARGO_BIN_EXE_wl_sharedfs"))
}

/// Every pid, ppid, pgid and sid of the tree as dumped, and the workload's own checks.
#[test]
fn shared_fd_tables_and_fs_structs_dump_restore() -> Result<()> {
    let (ids, log) = harness::dump_restore_same_tree(sharedfs())?;
    assert_eq!(ids.len(), 6, "P, A, B, C, D and G: {ids:?}");
    for check in ["kcmp", "files-shared", "fs-shared", "offsets"] {
        assert!(log.contains(&format!("ok {check}")), "{log}");
    }
    Ok(())
}

/// The restored tree dumps and restores again with the same sharing.
#[test]
fn shared_tables_restored_twice() -> Result<()> {
    let log = harness::dump_restore_twice(sharedfs())?;
    assert!(log.contains("ok kcmp"), "{log}");
    Ok(())
}

/// The dump must fail naming the pid and `what`; the target then runs on and passes its own check.
fn refused(flag: &str, what: &str) -> Result<()> {
    harness::require_root()?;
    harness::dormant_bin()?;
    let mut w = Workload::start(sharedfs().args([flag]))?;
    w.dump_refused(&[what])?;
    w.release_and_pass()
}

#[test]
fn thread_with_its_own_fs_struct_refused_target_resumes() -> Result<()> {
    refused(
        "--thread-unshare",
        "has an fs struct (cwd, root, umask) of its own (unshare(CLONE_FS))",
    )
}

#[test]
fn sharer_whose_parent_unshared_refused_target_resumes() -> Result<()> {
    refused("--parent-unshared", "shares its fd table with pid")
}
