//! End-to-end: multi-threaded processes dumped with `dormant dump`, killed, restored with `dormant
//! restore` under their original pid and tids, then told to verify themselves. Privileged (root), and they
//! need the dormant binary built next to this test executable (see e2e_single.rs).

use std::path::PathBuf;

use dormant_tests::harness::{self, Result, Spec, StdinKind};

const LINE: &str = "typed for the reader thread";

fn threads() -> Spec {
    Spec::workload("wl_threads", env!("CARGO_BIN_EXE_wl_threads"))
        .args([LINE])
        .stdin(StdinKind::Pty { line: LINE.into() })
}

fn python_threads_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("workloads/wl_python_threads.py")
}

fn python_threads() -> Result<Spec> {
    Ok(
        Spec::workload("wl_python_threads", harness::python3()?)
            .pre_args([python_threads_script()]),
    )
}

/// Seven threads blocked in futex (twice), read on a pty, nanosleep, sigwaitinfo, poll, and one busy:
/// every tid, thread-local value, blocked set and name comes back, and each wakes the way it waits.
#[test]
fn threads_dump_restore() -> Result<()> {
    harness::dump_restore(threads())?;
    Ok(())
}

/// The original keeps running after a `--leave-running` dump of all its threads, then the image restores.
#[test]
fn threads_leave_running_then_restore() -> Result<()> {
    harness::leave_running_then_restore(threads())?;
    Ok(())
}

/// The workload's own checks catch a changed blocked set (so a passing run means something).
#[test]
fn threads_self_check_catches_a_changed_sigmask() -> Result<()> {
    harness::self_check_fails(
        threads().args([dormant_tests::workload::INJECT_FAULT]),
        &["t-pipe-sigmask"],
    )?;
    Ok(())
}

/// python3 with four threads (Event, Condition, sleep, computation) and threading.local values.
#[test]
fn python_threads_dump_restore() -> Result<()> {
    harness::dump_restore(python_threads()?)?;
    Ok(())
}

#[test]
fn python_threads_self_check_catches_a_wrong_sum() -> Result<()> {
    harness::self_check_fails(
        python_threads()?.args([dormant_tests::workload::INJECT_FAULT]),
        &["py-compute-sum"],
    )?;
    Ok(())
}

fn tree() -> Spec {
    Spec::workload("wl_tree", env!("CARGO_BIN_EXE_wl_tree"))
}

/// A session leader with two process groups (one led by a child, joined by that child's sibling), a
/// grandchild and a zombie: after the restore every pid, ppid, pgid and sid is what it was, the zombie is
/// still there to be reaped with its status, and the shared-memory protocol between them goes on.
#[test]
fn tree_dump_restore() -> Result<()> {
    harness::dump_restore(tree())?;
    Ok(())
}

// No leave-running variant for wl_tree: its protocol lives in a shared file mapping, whose content is the
// file's (not part of the image), so the original's run to the end leaves the file saying "quit".

/// The workload's own checks catch a process that changed its group.
#[test]
fn tree_self_check_catches_a_changed_pgid() -> Result<()> {
    harness::self_check_fails(
        tree().args([dormant_tests::workload::INJECT_FAULT]),
        &["b-ids-round-2", "b-ids-round-3", "b-ids-round-4"],
    )?;
    Ok(())
}

fn python_tree_threads() -> Result<Spec> {
    Ok(
        Spec::workload("wl_python_tree_threads", harness::python3()?)
            .pre_args([PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("workloads/wl_python_tree_threads.py")]),
    )
}

/// python3 whose child process runs three threads: the child is restored by its restored parent with all
/// its tids, and each thread still finds its own threading.local value.
#[test]
fn python_child_with_threads_dump_restore() -> Result<()> {
    harness::dump_restore(python_tree_threads()?)?;
    Ok(())
}

#[test]
fn python_child_with_threads_self_check_catches_a_changed_local() -> Result<()> {
    harness::self_check_fails(
        python_tree_threads()?.args([dormant_tests::workload::INJECT_FAULT]),
        &["child-threads"],
    )?;
    Ok(())
}

/// Child subreaper, dumpable and securebits of the root and a child's parent-death signal come back, and
/// are used: an orphan made after the restore is reparented to (and reaped by) the subreaper root, and no
/// stray SIGUSR2 reaches the child.
#[test]
fn process_attributes_dump_restore() -> Result<()> {
    harness::dump_restore(Spec::workload("wl_prctl", env!("CARGO_BIN_EXE_wl_prctl")))?;
    Ok(())
}

