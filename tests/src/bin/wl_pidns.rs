//! Workload `wl_pidns`: a tree whose root is the init of its own pid namespace, sharing everything else
//! (mounts included) with its parent: not a container.
//!
//! `wl_pidns TRIGGER DIR [--inject-fault]`. Started by the harness, the process first acts as a launcher:
//! it calls `unshare(CLONE_NEWPID)` and forks the init `i` (pid 1 inside), waits until `i` is set up, prints
//! `READY <outer pid of i>` (the tree to dump is `i`'s) and waits for `i`. The init calls setsid, forks `c`,
//! which forks `g`; all three share a page of anonymous memory. Round 1 records what each sees of itself
//! from inside (getpid, getppid: `i` is 1 with parent 0, `c` is 2 with parent 1, `g` is 3 with parent 2).
//! After the trigger the init runs three more rounds and compares; then `c` and `g` exit 0 (`c` after
//! reaping `g`) and the init reaps `c`.
//!
//! The init also runs a second thread, which reports its tid inside the namespace (gettid) before the
//! dump and again after the trigger; both must be equal. Three things aim at that thread by its tid,
//! which the dumper sees under another number: a SIGUSR1 sent with tgkill and left pending (blocked in the
//! thread), a POSIX timer with SIGEV_THREAD_ID and SIGUSR2, armed for an hour, and the owner
//! (F_OWNER_TID) of a pipe's read end. After the trigger the thread must still have its SIGUSR1 pending,
//! the pipe's owner must be its tid, and the timer, re-armed for 1 ms, must signal the thread. And the init
//! has a zombie child (exit code 5, left unreaped): after the trigger `waitpid` of its inside pid must
//! reap it with that code.
//!
//! `--inject-fault`: after the trigger `g` reports a changed pid, so its check must fail.

use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dormant_tests::workload::{
    self, exit_now, fork, wait_status, Report, WorkloadArgs, WorkloadError, INJECT_FAULT,
};

const USAGE: &str = "[--inject-fault]";
const NAMES: [&str; 3] = ["i", "c", "g"];
const QUIT: u32 = u32::MAX;
const ZOMBIE_CODE: i32 = 5;
const TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(2);

/// Word 0 the round, words 1..=3 the acks, then (getpid, getppid) per process.
struct Shared(*mut AtomicU32);

impl Shared {
    fn word(&self, i: usize) -> &AtomicU32 {
        // SAFETY: the page holds 1024 words and i < 16; the mapping lives for the process's lifetime.
        unsafe { &*self.0.add(i) }
    }
    fn answer(&self, m: usize, r: u32, inject: bool) {
        // SAFETY: plain id queries of the calling process.
        let (pid, ppid) = unsafe { (libc::getpid() as u32, libc::getppid() as u32) };
        let pid = if inject && r > 1 { pid + 100 } else { pid };
        self.word(8 + 2 * m).store(pid, Ordering::Release);
        self.word(9 + 2 * m).store(ppid, Ordering::Release);
        self.word(1 + m).store(r, Ordering::Release);
    }
    fn ids(&self, m: usize) -> [u32; 2] {
        [
            self.word(8 + 2 * m).load(Ordering::Acquire),
            self.word(9 + 2 * m).load(Ordering::Acquire),
        ]
    }
}

fn exited_0(s: Option<i32>) -> bool {
    s.is_some_and(|s| libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0)
}

fn member(shm: &Shared, m: usize, inject: bool) {
    let mut seen = 0;
    loop {
        let r = shm.word(0).load(Ordering::Acquire);
        if r == QUIT {
            return;
        }
        if r != seen {
            shm.answer(m, r, inject && m == 2);
            seen = r;
        }
        std::thread::sleep(POLL);
    }
}

fn round(shm: &Shared, r: u32) -> Result<(), String> {
    shm.word(0).store(r, Ordering::Release);
    shm.answer(0, r, false);
    for (m, name) in NAMES.iter().enumerate().skip(1) {
        let deadline = Instant::now() + TIMEOUT;
        while shm.word(1 + m).load(Ordering::Acquire) != r {
            if Instant::now() > deadline {
                return Err(format!("{name} did not answer round {r}"));
            }
            std::thread::sleep(POLL);
        }
    }
    Ok(())
}

fn pipe() -> Result<(OwnedFd, OwnedFd), WorkloadError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| WorkloadError::setup("pipe", std::io::Error::from(e)))
}

/// The launcher: a new pid namespace for the next child, which is the workload proper.
fn launch() -> Result<ExitCode, WorkloadError> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID)
        .map_err(|e| WorkloadError::setup("unshare(CLONE_NEWPID)", std::io::Error::from(e)))?;
    let (ready_r, ready_w) = pipe()?;
    let init = fork()?;
    if init == 0 {
        drop(ready_r);
        return init_main(ready_w);
    }
    drop(ready_w);
    let mut byte = [0u8; 1];
    if nix::unistd::read(&ready_r, &mut byte) != Ok(1) {
        return Err(WorkloadError::setup("init", "it never set up"));
    }
    workload::say(&format!("READY {init}"))?;
    // The init's verdict is what counts: it prints PASS itself (after a dump it is gone and so are we).
    let code = wait_status(init).map_or(2, |s| {
        if libc::WIFEXITED(s) {
            libc::WEXITSTATUS(s)
        } else {
            2
        }
    });
    Ok(ExitCode::from(code as u8))
}

