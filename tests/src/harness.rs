//! The end-to-end test harness: start a workload, dump it with the `dormant` binary, restore it, and read
//! its verdict.
//!
//! Every step asserts real state: the dumped process is gone (`/proc/PID` absent, `kill(PID, 0)` fails with
//! ESRCH) before the restore starts; the restored process must come back under its original pid, and its
//! own checks decide the verdict. Failures carry the workload log and the dormant logs, so a failing test
//! explains itself. Each run has its own 0700 scratch directory; workloads of a few hundred MiB take a slot
//! of [`BIG_SLOTS`] so that at most two of them run at once.
//!
//! What it does not do: it never calls into dormant's libraries, only the CLI, and it never retries.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::pty::PtyMaster;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long a workload may take to set up and print `READY` (a few hundred MiB on a busy 2-core machine).
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `dormant dump` may take.
pub const DUMP_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a restored (or never dumped) workload may take from the trigger to its exit.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(180);
/// How often the harness polls for a state change.
const POLL: Duration = Duration::from_millis(10);

/// How many big (hundreds of MiB) workloads may run at once.
pub const BIG_SLOTS: usize = 2;

/// What went wrong in a harness step. Every variant carries the logs it could gather.
#[derive(thiserror::Error)]
pub enum HarnessError {
    #[error("the end-to-end tests dump and restore real processes (ptrace, clone3 with set_tid) and must run as root")]
    NotRoot,
    #[error("the dormant binary is missing at {path}: run `{build}` first (or set DORMANT_BIN)")]
    DormantMissing { path: PathBuf, build: String },
    #[error("{what} ({path}): {source}")]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: Errno,
    },
    #[error("{what} did not happen within {after:?}\n{logs}")]
    Timeout {
        what: String,
        after: Duration,
        logs: String,
    },
    #[error("dormant dump of pid {pid} failed: {status}\n{logs}")]
    DumpFailed {
        pid: i32,
        status: ExitStatus,
        logs: String,
    },
    #[error("dormant restore of pid {pid} ended with {status} (want exit 0)\n{logs}")]
    RestoreFailed {
        pid: i32,
        status: ExitStatus,
        logs: String,
    },
    #[error("{workload} (pid {pid}): {detail}\n{logs}")]
    Verdict {
        workload: String,
        pid: i32,
        detail: String,
        logs: String,
    },
}

// Test failures print the error with `{:?}`; the Display text with its logs is what a reader needs.
impl fmt::Debug for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

pub type Result<T> = std::result::Result<T, HarnessError>;

pub(crate) fn io_err(
    what: impl Into<String>,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    let path = path.to_path_buf();
    move |source| HarnessError::Io { what, path, source }
}

/// Fails unless the tests run as root; privileged tests never skip silently.
pub fn require_root() -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(HarnessError::NotRoot)
    }
}

/// The `dormant` binary: `$DORMANT_BIN`, or `target/<profile>/dormant` next to the running test executable
/// (which lives in `target/<profile>/deps/`).
pub fn dormant_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("DORMANT_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(io_err(
        "locating the test executable",
        Path::new("/proc/self/exe"),
    ))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let path = profile_dir.join("dormant");
    if path.is_file() {
        return Ok(path);
    }
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    Err(HarnessError::DormantMissing {
        path,
        build: if release {
            "cargo build --release -p dormant-cli".into()
        } else {
            "cargo build -p dormant-cli".into()
        },
    })
}

/// A counting semaphore for big workloads: at most [`BIG_SLOTS`] at once in this test process.
static BIG_IN_USE: Mutex<usize> = Mutex::new(0);
static BIG_FREED: Condvar = Condvar::new();

/// A held big-workload slot; released on drop.
#[derive(Debug)]
pub struct BigSlot(());

impl BigSlot {
    pub fn acquire() -> Self {
        // A poisoned lock only means another test panicked while holding it; the count is still right.
        let mut n = BIG_IN_USE.lock().unwrap_or_else(|p| p.into_inner());
        while *n >= BIG_SLOTS {
            n = BIG_FREED.wait(n).unwrap_or_else(|p| p.into_inner());
        }
        *n += 1;
        Self(())
    }
}

impl Drop for BigSlot {
    fn drop(&mut self) {
        let mut n = BIG_IN_USE.lock().unwrap_or_else(|p| p.into_inner());
        *n -= 1;
        BIG_FREED.notify_one();
    }
}

