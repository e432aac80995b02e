//! A dumper that dies must never kill or change its target (issue 11, part 1).
//!
//! The real release `dormant dump` runs under a tracer of its own (this test), which counts the dumper's
//! calls that act on its targets: every ptrace request, every wait, writes to /proc/PID/mem, the
//! process_vm_* copies, pidfd_getfd, the messages to the parasite, kill and tgkill (a seccomp filter
//! stops the dumper at each with SECCOMP_RET_TRACE; no test hook, nothing in the binary). A first run
//! counts them; then for each chosen N the dumper is SIGKILLed while stopped right before its N-th such
//! call, which is every boundary between two steps of seize, each remote syscall, the blob's load, each
//! command, the page drain and the cure.
//!
//! After each kill every process of the target tree must be alive, neither stopped nor traced, with
//! exactly the mappings, blocked masks and pending signals it had; after all the kills of a scenario the
//! workload verifies itself. Scenarios: a single process (wl_signals; wl_memory for the parasite's
//! vmsplice, which needs 48 MiB), a multi-threaded one (wl_threads) and a tree (wl_tree), each with
//! `--page-copy vm-readv`, `parasite` and `proc-mem`, each with and without `-R`.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dormant_tests::harness::{self, HarnessError, Result, Spec, StdinKind, Workload};
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Syscalls of the dumper that act on a target: the kill points.
const TRACED: &[i64] = &[
    libc::SYS_ptrace,
    libc::SYS_wait4,
    libc::SYS_waitid,
    libc::SYS_pwrite64,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_getfd,
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_kill,
    libc::SYS_tgkill,
];

/// Kill points per scenario: the first calls, stage boundaries, and evenly spread ones up to this many.
const POINTS: usize = 14;
const FIRST_POINTS: u64 = 3;
/// Evenly spread points at least.
const EVEN_POINTS: usize = 4;

/// One scenario.
struct Scenario {
    name: &'static str,
    spec: fn() -> Spec,
    mode: &'static str,
    leave_running: bool,
}

const LINE: &str = "dumper-killed";

fn signals() -> Spec {
    Spec::workload("wl_signals", env!("CARGO_BIN_EXE_wl_signals"))
}
fn memory() -> Spec {
    Spec::workload("wl_memory", env!("CARGO_BIN_EXE_wl_memory")).big()
}
fn threads() -> Spec {
    Spec::workload("wl_threads", env!("CARGO_BIN_EXE_wl_threads"))
        .args([LINE])
        .stdin(StdinKind::Pty { line: LINE.into() })
}
fn tree() -> Spec {
    Spec::workload("wl_tree", env!("CARGO_BIN_EXE_wl_tree"))
}

/// What must be the same after a killed dump, per process of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    maps: String,
    /// Per thread: (tid, SigBlk, SigPnd); and the process's ShdPnd.
    threads: Vec<(i32, String, String)>,
    shared_pending: String,
}

fn field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or("")
        .trim()
        .to_string()
}

fn snapshot(pid: i32) -> Option<Snapshot> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut threads = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let tid: i32 = t.ok()?.file_name().to_string_lossy().parse().ok()?;
        let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
        threads.push((tid, field(&s, "SigBlk:"), field(&s, "SigPnd:")));
    }
    threads.sort();
    Some(Snapshot {
        maps,
        threads,
        shared_pending: field(&status, "ShdPnd:"),
    })
}

/// Every process of the workload's tree (zombies left out: they have no maps) and its snapshot.
fn tree_snapshot(root: i32) -> BTreeMap<i32, Snapshot> {
    harness::tree_ids(root)
        .unwrap_or_default()
        .iter()
        .filter(|t| harness::proc_state(t.pid).is_some_and(|(s, _)| s != 'Z'))
        .filter_map(|t| Some((t.pid, snapshot(t.pid)?)))
        .collect()
}

/// The state letter and TracerPid of every thread of `pid`.
fn thread_states(pid: i32) -> Vec<(i32, char, i32)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in dir.flatten() {
        let tid: i32 = t.file_name().to_string_lossy().parse().unwrap_or(0);
        let s =
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap_or_default();
        let state = field(&s, "State:").chars().next().unwrap_or('?');
        let tracer = field(&s, "TracerPid:").parse().unwrap_or(-1);
        out.push((tid, state, tracer));
    }
    out
}