fn init_main(ready: OwnedFd) -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env(USAGE)?;
    let inject = args.has_flag(INJECT_FAULT);
    let page = workload::shared_anon_page()?;
    let shm = Shared(page.cast());
    // SAFETY: a new session for the init (it was in the launcher's, which is outside the tree).
    unsafe { libc::setsid() };
    let c = fork()?;
    if c == 0 {
        drop(ready);
        let g = match fork() {
            Ok(0) => {
                member(&shm, 2, inject);
                exit_now(0)
            }
            Ok(g) => g,
            Err(_) => exit_now(3),
        };
        member(&shm, 1, inject);
        exit_now(if exited_0(wait_status(g)) { 0 } else { 4 })
    }
    round(&shm, 1).map_err(|e| WorkloadError::setup("round 1", e))?;
    let reference: Vec<[u32; 2]> = (0..NAMES.len()).map(|m| shm.ids(m)).collect();
    let want = [[1, 0], [2, 1], [3, 2]];
    if reference != want {
        return Err(WorkloadError::setup(
            "pids inside the namespace",
            format!("{reference:?}, expected {want:?}"),
        ));
    }
    // A second thread of the init: its tid inside the namespace must come back too.
    let (to_thread, thread_rx) = std::sync::mpsc::channel::<()>();
    let (thread_tx, from_thread) = std::sync::mpsc::channel::<libc::pid_t>();
    let (signals_tx, from_signals) = std::sync::mpsc::channel::<Result<(), String>>();
    let thread = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        let tid = || unsafe { libc::gettid() };
        if let Err(e) = block(&[libc::SIGUSR1, libc::SIGUSR2]) {
            let _ = signals_tx.send(Err(e));
        }
        let _ = thread_tx.send(tid());
        if thread_rx.recv().is_ok() {
            let _ = thread_tx.send(tid());
            let pending =
                take_signal(libc::SIGUSR1, 0).map_err(|e| format!("tgkill'd SIGUSR1: {e}"));
            let timer =
                take_signal(libc::SIGUSR2, 5000).map_err(|e| format!("timer's SIGUSR2: {e}"));
            let _ = signals_tx.send(pending.and(timer));
        }
    });
    let thread_tid = from_thread
        .recv()
        .map_err(|e| WorkloadError::setup("second thread", e))?;
    // Aimed at the thread: a pending signal, a timer and a pipe's owner.
    // SAFETY: tgkill sends to our own thread, which blocks SIGUSR1.
    if unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), thread_tid, libc::SIGUSR1) } != 0 {
        return Err(WorkloadError::setup(
            "tgkill",
            std::io::Error::last_os_error(),
        ));
    }
    let timer = thread_timer(thread_tid)?;
    let (owned_r, _owned_w) = pipe()?;
    set_owner_tid(&owned_r, thread_tid)?;
    // A zombie child of the init: exits at once and stays unreaped (waitid WNOWAIT) until the trigger.
    let z = fork()?;
    if z == 0 {
        exit_now(ZOMBIE_CODE)
    }
    // SAFETY: waitid with WNOWAIT only waits for our child to exit, leaving it a zombie; the siginfo is
    // written on our stack.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe {
        libc::waitid(
            libc::P_PID,
            z as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        )
    } != 0
    {
        return Err(WorkloadError::setup(
            "zombie",
            std::io::Error::last_os_error(),
        ));
    }
    workload::set_ready_pid(1);
    nix::unistd::write(&ready, &[1])
        .map_err(|e| WorkloadError::setup("ready pipe", std::io::Error::from(e)))?;
    drop(ready);
    workload::wait_for_trigger(&args.trigger)?;

    let mut report = Report::new("wl_pidns");
    for r in 2..=4 {
        let answered = round(&shm, r);
        let failed = answered.is_err();
        report.check(&format!("round-{r}"), answered);
        if failed {
            break;
        }
        for (m, (name, before)) in NAMES.iter().zip(&reference).enumerate() {
            let ids = shm.ids(m);
            report.check(
                &format!("{name}-pids-inside-round-{r}"),
                if ids == *before {
                    Ok(())
                } else {
                    Err(format!("getpid/getppid {ids:?}, before {before:?}"))
                },
            );
        }
    }
    report.check("pipe-owner-tid", owner_tid(&owned_r, thread_tid));
    report.check("timer-rearmed", arm(timer, Duration::from_millis(1)));
    let _ = to_thread.send(());
    let tid_now = from_thread.recv_timeout(TIMEOUT);
    report.check(
        "thread-signals",
        from_signals
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|e| Err(format!("no answer: {e}"))),
    );
    report.check(
        "thread-tid-inside",
        match tid_now {
            Ok(t) if t == thread_tid && t > 3 => Ok(()),
            other => Err(format!("gettid {other:?}, before {thread_tid}")),
        },
    );
    let _ = thread.join();
    // The zombie, restored under its pid inside: reaping that pid gives its exit code.
    let mut st = 0;
    // SAFETY: waits for our own child and writes its status on our stack.
    let reaped = unsafe { libc::waitpid(z, &mut st, 0) };
    report.check(
        "zombie-inside",
        if reaped == z && libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == ZOMBIE_CODE {
            Ok(())
        } else {
            Err(format!("waitpid({z}) = {reaped}, status {st:#x}"))
        },
    );
    shm.word(0).store(QUIT, Ordering::Release);
    report.check(
        "c-exit",
        match wait_status(c) {
            Some(st) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 => Ok(()),
            other => Err(format!("wait status {other:?}")),
        },
    );
    Ok(report.finish())
}