/// A private 0700 directory under the system temp dir, removed on drop (kept if `DORMANT_TEST_KEEP` is set).
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Result<Self> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let base = std::env::temp_dir();
        loop {
            let n = SEQ.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("dormant-test-{tag}-{}-{n}", std::process::id()));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(Self { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("creating a scratch directory", &path)(e)),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("DORMANT_TEST_KEEP").is_some() {
            eprintln!("keeping {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A pseudo-terminal for workloads that read their stdin from a terminal (dumped with `--shell-job`).
/// The harness keeps both ends open for the whole run, so input written while nobody has the slave open
/// is not lost.
#[derive(Debug)]
pub struct Pty {
    master: PtyMaster,
    slave: File,
    name: String,
}

impl Pty {
    pub fn open() -> Result<Self> {
        let sys = |what: &str| {
            let what = what.to_string();
            move |source| HarnessError::Sys { what, source }
        };
        let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
            .map_err(sys("posix_openpt"))?;
        // Other tests spawn processes concurrently: the master must never leak into them.
        nix::fcntl::fcntl(
            &master,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .map_err(sys("marking the pty master close-on-exec"))?;
        nix::pty::grantpt(&master).map_err(sys("grantpt"))?;
        nix::pty::unlockpt(&master).map_err(sys("unlockpt"))?;
        let name = nix::pty::ptsname_r(&master).map_err(sys("ptsname_r"))?;
        let slave = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&name)
            .map_err(io_err("opening the pty slave", Path::new(&name)))?;
        Ok(Self {
            master,
            slave,
            name,
        })
    }

    /// A new descriptor of the slave, for a child's stdin.
    pub fn slave_stdio(&self) -> Result<Stdio> {
        let f = self
            .slave
            .try_clone()
            .map_err(io_err("duplicating the pty slave", Path::new(&self.name)))?;
        Ok(Stdio::from(f))
    }

    /// Types `line` and a newline into the terminal.
    pub fn write_line(&self, line: &str) -> Result<()> {
        let data = format!("{line}\n");
        let mut rest = data.as_bytes();
        while !rest.is_empty() {
            match nix::unistd::write(self.master.as_fd(), rest) {
                Ok(n) => rest = &rest[n..],
                Err(Errno::EINTR) => {}
                Err(source) => {
                    return Err(HarnessError::Sys {
                        what: format!("writing to the pty master of {}", self.name),
                        source,
                    })
                }
            }
        }
        Ok(())
    }
}

/// How a workload talks to the harness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// The workload protocol (see `tests/README.md`): `TRIGGER DIR` are inserted after `pre_args`, the
    /// workload prints `READY <pid>` and its verdict.
    Workload,
    /// A program nobody here wrote: it gets `args` as they are; it is ready once it sits in one of
    /// `blocked_in`.
    Plain,
}

/// What stdin a workload gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StdinKind {
    /// `/dev/null`.
    Null,
    /// A pty slave; the harness types `line` into it when it releases the workload. Dumped and restored
    /// with `--shell-job`.
    Pty { line: String },
}

/// Everything needed to start one workload.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The name in messages and the verdict line (`PASS <name>`).
    pub name: String,
    pub program: PathBuf,
    /// Arguments before `TRIGGER DIR` (e.g. a script for an interpreter).
    pub pre_args: Vec<OsString>,
    /// Arguments after `TRIGGER DIR`.
    pub args: Vec<OsString>,
    pub protocol: Protocol,
    pub stdin: StdinKind,
    /// Syscall numbers: before a dump, wait until the workload is blocked in one of them
    /// (`/proc/PID/syscall`), so the dump really catches it there.
    pub blocked_in: Vec<i64>,
    /// Takes a [`BigSlot`] for its whole life.
    pub big: bool,
    /// On release, store this value into the first word of this file of the work directory and
    /// FUTEX_WAKE its waiters (a shared futex: the key is the file's page, so our mapping reaches the
    /// workload's).
    pub futex_wake: Option<(String, u32)>,
    /// The process to dump is the one the workload names in `READY <pid>`, not the started one (a
    /// launcher that forks the tree's root, e.g. into a new pid namespace, and waits for it).
    pub root_from_ready: bool,
    /// Extra arguments of `dormant dump` and of `dormant restore` (e.g. `--tcp-established`).
    pub dump_args: Vec<OsString>,
    pub restore_args: Vec<OsString>,
}

impl Spec {
    /// A protocol workload built in this package (`CARGO_BIN_EXE_<name>` of the calling test).
    pub fn workload(name: &str, program: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            program: program.into(),
            pre_args: Vec::new(),
            args: Vec::new(),
            protocol: Protocol::Workload,
            stdin: StdinKind::Null,
            blocked_in: Vec::new(),
            big: false,
            futex_wake: None,
            root_from_ready: false,
            dump_args: Vec::new(),
            restore_args: Vec::new(),
        }
    }

    /// A program that knows nothing of the protocol.
    pub fn plain(name: &str, program: impl Into<PathBuf>) -> Self {
        Self {
            protocol: Protocol::Plain,
            ..Self::workload(name, program)
        }
    }

    pub fn pre_args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, a: I) -> Self {
        self.pre_args.extend(a.into_iter().map(Into::into));
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, a: I) -> Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    pub fn stdin(mut self, s: StdinKind) -> Self {
        self.stdin = s;
        self
    }

    pub fn blocked_in(mut self, syscalls: &[i64]) -> Self {
        self.blocked_in = syscalls.to_vec();
        self
    }

    pub fn big(mut self) -> Self {
        self.big = true;
        self
    }

    pub fn root_from_ready(mut self) -> Self {
        self.root_from_ready = true;
        self
    }

    /// Passes `a` to every `dormant dump` of this workload.
    pub fn dump_args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, a: I) -> Self {
        self.dump_args.extend(a.into_iter().map(Into::into));
        self
    }

    /// Passes `a` to every `dormant restore` of this workload.
    pub fn restore_args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, a: I) -> Self {
        self.restore_args.extend(a.into_iter().map(Into::into));
        self
    }

    pub fn futex_wake(mut self, file: &str, value: u32) -> Self {
        self.futex_wake = Some((file.into(), value));
        self
    }
}

