//! Workload `wl_prctl`: process attributes only a process can set on itself, checked after a restore by
//! using them, not only by reading them back.
//!
//! `wl_prctl TRIGGER DIR`. The root makes itself a child subreaper, sets dumpable to 0 and the
//! `SECBIT_KEEP_CAPS` securebit, and forks `c`, which sets its parent-death signal to SIGUSR2 (and
//! handles nothing: a spurious SIGUSR2 would kill it and fail the check). After the trigger:
//! - the root checks its three values with the matching `PR_GET_*`;
//! - it lets `c` go on: `c` checks `PR_GET_PDEATHSIG` and its ppid, forks `gc` and exits; `gc` waits to
//!   be reparented, reports its new ppid and exits. As a subreaper the root must be that new parent: it
//!   reaps `c` (status 0) and then `gc` itself, and `gc` must have seen the root's pid.

use std::process::ExitCode;
use std::sync::atomic::Ordering;

use dormant_tests::workload::{
    self, exit_now, wait_until, Report, SharedWords, WorkloadArgs, WorkloadError,
};

const SECBIT_KEEP_CAPS: libc::c_ulong = 1 << 4;

/// Words of the shared page.
const GO: usize = 0;
const C_RESULT: usize = 1;
const GC_PPID: usize = 2;
/// `C_RESULT` values.
const C_OK: u32 = 1;
const C_BAD_PDEATHSIG: u32 = 2;
const C_BAD_PPID: u32 = 3;
const C_FORK_FAILED: u32 = 4;

fn prctl_get(option: libc::c_int) -> i64 {
    // SAFETY: PR_GET_* options that return their value and take no pointer.
    i64::from(unsafe { libc::prctl(option, 0, 0, 0, 0) })
}

/// `c` after the fork: set the parent-death signal, wait for the go, check, hand `gc` over, exit.
fn child(page: &SharedWords, root: u32) -> ! {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number.
    if unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGUSR2 as libc::c_ulong,
            0,
            0,
            0,
        )
    } != 0
    {
        exit_now(10);
    }
    if !wait_until(|| page.word(GO).load(Ordering::Acquire) == 1) {
        exit_now(11);
    }
    // PR_GET_PDEATHSIG stores through its argument instead of returning the value.
    let mut sig: libc::c_int = -1;
    // SAFETY: the kernel writes one int through the pointer.
    unsafe {
        libc::prctl(
            libc::PR_GET_PDEATHSIG,
            &mut sig as *mut libc::c_int,
            0,
            0,
            0,
        )
    };
    let result = if sig == libc::SIGUSR2 {
        C_OK
    } else {
        C_BAD_PDEATHSIG
    };
    // SAFETY: plain id query.
    let result = if result == C_OK && unsafe { libc::getppid() } as u32 != root {
        C_BAD_PPID
    } else {
        result
    };
    // SAFETY: plain id query.
    let c = unsafe { libc::getpid() };
    // SAFETY: the process is single-threaded, so the child may run ordinary code.
    match unsafe { libc::fork() } {
        0 => {
            // gc: wait until c has exited and we were reparented (c may be gone already), then say to
            // whom.
            // SAFETY: as above.
            if !wait_until(|| unsafe { libc::getppid() } != c) {
                exit_now(12);
            }
            // SAFETY: as above.
            let now = unsafe { libc::getppid() } as u32;
            page.word(GC_PPID).store(now, Ordering::Release);
            exit_now(0)
        }
        n if n < 0 => page.word(C_RESULT).store(C_FORK_FAILED, Ordering::Release),
        _ => page.word(C_RESULT).store(result, Ordering::Release),
    }
    exit_now(0)
}

fn wait_exit(pid: libc::pid_t) -> Option<i32> {
    let mut status = 0;
    // SAFETY: waits for our own child and writes its status on our stack.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    (r == pid || (pid == -1 && r > 0)).then_some(status)
}

fn run() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env("(no arguments)")?;
    let page = SharedWords::new()?;
    let set = |what: &str, option: libc::c_int, value: libc::c_ulong| {
        // SAFETY: these PR_SET_* options take one integer and change only this process.
        if unsafe { libc::prctl(option, value, 0, 0, 0) } != 0 {
            return Err(WorkloadError::setup(what, std::io::Error::last_os_error()));
        }
        Ok(())
    };
    set("PR_SET_CHILD_SUBREAPER", libc::PR_SET_CHILD_SUBREAPER, 1)?;
    set("PR_SET_DUMPABLE", libc::PR_SET_DUMPABLE, 0)?;
    set(
        "PR_SET_SECUREBITS",
        libc::PR_SET_SECUREBITS,
        SECBIT_KEEP_CAPS,
    )?;
    let root = std::process::id();
    // SAFETY: the process is single-threaded, so the child may run ordinary code.
    let c = match unsafe { libc::fork() } {
        0 => child(&page, root),
        n if n < 0 => {
            return Err(WorkloadError::setup(
                "fork",
                std::io::Error::last_os_error(),
            ))
        }
        n => n,
    };

    workload::ready()?;
    workload::wait_for_trigger(&args.trigger)?;

    let mut report = Report::new("wl_prctl");
    let mut subreaper: libc::c_int = -1;
    // SAFETY: PR_GET_CHILD_SUBREAPER writes one int through the pointer.
    unsafe {
        libc::prctl(
            libc::PR_GET_CHILD_SUBREAPER,
            &mut subreaper as *mut libc::c_int,
            0,
            0,
            0,
        )
    };
    report.check(
        "subreaper",
        if subreaper == 1 {
            Ok(())
        } else {
            Err(format!("PR_GET_CHILD_SUBREAPER {subreaper}"))
        },
    );
    let dumpable = prctl_get(libc::PR_GET_DUMPABLE);
    report.check(
        "dumpable",
        if dumpable == 0 {
            Ok(())
        } else {
            Err(format!("PR_GET_DUMPABLE {dumpable}"))
        },
    );
    let bits = prctl_get(libc::PR_GET_SECUREBITS);
    report.check(
        "securebits",
        if bits == SECBIT_KEEP_CAPS as i64 {
            Ok(())
        } else {
            Err(format!("PR_GET_SECUREBITS {bits:#x}"))
        },
    );

    page.word(GO).store(1, Ordering::Release);
    let c_status = wait_exit(c);
    report.check(
        "c-exit",
        match c_status {
            Some(s) if libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0 => Ok(()),
            other => Err(format!(
                "c ended with wait status {other:?} (a SIGUSR2 means a stray pdeathsig)"
            )),
        },
    );
    report.check(
        "c-pdeathsig-and-ppid",
        match page.word(C_RESULT).load(Ordering::Acquire) {
            C_OK => Ok(()),
            C_BAD_PDEATHSIG => Err("c's PR_GET_PDEATHSIG is not SIGUSR2".into()),
            C_BAD_PPID => Err("c's parent is not the root".into()),
            other => Err(format!("c reported {other}")),
        },
    );
    // gc was orphaned when c exited: with the subreaper flag it is our child now, and we reap it.
    let gc_status = wait_exit(-1);
    report.check(
        "orphan-reaped-by-subreaper",
        match (gc_status, page.word(GC_PPID).load(Ordering::Acquire)) {
            (Some(s), ppid) if libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0 && ppid == root => {
                Ok(())
            }
            (status, ppid) => Err(format!(
                "gc: wait status {status:?}, it saw ppid {ppid}, root is {root}"
            )),
        },
    );
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_prctl", run)
}