/// How a traced dumper run ended.
#[derive(Debug)]
enum Outcome {
    /// Killed before its `n`-th traced call.
    Killed,
    /// Finished on its own with this exit code; the traced calls it made, in order.
    Finished { calls: Vec<i64>, code: i32 },
    /// Killed right before its first kill of a target process (asked for with `stop_at_kill`), after
    /// the traced `calls`: the dump is complete and the target untouched.
    StoppedAtTargetKill { calls: Vec<i64> },
}

impl Outcome {
    fn describe(&self) -> String {
        match self {
            Outcome::Killed => "killed".into(),
            Outcome::Finished { calls, code } => {
                format!("finished with exit code {code} after {} calls", calls.len())
            }
            Outcome::StoppedAtTargetKill { calls } => {
                format!(
                    "stopped at its kill of the target after {} calls",
                    calls.len()
                )
            }
        }
    }
}

/// The seccomp filter: SECCOMP_RET_TRACE for [`TRACED`], allow the rest.
fn filter() -> Vec<libc::sock_filter> {
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    let stmt = |code: u16, k: u32| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let ld = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    let ret = (libc::BPF_RET | libc::BPF_K) as u16;
    let mut f = vec![
        stmt(ld, 4), // seccomp_data.arch
        jump(AUDIT_ARCH_X86_64, 1, 0),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
        stmt(ld, 0), // seccomp_data.nr
    ];
    let n = TRACED.len();
    for (i, &nr) in TRACED.iter().enumerate() {
        // Match: jump over the remaining comparisons and the ALLOW, onto the TRACE.
        f.push(jump(nr as u32, (n - i) as u8, 0));
    }
    f.push(stmt(ret, libc::SECCOMP_RET_ALLOW));
    f.push(stmt(ret, libc::SECCOMP_RET_TRACE));
    f
}