fn jobctl() -> Spec {
    Spec::workload("wl_jobctl", env!("CARGO_BIN_EXE_wl_jobctl"))
}

/// Children stopped by SIGSTOP and by SIGTSTP (one of them two threads) whose stops the parent has not
/// collected, and one whose stop it has: each comes back stopped by its own signal, the parent's
/// `waitpid(WUNTRACED)` reports the first two with their signals and nothing for the third, no SIGCHLD is
/// pending that was not, and each runs again on SIGCONT.
#[test]
fn job_control_stops_dump_restore() -> Result<()> {
    harness::dump_restore(jobctl())?;
    Ok(())
}

/// The same, dumped twice with the tree left running in between (a dump must leave the stops and the
/// parent's view of them as they were).
#[test]
fn job_control_stops_leave_running_then_restore() -> Result<()> {
    harness::leave_running_then_restore(jobctl())?;
    Ok(())
}

fn orphans() -> Spec {
    Spec::workload("wl_orphans", env!("CARGO_BIN_EXE_wl_orphans"))
}

/// A process group whose leader exited and was reaped (members: the leader's orphaned child and a
/// sibling that joined it) and a session whose leader did the same after forking (a double fork: the
/// orphans were reparented to the subreaper root): helpers with the gone leaders' pids recreate both, and
/// every pid, ppid, pgid and sid in `/proc` is the dumped one, with no helper left.
#[test]
fn orphans_of_gone_leaders_dump_restore() -> Result<()> {
    let (ids, _) = harness::dump_restore_same_tree(orphans())?;
    assert_eq!(ids.len(), 6, "{ids:?}");
    let root = ids
        .iter()
        .find(|t| !ids.iter().any(|p| p.pid == t.ppid))
        .map_or(0, |t| t.pid);
    // The group whose leader is gone and the session whose leader is gone are really in the tree.
    assert!(
        ids.iter()
            .any(|t| t.pgid != t.pid && !ids.iter().any(|l| l.pid == t.pgid)),
        "{ids:?}"
    );
    assert!(
        ids.iter()
            .any(|t| t.sid != root && t.ppid == root && !ids.iter().any(|l| l.pid == t.sid)),
        "{ids:?}"
    );
    Ok(())
}

#[test]
fn orphans_self_check_catches_a_changed_pgid() -> Result<()> {
    harness::self_check_fails(
        orphans().args([dormant_tests::workload::INJECT_FAULT]),
        &["m2-ids-round-2", "m2-ids-round-3", "m2-ids-round-4"],
    )?;
    Ok(())
}

fn pidns() -> Spec {
    Spec::workload("wl_pidns", env!("CARGO_BIN_EXE_wl_pidns")).root_from_ready()
}

/// A tree whose root is the init of its own pid namespace (not a container: same mount namespace): it is
/// restored into a new pid namespace, with the same pids inside (1, 2, 3, checked by the workload) and
/// outside (`/proc` and `NSpid`, checked here).
#[test]
fn pid_namespace_init_dump_restore() -> Result<()> {
    let (ids, _) = harness::dump_restore_same_tree(pidns())?;
    let mut inner: Vec<Vec<i32>> = ids.iter().map(|t| t.ns_pids[1..].to_vec()).collect();
    inner.sort();
    // i, c, g and the init's zombie child (after the init's second thread took the next tid).
    assert_eq!(inner.len(), 4, "{ids:?}");
    assert_eq!(inner[..3], [vec![1], vec![2], vec![3]], "{ids:?}");
    assert!(inner[3].first().is_some_and(|p| *p > 4), "{ids:?}");
    assert!(
        ids.iter().all(|t| t.ns_pids.first() == Some(&t.pid)),
        "{ids:?}"
    );
    Ok(())
}

#[test]
fn pidns_self_check_catches_a_changed_pid() -> Result<()> {
    harness::self_check_fails(
        pidns().args([dormant_tests::workload::INJECT_FAULT]),
        &[
            "g-pids-inside-round-2",
            "g-pids-inside-round-3",
            "g-pids-inside-round-4",
        ],
    )?;
    Ok(())
}

fn pidns_sessions() -> Spec {
    Spec::workload("wl_pidns_sessions", env!("CARGO_BIN_EXE_wl_pidns_sessions")).root_from_ready()
}

#[test]
fn pidns_sessions_self_check_catches_a_changed_pgid() -> Result<()> {
    harness::self_check_fails(
        pidns_sessions().args([dormant_tests::workload::INJECT_FAULT]),
        &["m-ids-round-2", "m-ids-round-3", "m-ids-round-4"],
    )?;
    Ok(())
}
