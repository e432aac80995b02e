//! Workload `wl_syscalls`: checkpointed while blocked in a syscall, it checks how the syscall came back.
//!
//! `wl_syscalls TRIGGER DIR MODE ARG`:
//! - `nanosleep SECONDS`: one nanosleep(SECONDS). After a restore it either completed (then at least
//!   SECONDS of monotonic time passed) or returned EINTR with a remaining time inside (0, SECONDS] that agrees
//!   with the monotonic time that passed. Then it waits for the trigger.
//! - `read LINE`: read() on stdin (a terminal) until LINE and a newline arrive; EINTR is retried. Then the
//!   trigger.
//! - `poll LINE`: poll() on stdin with a long timeout, retried on EINTR, then read() the line. Then the
//!   trigger.
//! - `futex VALUE`: FUTEX_WAIT (shared, no timeout) on the first word of `DIR/futex.word`, mapped
//!   MAP_SHARED, while it is 0; the harness stores VALUE there and FUTEX_WAKEs it. EINTR and EAGAIN are
//!   retried. The word must then hold VALUE.
//!
//! The workload prints READY just before the syscall; the harness waits until `/proc/PID/syscall` shows it
//! blocked there before it dumps.

use std::process::ExitCode;
use std::time::Duration;

use dormant_tests::workload::{self, Report, WorkloadArgs, WorkloadError};
use nix::time::{clock_gettime, ClockId};

const USAGE: &str = "nanosleep SECONDS | read LINE | poll LINE | futex VALUE";
/// poll's timeout: long enough for any dump and restore, short enough that a lost wake-up ends the test.
const POLL_TIMEOUT_MS: libc::c_int = 300_000;

fn monotonic() -> Result<Duration, WorkloadError> {
    let ts = clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map_err(|e| WorkloadError::setup("clock_gettime", e))?;
    Ok(Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32))
}

fn ts_to_duration(ts: &libc::timespec) -> Option<Duration> {
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u32::try_from(ts.tv_nsec)
        .ok()
        .filter(|n| *n < 1_000_000_000)?;
    Some(Duration::new(secs, nanos))
}

/// One nanosleep; returns (result, errno, remaining time as the kernel wrote it).
fn nanosleep_once(req: Duration) -> (libc::c_int, i32, libc::timespec) {
    let req = libc::timespec {
        tv_sec: req.as_secs() as libc::time_t,
        tv_nsec: req.subsec_nanos() as libc::c_long,
    };
    let mut rem = libc::timespec {
        tv_sec: -1,
        tv_nsec: -1,
    };
    // SAFETY: both pointers are to live, properly aligned timespecs on this stack frame.
    let r = unsafe { libc::nanosleep(&req, &mut rem) };
    let errno = if r == 0 {
        0
    } else {
        nix::errno::Errno::last_raw()
    };
    (r, errno, rem)
}

fn check_nanosleep(report: &mut Report, secs: &str) -> Result<(), WorkloadError> {
    let secs: u64 = secs
        .parse()
        .map_err(|e| WorkloadError::setup("the nanosleep length", e))?;
    let req = Duration::from_secs(secs);
    let t0 = monotonic()?;
    workload::ready()?;
    let (r, errno, rem) = nanosleep_once(req);
    let elapsed = monotonic()?.saturating_sub(t0);
    // Slack for scheduling between our clock reads and the kernel's timer.
    let slack = Duration::from_millis(50);
    let result = match (r, errno) {
        (0, _) => {
            report.note(&format!(
                "nanosleep completed after {elapsed:?} of monotonic time"
            ));
            if elapsed + Duration::from_millis(1) >= req {
                Ok(())
            } else {
                Err(format!(
                    "completed after only {elapsed:?} of a {req:?} sleep"
                ))
            }
        }
        (_, libc::EINTR) => match ts_to_duration(&rem) {
            None => Err(format!(
                "EINTR with an invalid remaining time {}s {}ns",
                rem.tv_sec, rem.tv_nsec
            )),
            Some(rem) => {
                report.note(&format!(
                    "nanosleep returned EINTR after {elapsed:?}, remaining {rem:?}"
                ));
                let slept = req.saturating_sub(rem);
                if rem.is_zero() || rem > req {
                    Err(format!("remaining time {rem:?} outside (0, {req:?}]"))
                } else if slept > elapsed + slack {
                    Err(format!(
                        "the kernel counted {slept:?} slept but only {elapsed:?} passed"
                    ))
                } else {
                    Ok(())
                }
            }
        },
        (_, e) => Err(format!(
            "nanosleep failed: {}",
            nix::errno::Errno::from_raw(e)
        )),
    };
    report.check("nanosleep", result);
    Ok(())
}