/// Runs `dormant dump` on `pid` under this thread's tracing, SIGKILLing it before its `kill_at`-th
/// traced call (never with `None`), or before its first kill of the target with `stop_at_kill`.
fn run_dumper(
    w: &Workload,
    scenario: &Scenario,
    image: &std::path::Path,
    kill_at: Option<u64>,
    stop_at_kill: bool,
) -> Result<Outcome> {
    let bin = harness::dormant_bin()?;
    let mut args: Vec<OsString> = vec![
        "dump".into(),
        "-t".into(),
        w.pid().to_string().into(),
        "-D".into(),
        image.into(),
        "--page-copy".into(),
        scenario.mode.into(),
        "-v".into(),
    ];
    if scenario.leave_running {
        args.push("-R".into());
    }
    if w.name() == "wl_threads" {
        args.push("--shell-job".into());
    }
    let log = w.scratch().join(format!(
        "killed-dump-{}.log",
        image.file_name().unwrap_or_default().to_string_lossy()
    ));
    let log_file = std::fs::File::create(&log).map_err(|e| HarnessError::Io {
        what: "creating the dump log".into(),
        path: log.clone(),
        source: e,
    })?;
    let prog = filter();
    let mut cmd = Command::new(&bin);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().map_err(|e| HarnessError::Io {
            what: "duplicating the dump log".into(),
            path: log.clone(),
            source: e,
        })?)
        .stderr(log_file);
    // SAFETY: runs in the forked child before exec: ptrace(TRACEME) and installing a seccomp filter from
    // memory prepared before the fork; no allocation.
    unsafe {
        cmd.pre_exec(move || {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fprog = libc::sock_fprog {
                len: prog.len() as u16,
                filter: prog.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &fprog) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| HarnessError::Io {
        what: "starting the traced dumper".into(),
        path: bin.clone(),
        source: e,
    })?;
    let leader = Pid::from_raw(child.id() as i32);
    drive(leader, w, kill_at, stop_at_kill)
}

/// The tracer loop over the dumper's threads.
fn drive(leader: Pid, w: &Workload, kill_at: Option<u64>, stop_at_kill: bool) -> Result<Outcome> {
    let fail = |what: String| w.fail(what);
    // The exec stop.
    match waitpid(leader, Some(WaitPidFlag::__WALL)) {
        Ok(WaitStatus::Stopped(_, Signal::SIGTRAP)) => {}
        other => return Err(fail(format!("traced dumper's first stop: {other:?}"))),
    }
    let opts = ptrace::Options::PTRACE_O_TRACESECCOMP
        | ptrace::Options::PTRACE_O_TRACECLONE
        | ptrace::Options::PTRACE_O_EXITKILL;
    ptrace::setoptions(leader, opts).map_err(|e| fail(format!("PTRACE_SETOPTIONS: {e}")))?;
    ptrace::cont(leader, None).map_err(|e| fail(format!("PTRACE_CONT: {e}")))?;
    let mut tids: BTreeSet<Pid> = [leader].into();
    let mut calls: Vec<i64> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let targets: BTreeSet<i32> = harness::tree_ids(w.pid())
        .unwrap_or_default()
        .iter()
        .map(|t| t.pid)
        .collect();
    let mut killed = false;
    loop {
        if Instant::now() > deadline {
            let _ = nix::sys::signal::kill(leader, Signal::SIGKILL);
            return Err(fail("the traced dumper ran for 120 s".into()));
        }
        let mut progressed = false;
        // Threads whose clone event was not seen yet (or never will be: killed first) are found here;
        // a dead group's leader is only reported once every thread of it is reaped.
        if let Ok(dir) = std::fs::read_dir(format!("/proc/{leader}/task")) {
            for t in dir.flatten() {
                if let Ok(tid) = t.file_name().to_string_lossy().parse::<i32>() {
                    tids.insert(Pid::from_raw(tid));
                }
            }
        }
        for &tid in tids.clone().iter() {
            let status = match waitpid(tid, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => continue,
                Ok(s) => s,
                Err(nix::errno::Errno::ECHILD) => {
                    tids.remove(&tid);
                    continue;
                }
                Err(e) => return Err(fail(format!("waitpid on the dumper: {e}"))),
            };
            progressed = true;
            match status {
                WaitStatus::Exited(pid, code) if pid == leader => {
                    return Ok(if killed {
                        Outcome::Killed
                    } else {
                        Outcome::Finished { calls, code }
                    })
                }
                WaitStatus::Signaled(pid, _, _) if pid == leader => {
                    return Ok(Outcome::Killed);
                }
                WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _) => {
                    tids.remove(&pid);
                }
                WaitStatus::PtraceEvent(pid, _, libc::PTRACE_EVENT_SECCOMP) => {
                    let regs = ptrace::getregs(pid).map_err(|e| fail(format!("GETREGS: {e}")))?;
                    calls.push(regs.orig_rax as i64);
                    let kills_target = (regs.orig_rax as i64 == libc::SYS_kill
                        || regs.orig_rax as i64 == libc::SYS_tgkill)
                        && targets.contains(&(regs.rdi as i32));
                    if Some(calls.len() as u64) == kill_at || (stop_at_kill && kills_target) {
                        nix::sys::signal::kill(leader, Signal::SIGKILL)
                            .map_err(|e| fail(format!("killing the dumper: {e}")))?;
                        killed = true;
                        if stop_at_kill && kills_target {
                            reap(leader, &tids);
                            return Ok(Outcome::StoppedAtTargetKill { calls });
                        }
                    }
                    let _ = ptrace::cont(pid, None);
                }
                WaitStatus::PtraceEvent(pid, _, libc::PTRACE_EVENT_CLONE) => {
                    if let Ok(new) = ptrace::getevent(pid) {
                        tids.insert(Pid::from_raw(new as i32));
                    }
                    let _ = ptrace::cont(pid, None);
                }
                WaitStatus::PtraceEvent(pid, _, _) => {
                    let _ = ptrace::cont(pid, None);
                }
                WaitStatus::Stopped(pid, Signal::SIGSTOP) => {
                    // A new thread's first stop (auto-attached); the dumper itself sends no SIGSTOP.
                    let _ = ptrace::cont(pid, None);
                }
                WaitStatus::Stopped(pid, sig) => {
                    let _ = ptrace::cont(pid, Some(sig));
                }
                _ => {}
            }
        }
        if !progressed {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// Waits for a killed dumper to be gone: reaps every thread of it (a traced thread's zombie waits for
/// its tracer, and the group's leader is only reported after them).
fn reap(leader: Pid, tids: &BTreeSet<Pid>) {
    let mut tids = tids.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(dir) = std::fs::read_dir(format!("/proc/{leader}/task")) {
            for t in dir.flatten() {
                if let Ok(tid) = t.file_name().to_string_lossy().parse::<i32>() {
                    tids.insert(Pid::from_raw(tid));
                }
            }
        }
        for &t in &tids {
            match waitpid(t, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(_) if t == leader => {
                    return
                }
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// After a killed dump: every process alive, running (not stopped, not traced), and back to its
/// snapshot (the blob's own cleanup runs after the dumper's death, so allow it a moment).
fn check_untouched(w: &Workload, before: &BTreeMap<i32, Snapshot>, point: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut problems = Vec::new();
        for (&pid, want) in before {
            let states = thread_states(pid);
            if states.is_empty() {
                problems.push(format!("pid {pid} is gone"));
                continue;
            }
            for (tid, state, tracer) in states {
                if matches!(state, 'T' | 't' | 'Z' | 'X') || tracer != 0 {
                    problems.push(format!(
                        "tid {tid} of pid {pid}: state {state}, tracer {tracer}"
                    ));
                }
            }
            match snapshot(pid) {
                Some(now) if now == *want => {}
                Some(now) => {
                    problems.push(format!("pid {pid} changed: {}", difference(want, &now)))
                }
                None => problems.push(format!("pid {pid}: /proc unreadable")),
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(w.fail(format!(
                "after killing the dumper {point}: {}",
                problems.join("\n")
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What differs between two snapshots: the maps lines only in one of them, masks and pending sets.
fn difference(before: &Snapshot, after: &Snapshot) -> String {
    let lines = |m: &str| m.lines().map(str::to_string).collect::<BTreeSet<String>>();
    let (b, a) = (lines(&before.maps), lines(&after.maps));
    let mut out = String::new();
    for l in b.difference(&a) {
        out.push_str(&format!("\n  - {l}"));
    }
    for l in a.difference(&b) {
        out.push_str(&format!("\n  + {l}"));
    }
    if before.threads != after.threads || before.shared_pending != after.shared_pending {
        out.push_str(&format!(
            "\n  threads (tid, SigBlk, SigPnd) {:?} / ShdPnd {} -> {:?} / {}",
            before.threads, before.shared_pending, after.threads, after.shared_pending
        ));
    }
    out
}

/// The kill points for a dump that made the traced `calls`: the first few (seizing), the first and the
/// last call of each kind (where the dump moves from one stage to the next: seizing, injected
/// syscalls, the blob's load and commands, the page copy, the cure, the detach), and evenly spread ones.
fn points(calls: &[i64]) -> Vec<u64> {
    let total = calls.len() as u64;
    let mut p: BTreeSet<u64> = (1..=FIRST_POINTS.min(total)).collect();
    for &nr in TRACED {
        let first = calls.iter().position(|&c| c == nr);
        let last = calls.iter().rposition(|&c| c == nr);
        for at in [first, last].into_iter().flatten() {
            p.insert(at as u64 + 1);
        }
    }
    let spread = POINTS.saturating_sub(p.len()).max(EVEN_POINTS) as u64;
    for i in 1..=spread {
        p.insert(FIRST_POINTS + total.saturating_sub(FIRST_POINTS) * i / spread);
    }
    p.into_iter().filter(|&n| n >= 1 && n <= total).collect()
}

/// Removes what a (killed) dump left in the scratch directory: the image, or its temporary directory.
fn remove_images(w: &Workload) {
    if let Ok(dir) = std::fs::read_dir(w.scratch()) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains("image-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Runs one scenario: counts the calls, kills the dumper at each chosen point, checks the tree after
/// every kill, and finally lets the workload verify itself. Returns the number of kill points.
fn run_scenario(s: &Scenario) -> Result<usize> {
    let mut w = Workload::start((s.spec)())?;
    let before = tree_snapshot(w.pid());
    let image = |n: u64| w.scratch().join(format!("image-{n}"));
    // Count the calls of a whole dump (without -R: up to its first kill of the target, where it is
    // killed itself, so the target survives).
    let calls = match run_dumper(&w, s, &image(0), None, !s.leave_running)? {
        Outcome::Finished { calls, code: 0 } | Outcome::StoppedAtTargetKill { calls } => calls,
        other => {
            return Err(w.fail(format!(
                "{}: counting run ended {}",
                s.name,
                other.describe()
            )))
        }
    };
    let total = calls.len();
    remove_images(&w);
    check_untouched(&w, &before, &format!("{}: after the counting run", s.name))?;
    let mut killed = 0;
    for n in points(&calls) {
        // A run may make fewer calls than the counting one (waits that found their stop at once):
        // it then ends as that one did, which must leave the target untouched all the same.
        match run_dumper(&w, s, &image(n), Some(n), !s.leave_running)? {
            Outcome::Killed => killed += 1,
            Outcome::Finished { code: 0, .. } | Outcome::StoppedAtTargetKill { .. } => {}
            other => {
                return Err(w.fail(format!(
                    "{}: run killed at {n} ended {}",
                    s.name,
                    other.describe()
                )))
            }
        }
        remove_images(&w);
        check_untouched(&w, &before, &format!("{}: at call {n} of {total}", s.name))?;
    }
    w.release()?;
    let status = w.wait_exit(Duration::from_secs(120))?;
    w.expect_pass(status)?;
    eprintln!(
        "{}: dumper killed at {killed} points of {total} calls, then the workload passed its own check",
        s.name
    );
    Ok(killed)
}

/// Scratch directories of this test go under /var/tmp: a workload whose files vanish (a sweep of /tmp
/// by a concurrent job) is not what this test is about.
fn private_tmp() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dir = std::path::PathBuf::from(format!("/var/tmp/dormant-kill-{}", std::process::id()));
        if std::fs::create_dir_all(&dir).is_ok() {
            // Both tests of this file call this first, before any thread of theirs reads TMPDIR.
            std::env::set_var("TMPDIR", &dir);
        }
    });
}

#[test]
fn dumper_killed_at_any_point_leaves_every_target_as_it_was() -> Result<()> {
    harness::require_root()?;
    harness::dormant_bin()?;
    private_tmp();
    let mut scenarios = Vec::new();
    for (mode, single) in [
        ("vm-readv", signals as fn() -> Spec),
        ("parasite", memory),
        ("proc-mem", signals),
    ] {
        for leave_running in [true, false] {
            for (name, spec) in [
                ("single", single),
                ("threads", threads as fn() -> Spec),
                ("tree", tree),
            ] {
                scenarios.push(Scenario {
                    name: Box::leak(
                        format!(
                            "{name}/{mode}/{}",
                            if leave_running { "-R" } else { "kill" }
                        )
                        .into_boxed_str(),
                    ),
                    spec,
                    mode,
                    leave_running,
                });
            }
        }
    }
    // DORMANT_KILL_SCENARIOS=tree/parasite runs only the scenarios whose name contains it.
    if let Ok(only) = std::env::var("DORMANT_KILL_SCENARIOS") {
        scenarios.retain(|s| s.name.contains(&only));
    }
    let start = Instant::now();
    let mut total = 0;
    for s in &scenarios {
        total += run_scenario(s)?;
    }
    eprintln!(
        "{total} kill points over {} scenarios in {:.1} s",
        scenarios.len(),
        start.elapsed().as_secs_f64()
    );
    if let Some(dir) = std::env::var_os("TMPDIR") {
        let _ = std::fs::remove_dir(dir);
    }
    Ok(())
}

/// A target that another tracer (here this test) holds: the dump fails before touching it, naming the
/// tracer's pid and command, and the target runs on.
#[test]
fn dump_of_a_traced_target_names_its_tracer() -> Result<()> {
    harness::require_root()?;
    private_tmp();
    let bin = harness::dormant_bin()?;
    let mut w = Workload::start(signals())?;
    let pid = Pid::from_raw(w.pid());
    ptrace::seize(pid, ptrace::Options::empty())
        .map_err(|e| w.fail(format!("seizing the workload from the test: {e}")))?;
    // SAFETY: gettid has no arguments and cannot fail.
    let me = unsafe { libc::syscall(libc::SYS_gettid) };
    let comm = std::fs::read_to_string(format!("/proc/{me}/comm")).unwrap_or_default();
    let out = Command::new(&bin)
        .args(["dump", "-t", &w.pid().to_string(), "-D"])
        .arg(w.scratch().join("image-traced"))
        .output()
        .map_err(|e| HarnessError::Io {
            what: "running dormant dump".into(),
            path: bin.clone(),
            source: e,
        })?;
    // PTRACE_DETACH wants a stopped tracee.
    let _ = ptrace::interrupt(pid);
    let _ = waitpid(pid, Some(WaitPidFlag::__WALL));
    let _ = ptrace::detach(pid, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = format!("already traced by pid {me} ({})", comm.trim_end());
    if out.status.success() || !stderr.contains(&want) {
        return Err(w.fail(format!(
            "dump of a traced target: {} with {stderr:?}, want an error containing {want:?}",
            out.status
        )));
    }
    w.release_and_pass()
}
