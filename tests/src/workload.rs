//! The workload side of the test protocol.
//!
//! A workload is started as `wl_NAME TRIGGER DIR [ARGS...]` with its stdout and stderr on a regular log file.
//! It sets up its state, prints `READY <pid>`, then waits until the file TRIGGER exists (a short sleep loop
//! that tolerates EINTR, because a restore may interrupt any sleep). Then it verifies everything it set up,
//! printing `ok <what>` or `FAIL <what>: <detail>` per check, and finally `PASS <workload>` (exit 0) or
//! `FAILED <workload>: N of M checks` (exit 1). DIR is a private scratch directory for its files.
//!
//! The trigger is a file, not a signal, because signal handlers are not something every restore path
//! supports, and a file survives the dump/restore gap without any state in the harness.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How often a waiting workload looks for its trigger file.
pub const TRIGGER_POLL: Duration = Duration::from_millis(5);

/// How long a workload waits for its trigger before it gives up (so an abandoned workload never lingers).
pub const TRIGGER_TIMEOUT: Duration = Duration::from_secs(900);

/// Why a workload could not run its protocol (as opposed to a failed check).
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("usage: {program} TRIGGER DIR {usage}")]
    Usage {
        program: String,
        usage: &'static str,
    },
    #[error("cannot write to stdout: {0}")]
    Stdout(#[source] std::io::Error),
    #[error("the trigger file {path} did not appear within {timeout:?}")]
    TriggerTimeout { path: PathBuf, timeout: Duration },
    #[error("setting up {what}: {detail}")]
    Setup { what: String, detail: String },
}

impl WorkloadError {
    /// A set-up step failed; `detail` says how.
    pub fn setup(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Self::Setup {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}

/// The command line every workload receives.
#[derive(Debug, Clone)]
pub struct WorkloadArgs {
    /// The file whose appearance tells the workload to verify itself.
    pub trigger: PathBuf,
    /// A private scratch directory for files the workload creates.
    pub dir: PathBuf,
    /// Workload-specific arguments.
    pub rest: Vec<String>,
}

impl WorkloadArgs {
    /// Parses `TRIGGER DIR [ARGS...]` from the process's arguments.
    pub fn from_env(usage: &'static str) -> Result<Self, WorkloadError> {
        let mut it = std::env::args();
        let program = it.next().unwrap_or_else(|| "workload".into());
        let (Some(trigger), Some(dir)) = (it.next(), it.next()) else {
            return Err(WorkloadError::Usage { program, usage });
        };
        Ok(Self {
            trigger: trigger.into(),
            dir: dir.into(),
            rest: it.collect(),
        })
    }

    /// Whether the workload-specific arguments contain `flag`.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.rest.iter().any(|a| a == flag)
    }

    /// The workload-specific arguments that are not flags (the kinds of state a multi-kind workload sets
    /// up); at least one.
    pub fn kinds(&self) -> Result<Vec<String>, WorkloadError> {
        let kinds: Vec<String> = self
            .rest
            .iter()
            .filter(|a| !a.starts_with("--"))
            .cloned()
            .collect();
        if kinds.is_empty() {
            return Err(WorkloadError::setup("kinds", "none given"));
        }
        Ok(kinds)
    }
}

/// The flag that makes a workload damage one piece of its own state after the trigger, so a test can prove
/// that the checks do catch damage.
pub const INJECT_FAULT: &str = "--inject-fault";

/// Writes one protocol line and flushes it, so the harness sees it even if the process is killed next.
pub fn say(line: &str) -> Result<(), WorkloadError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(WorkloadError::Stdout)
}

/// The pid announced in `READY`, 0 before it.
static READY_PID: AtomicU32 = AtomicU32::new(0);

/// Remembers the pid a workload announced (for workloads that write `READY` themselves, e.g. from asm).
pub fn set_ready_pid(pid: u32) {
    READY_PID.store(pid, Ordering::Relaxed);
}

/// Announces that the state is set up and the workload may be checkpointed from now on.
pub fn ready() -> Result<(), WorkloadError> {
    let pid = std::process::id();
    set_ready_pid(pid);
    say(&format!("READY {pid}"))
}

/// Blocks until `trigger` exists. `std::thread::sleep` is nanosleep in a loop that resumes on EINTR with the
/// remaining time, so a restore that interrupts the sleep only shortens one poll period.
pub fn wait_for_trigger(trigger: &Path) -> Result<(), WorkloadError> {
    let start = Instant::now();
    while !trigger.exists() {
        if start.elapsed() > TRIGGER_TIMEOUT {
            return Err(WorkloadError::TriggerTimeout {
                path: trigger.to_path_buf(),
                timeout: TRIGGER_TIMEOUT,
            });
        }
        std::thread::sleep(TRIGGER_POLL);
    }
    Ok(())
}

/// Collects the results of a workload's checks and prints them as they come.
#[derive(Debug)]
pub struct Report {
    workload: &'static str,
    total: usize,
    failed: usize,
}

impl Report {
    pub fn new(workload: &'static str) -> Self {
        Self {
            workload,
            total: 0,
            failed: 0,
        }
    }

    /// Records one check: `Ok(())` prints `ok <what>`, `Err(detail)` prints `FAIL <what>: <detail>`.
    pub fn check(&mut self, what: &str, result: Result<(), String>) {
        self.total += 1;
        let line = match result {
            Ok(()) => format!("ok {what}"),
            Err(detail) => {
                self.failed += 1;
                format!("FAIL {what}: {detail}")
            }
        };
        // A lost line only weakens the diagnostics: the verdict line and the exit code still tell.
        let _ = say(&line);
    }

