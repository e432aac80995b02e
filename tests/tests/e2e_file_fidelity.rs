//! End-to-end: file state that used to come back different with no error (issue 13) is restored exactly or
//! refused at dump. `wl_fileattrs` checks memfd status flags, access modes and seals, the owner, mode and
//! times of unlinked files and memfds (also a write-only unlinked file), and that a shared mapping made
//! from a writable open can still be made writable (and one from a read-only open still cannot).
//! Privileged (root); needs the dormant binary.

use dormant_tests::harness::{self, Result, Spec};

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

/// A memfd of 100 MiB and an unlinked file of 70 MiB, sparse: more than one record entry may hold, so
/// their content goes to page stores (`desc-contents`), holes not stored; size, offset and every byte
/// come back.
#[test]
fn big_memfd_and_unlinked_file() -> Result<()> {
    harness::dump_restore(attrs(&["big"]))?;
    Ok(())
}

/// A memfd on huge pages (`MFD_HUGETLB`): refused at dump, naming the pid, the fd and why; the target
/// runs on and passes.
#[test]
fn hugetlb_memfd_refused_target_resumes() -> Result<()> {
    harness::require_root()?;
    harness::dormant_bin()?;
    let mut w = harness::Workload::start(attrs(&["hugetlb"]))?;
    let what = format!("pid {} fd ", w.pid());
    w.dump_refused(&[&what, "MFD_HUGETLB"])?;
    w.release_and_pass()
}

/// Not "mapshared": the original's run writes the mapped file, which restore then rightly refuses as
/// changed since the dump.
#[test]
fn carried_inodes_leave_running_then_restore() -> Result<()> {
    harness::leave_running_then_restore(attrs(&["memfd", "ghost"]))?;
    Ok(())
}
