//! Workload `wl_seccomp`: seccomp filters on threads with chains of their own, and a process in strict
//! mode, checked after a restore by what the filters do, not by reading them back.
//!
//! `wl_seccomp TRIGGER DIR [--inject-fault]`. The root first forks `c`, which enters strict mode and
//! blocks reading a pipe. Then the root's main thread installs F1 (getpriority fails with errno 42),
//! creates thread `t`, which adds F3 (ioprio_get: 44) for itself, installs F2 (sched_getscheduler: 43,
//! with `SECCOMP_FILTER_FLAG_LOG`) and creates thread `u`, which shares both with it. After the trigger:
//! - `main-filters`, `t-filters`, `u-filters`: each thread's syscalls fail with exactly its filters'
//!   errnos and pass otherwise, and its status shows filter mode with 2 filters;
//! - `tsync`: once `t` has exited, the main thread installs F4 (sched_getparam: 45) with
//!   `SECCOMP_FILTER_FLAG_TSYNC`, which the kernel allows only when `u` shares the main thread's chain
//!   (as a restore that rebuilt the sharing gives), and then F4 acts in `u` too;
//! - `strict-mode`: `c`'s status shows strict mode; `strict-alive`: on a byte from the root it answers
//!   one (read and write still pass); `strict-kills`: its next syscall (getppid) kills it with SIGKILL.
//!
//! With `--inject-fault` nothing is installed and `c` stays out of strict mode (what a restore that drops
//! seccomp leaves): the filter and strict checks must fail.

use std::process::ExitCode;
use std::sync::mpsc;

use dormant_tests::workload::{self, exit_now, Report, WorkloadArgs, WorkloadError, INJECT_FAULT};

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// Each filter: the syscall it fails and the errno it fails it with.
const F1: (i64, u32) = (libc::SYS_getpriority, 42);
const F2: (i64, u32) = (libc::SYS_sched_getscheduler, 43);
const F3: (i64, u32) = (libc::SYS_ioprio_get, 44);
const F4: (i64, u32) = (libc::SYS_sched_getparam, 45);

/// A filter failing syscall `nr` with `errno` and allowing everything else.
fn program(nr: i64, errno: u32) -> Vec<libc::sock_filter> {
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let ld = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    vec![
        stmt(ld, 4), // seccomp_data.arch
        jeq(AUDIT_ARCH_X86_64, 1, 0),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
        stmt(ld, 0), // seccomp_data.nr
        jeq(nr as u32, 0, 1),
        stmt(ret, libc::SECCOMP_RET_ERRNO | errno),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Installs filter `f` on the calling thread (`seccomp(2)` with `flags`).
fn install(f: (i64, u32), flags: libc::c_ulong) -> std::io::Result<()> {
    let prog = program(f.0, f.1);
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: seccomp reads the program `fprog` points at, which lives across the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The errno syscall `nr` (with harmless arguments) fails with on the calling thread, 0 if it passes.
fn errno_of(nr: i64) -> u32 {
    let mut param = [0i32; 4];
    // SAFETY: each of these syscalls takes integers (and sched_getparam a pointer to a sched_param,
    // which `param` is large enough for); none changes anything.
    let r = unsafe {
        match nr {
            libc::SYS_getpriority => libc::syscall(nr, libc::PRIO_PROCESS, 0),
            libc::SYS_ioprio_get => libc::syscall(nr, 1, 0),
            libc::SYS_sched_getparam => libc::syscall(nr, 0, param.as_mut_ptr()),
            _ => libc::syscall(nr, 0),
        }
    };
    if r == -1 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as u32
    } else {
        0
    }
}

/// The calling thread's filters act exactly as `active` says, and its status shows `count` of them.
fn check_thread(active: &[(i64, u32)], count: usize) -> Result<(), String> {
    let mut wrong = Vec::new();
    for f in [F1, F2, F3, F4] {
        let want = if active.contains(&f) { f.1 } else { 0 };
        let got = errno_of(f.0);
        if got != want {
            wrong.push(format!("syscall {} gave errno {got}, expected {want}", f.0));
        }
    }
    let status = std::fs::read_to_string("/proc/thread-self/status").map_err(|e| e.to_string())?;
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
    };
    let (mode, n) = (field("Seccomp:"), field("Seccomp_filters:"));
    if mode.as_deref() != Some("2") || n != Some(count.to_string()) {
        wrong.push(format!("status: Seccomp {mode:?}, Seccomp_filters {n:?}"));
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

/// `c`: strict mode, then read a byte, answer, and make a forbidden syscall. Only raw read, write and
/// exit in between: anything else would be its end.
fn strict_child(go: libc::c_int, ack: libc::c_int, fault: bool) -> ! {
    if !fault {
        // SAFETY: PR_SET_SECCOMP with SECCOMP_MODE_STRICT takes no pointer.
        let r = unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_STRICT, 0, 0, 0) };
        if r != 0 {
            exit_now(10);
        }
    }
    let mut b = [0u8; 1];
    loop {
        // SAFETY: reads one byte into `b`.
        let r = unsafe { libc::syscall(libc::SYS_read, go, b.as_mut_ptr(), 1) };
        if r == 1 {
            break;
        }
        // Only EINTR (a restore interrupting the read) is retried; the errno is read from memory.
        if r != -1 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            // SAFETY: exit is allowed in strict mode; it ends this single-threaded child.
            unsafe { libc::syscall(libc::SYS_exit, 11) };
        }
    }
    // SAFETY: writes one byte from a constant.
    unsafe { libc::syscall(libc::SYS_write, ack, b"a".as_ptr(), 1) };
    // SAFETY: getppid takes nothing; in strict mode the kernel kills the process here.
    unsafe { libc::syscall(libc::SYS_getppid) };
    // SAFETY: writes one byte from a constant, then ends the child (outside strict mode only).
    unsafe {
        libc::syscall(libc::SYS_write, ack, b"b".as_ptr(), 1);
        libc::syscall(libc::SYS_exit, 0);
    }
    exit_now(12)
}

