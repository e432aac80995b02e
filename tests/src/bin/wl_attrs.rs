//! Workload `wl_attrs`: attributes each thread has of its own (scheduling policy and priority, nice, CPU
//! affinity, I/O priority, timer slack, parent-death signal) and the process's OOM score adjustment and
//! argument, environment and auxv ranges, checked after a restore against the values it set.
//!
//! `wl_attrs TRIGGER DIR [--inject-fault]`. Before READY:
//! - the main thread: SCHED_BATCH with nice 5, affinity CPU 1 only, I/O priority best-effort 6, timer
//!   slack 123456 ns;
//! - thread `v`: SCHED_FIFO priority 7 with SCHED_FLAG_RESET_ON_FORK, nice -3, affinity CPU 0 only, I/O
//!   class idle, parent-death signal SIGWINCH (ignored by default: harmless if it ever fires);
//! - thread `w`: SCHED_IDLE, I/O priority real-time 2, timer slack 777777 ns;
//! - the process: oom_score_adj 321; it records /proc/self/cmdline, environ and auxv.
//!
//! After the trigger each thread checks its own values (`main-attrs`, `v-attrs`, `w-attrs`), the main
//! thread `oom-score-adj` and `mm-ranges`. With `--inject-fault` every thread first puts its attributes
//! back to the defaults a new thread of the restorer would have and the OOM score adjustment to 0 (what a
//! restore that drops them leaves): the attribute checks must fail.

use std::process::ExitCode;
use std::sync::mpsc;

use dormant_tests::workload::{self, Report, WorkloadArgs, WorkloadError, INJECT_FAULT};

const SCHED_FLAG_RESET_ON_FORK: u64 = 1;
const IOPRIO_WHO_PROCESS: i32 = 1;

/// `struct sched_attr` (VER0 is enough: no clamps here).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// What one thread sets and checks.
#[derive(Debug, Clone, Copy)]
struct Want {
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    /// Bit n: CPU n.
    cpus: u64,
    ioprio: u32,
    /// 0: not set (a real-time thread's is 0 anyway).
    slack: u64,
    pdeathsig: i32,
}

const fn ioprio(class: u32, level: u32) -> u32 {
    class << 13 | level
}

const MAIN: Want = Want {
    policy: libc::SCHED_BATCH as u32,
    flags: 0,
    nice: 5,
    priority: 0,
    cpus: 0b10,
    ioprio: ioprio(2, 6),
    slack: 123_456,
    pdeathsig: 0,
};
const V: Want = Want {
    policy: libc::SCHED_FIFO as u32,
    flags: SCHED_FLAG_RESET_ON_FORK,
    nice: -3,
    priority: 7,
    cpus: 0b01,
    ioprio: ioprio(3, 0),
    slack: 0,
    pdeathsig: libc::SIGWINCH,
};
const W: Want = Want {
    policy: libc::SCHED_IDLE as u32,
    flags: 0,
    nice: 0,
    priority: 0,
    cpus: 0b11,
    ioprio: ioprio(1, 2),
    slack: 777_777,
    pdeathsig: 0,
};
/// What a thread of the restorer starts with.
const DEFAULT: Want = Want {
    policy: libc::SCHED_OTHER as u32,
    flags: 0,
    nice: 0,
    priority: 0,
    cpus: 0b11,
    ioprio: 0,
    slack: 0,
    pdeathsig: 0,
};

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Gives the calling thread `w`'s attributes (the policy before the slack: entering a real-time policy
/// zeroes it, leaving one resets it).
fn apply(w: &Want) -> Result<(), String> {
    // SAFETY: each call takes integers or a pointer to a local it only reads; all act on the calling
    // thread (who/pid 0).
    unsafe {
        if libc::setpriority(libc::PRIO_PROCESS, 0, w.nice) != 0 {
            return Err(os_err("setpriority"));
        }
        let attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            policy: w.policy,
            flags: w.flags,
            nice: w.nice,
            priority: w.priority,
            ..SchedAttr::default()
        };
        if libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) != 0 {
            return Err(os_err("sched_setattr"));
        }
        if libc::prctl(libc::PR_SET_TIMERSLACK, w.slack as libc::c_ulong, 0, 0, 0) != 0 {
            return Err(os_err("PR_SET_TIMERSLACK"));
        }
        let mask: u64 = w.cpus;
        if libc::syscall(libc::SYS_sched_setaffinity, 0, 8, &mask as *const u64) != 0 {
            return Err(os_err("sched_setaffinity"));
        }
        if libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, w.ioprio) != 0 {
            return Err(os_err("ioprio_set"));
        }
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            w.pdeathsig as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            return Err(os_err("PR_SET_PDEATHSIG"));
        }
    }
    Ok(())
}