/// Blocks `signals` in the calling thread.
fn block(signals: &[libc::c_int]) -> Result<(), String> {
    let mut set = nix::sys::signal::SigSet::empty();
    for &s in signals {
        set.add(nix::sys::signal::Signal::try_from(s).map_err(|e| e.to_string())?);
    }
    set.thread_block()
        .map_err(|e| format!("blocking {signals:?}: {e}"))
}

/// Takes `signo` from the calling thread's pending signals, waiting up to `ms`.
fn take_signal(signo: libc::c_int, ms: i64) -> Result<(), String> {
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(nix::sys::signal::Signal::try_from(signo).map_err(|e| e.to_string())?);
    let ts = libc::timespec {
        tv_sec: ms / 1000,
        tv_nsec: (ms % 1000) * 1_000_000,
    };
    // SAFETY: reads the set and the timeout from our stack; no siginfo is asked for.
    let got = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
    if got == signo {
        Ok(())
    } else {
        Err(format!(
            "sigtimedwait {got} ({}) after {ms} ms",
            std::io::Error::last_os_error()
        ))
    }
}

/// A CLOCK_MONOTONIC timer that sends SIGUSR2 to thread `tid` (SIGEV_THREAD_ID), armed for an hour.
fn thread_timer(tid: libc::pid_t) -> Result<libc::timer_t, WorkloadError> {
    const SIGEV_THREAD_ID: libc::c_int = 4;
    // SAFETY: sigevent is plain data; all-zero is valid.
    let mut ev: libc::sigevent = unsafe { std::mem::zeroed() };
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = libc::SIGUSR2;
    ev.sigev_notify_thread_id = tid;
    let mut timer: libc::timer_t = std::ptr::null_mut();
    // SAFETY: reads the sigevent and writes the timer id, both on our stack.
    if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut ev, &mut timer) } != 0 {
        return Err(WorkloadError::setup(
            "timer_create",
            std::io::Error::last_os_error(),
        ));
    }
    arm(timer, Duration::from_secs(3600)).map_err(|e| WorkloadError::setup("timer", e))?;
    Ok(timer)
}

/// Arms `timer` once, `after` from now.
fn arm(timer: libc::timer_t, after: Duration) -> Result<(), String> {
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: after.as_secs() as libc::time_t,
            tv_nsec: after.subsec_nanos() as libc::c_long,
        },
    };
    // SAFETY: reads one itimerspec from our stack; no old value.
    if unsafe { libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()) } != 0 {
        return Err(format!(
            "timer_settime: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// `struct f_owner_ex`.
#[repr(C)]
struct FOwnerEx {
    kind: libc::c_int,
    pid: libc::pid_t,
}
const F_SETOWN_EX: libc::c_int = 15;
const F_GETOWN_EX: libc::c_int = 16;
const F_OWNER_TID: libc::c_int = 0;

fn set_owner_tid(fd: &OwnedFd, tid: libc::pid_t) -> Result<(), WorkloadError> {
    use std::os::fd::AsRawFd;
    let ex = FOwnerEx {
        kind: F_OWNER_TID,
        pid: tid,
    };
    // SAFETY: F_SETOWN_EX reads one f_owner_ex from our stack.
    if unsafe { libc::fcntl(fd.as_raw_fd(), F_SETOWN_EX, &ex) } != 0 {
        return Err(WorkloadError::setup(
            "F_SETOWN_EX",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn owner_tid(fd: &OwnedFd, want: libc::pid_t) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let mut ex = FOwnerEx { kind: -1, pid: 0 };
    // SAFETY: F_GETOWN_EX writes one f_owner_ex on our stack.
    if unsafe { libc::fcntl(fd.as_raw_fd(), F_GETOWN_EX, &mut ex) } != 0 {
        return Err(format!("F_GETOWN_EX: {}", std::io::Error::last_os_error()));
    }
    if ex.kind == F_OWNER_TID && ex.pid == want {
        Ok(())
    } else {
        Err(format!(
            "owner kind {} pid {}, want tid {want}",
            ex.kind, ex.pid
        ))
    }
}

fn main() -> ExitCode {
    workload::main_with("wl_pidns", launch)
}