    /// An informational line (not a check), e.g. how a blocked syscall returned.
    pub fn note(&self, what: &str) {
        let _ = say(&format!("note {what}"));
    }

    /// Number of failed checks so far.
    pub fn failed(&self) -> usize {
        self.failed
    }

    /// Prints the verdict and gives the exit code: 0 only if at least one check ran and none failed.
    /// First it checks that getpid() still returns the pid announced in `READY` (a restore must keep it).
    pub fn finish(mut self) -> ExitCode {
        let announced = READY_PID.load(Ordering::Relaxed);
        let now = std::process::id();
        self.check(
            "same-pid",
            if announced == now {
                Ok(())
            } else {
                Err(format!("getpid() is {now}, READY said {announced}"))
            },
        );
        if self.failed == 0 && self.total > 0 {
            let _ = say(&format!("PASS {}", self.workload));
            ExitCode::SUCCESS
        } else {
            let _ = say(&format!(
                "FAILED {}: {} of {} checks",
                self.workload, self.failed, self.total
            ));
            ExitCode::from(1)
        }
    }
}

/// Runs a workload's `body`, turning a protocol error into a `FAIL` line and exit code 2.
pub fn main_with(
    workload: &'static str,
    body: impl FnOnce() -> Result<ExitCode, WorkloadError>,
) -> ExitCode {
    match body() {
        Ok(code) => code,
        Err(e) => {
            let _ = say(&format!("FAIL {workload}-protocol: {e}"));
            let _ = say(&format!("FAILED {workload}: protocol error"));
            ExitCode::from(2)
        }
    }
}

/// `fork(2)` for workloads that build process trees. The caller must be single-threaded, or the child
/// must run only async-signal-safe code (e.g. [`exit_now`]).
pub fn fork() -> Result<libc::pid_t, WorkloadError> {
    // SAFETY: per the contract above, the child runs only code that is safe after a fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(WorkloadError::setup(
            "fork",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(pid)
}

/// Waits for child `pid`; its raw wait status, or `None` when waitpid failed.
pub fn wait_status(pid: libc::pid_t) -> Option<i32> {
    let mut status = 0;
    // SAFETY: waits for our own child; the status is written to our stack.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    (r == pid).then_some(status)
}

/// A process outside this tree: a grandchild (its parent exits at once, so it is reparented away) that
/// pauses until killed; returns its pid. The test kills it by the pid the caller writes down.
pub fn outside_process() -> Result<libc::pid_t, WorkloadError> {
    let mut p = [0; 2];
    // SAFETY: pipe2 writes two fds into `p`.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(WorkloadError::setup(
            "pipe2",
            std::io::Error::last_os_error(),
        ));
    }
    let a = fork()?;
    if a == 0 {
        // SAFETY: raw syscalls only, no allocation.
        unsafe {
            if libc::fork() != 0 {
                libc::_exit(0);
            }
            let me = libc::getpid().to_ne_bytes();
            libc::write(p[1], me.as_ptr().cast(), 4);
            loop {
                libc::pause();
            }
        }
    }
    wait_status(a);
    let mut b = [0u8; 4];
    // SAFETY: closing our copy of the write end, then reading 4 bytes into `b` on our stack; the read
    // end is closed after.
    let n = unsafe {
        libc::close(p[1]);
        let n = libc::read(p[0], b.as_mut_ptr().cast(), 4);
        libc::close(p[0]);
        n
    };
    if n != 4 {
        return Err(WorkloadError::setup("outside pid", "short read"));
    }
    Ok(i32::from_ne_bytes(b))
}

/// Ends a forked child at once, without running the parent's atexit handlers or destructors again.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit ends this process; nothing of it runs afterwards.
    unsafe { libc::_exit(code) }
}

/// Maps one page of shared anonymous memory (inherited by every child forked afterwards, shared with
/// them); it stays mapped for the process's lifetime.
pub fn shared_anon_page() -> Result<*mut libc::c_void, WorkloadError> {
    // SAFETY: a new mapping chosen by the kernel; nothing else is touched.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return Err(WorkloadError::setup(
            "mapping shared anonymous memory",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(page)
}

/// A page of shared anonymous memory seen as 1024 atomic words, through which a workload and the children
/// it forks afterwards hand each other flags and results (a restore keeps it shared between them).
#[derive(Debug)]
pub struct SharedWords(*mut std::sync::atomic::AtomicU32);

impl SharedWords {
    /// Maps the page ([`shared_anon_page`]).
    pub fn new() -> Result<Self, WorkloadError> {
        Ok(Self(shared_anon_page()?.cast()))
    }

    /// Word `i` (< 1024) of the page.
    pub fn word(&self, i: usize) -> &std::sync::atomic::AtomicU32 {
        assert!(i < 1024, "word {i} is outside the page");
        // SAFETY: the page holds 1024 words, `i` is below that, and the mapping lives for the process's
        // lifetime.
        unsafe { &*self.0.add(i) }
    }
}

/// How long [`wait_until`] waits for a condition before it gives up.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Polls `cond` every 2 ms until it holds (true) or [`WAIT_TIMEOUT`] passed (false).
pub fn wait_until(cond: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > WAIT_TIMEOUT {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}