/// The calling thread's attributes are `w`'s.
fn check(w: &Want) -> Result<(), String> {
    let mut attr = SchedAttr::default();
    let mut mask = [0u64; 16];
    let mut sig: libc::c_int = -1;
    // SAFETY: the kernel writes into the locals passed, at most their sizes; the rest take integers.
    let (got_attr, prio, got_mask, io, slack) = unsafe {
        let r = libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &mut attr as *mut SchedAttr,
            std::mem::size_of::<SchedAttr>() as u32,
            0,
        );
        let prio = libc::syscall(libc::SYS_getpriority, libc::PRIO_PROCESS, 0);
        let m = libc::syscall(libc::SYS_sched_getaffinity, 0, 128, mask.as_mut_ptr());
        let io = libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0);
        let slack = libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0);
        libc::prctl(
            libc::PR_GET_PDEATHSIG,
            &mut sig as *mut libc::c_int,
            0,
            0,
            0,
        );
        (r, prio, m, io, slack)
    };
    if got_attr != 0 || got_mask <= 0 || io < 0 {
        return Err(os_err("reading the attributes"));
    }
    let mut wrong = Vec::new();
    let mut cmp = |what: &str, got: i64, want: i64| {
        if got != want {
            wrong.push(format!("{what} {got}, expected {want}"));
        }
    };
    cmp("policy", attr.policy.into(), w.policy.into());
    cmp("flags", attr.flags as i64, w.flags as i64);
    cmp("priority", attr.priority.into(), w.priority.into());
    // getpriority's raw result is 20 - nice (the kernel keeps a real-time thread's nice too).
    cmp("nice", 20 - prio, w.nice.into());
    cmp("affinity", mask[0] as i64, w.cpus as i64);
    cmp("ioprio", io, w.ioprio.into());
    if w.slack != 0 {
        cmp("timer slack", slack.into(), w.slack as i64);
    }
    cmp("pdeathsig", sig.into(), w.pdeathsig.into());
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join(", "))
    }
}

/// How the main thread asks a checking thread to check (send) and hears its verdict (receive).
type Asker = (mpsc::Sender<()>, mpsc::Receiver<Result<(), String>>);

/// A thread that takes `want`'s attributes, then on each ask checks them (first putting them back to
/// the defaults with `fault`).
fn spawn(want: Want, fault: bool) -> Result<Asker, WorkloadError> {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel();
    let (set_tx, set_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = set_tx.send(apply(&want));
        if go_rx.recv().is_ok() {
            let r = if fault { apply(&DEFAULT) } else { Ok(()) };
            let _ = done_tx.send(r.and_then(|()| check(&want)));
        }
    });
    match set_rx.recv() {
        Ok(Ok(())) => Ok((go_tx, done_rx)),
        Ok(Err(e)) => Err(WorkloadError::setup("a thread's attributes", e)),
        Err(e) => Err(WorkloadError::setup("a thread's attributes", e)),
    }
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

fn run() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env("[--inject-fault]")?;
    let fault = args.has_flag(INJECT_FAULT);
    apply(&MAIN).map_err(|e| WorkloadError::setup("the main thread's attributes", e))?;
    let v = spawn(V, fault)?;
    let w = spawn(W, fault)?;
    std::fs::write("/proc/self/oom_score_adj", "321")
        .map_err(|e| WorkloadError::setup("oom_score_adj", e))?;
    let ranges = [
        read("/proc/self/cmdline"),
        read("/proc/self/environ"),
        read("/proc/self/auxv"),
    ];

    workload::ready()?;
    workload::wait_for_trigger(&args.trigger)?;

    let mut report = Report::new("wl_attrs");
    if fault {
        let _ = apply(&DEFAULT);
        let _ = std::fs::write("/proc/self/oom_score_adj", "0");
    }
    report.check("main-attrs", check(&MAIN));
    for (name, t) in [("v-attrs", &v), ("w-attrs", &w)] {
        let r =
            t.0.send(())
                .map_err(|e| e.to_string())
                .and_then(|()| t.1.recv().map_err(|e| e.to_string())?);
        report.check(name, r);
    }
    let oom = String::from_utf8(read("/proc/self/oom_score_adj")).unwrap_or_default();
    report.check(
        "oom-score-adj",
        if oom.trim() == "321" {
            Ok(())
        } else {
            Err(format!("oom_score_adj {}", oom.trim()))
        },
    );
    let now = [
        read("/proc/self/cmdline"),
        read("/proc/self/environ"),
        read("/proc/self/auxv"),
    ];
    report.check(
        "mm-ranges",
        if now == ranges && !now[0].is_empty() {
            Ok(())
        } else {
            Err("cmdline, environ or auxv differ".into())
        },
    );
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_attrs", run)
}
