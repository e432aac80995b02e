//! Workload `wl_tty`: a job of a terminal session that holds `/dev/tty` open, dumped and restored with
//! `--shell-job`.
//!
//! `wl_tty TRIGGER DIR [--inject-fault]`. The harness starts it as a session leader whose stdin is a pty
//! slave. It makes that pty its controlling terminal and forks the job, which puts itself in a process
//! group of its own, opens `/dev/tty` and checks that the fd is its session's controlling terminal
//! (`tcgetsid(fd) == getsid(0)`), then prints `READY <job pid>` and waits for the trigger. The tree to dump
//! is the job's, whose session is led from outside it, as a shell job's is. The starter waits for the job.
//!
//! After the trigger the job runs in the session it was restored into (the restorer's, whose controlling
//! terminal is the same pty) and checks that the `/dev/tty` fd is that session's controlling terminal
//! again and that a line can be written through it. `--inject-fault` swaps the fd for /dev/null first.
//!
//! `--starter-is-root`: the starter announces `READY <its own pid>` once the job is set up, for a test that
//! dumps the whole session, led by the starter and holding the terminal (which the dump refuses).

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::ExitCode;

use dormant_tests::workload::{
    self, exit_now, fork, wait_status, Report, WorkloadArgs, WorkloadError, INJECT_FAULT,
};

const USAGE: &str = "[--inject-fault] [--starter-is-root]";
const STARTER_IS_ROOT: &str = "--starter-is-root";

fn main() -> ExitCode {
    workload::main_with("wl_tty", run)
}

fn run() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env(USAGE)?;
    // SAFETY: TIOCSCTTY on our stdin; we are a session leader without a controlling terminal.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
        return Err(WorkloadError::setup(
            "TIOCSCTTY on stdin",
            std::io::Error::last_os_error(),
        ));
    }
    let starter_is_root = args.has_flag(STARTER_IS_ROOT);
    let (set_up_r, set_up_w) =
        nix::unistd::pipe().map_err(|e| WorkloadError::setup("pipe", std::io::Error::from(e)))?;
    let job = fork()?;
    if job != 0 {
        drop(set_up_w);
        if starter_is_root {
            let mut byte = [0u8; 1];
            if nix::unistd::read(&set_up_r, &mut byte) != Ok(1) {
                return Err(WorkloadError::setup("job", "it never set up"));
            }
            workload::ready()?;
        }
        // The starter: only waits; after a dump the job is gone and so is its verdict here.
        let code = wait_status(job).map_or(2, |s| {
            if libc::WIFEXITED(s) {
                libc::WEXITSTATUS(s)
            } else {
                2
            }
        });
        return Ok(ExitCode::from(code as u8));
    }
    drop(set_up_r);
    match job_main(&args, set_up_w) {
        Ok(code) => exit_now(code),
        Err(e) => {
            eprintln!("wl_tty job: {e}");
            exit_now(2)
        }
    }
}

/// Whether `fd` is the controlling terminal of the caller's session.
fn is_our_ctty(fd: &OwnedFd) -> Result<(), String> {
    // SAFETY: plain queries about our own fd and session.
    let (sid, ours) = unsafe { (libc::tcgetsid(fd.as_raw_fd()), libc::getsid(0)) };
    if sid < 0 {
        return Err(format!("tcgetsid: {}", std::io::Error::last_os_error()));
    }
    if sid != ours {
        return Err(format!("the terminal's session is {sid}, ours {ours}"));
    }
    Ok(())
}

fn job_main(args: &WorkloadArgs, set_up: OwnedFd) -> Result<i32, WorkloadError> {
    // SAFETY: puts this process in a group of its own.
    if unsafe { libc::setpgid(0, 0) } != 0 {
        return Err(WorkloadError::setup(
            "setpgid",
            std::io::Error::last_os_error(),
        ));
    }
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|e| WorkloadError::setup("open /dev/tty", e))?;
    let tty = OwnedFd::from(tty);
    is_our_ctty(&tty).map_err(|e| WorkloadError::setup("/dev/tty", e))?;
    // The pipe is closed before anything announces READY: a dump must not find it open.
    if args.has_flag(STARTER_IS_ROOT) {
        workload::set_ready_pid(std::process::id());
        nix::unistd::write(&set_up, &[1])
            .map_err(|e| WorkloadError::setup("set-up pipe", std::io::Error::from(e)))?;
        drop(set_up);
    } else {
        drop(set_up);
        workload::ready()?;
    }
    workload::wait_for_trigger(&args.trigger)?;
    let mut report = Report::new("wl_tty");
    let tty = if args.has_flag(INJECT_FAULT) {
        drop(tty);
        OwnedFd::from(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .map_err(|e| WorkloadError::setup("/dev/null", e))?,
        )
    } else {
        tty
    };
    report.check("dev-tty-is-the-session-terminal", is_our_ctty(&tty));
    let line = b"wl_tty: written through /dev/tty\n";
    // SAFETY: writes our buffer to our fd.
    let n = unsafe { libc::write(tty.as_raw_fd(), line.as_ptr().cast(), line.len()) };
    report.check(
        "write-through-dev-tty",
        if n == line.len() as isize {
            Ok(())
        } else {
            Err(format!(
                "write returned {n}: {}",
                std::io::Error::last_os_error()
            ))
        },
    );
    Ok(if report.finish() == ExitCode::SUCCESS {
        0
    } else {
        1
    })
}