/// Reads from stdin until a newline, retrying EINTR; returns the bytes and how many EINTRs were seen.
fn read_line_stdin() -> (Result<Vec<u8>, String>, u32) {
    let mut got = Vec::new();
    let mut eintr = 0;
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: `buf` is a live stack buffer of the given length.
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = nix::errno::Errno::last();
            if e == nix::errno::Errno::EINTR {
                eintr += 1;
                continue;
            }
            return (Err(format!("read failed: {e}")), eintr);
        }
        if n == 0 {
            return (
                Err(format!(
                    "end of file after {:?}",
                    String::from_utf8_lossy(&got)
                )),
                eintr,
            );
        }
        got.extend_from_slice(&buf[..n as usize]);
        if got.ends_with(b"\n") {
            return (Ok(got), eintr);
        }
    }
}

fn compare_line(got: Result<Vec<u8>, String>, line: &str) -> Result<(), String> {
    let got = got?;
    let want = format!("{line}\n");
    if got == want.as_bytes() {
        Ok(())
    } else {
        Err(format!(
            "got {:?}, want {want:?}",
            String::from_utf8_lossy(&got)
        ))
    }
}

fn check_read(report: &mut Report, line: &str) -> Result<(), WorkloadError> {
    workload::ready()?;
    let (got, eintr) = read_line_stdin();
    report.note(&format!("read saw {eintr} EINTR"));
    report.check("read-line", compare_line(got, line));
    Ok(())
}

fn check_poll(report: &mut Report, line: &str) -> Result<(), WorkloadError> {
    workload::ready()?;
    let mut pfd = libc::pollfd {
        fd: 0,
        events: libc::POLLIN,
        revents: 0,
    };
    let mut eintr = 0u32;
    let polled = loop {
        // SAFETY: one live pollfd on this stack frame.
        let r = unsafe { libc::poll(&mut pfd, 1, POLL_TIMEOUT_MS) };
        match r {
            1.. => break Ok(pfd.revents),
            0 => break Err(format!("poll timed out after {POLL_TIMEOUT_MS} ms")),
            _ => {
                let e = nix::errno::Errno::last();
                if e == nix::errno::Errno::EINTR {
                    eintr += 1;
                    continue;
                }
                break Err(format!("poll failed: {e}"));
            }
        }
    };
    report.note(&format!("poll saw {eintr} EINTR"));
    let result = polled.and_then(|revents| {
        if revents & libc::POLLIN == 0 {
            return Err(format!("poll woke with revents {revents:#x} and no POLLIN"));
        }
        compare_line(read_line_stdin().0, line)
    });
    report.check("poll-line", result);
    Ok(())
}

fn check_futex(
    report: &mut Report,
    dir: &std::path::Path,
    value: &str,
) -> Result<(), WorkloadError> {
    use std::os::fd::AsRawFd;
    let want: u32 = value
        .parse()
        .map_err(|e| WorkloadError::setup("the futex value", e))?;
    let path = dir.join("futex.word");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| WorkloadError::setup("creating futex.word", e))?;
    f.set_len(4096)
        .map_err(|e| WorkloadError::setup("sizing futex.word", e))?;
    // SAFETY: a fresh shared mapping of one page of the file; it stays mapped for the process's life.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(WorkloadError::setup(
            "mapping futex.word",
            std::io::Error::last_os_error(),
        ));
    }
    let word = p.cast::<u32>();
    workload::ready()?;
    let mut eintr = 0u32;
    let result = loop {
        // SAFETY: the word is the aligned start of the live mapping.
        let now = unsafe { std::ptr::read_volatile(word) };
        if now != 0 {
            break if now == want {
                Ok(())
            } else {
                Err(format!("woke with {now}, want {want}"))
            };
        }
        // SAFETY: FUTEX_WAIT (shared) on a word of a live mapping, no timeout.
        let r = unsafe { libc::syscall(libc::SYS_futex, word, libc::FUTEX_WAIT, 0, 0, 0, 0) };
        if r != 0 {
            match nix::errno::Errno::last() {
                nix::errno::Errno::EINTR => eintr += 1,
                nix::errno::Errno::EAGAIN => {}
                e => break Err(format!("futex wait failed: {e}")),
            }
        }
    };
    report.note(&format!("futex wait saw {eintr} EINTR"));
    report.check("futex-wake", result);
    Ok(())
}

fn run() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env(USAGE)?;
    let usage = || WorkloadError::Usage {
        program: "wl_syscalls".into(),
        usage: USAGE,
    };
    let mode = args.rest.first().ok_or_else(usage)?;
    let arg = args.rest.get(1).ok_or_else(usage)?;
    let mut report = Report::new("wl_syscalls");
    match mode.as_str() {
        "nanosleep" => check_nanosleep(&mut report, arg)?,
        "read" => check_read(&mut report, arg)?,
        "poll" => check_poll(&mut report, arg)?,
        "futex" => check_futex(&mut report, &args.dir, arg)?,
        _ => return Err(usage()),
    }
    workload::wait_for_trigger(&args.trigger)?;
    report.check("after-trigger", Ok(()));
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_syscalls", run)
}
