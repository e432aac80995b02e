//! End-to-end: real processes dumped with `dormant dump`, killed, restored with `dormant restore` under
//! their original pid, then told to verify themselves. Privileged (root), and they need the dormant binary
//! built next to this test executable (`cargo build --release -p dormant-cli` for `cargo test --release`).
//!
//! Each test has its own scratch directory; the workloads of a few hundred MiB share two slots.

use std::fs;
use std::time::Duration;

use dormant_tests::harness::{
    self, blocked_syscall, proc_state, require_root, shell_status, wait_until, Result, Spec,
    StdinKind, Workload,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const NANOSLEEP: &[i64] = &[libc::SYS_nanosleep, libc::SYS_clock_nanosleep];
const READ: &[i64] = &[libc::SYS_read];
const POLL: &[i64] = &[libc::SYS_poll, libc::SYS_ppoll];
const FUTEX: &[i64] = &[libc::SYS_futex];

fn memory() -> Spec {
    Spec::workload("wl_memory", env!("CARGO_BIN_EXE_wl_memory")).big()
}

fn registers() -> Spec {
    Spec::workload("wl_registers", env!("CARGO_BIN_EXE_wl_registers"))
}

fn signals() -> Spec {
    Spec::workload("wl_signals", env!("CARGO_BIN_EXE_wl_signals"))
}

fn syscalls() -> Spec {
    Spec::workload("wl_syscalls", env!("CARGO_BIN_EXE_wl_syscalls"))
}

#[test]
fn memory_dump_restore() -> Result<()> {
    harness::dump_restore(memory())?;
    Ok(())
}

/// The same memory workload with its pages moved by the injected parasite (vmsplice into pipes spliced
/// into the page store) instead of the default process_vm_readv: every page checksum must match.
#[test]
fn memory_parasite_page_copy_dump_restore() -> Result<()> {
    harness::require_root()?;
    harness::dormant_bin()?;
    let mut w = harness::Workload::start(memory().dump_args(["--page-copy", "parasite"]))?;
    w.dump(false)?;
    let dump_log = std::fs::read_to_string(w.scratch().join("dump.log")).unwrap_or_default();
    assert!(
        dump_log.contains("spliced through the parasite") && !dump_log.contains("refused"),
        "the pages did not go through the parasite:\n{dump_log}"
    );
    let mut r = w.restore()?;
    w.expect_restored_pid(&mut r)?;
    w.release()?;
    w.finish_restored(&mut r)?;
    Ok(())
}

/// Memory attributes (mlock, mlock on fault, mlockall for future mappings, THP advice and disable,
/// DONTFORK, WIPEONFORK, DONTDUMP, MERGEABLE, a protection key and PKRU): every VmFlags mnemonic the
/// process recorded before the dump is the same after the restore.
#[test]
fn memattrs_dump_restore() -> Result<()> {
    harness::dump_restore(Spec::workload(
        "wl_memattrs",
        env!("CARGO_BIN_EXE_wl_memattrs"),
    ))?;
    Ok(())
}

/// seccomp: a main thread with two stacked filters, a thread with a chain of its own that shares the
/// first, a thread sharing the main thread's chain (a TSYNC after the restore must succeed, so the
/// sharing came back), and a child in strict mode that a forbidden syscall after the restore kills with
/// SIGKILL (checked by its parent).
#[test]
fn seccomp_dump_restore() -> Result<()> {
    harness::dump_restore(Spec::workload(
        "wl_seccomp",
        env!("CARGO_BIN_EXE_wl_seccomp"),
    ))?;
    Ok(())
}

/// Per-thread scheduling policy, priority, nice, CPU affinity, I/O priority, timer slack and
/// parent-death signal (three threads, each different), the OOM score adjustment and the argument,
/// environment and auxv ranges come back.
#[test]
fn attrs_dump_restore() -> Result<()> {
    harness::dump_restore(Spec::workload("wl_attrs", env!("CARGO_BIN_EXE_wl_attrs")))?;
    Ok(())
}

/// `unshare --time --monotonic=10d --boottime=20d wl_timens`: a process in a time namespace of its own,
/// dumped outside any container, comes back in a new time namespace with the same offsets, its clocks
/// ahead of them and of their values before the dump.
fn timens() -> Spec {
    Spec::workload("wl_timens", "unshare")
        .pre_args([
            "--time",
            "--monotonic=864000",
            "--boottime=1728000",
            env!("CARGO_BIN_EXE_wl_timens"),
        ])
        .args(["864000", "1728000"])
}

#[test]
fn timens_passes_untouched() -> Result<()> {
    harness::require_root()?;
    harness::self_check(timens())?;
    Ok(())
}

#[test]
fn timens_dump_restore() -> Result<()> {
    harness::dump_restore(timens())?;
    Ok(())
}

/// `wl_fs`: a working directory removed while in use, and a child chrooted into a directory that was then
/// removed: each is recreated with its mode and owner, entered and removed again, so `/proc` reads
/// `(deleted)`, `getcwd` fails with ENOENT and the directory has no links.
fn removed_dirs() -> Spec {
    Spec::workload("wl_fs", env!("CARGO_BIN_EXE_wl_fs"))
}

#[test]
fn removed_dirs_pass_untouched() -> Result<()> {
    harness::require_root()?;
    harness::self_check(removed_dirs())?;
    Ok(())
}

/// The directories recreated but not removed (what a restore that forgets the rmdir leaves): the checks
/// notice.
#[test]
fn removed_dirs_detect_damage() -> Result<()> {
    harness::require_root()?;
    harness::self_check_fails(
        removed_dirs().args([dormant_tests::workload::INJECT_FAULT]),
        &["cwd-removed", "root-removed", "root-attrs"],
    )?;
    Ok(())
}

#[test]
fn removed_dirs_dump_restore() -> Result<()> {
    harness::dump_restore(removed_dirs())?;
    Ok(())
}

#[test]
fn memory_leave_running_then_restore() -> Result<()> {
    harness::leave_running_then_restore(memory())?;
    Ok(())
}

#[test]
fn registers_dump_restore() -> Result<()> {
    harness::dump_restore(registers())?;
    Ok(())
}

#[test]
fn registers_ymm_dump_restore() -> Result<()> {
    harness::dump_restore(registers().args(["avx"]))?;
    Ok(())
}

#[test]
fn registers_leave_running_then_restore() -> Result<()> {
    harness::leave_running_then_restore(registers())?;
    Ok(())
}

#[test]
fn syscalls_nanosleep_dump_restore() -> Result<()> {
    // 10 s: a restore that re-runs the sleep for its remaining time still ends well inside the timeout.
    harness::dump_restore(syscalls().args(["nanosleep", "10"]).blocked_in(NANOSLEEP))?;
    Ok(())
}

#[test]
fn syscalls_read_pty_dump_restore() -> Result<()> {
    let line = "typed after the restore";
    harness::dump_restore(
        syscalls()
            .args(["read", line])
            .stdin(StdinKind::Pty { line: line.into() })
            .blocked_in(READ),
    )?;
    Ok(())
}

/// A shell job holding `/dev/tty` (`wl_tty`): dumped with `--shell-job` while its session is led from outside
/// the tree, restored into the restorer's session whose terminal is the same pty: the fd is that
/// session's controlling terminal again and takes a line.
#[test]
fn shell_job_dev_tty_dump_restore() -> Result<()> {
    harness::dump_restore(
        Spec::workload("wl_tty", env!("CARGO_BIN_EXE_wl_tty"))
            .root_from_ready()
            .stdin(StdinKind::Pty {
                line: String::new(),
            }),
    )?;
    Ok(())
}

/// The same workload dumped from its starter, which leads a session with the pty as controlling terminal:
/// refused (the session would come back without its terminal), naming the pid and the device; the tree
/// runs on and the job passes its own check.
#[test]
fn session_with_a_controlling_terminal_is_refused() -> Result<()> {
    require_root()?;
    harness::dormant_bin()?;
    let mut w = harness::Workload::start(
        Spec::workload("wl_tty", env!("CARGO_BIN_EXE_wl_tty"))
            .args(["--starter-is-root"])
            .stdin(StdinKind::Pty {
                line: String::new(),
            }),
    )?;
    let want = format!(
        "pid {} leads its session, whose controlling terminal is device 136:",
        w.pid()
    );
    w.dump_refused(&[&want])?;
    w.release_and_pass()
}

#[test]
fn syscalls_poll_pty_dump_restore() -> Result<()> {
    let line = "poll wake-up after the restore";
    harness::dump_restore(
        syscalls()
            .args(["poll", line])
            .stdin(StdinKind::Pty { line: line.into() })
            .blocked_in(POLL),
    )?;
    Ok(())
}

/// Blocked in FUTEX_WAIT on a shared file mapping: after the restore the wait is re-entered (restart) on
/// the same futex key, so the harness's FUTEX_WAKE through its own mapping of the file must reach it.
#[test]
fn syscalls_futex_dump_restore() -> Result<()> {
    harness::dump_restore(
        syscalls()
            .args(["futex", "51966"])
            .blocked_in(FUTEX)
            .futex_wake("futex.word", 51966),
    )?;
    Ok(())
}

/// coreutils `sleep 1000`: after the restore it is alive under the same pid with the same command line and
/// executable, sleeping (state S, in nanosleep), and SIGTERM still kills it (dormant restore exits 143).
#[test]
fn coreutils_sleep_dump_restore() -> Result<()> {
    require_root()?;
    harness::dormant_bin()?;
    let sleep = harness::find_program("sleep")?;
    let mut w = Workload::start(
        Spec::plain("sleep", &sleep)
            .args(["1000"])
            .blocked_in(NANOSLEEP),
    )?;
    let pid = w.pid();
    let cmdline =
        fs::read(format!("/proc/{pid}/cmdline")).map_err(|e| w.fail(format!("cmdline: {e}")))?;
    let exe = fs::read_link(format!("/proc/{pid}/exe")).map_err(|e| w.fail(format!("exe: {e}")))?;
    w.dump(false)?;
    let mut r = w.restore()?;
    let dormant = r.dormant_pid();
    let asleep = wait_until(Duration::from_secs(60), || {
        proc_state(pid).is_some_and(|(state, ppid)| state == 'S' && ppid == dormant)
            && blocked_syscall(pid).is_some_and(|nr| NANOSLEEP.contains(&nr))
    });
    if !asleep {
        return Err(w.fail(format!(
            "restored sleep is not asleep under dormant {dormant}: stat {:?}, syscall {:?}",
            proc_state(pid),
            blocked_syscall(pid)
        )));
    }
    let cmdline_after = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let exe_after = fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    if cmdline_after != cmdline || exe_after != exe {
        return Err(w.fail(format!(
            "restored as {:?} ({exe_after:?}), was {:?} ({exe:?})",
            String::from_utf8_lossy(&cmdline_after),
            String::from_utf8_lossy(&cmdline)
        )));
    }
    kill(Pid::from_raw(pid), Signal::SIGTERM).map_err(|e| w.fail(format!("SIGTERM: {e}")))?;
    let st = w.wait_restored(&mut r, harness::FINISH_TIMEOUT)?;
    if shell_status(st) != 128 + libc::SIGTERM {
        return Err(w.fail(format!(
            "dormant restore exited {st}, want 143 (killed by SIGTERM)"
        )));
    }
    Ok(())
}

/// python3 with a 1e6-entry dict and an open file it writes to: after the restore it re-verifies both.
#[test]
fn python_dump_restore() -> Result<()> {
    let spec = Spec::workload("wl_python", harness::python3()?)
        .pre_args([harness::python_workload_script()])
        .big();
    harness::dump_restore(spec)?;
    Ok(())
}

#[test]
fn signals_dump_restore() -> Result<()> {
    harness::dump_restore(signals())?;
    Ok(())
}

#[test]
fn signals_leave_running_then_restore() -> Result<()> {
    harness::leave_running_then_restore(signals())?;
    Ok(())
}

/// A chrooted process: restored inside the same root (chroot after chdir in the forked child), with its
/// working directory under that root and its umask; the workload checks all three itself.
#[test]
fn chrooted_process_dump_restore() -> Result<()> {
    harness::dump_restore(Spec::workload("wl_root", env!("CARGO_BIN_EXE_wl_root")))?;
    Ok(())
}