fn pipe() -> Result<(libc::c_int, libc::c_int), WorkloadError> {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two fds into `fds`.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(WorkloadError::setup(
            "pipe",
            std::io::Error::last_os_error(),
        ));
    }
    Ok((fds[0], fds[1]))
}

/// Asks a thread to check itself: it answers on `done` with its verdict.
type Ask = (mpsc::Sender<()>, mpsc::Receiver<Result<(), String>>);

fn spawn_checker(
    setup: impl FnOnce() -> std::io::Result<()> + Send + 'static,
    mut check: impl FnMut(usize) -> Result<(), String> + Send + 'static,
    rounds: usize,
) -> Result<(Ask, std::thread::JoinHandle<()>), WorkloadError> {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel();
    let (set_tx, set_rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        let _ = set_tx.send(setup().map_err(|e| e.to_string()));
        for round in 0..rounds {
            if go_rx.recv().is_err() {
                return;
            }
            let _ = done_tx.send(check(round));
        }
    });
    match set_rx.recv() {
        Ok(Ok(())) => Ok(((go_tx, done_rx), h)),
        Ok(Err(e)) => Err(WorkloadError::setup("a thread's filter", e)),
        Err(e) => Err(WorkloadError::setup("a thread's filter", e)),
    }
}

fn ask(a: &Ask) -> Result<(), String> {
    a.0.send(()).map_err(|e| e.to_string())?;
    a.1.recv().map_err(|e| e.to_string())?
}

fn run() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env("[--inject-fault]")?;
    let fault = args.has_flag(INJECT_FAULT);
    let (go_r, go_w) = pipe()?;
    let (ack_r, ack_w) = pipe()?;
    // SAFETY: the process is single-threaded here, so the child may run ordinary code.
    let c = match unsafe { libc::fork() } {
        0 => strict_child(go_r, ack_w, fault),
        n if n < 0 => {
            return Err(WorkloadError::setup(
                "fork",
                std::io::Error::last_os_error(),
            ))
        }
        n => n,
    };
    let setup = |what: &str, r: std::io::Result<()>| r.map_err(|e| WorkloadError::setup(what, e));
    if !fault {
        setup("F1", install(F1, 0))?;
    }
    let (t, t_handle) = spawn_checker(
        move || if fault { Ok(()) } else { install(F3, 0) },
        |_| check_thread(&[F1, F3], 2),
        1,
    )?;
    if !fault {
        setup(
            "F2",
            install(F2, libc::SECCOMP_FILTER_FLAG_LOG as libc::c_ulong),
        )?;
    }
    let (u, u_handle) = spawn_checker(
        || Ok(()),
        |round| match round {
            0 => check_thread(&[F1, F2], 2),
            _ => check_thread(&[F1, F2, F4], 3),
        },
        2,
    )?;

    workload::ready()?;
    workload::wait_for_trigger(&args.trigger)?;

    let mut report = Report::new("wl_seccomp");
    report.check("main-filters", check_thread(&[F1, F2], 2));
    report.check("t-filters", ask(&t));
    report.check("u-filters", ask(&u));
    drop(t);
    let _ = t_handle.join();
    report.check(
        "tsync",
        install(F4, libc::SECCOMP_FILTER_FLAG_TSYNC as libc::c_ulong)
            .map_err(|e| format!("TSYNC of a fourth filter: {e}"))
            .and_then(|()| check_thread(&[F1, F2, F4], 3))
            .and_then(|()| ask(&u).map_err(|e| format!("u after the TSYNC: {e}"))),
    );
    drop(u);
    let _ = u_handle.join();

    let status = std::fs::read_to_string(format!("/proc/{c}/status")).unwrap_or_default();
    let mode = status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .map(str::trim);
    report.check(
        "strict-mode",
        if mode == Some("1") {
            Ok(())
        } else {
            Err(format!("c's Seccomp: {mode:?}"))
        },
    );
    let mut b = [0u8; 1];
    // SAFETY: writes one byte from a constant, then reads one into `b`.
    let answered = unsafe {
        libc::write(go_w, b"g".as_ptr().cast(), 1) == 1
            && libc::read(ack_r, b.as_mut_ptr().cast(), 1) == 1
    };
    report.check(
        "strict-alive",
        if answered && b[0] == b'a' {
            Ok(())
        } else {
            Err(format!("c answered {answered} with {:?}", b[0] as char))
        },
    );
    let mut st = 0;
    // SAFETY: waits for our own child and writes its status on our stack.
    let r = unsafe { libc::waitpid(c, &mut st, 0) };
    report.check(
        "strict-kills",
        if r == c && libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL {
            Ok(())
        } else {
            Err(format!("c ended with wait status {st:#x} (waitpid {r})"))
        },
    );
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_seccomp", run)
}
