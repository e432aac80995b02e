//! End-to-end: file state that used to come back different with no error (issue 13) is restored exactly or
//! refused at dump. `wl_fileattrs` checks memfd status flags, access modes and seals, the owner, mode and
//! times of unlinked files and memfds (also a write-only unlinked file), and that a shared mapping made
//! from a writable open can still be made writable (and one from a read-only open still cannot);
//! `wl_fdshare` shows that processes sharing an fd table or an fs struct are refused while the target runs
//! on. Privileged (root); needs the dormant binary.

use std::time::Duration;

use dormant_tests::harness::{self, require_root, Result, Spec, Workload};

fn attrs(kinds: &[&str]) -> Spec {
    Spec::workload("wl_fileattrs", env!("CARGO_BIN_EXE_wl_fileattrs")).args(kinds.iter().copied())
}

#[test]
fn memfd_status_flags_seals_owner_and_times() -> Result<()> {
    harness::dump_restore(attrs(&["memfd"]))?;
    Ok(())
}

#[test]
fn unlinked_files_keep_owner_mode_times_and_write_only_content() -> Result<()> {
    harness::dump_restore(attrs(&["ghost"]))?;
    Ok(())
}

#[test]
fn shared_mapping_of_writable_open_stays_may_write() -> Result<()> {
    harness::dump_restore(attrs(&["mapshared"]))?;
    Ok(())
}

/// Not "mapshared": the original's run writes the mapped file, which restore then rightly refuses as
/// changed since the dump.
#[test]
fn carried_inodes_leave_running_then_restore() -> Result<()> {
    harness::leave_running_then_restore(attrs(&["memfd", "ghost"]))?;
    Ok(())
}

/// The dump must fail naming the pid and `what`; the target then runs on and passes its own check.
fn refused(kind: &str, what: &str) -> Result<()> {
    require_root()?;
    harness::dormant_bin()?;
    let mut w = Workload::start(
        Spec::workload("wl_fdshare", env!("CARGO_BIN_EXE_wl_fdshare")).args([kind]),
    )?;
    let pid = w.pid();
    let logs = match w.dump(false) {
        Ok(()) => return Err(w.fail(format!("dump of a tree sharing its {kind} succeeded"))),
        Err(e) => e.to_string(),
    };
    if !logs.contains(&format!("pid {pid}: ")) || !logs.contains(what) {
        return Err(w.fail(format!(
            "dump error does not name pid {pid} and {what:?}: {logs}"
        )));
    }
    w.release()?;
    let st = w.wait_exit(Duration::from_secs(60))?;
    w.expect_pass(st)?;
    Ok(())
}

#[test]
fn shared_fd_table_refused_target_resumes() -> Result<()> {
    refused("files", "shares its fd table with pid")
}

#[test]
fn shared_fs_struct_refused_target_resumes() -> Result<()> {
    refused("fs", "shares its fs struct (cwd, root, umask) with pid")
}
