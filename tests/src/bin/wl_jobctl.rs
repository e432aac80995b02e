//! Workload `wl_jobctl`: job-control stops, and what the parent of a stopped child sees of them.
//!
//! `wl_jobctl TRIGGER DIR [--inject-fault]`. The root blocks SIGCHLD (so every SIGCHLD it is sent stays
//! pending and can be seen) and forks three children, each in a process group of its own, that loop
//! until told to exit:
//! - `a` is stopped with SIGSTOP, and the root has not collected the stop;
//! - `b` (two threads) is stopped with SIGTSTP (default action), and the root has not collected it;
//! - `c` is stopped with SIGSTOP, and the root collected the stop with `waitpid(WUNTRACED)`.
//!
//! The root then takes every pending SIGCHLD off its queue and says READY. After the trigger:
//! - `a-stopped`, `b-stopped`, `c-stopped`: every thread of the child is in state `T` in `/proc`, and
//!   `waitpid(WUNTRACED | WNOHANG)` reports `a` stopped by SIGSTOP, `b` by SIGTSTP, and nothing for `c`
//!   (its stop was collected before: a restore must not report it again);
//! - `sigchld`: no SIGCHLD is pending (a restore must not tell the root of a stop it already knew of);
//! - `resume`: each child, sent SIGCONT, runs, sees the go word and exits 0.
//!
//! With `--inject-fault`, between the trigger and the checks, the root does what a restore that gets job
//! control wrong would: `a` is continued (not stopped again), `b` is stopped anew with SIGSTOP (the wrong
//! signal) and `c` is stopped anew (reported again): `a-stopped`, `b-stopped`, `c-stopped` and `sigchld`
//! fail.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use dormant_tests::workload::{
    self, exit_now, wait_until, Report, SharedWords, WorkloadArgs, WorkloadError, INJECT_FAULT,
};

/// Word of the shared page: 1 once the children may exit.
const GO: usize = 0;

/// A child: loops until the go word says exit (so it runs only when not stopped).
fn child(page: &SharedWords, threads: bool) -> ! {
    if threads {
        // A second thread, which the group stop must hold too.
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_millis(5));
        });
    }
    loop {
        if page.word(GO).load(Ordering::Acquire) == 1 {
            exit_now(0);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn kill(pid: libc::pid_t, sig: libc::c_int) -> Result<(), WorkloadError> {
    // SAFETY: sends a signal to our own child.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(WorkloadError::setup(
            format!("kill({pid}, {sig})"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// The signal of `pid`'s uncollected stop, if there is one (`waitid(WSTOPPED | WNOWAIT)`, which leaves
/// it in place).
fn pending_stop(pid: libc::pid_t) -> Option<i32> {
    // SAFETY: zeroed siginfo is a valid value; waitid writes into it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waits (without blocking or consuming) for our own child; `info` lives on this stack.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WSTOPPED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: si_pid and si_status are set by a waitid that found a child (and zero otherwise).
    let (found, status) = unsafe { (info.si_pid(), info.si_status()) };
    (r == 0 && found == pid).then_some(status)
}

/// Waits until `pid`'s stop can be collected (its group stop is complete).
fn await_stop(pid: libc::pid_t, what: &str) -> Result<(), WorkloadError> {
    if wait_until(|| pending_stop(pid).is_some()) {
        Ok(())
    } else {
        Err(WorkloadError::setup(
            format!("stopping {what}"),
            "no stop report",
        ))
    }
}

/// Every thread of `pid` is in state `T`.
fn all_threads_stopped(pid: libc::pid_t) -> Result<(), String> {
    let dir = format!("/proc/{pid}/task");
    let tids = std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))?;
    let mut n = 0;
    for t in tids {
        let t = t.map_err(|e| format!("{dir}: {e}"))?;
        let path = t.path().join("stat");
        let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path:?}: {e}"))?;
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        if state != Some('T') {
            return Err(format!("thread {:?} is in state {state:?}", t.file_name()));
        }
        n += 1;
    }
    if n == 0 {
        return Err("no threads".into());
    }
    Ok(())
}

/// `waitpid(pid, WUNTRACED | WNOHANG)`: `Some(signal)` for a stop report, `None` for none.
fn collect_stop(pid: libc::pid_t) -> Result<Option<i32>, String> {
    let mut status = 0;
    // SAFETY: waits (without blocking) for our own child; the status is written to our stack.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED | libc::WNOHANG) };
    match r {
        0 => Ok(None),
        r if r == pid && libc::WIFSTOPPED(status) => Ok(Some(libc::WSTOPSIG(status))),
        r if r == pid => Err(format!("wait status {status:#x} is not a stop")),
        _ => Err(format!("waitpid: {}", std::io::Error::last_os_error())),
    }
}

/// The check of one child: stopped in `/proc`, and the parent's wait reports `want` (or nothing).
fn check_child(pid: libc::pid_t, want: Option<i32>) -> Result<(), String> {
    all_threads_stopped(pid)?;
    match collect_stop(pid)? {
        got if got == want => Ok(()),
        got => Err(format!("waitpid(WUNTRACED) reports {got:?}, want {want:?}")),
    }
}

fn sigchld_pending() -> bool {
    // SAFETY: sigpending writes one sigset_t on our stack.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigpending(&mut set);
        libc::sigismember(&set, libc::SIGCHLD) == 1
    }
}

