//! End-to-end: files that have no name any more while the process uses them (issue 13), dumped and
//! restored for real with `dormant dump` and `dormant restore`. `wl_ghostmap` checks deleted mapped files
//! (shared and private mappings at offsets, one inode with the fd, shared writes reaching it), a deleted
//! executable (its own copy), and an unlinked FIFO with queued bytes; a copy of coreutils `sleep`, deleted
//! while it runs, comes back running from its deleted copy. Privileged (root); needs the dormant binary.

use std::fs;
use std::time::Duration;

use dormant_tests::harness::{
    self, blocked_syscall, proc_state, require_root, shell_status, wait_until, Result, Spec,
    Workload,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const NANOSLEEP: &[i64] = &[libc::SYS_nanosleep, libc::SYS_clock_nanosleep];

fn ghostmap(kinds: &[&str]) -> Spec {
    Spec::workload("wl_ghostmap", env!("CARGO_BIN_EXE_wl_ghostmap")).args(kinds.iter().copied())
}

#[test]
fn deleted_mapped_files_restored_from_their_content() -> Result<()> {
    let log = harness::dump_restore(ghostmap(&["mapped"]))?;
    assert!(log.contains("ok mapped-shared-write"), "{log}");
    Ok(())
}

#[test]
fn deleted_executable_restored_from_its_content() -> Result<()> {
    let log = harness::dump_restore(ghostmap(&["exe", "mapped"]))?;
    assert!(log.contains("ok exe-fstat"), "{log}");
    Ok(())
}

/// A deleted mapped file of 80 MiB (more than one record entry may hold), sparse: its content goes to a
/// page store of its own, holes are not stored, and it comes back byte for byte.
#[test]
fn deleted_file_bigger_than_a_record_entry() -> Result<()> {
    let log = harness::dump_restore(ghostmap(&["big"]))?;
    assert!(log.contains("ok big-content"), "{log}");
    Ok(())
}

#[test]
fn unlinked_fifo_restored_with_its_bytes() -> Result<()> {
    let log = harness::dump_restore(ghostmap(&["fifo"]))?;
    assert!(log.contains("ok fifo-queued"), "{log}");
    Ok(())
}

/// A path taken again after the delete (the upgraded library): the restore still maps the dumped
/// content, names it `(deleted)`, and leaves the new file at the path as it is.
#[test]
fn deleted_file_whose_path_is_taken_again() -> Result<()> {
    require_root()?;
    harness::dormant_bin()?;
    let mut w = Workload::start(ghostmap(&["mapped"]))?;
    let newer = w.scratch().join("b");
    fs::write(&newer, b"the upgraded file").map_err(|e| w.fail(format!("write: {e}")))?;
    w.dump(false)?;
    let mut r = w.restore()?;
    w.expect_restored_pid(&mut r)?;
    w.release()?;
    w.finish_restored(&mut r)?;
    let now = fs::read(&newer).map_err(|e| w.fail(format!("read {}: {e}", newer.display())))?;
    if now != b"the upgraded file" {
        return Err(w.fail(format!("the file at the path changed: {now:?}")));
    }
    let strays: Vec<_> = fs::read_dir(w.scratch())
        .map_err(|e| w.fail(format!("readdir: {e}")))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("dormant"))
        .collect();
    if !strays.is_empty() {
        return Err(w.fail(format!("temporary names left behind: {strays:?}")));
    }
    Ok(())
}

/// coreutils `sleep`, run from a copy that is deleted while it sleeps: after the restore `/proc/PID/exe`
/// and its mappings read `COPY (deleted)`, it still sleeps, and SIGTERM kills it (exit 143).
#[test]
fn deleted_copy_of_sleep_keeps_running() -> Result<()> {
    require_root()?;
    harness::dormant_bin()?;
    let sleep = harness::find_program("sleep")?;
    let dir = std::env::temp_dir().join(format!("dormant-sleep-copy-{}", std::process::id()));
    let io = |what: &str, path: &std::path::Path| {
        let (what, path) = (what.to_string(), path.to_path_buf());
        move |source| harness::HarnessError::Io { what, path, source }
    };
    fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    let copy = dir.join("sleep-copy");
    fs::copy(&sleep, &copy).map_err(io("copying sleep to", &copy))?;
    let result = run_deleted_sleep(&copy);
    let _ = fs::remove_dir_all(&dir);
    result
}

fn run_deleted_sleep(copy: &std::path::Path) -> Result<()> {
    // Another test thread's fork may still hold the copy open for writing (inherited before its exec
    // closed it): exec then fails with ETXTBSY for a moment, which says nothing about dormant.
    let mut tries = 0;
    let mut w = loop {
        let spec = Spec::plain("sleep", copy)
            .args(["1000"])
            .blocked_in(NANOSLEEP);
        match Workload::start(spec) {
            Err(harness::HarnessError::Io { source, .. })
                if source.raw_os_error() == Some(libc::ETXTBSY) && tries < 100 =>
            {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            started => break started?,
        }
    };
    let pid = w.pid();
    fs::remove_file(copy).map_err(|e| w.fail(format!("rm: {e}")))?;
    let want = format!("{} (deleted)", copy.display());
    let exe = || {
        fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    let mapped = || {
        fs::read_to_string(format!("/proc/{pid}/maps"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.ends_with(&want))
            .count()
    };
    if exe() != want {
        return Err(w.fail(format!("before the dump exe is {:?}", exe())));
    }
    let maps_before = mapped();
    w.dump(false)?;
    let mut r = w.restore()?;
    let dormant = r.dormant_pid();
    let asleep = wait_until(Duration::from_secs(60), || {
        proc_state(pid).is_some_and(|(state, ppid)| state == 'S' && ppid == dormant)
            && blocked_syscall(pid).is_some_and(|nr| NANOSLEEP.contains(&nr))
    });
    if !asleep {
        return Err(w.fail(format!(
            "restored sleep is not asleep: stat {:?}",
            proc_state(pid)
        )));
    }
    if exe() != want || mapped() != maps_before || maps_before == 0 {
        return Err(w.fail(format!(
            "after the restore exe is {:?} with {} mappings of {want:?} (before: {maps_before})",
            exe(),
            mapped()
        )));
    }
    kill(Pid::from_raw(pid), Signal::SIGTERM).map_err(|e| w.fail(format!("SIGTERM: {e}")))?;
    let st = w.wait_restored(&mut r, harness::FINISH_TIMEOUT)?;
    if shell_status(st) != 128 + libc::SIGTERM {
        return Err(w.fail(format!("dormant restore exited {st}, want 143")));
    }
    Ok(())
}