/// Stores `value` in the first word of `path` through a shared mapping and wakes every futex waiter on
/// it; returns how many were woken.
fn futex_store_and_wake(path: &Path, value: u32) -> std::io::Result<i64> {
    use std::os::fd::AsRawFd;
    let f = OpenOptions::new().read(true).write(true).open(path)?;
    // SAFETY: a fresh shared mapping of one page of `f`, used only in this function and unmapped below.
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
        return Err(std::io::Error::last_os_error());
    }
    let word = p.cast::<u32>();
    // SAFETY: `word` is the aligned start of the live mapping; the volatile store is seen by the waiter
    // through the same page.
    unsafe { std::ptr::write_volatile(word, value) };
    // SAFETY: FUTEX_WAKE (shared) on a word of a live mapping; no memory is written by the kernel.
    let woken =
        unsafe { libc::syscall(libc::SYS_futex, word, libc::FUTEX_WAKE, i32::MAX, 0, 0, 0) };
    let err = std::io::Error::last_os_error();
    // SAFETY: unmaps exactly the mapping made above.
    unsafe { libc::munmap(p, 4096) };
    if woken < 0 {
        return Err(err);
    }
    Ok(woken)
}

/// Makes a command's child safe to dump: its own session (so its process tree is self-contained) and no
/// descriptor beyond 0-2 (cargo and CI runners may leak pipes, which a dump refuses).
pub(crate) fn isolate(cmd: &mut Command, new_session: bool) {
    // Marked close-on-exec rather than closed, so std's own exec-error pipe keeps working until exec.
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: the closure runs in the forked child before exec and makes only async-signal-safe syscalls
    // (close_range, setsid); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                CLOSE_RANGE_CLOEXEC,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if new_session && libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Hands `fd` to a command's child as its fd 3 (after [`isolate`], which marks every fd from 3 up
/// close-on-exec: the dup clears that flag on the copy).
pub fn pass_as_fd3(cmd: &mut Command, fd: std::os::fd::RawFd) {
    // SAFETY: the closure runs in the forked child before exec and only calls dup2 (async-signal-safe);
    // `fd` stays open in the parent until the child is spawned.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if fd == 3 {
                let fl = libc::fcntl(3, libc::F_GETFD);
                libc::fcntl(3, libc::F_SETFD, fl & !libc::FD_CLOEXEC);
            }
            Ok(())
        });
    }
}

pub(crate) fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    all[from..].join("\n")
}

/// The first field of `/proc/PID/syscall`: the syscall number it is blocked in, or `None` if running/gone.
pub fn blocked_syscall(pid: i32) -> Option<i64> {
    let text = fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// The state letter and parent pid from `/proc/PID/stat`.
pub fn proc_state(pid: i32) -> Option<(char, i32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything: parse after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((state, ppid))
}

/// The ids of one process of a tree, as `/proc` shows them (in the reader's pid namespace), and its
/// `NSpid` levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeIds {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    pub ns_pids: Vec<i32>,
}

/// The ids of `root` and every descendant (zombies included), sorted by pid; `None` if any vanished
/// while being read.
pub fn tree_ids(root: i32) -> Option<Vec<TreeIds>> {
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<i32>().ok());
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let ns_pids = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .map(|l| {
                l.split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        out.push(TreeIds {
            pid,
            ppid: num(1)?,
            pgid: num(2)?,
            sid: num(3)?,
            ns_pids,
        });
        for task in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
            let task = task.ok()?.file_name();
            let kids = fs::read_to_string(format!(
                "/proc/{pid}/task/{}/children",
                task.to_string_lossy()
            ))
            .unwrap_or_default();
            todo.extend(
                kids.split_whitespace()
                    .filter_map(|k| k.parse::<i32>().ok()),
            );
        }
    }
    out.sort_by_key(|t| t.pid);
    out.dedup();
    Some(out)
}

/// Whether `pid` names no process at all (not even a zombie).
pub fn pid_is_free(pid: i32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
        && kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH)
}

/// Polls `cond` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

fn wait_child(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(Some(st));
        }
        if start.elapsed() > timeout {
            return Ok(None);
        }
        std::thread::sleep(POLL);
    }
}