/// Takes every pending SIGCHLD off the queue.
fn drain_sigchld() {
    // SAFETY: sigset manipulation on our stack; a zero timeout never blocks.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        while libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) == libc::SIGCHLD {}
    }
}

fn block_sigchld() -> Result<(), WorkloadError> {
    // SAFETY: sigset manipulation on our stack; changes only this thread's mask.
    let r = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    };
    if r != 0 {
        return Err(WorkloadError::setup(
            "blocking SIGCHLD",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// What a restore that gets job control wrong leaves (see the module docs).
fn inject_fault(a: libc::pid_t, b: libc::pid_t, c: libc::pid_t) -> Result<(), WorkloadError> {
    kill(a, libc::SIGCONT)?;
    kill(b, libc::SIGCONT)?;
    kill(c, libc::SIGCONT)?;
    // SIGCONT clears the uncollected stops; wait until the children run again.
    let running = |p| all_threads_stopped(p).is_err();
    if !wait_until(|| running(a) && running(b) && running(c)) {
        return Err(WorkloadError::setup(
            "continuing the children",
            "still stopped",
        ));
    }
    kill(b, libc::SIGSTOP)?;
    kill(c, libc::SIGSTOP)?;
    await_stop(b, "b again")?;
    await_stop(c, "c again")
}

fn run() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env("[--inject-fault]")?;
    let page = SharedWords::new()?;
    block_sigchld()?;
    let spawn = |threads: bool| -> Result<libc::pid_t, WorkloadError> {
        match workload::fork()? {
            0 => child(&page, threads),
            pid => {
                // Each child leads a process group of its own, whose parent (the root) is in another
                // group of the same session: the group is not orphaned, so SIGTSTP stops it (the kernel
                // discards SIGTSTP in an orphaned group, and the harness starts the root in a session of
                // its own).
                // SAFETY: setpgid on our own child, not yet exec'd.
                if unsafe { libc::setpgid(pid, pid) } != 0 {
                    return Err(WorkloadError::setup(
                        "setpgid",
                        std::io::Error::last_os_error(),
                    ));
                }
                Ok(pid)
            }
        }
    };
    let a = spawn(false)?;
    let b = spawn(true)?;
    let c = spawn(false)?;
    // b's second thread must exist before it stops.
    if !wait_until(|| std::fs::read_dir(format!("/proc/{b}/task")).is_ok_and(|d| d.count() == 2)) {
        return Err(WorkloadError::setup("b's thread", "not started"));
    }
    kill(a, libc::SIGSTOP)?;
    kill(b, libc::SIGTSTP)?;
    kill(c, libc::SIGSTOP)?;
    await_stop(a, "a")?;
    await_stop(b, "b")?;
    await_stop(c, "c")?;
    match collect_stop(c) {
        Ok(Some(libc::SIGSTOP)) => {}
        other => {
            return Err(WorkloadError::setup(
                "collecting c's stop",
                format!("{other:?}"),
            ))
        }
    }
    drain_sigchld();

    workload::ready()?;
    workload::wait_for_trigger(&args.trigger)?;
    if args.has_flag(INJECT_FAULT) {
        inject_fault(a, b, c)?;
    }

    let mut report = Report::new("wl_jobctl");
    // Before any wait: whether a SIGCHLD came that the root was not owed.
    let sigchld = sigchld_pending();
    report.check("a-stopped", check_child(a, Some(libc::SIGSTOP)));
    report.check("b-stopped", check_child(b, Some(libc::SIGTSTP)));
    report.check("c-stopped", check_child(c, None));
    report.check(
        "sigchld",
        if sigchld {
            Err("a SIGCHLD is pending that was not before the checkpoint".into())
        } else {
            Ok(())
        },
    );
    page.word(GO).store(1, Ordering::Release);
    let mut resumed = Ok(());
    for (name, pid) in [("a", a), ("b", b), ("c", c)] {
        kill(pid, libc::SIGCONT)?;
        match workload::wait_status(pid) {
            Some(s) if libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0 => {}
            other => {
                resumed = Err(format!("{name} ended with wait status {other:?}"));
            }
        }
    }
    report.check("resume", resumed);
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_jobctl", run)
}