fn kill_and_reap(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A started workload and everything around it: its scratch directory, log, trigger and image.
#[derive(Debug)]
pub struct Workload {
    spec: Spec,
    pid: i32,
    /// The original process while it is ours to reap.
    child: Option<Child>,
    pty: Option<Pty>,
    scratch: Scratch,
    _big: Option<BigSlot>,
}

impl Workload {
    /// Starts the workload and waits until it is ready: `READY <pid>` for protocol workloads, then (if the
    /// spec says so) blocked in one of its syscalls.
    pub fn start(spec: Spec) -> Result<Self> {
        let big = spec.big.then(BigSlot::acquire);
        let scratch = Scratch::new(&spec.name)?;
        let work = scratch.path().join("work");
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&work)
            .map_err(io_err("creating the work directory", &work))?;
        let log_path = scratch.path().join("workload.log");
        // O_APPEND: stdout and stderr share the file, and a restored process appends after what is there.
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log_path)
            .map_err(io_err("creating the workload log", &log_path))?;
        let log_err = log
            .try_clone()
            .map_err(io_err("duplicating the log", &log_path))?;
        let pty = match &spec.stdin {
            StdinKind::Null => None,
            StdinKind::Pty { .. } => Some(Pty::open()?),
        };

        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.pre_args);
        if spec.protocol == Protocol::Workload {
            cmd.arg(scratch.path().join("trigger")).arg(&work);
        }
        cmd.args(&spec.args)
            .current_dir(&work)
            .stdout(log)
            .stderr(log_err)
            .stdin(match &pty {
                Some(p) => p.slave_stdio()?,
                None => Stdio::null(),
            });
        isolate(&mut cmd, true);
        let child = cmd.spawn().map_err(io_err(
            format!("starting workload {}", spec.name),
            &spec.program,
        ))?;
        let pid = child.id() as i32;
        let mut w = Self {
            spec,
            pid,
            child: Some(child),
            pty,
            scratch,
            _big: big,
        };
        w.wait_ready()?;
        Ok(w)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let pid = self.pid;
        let want = format!("READY {pid}");
        if self.spec.protocol == Protocol::Workload {
            let log = self.log_path();
            let mut exited = None;
            let from_ready = self.spec.root_from_ready;
            let mut named = None;
            let ok = wait_until(READY_TIMEOUT, || {
                let text = read_lossy(&log);
                if from_ready {
                    named = text
                        .lines()
                        .find_map(|l| l.strip_prefix("READY ")?.trim().parse::<i32>().ok());
                    if named.is_some() {
                        return true;
                    }
                } else if text.lines().any(|l| l == want) {
                    return true;
                }
                exited = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                exited.is_some()
            });
            if let Some(st) = exited {
                return Err(HarnessError::Verdict {
                    workload: self.spec.name.clone(),
                    pid,
                    detail: format!("exited with {st} before it was ready"),
                    logs: self.logs(),
                });
            }
            if !ok {
                return Err(self.timeout(
                    format!("{want} in the log of {}", self.spec.name),
                    READY_TIMEOUT,
                ));
            }
            if let Some(root) = named {
                self.pid = root;
            }
        }
        if !self.spec.blocked_in.is_empty() {
            let want = self.spec.blocked_in.clone();
            let ok = wait_until(READY_TIMEOUT, || {
                blocked_syscall(pid).is_some_and(|nr| want.contains(&nr))
            });
            if !ok {
                let now = fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
                return Err(self.timeout(
                    format!(
                        "{} (pid {pid}) blocking in syscall {want:?} (now: {})",
                        self.spec.name,
                        now.trim()
                    ),
                    READY_TIMEOUT,
                ));
            }
        }
        Ok(())
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.scratch.path().join("workload.log")
    }

    pub fn image_dir(&self) -> PathBuf {
        self.scratch.path().join("image")
    }

    pub fn trigger_path(&self) -> PathBuf {
        self.scratch.path().join("trigger")
    }

    pub fn log_text(&self) -> String {
        read_lossy(&self.log_path())
    }

    /// The workload log and the tails of the dormant logs, for error messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (title, file, lines) in [
            ("workload log", "workload.log", 80),
            ("dormant dump output", "dump.out", 40),
            ("dormant dump log", "dump.log", 60),
            ("dormant restore output", "restore.out", 40),
            ("dormant restore log", "restore.log", 60),
        ] {
            let p = self.scratch.path().join(file);
            if p.exists() {
                out.push_str(&format!(
                    "--- {title} ({}) ---\n{}\n",
                    p.display(),
                    tail(&read_lossy(&p), lines)
                ));
            }
        }
        out
    }

    fn timeout(&self, what: String, after: Duration) -> HarnessError {
        HarnessError::Timeout {
            what,
            after,
            logs: self.logs(),
        }
    }

    /// An error about this workload, with all its logs attached.
    pub fn fail(&self, detail: impl Into<String>) -> HarnessError {
        HarnessError::Verdict {
            workload: self.spec.name.clone(),
            pid: self.pid,
            detail: detail.into(),
            logs: self.logs(),
        }
    }

    /// Tells the workload to verify itself: creates the trigger file and types the pty line, if any.
    pub fn release(&self) -> Result<()> {
        let t = self.trigger_path();
        fs::write(&t, b"check\n").map_err(io_err("creating the trigger", &t))?;
        if let (Some(pty), StdinKind::Pty { line }) = (&self.pty, &self.spec.stdin) {
            pty.write_line(line)?;
        }
        if let Some((file, value)) = &self.spec.futex_wake {
            // The restored task re-enters FUTEX_WAIT by itself (syscall restart); wake it only once it is
            // there, so that "woke exactly one waiter" proves the restored wait is on the same futex.
            let pid = self.pid;
            if !wait_until(Duration::from_secs(10), || {
                blocked_syscall(pid) == Some(libc::SYS_futex)
            }) {
                return Err(self.fail("the workload never (re)entered FUTEX_WAIT"));
            }
            let p = self.scratch.path().join("work").join(file);
            let woken =
                futex_store_and_wake(&p, *value).map_err(io_err("waking the futex in", &p))?;
            if woken != 1 {
                return Err(self.fail(format!(
                    "FUTEX_WAKE woke {woken} waiters, expected the workload"
                )));
            }
        }
        Ok(())
    }

    /// Removes the trigger file again (before a second run from the same image).
    pub fn unrelease(&self) -> Result<()> {
        let t = self.trigger_path();
        match fs::remove_file(&t) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("removing the trigger", &t)(e)),
        }
    }

    /// Waits for the original process (never dumped, or left running) to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let Some(child) = self.child.as_mut() else {
            return Err(self.fail("the original process was already reaped"));
        };
        match wait_child(child, timeout) {
            Ok(Some(st)) => {
                self.child = None;
                Ok(st)
            }
            Ok(None) => Err(self.timeout(
                format!("exit of {} (pid {})", self.spec.name, self.pid),
                timeout,
            )),
            Err(e) => Err(io_err("waiting for the workload", &self.spec.program)(e)),
        }
    }

    /// Asserts the verdict in the log: `READY <pid>` once, no `FAIL` line, and `PASS <name>` last; and
    /// that the process exited with 0.
    pub fn expect_pass(&self, status: ExitStatus) -> Result<()> {
        let log = self.log_text();
        let ready = format!("READY {}", self.pid);
        let pass = format!("PASS {}", self.spec.name);
        let readies = log.lines().filter(|l| *l == ready).count();
        if readies != 1 {
            return Err(self.fail(format!("{readies} `{ready}` lines in the log, want 1")));
        }
        if let Some(fail) = log.lines().find(|l| l.starts_with("FAIL")) {
            return Err(self.fail(format!("a check failed: {fail}")));
        }
        let last = log
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        if last != pass {
            return Err(self.fail(format!("last log line is {last:?}, want {pass:?}")));
        }
        if !status.success() {
            return Err(self.fail(format!("exited with {status} despite `{pass}`")));
        }
        Ok(())
    }

    /// Runs `dormant dump` expecting it to be refused with a message that holds every one of `needles`;
    /// returns that message. The original process is left as the failed dump left it (see
    /// [`Workload::release_and_pass`]).
    pub fn dump_refused(&mut self, needles: &[&str]) -> Result<String> {
        let logs = match self.dump(false) {
            Ok(()) => {
                return Err(self.fail(format!(
                    "the dump succeeded, want it refused with {needles:?}"
                )))
            }
            Err(e) => e.to_string(),
        };
        if let Some(missing) = needles.iter().find(|n| !logs.contains(*n)) {
            return Err(self.fail(format!("the dump error does not say {missing:?}: {logs}")));
        }
        Ok(logs)
    }

    /// Releases the original process (after a refused or a leave-running dump) and asserts it runs on
    /// and passes its own check within a minute.
    pub fn release_and_pass(&mut self) -> Result<()> {
        self.release()?;
        let st = self.wait_exit(Duration::from_secs(60))?;
        self.expect_pass(st)
    }

    /// Runs `dormant dump` on the workload. Without `leave_running` it reaps the killed original while the
    /// dump waits for the pid to be free, then asserts the pid is free. With it, asserts the original is
    /// still running, not stopped and not traced.
    pub fn dump(&mut self, leave_running: bool) -> Result<()> {
        let bin = dormant_bin()?;
        let out_path = self.scratch.path().join("dump.out");
        let out =
            File::create(&out_path).map_err(io_err("creating the dump output file", &out_path))?;
        let out_err = out
            .try_clone()
            .map_err(io_err("duplicating the dump output", &out_path))?;
        let mut cmd = Command::new(&bin);
        cmd.arg("dump")
            .arg("-t")
            .arg(self.pid.to_string())
            .arg("-D")
            .arg(self.image_dir())
            .arg("-o")
            .arg(self.scratch.path().join("dump.log"))
            .arg("-v");
        if leave_running {
            cmd.arg("-R");
        }
        if self.pty.is_some() {
            cmd.arg("--shell-job");
        }
        cmd.args(&self.spec.dump_args);
        cmd.stdin(Stdio::null()).stdout(out).stderr(out_err);
        isolate(&mut cmd, false);
        // Every pid of the tree, zombies included: a zombie of the killed tree is reaped by whoever it is
        // reparented to (init), asynchronously, and a restore started before that finds its pid taken.
        let tree_pids: Vec<i32> = tree_ids(self.pid)
            .map(|ids| ids.iter().map(|t| t.pid).collect())
            .unwrap_or_default();
        let mut dump = cmd.spawn().map_err(io_err("running dormant dump", &bin))?;

        let start = Instant::now();
        let mut dump_status = None;
        let mut orig_status = None;
        loop {
            if dump_status.is_none() {
                dump_status = dump
                    .try_wait()
                    .map_err(io_err("waiting for dormant dump", &bin))?;
            }
            // We are the original's parent: reap it as soon as the dump kills it, so its pid becomes free.
            if !leave_running && orig_status.is_none() {
                if let Some(child) = self.child.as_mut() {
                    orig_status = child
                        .try_wait()
                        .map_err(io_err("waiting for the workload", &self.spec.program))?;
                }
            }
            match dump_status {
                Some(st) if !st.success() => {
                    return Err(HarnessError::DumpFailed {
                        pid: self.pid,
                        status: st,
                        logs: self.logs(),
                    })
                }
                // A restored tree's root is dormant restore's child (it reaps it), not ours.
                Some(_) if leave_running || orig_status.is_some() || self.child.is_none() => break,
                _ => {}
            }
            // After a successful dump the original may take a moment to die; bound that too.
            if start.elapsed() > DUMP_TIMEOUT {
                kill_and_reap(&mut dump);
                let what = match dump_status {
                    None => format!("dormant dump of pid {} finishing", self.pid),
                    Some(_) => format!("death of pid {} after a successful dump", self.pid),
                };
                return Err(self.timeout(what, DUMP_TIMEOUT));
            }
            std::thread::sleep(POLL);
        }

        if leave_running {
            return self.expect_left_running();
        }
        self.child = None;
        let pid = self.pid;
        if !pid_is_free(pid) {
            return Err(self.fail(format!(
                "pid {pid} is not free after the dump returned (original ended with {orig_status:?})"
            )));
        }
        let all_free = || tree_pids.iter().all(|&p| pid_is_free(p));
        if !wait_until(Duration::from_secs(10), all_free) {
            let taken: Vec<i32> = tree_pids
                .iter()
                .copied()
                .filter(|&p| !pid_is_free(p))
                .collect();
            return Err(self.fail(format!(
                "pids {taken:?} of the dumped tree are still taken 10 s after the dump"
            )));
        }
        Ok(())
    }

    fn expect_left_running(&mut self) -> Result<()> {
        let pid = self.pid;
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(st)) = child.try_wait() {
                self.child = None;
                return Err(self.fail(format!("the original ended with {st} after dump -R")));
            }
        }
        let (state, _) = proc_state(pid).unwrap_or(('?', 0));
        if matches!(state, 'T' | 't' | 'Z' | 'X' | '?') {
            return Err(self.fail(format!("after dump -R the original is in state {state:?}")));
        }
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let tracer = status
            .lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .map(str::trim)
            .unwrap_or("?");
        if tracer != "0" {
            return Err(self.fail(format!(
                "after dump -R the original is still traced by {tracer}"
            )));
        }
        Ok(())
    }

    /// The log's length now (taken right after a `--leave-running` dump).
    pub fn log_state(&self) -> Result<LogState> {
        let p = self.log_path();
        let meta = fs::metadata(&p).map_err(io_err("stat of the log", &p))?;
        Ok(LogState { len: meta.len() })
    }

    /// Cuts the log back to its length at the dump, dropping what the left-running original wrote, so the
    /// run from the image starts from the same log as the first and its verdict is the only one in it. The
    /// mtime is left changed: dormant must reopen an fd's file that changed since the dump (only files behind
    /// mappings must be unchanged).
    pub fn rewind_log(&self, at_dump: &LogState) -> Result<()> {
        let p = self.log_path();
        let f = OpenOptions::new()
            .write(true)
            .open(&p)
            .map_err(io_err("opening the log", &p))?;
        f.set_len(at_dump.len)
            .map_err(io_err("truncating the log", &p))
    }

    /// Starts `dormant restore` (not detached: it waits for the restored process and exits with its status).
    pub fn restore(&self) -> Result<Restored> {
        let bin = dormant_bin()?;
        let out_path = self.scratch.path().join("restore.out");
        let out = File::create(&out_path)
            .map_err(io_err("creating the restore output file", &out_path))?;
        let out_err = out
            .try_clone()
            .map_err(io_err("duplicating the restore output", &out_path))?;
        let mut cmd = Command::new(&bin);
        cmd.arg("restore")
            .arg("-D")
            .arg(self.image_dir())
            .arg("-o")
            .arg(self.scratch.path().join("restore.log"))
            .arg("-v")
            .args(&self.spec.restore_args);
        match &self.pty {
            Some(pty) => {
                cmd.arg("--shell-job").stdin(pty.slave_stdio()?);
                // A shell job is restored into the restorer's session: give that session the terminal as
                // its controlling one, as the shell that runs `dormant restore` would have it.
                isolate(&mut cmd, true);
                // SAFETY: runs in the forked child after `isolate`'s setsid; one async-signal-safe ioctl
                // (taking the terminal over from a session that may still hold it: we are root).
                unsafe {
                    cmd.pre_exec(|| {
                        if libc::ioctl(0, libc::TIOCSCTTY, 1) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
            }
            None => {
                cmd.stdin(Stdio::null());
                isolate(&mut cmd, false);
            }
        }
        cmd.stdout(out).stderr(out_err);
        let child = cmd
            .spawn()
            .map_err(io_err("running dormant restore", &bin))?;
        Ok(Restored {
            pid: self.pid,
            dormant: child,
            done: None,
        })
    }

    /// Waits until the restored process exists under the original pid as dormant restore's child (before
    /// the release, so it cannot have finished yet); fails if dormant restore exits first.
    pub fn expect_restored_pid(&self, restored: &mut Restored) -> Result<()> {
        let pid = self.pid;
        let dormant = restored.dormant_pid();
        let mut ended = None;
        let ok = wait_until(FINISH_TIMEOUT, || {
            if proc_state(pid).is_some_and(|(_, ppid)| ppid == dormant) {
                return true;
            }
            ended = restored.wait(Duration::ZERO).ok().flatten();
            ended.is_some()
        });
        match ended {
            Some(status) if proc_state(pid).is_none_or(|(_, ppid)| ppid != dormant) => {
                Err(HarnessError::RestoreFailed {
                    pid,
                    status,
                    logs: self.logs(),
                })
            }
            _ if ok => Ok(()),
            _ => Err(self.timeout(
                format!("pid {pid} to reappear as a child of dormant restore"),
                FINISH_TIMEOUT,
            )),
        }
    }

    /// Waits for a restore to finish and asserts the verdict: dormant restore exits 0 (the restored
    /// workload's own exit status) and the log ends with `PASS <name>`.
    pub fn finish_restored(&self, restored: &mut Restored) -> Result<()> {
        let status = self.wait_restored(restored, FINISH_TIMEOUT)?;
        if !status.success() {
            return Err(HarnessError::RestoreFailed {
                pid: self.pid,
                status,
                logs: self.logs(),
            });
        }
        self.expect_pass(status)
    }

    /// Waits for `dormant restore` to exit, killing everything on timeout.
    pub fn wait_restored(&self, restored: &mut Restored, timeout: Duration) -> Result<ExitStatus> {
        match restored.wait(timeout) {
            Ok(Some(st)) => Ok(st),
            Ok(None) => {
                restored.kill();
                Err(self.timeout(
                    format!("exit of dormant restore of pid {}", self.pid),
                    timeout,
                ))
            }
            Err(e) => Err(io_err("waiting for dormant restore", Path::new("dormant"))(
                e,
            )),
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            kill_and_reap(child);
        }
    }
}

/// The size of a workload log at one moment.
#[derive(Debug, Clone, Copy)]
pub struct LogState {
    pub len: u64,
}

/// A running `dormant restore` and the pid it restores. Dropping it kills whatever is left.
#[derive(Debug)]
pub struct Restored {
    /// The restored process's pid (the original pid).
    pub pid: i32,
    dormant: Child,
    done: Option<ExitStatus>,
}

impl Restored {
    /// The pid of the `dormant restore` process (the restored process's parent).
    pub fn dormant_pid(&self) -> i32 {
        self.dormant.id() as i32
    }

    /// Waits up to `timeout` for `dormant restore` to exit; `None` on timeout.
    pub fn wait(&mut self, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
        if let Some(st) = self.done {
            return Ok(Some(st));
        }
        let st = wait_child(&mut self.dormant, timeout)?;
        self.done = st;
        Ok(st)
    }

    /// Whether dormant restore is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.wait(Duration::ZERO), Ok(None))
    }

    /// Kills the restored process (only if it is still dormant's child, so a recycled pid is safe) and
    /// dormant restore, and reaps dormant.
    pub fn kill(&mut self) {
        if self.done.is_some() {
            return;
        }
        let dormant = self.dormant_pid();
        if proc_state(self.pid).is_some_and(|(_, ppid)| ppid == dormant) {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        }
        kill_and_reap(&mut self.dormant);
        self.done = self.dormant.try_wait().ok().flatten();
    }
}

impl Drop for Restored {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The shell convention dormant restore follows: exit code, or 128 + the signal.
pub fn shell_status(st: ExitStatus) -> i32 {
    st.code()
        .or_else(|| st.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// Start, release, and assert the verdict, without any dump: proves the workload's own checks pass.
pub fn self_check(spec: Spec) -> Result<String> {
    let mut w = Workload::start(spec)?;
    w.release()?;
    let st = w.wait_exit(FINISH_TIMEOUT)?;
    w.expect_pass(st)?;
    Ok(w.log_text())
}

/// Start, release, and assert the workload fails exactly the `failing` checks (each a `FAIL <what>:` line)
/// with exit 1: proves the checks can fail (used with `--inject-fault`, or wrong terminal input).
pub fn self_check_fails(spec: Spec, failing: &[&str]) -> Result<String> {
    let mut w = Workload::start(spec)?;
    w.release()?;
    let st = w.wait_exit(FINISH_TIMEOUT)?;
    let log = w.log_text();
    let mut fails: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("FAIL ")?.split(':').next())
        .collect();
    fails.sort_unstable();
    let mut want = failing.to_vec();
    want.sort_unstable();
    if fails != want {
        return Err(w.fail(format!("failed checks {fails:?}, want {want:?}")));
    }
    if st.code() != Some(1) {
        return Err(w.fail(format!("exited with {st}, want exit 1")));
    }
    let verdict = format!("FAILED {}:", w.name());
    if !log.lines().any(|l| l.starts_with(&verdict)) {
        return Err(w.fail(format!("no `{verdict}` verdict line")));
    }
    Ok(log)
}

/// The path of `name` in `$PATH`.
pub fn find_program(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| HarnessError::Io {
            what: format!("finding {name} in PATH"),
            path: PathBuf::from(path),
            source: std::io::ErrorKind::NotFound.into(),
        })
}

/// The real Python 3 interpreter binary: /usr/bin/python3 if present, else whatever `python3` in PATH runs
/// (resolved through `sys.executable`, so a shim script such as pyenv's is not what gets dumped).
pub fn python3() -> Result<PathBuf> {
    let system = PathBuf::from("/usr/bin/python3");
    if system.is_file() {
        return Ok(system);
    }
    let shim = find_program("python3")?;
    let out = Command::new(&shim)
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .map_err(io_err("asking python3 for its executable", &shim))?;
    let exe = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if exe.is_file() {
        Ok(exe)
    } else {
        Err(HarnessError::Io {
            what: format!("python3 names its executable {exe:?}"),
            path: shim,
            source: std::io::ErrorKind::NotFound.into(),
        })
    }
}

/// The Python workload script shipped in `tests/workloads/`.
pub fn python_workload_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/wl_python.py")
}

/// The main end-to-end scenario: start, dump (killing the original), check the pid is free, restore with
/// the same pid, release, and assert the restored workload's verdict.
pub fn dump_restore(spec: Spec) -> Result<String> {
    require_root()?;
    dormant_bin()?;
    let mut w = Workload::start(spec)?;
    w.dump(false)?;
    let mut r = w.restore()?;
    w.expect_restored_pid(&mut r)?;
    w.release()?;
    w.finish_restored(&mut r)?;
    Ok(w.log_text())
}

/// [`dump_restore`], and after the restore the whole tree's pids, ppids, pgids, sids and `NSpid`s, read
/// from `/proc`, are the dumped ones (read the same way before the dump), except the root's ppid, which is
/// dormant restore's pid. Returns the ids before the dump and the log.
pub fn dump_restore_same_tree(spec: Spec) -> Result<(Vec<TreeIds>, String)> {
    require_root()?;
    dormant_bin()?;
    let mut w = Workload::start(spec)?;
    let before = tree_ids(w.pid()).ok_or_else(|| w.fail("the tree changed while it was read"))?;
    w.dump(false)?;
    let mut r = w.restore()?;
    w.expect_restored_pid(&mut r)?;
    // The root's parent is dormant restore now (as for every restore); everything else is the same.
    let mut want = before.clone();
    for t in want.iter_mut().filter(|t| t.pid == w.pid()) {
        t.ppid = r.dormant_pid();
    }
    let mut after = None;
    // The tree is forked top-down after the root appears; the ids settle once every process exists (and
    // every helper standing in for a gone leader has gone again).
    let same = wait_until(Duration::from_secs(30), || {
        after = tree_ids(w.pid());
        after.as_ref() == Some(&want)
    });
    if !same {
        r.kill();
        return Err(w.fail(format!(
            "the restored tree's ids differ:\n want  {want:?}\n after {after:?}"
        )));
    }
    w.release()?;
    w.finish_restored(&mut r)?;
    Ok((before, w.log_text()))
}

/// [`dump_restore`] twice: the restored tree, still waiting for its trigger, is dumped and restored again
/// (what it restored must be dumpable as it was), then released.
pub fn dump_restore_twice(spec: Spec) -> Result<String> {
    require_root()?;
    dormant_bin()?;
    let mut w = Workload::start(spec)?;
    w.dump(false)?;
    let mut first = w.restore()?;
    w.expect_restored_pid(&mut first)?;
    w.dump(false)?;
    // Its root killed by the second dump, the first restore ends too.
    let _ = w.wait_restored(&mut first, FINISH_TIMEOUT);
    let mut r = w.restore()?;
    w.expect_restored_pid(&mut r)?;
    w.release()?;
    w.finish_restored(&mut r)?;
    Ok(w.log_text())
}

/// `dump --leave-running`: the original goes on and passes its own check; then (after it exited and was
/// reaped, log and trigger put back as they were at the dump) the image is restored and must pass too.
pub fn leave_running_then_restore(spec: Spec) -> Result<String> {
    require_root()?;
    dormant_bin()?;
    let mut w = Workload::start(spec)?;
    w.dump(true)?;
    let log_at_dump = w.log_state()?;
    w.release()?;
    let st = w.wait_exit(FINISH_TIMEOUT)?;
    w.expect_pass(st)?;
    let pid = w.pid();
    if !wait_until(Duration::from_secs(5), || pid_is_free(pid)) {
        return Err(w.fail(format!("pid {pid} not free after the original was reaped")));
    }
    w.unrelease()?;
    w.rewind_log(&log_at_dump)?;
    let mut r = w.restore()?;
    w.expect_restored_pid(&mut r)?;
    w.release()?;
    w.finish_restored(&mut r)?;
    Ok(w.log_text())
}

/// Syscalls that create a process or change a namespace.
pub const CHANGES: [(i64, &str); 6] = [
    (libc::SYS_clone, "clone"),
    (libc::SYS_fork, "fork"),
    (libc::SYS_vfork, "vfork"),
    (libc::SYS_clone3, "clone3"),
    (libc::SYS_unshare, "unshare"),
    (libc::SYS_setns, "setns"),
];

/// Runs `cmd` traced from the exec of its last program (`nsenter` execs dormant after its own setns):
/// returns its exit status (-1 when killed) and every syscall of [`CHANGES`] made from then on. A run that
/// creates a process is killed there, with the process it created. Panics when it cannot trace: only
/// tests call it, and that is their failure.
#[allow(clippy::unwrap_used)]
pub fn run_watched(mut cmd: Command, program: &Path) -> (i32, Vec<&'static str>) {
    // SAFETY: the closure runs in the forked child before exec and makes one async-signal-safe syscall.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::ptrace::traceme().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let pid = Pid::from_raw(child.id() as i32);
    // The first exec stops the child with SIGTRAP.
    assert!(matches!(
        nix::sys::wait::waitpid(pid, None).unwrap(),
        nix::sys::wait::WaitStatus::Stopped(_, Signal::SIGTRAP)
    ));
    nix::sys::ptrace::setoptions(
        pid,
        nix::sys::ptrace::Options::PTRACE_O_TRACESYSGOOD
            | nix::sys::ptrace::Options::PTRACE_O_EXITKILL
            | nix::sys::ptrace::Options::PTRACE_O_TRACEEXEC
            | nix::sys::ptrace::Options::PTRACE_O_TRACEFORK
            | nix::sys::ptrace::Options::PTRACE_O_TRACEVFORK
            | nix::sys::ptrace::Options::PTRACE_O_TRACECLONE,
    )
    .unwrap();
    let want = program.canonicalize().unwrap();
    let exe_is = |_: &Path| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == want);
    let mut watching = exe_is(program);
    let (mut made, mut entry, mut status) = (Vec::new(), true, -1);
    loop {
        // ESRCH once it is being killed: its end is what waitpid reports next.
        let _ = nix::sys::ptrace::syscall(pid, None);
        match nix::sys::wait::waitpid(pid, None).unwrap() {
            nix::sys::wait::WaitStatus::PtraceSyscall(_) => {
                if let (true, true, Ok(regs)) = (entry, watching, nix::sys::ptrace::getregs(pid)) {
                    let nr = regs.orig_rax as i64;
                    made.extend(CHANGES.iter().filter(|c| c.0 == nr).map(|c| c.1));
                }
                entry = !entry;
            }
            nix::sys::wait::WaitStatus::PtraceEvent(_, _, ev) if ev == libc::PTRACE_EVENT_EXEC => {
                watching = exe_is(program);
                entry = true;
            }
            nix::sys::wait::WaitStatus::PtraceEvent(..) => {
                // The new process is stopped, traced by us: nothing would continue it. End both (the
                // run already failed what it is watched for).
                made.push("a new process");
                if let Ok(child) = nix::sys::ptrace::getevent(pid) {
                    let _ = kill(Pid::from_raw(child as i32), Signal::SIGKILL);
                }
                let _ = kill(pid, Signal::SIGKILL);
            }
            nix::sys::wait::WaitStatus::Exited(_, code) => {
                status = code;
                break;
            }
            nix::sys::wait::WaitStatus::Signaled(..) => break,
            _ => {}
        }
    }
    // Reaped above through its pid; this only lets std know.
    let _ = child.wait();
    (status, made)
}
