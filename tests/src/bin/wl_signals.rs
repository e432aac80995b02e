//! Workload `wl_signals`: signal dispositions, an alternate stack, a queued signal held by the blocked
//! mask, an interval timer and a POSIX timer, all of which must survive a checkpoint.
//!
//! `wl_signals TRIGGER DIR [--inject-fault]`. Set-up before READY:
//! - SIGUSR1: SA_SIGINFO | SA_RESTART | SA_ONSTACK handler with its own mask (SIGUSR2, SIGRTMIN+3);
//!   SIGUSR2 ignored.
//! - an alternate signal stack of 64 KiB;
//! - SIGRTMIN+1 blocked, with a handler (SA_SIGINFO | SA_ONSTACK), and one `sigqueue` of it (value 4242)
//!   left pending;
//! - ITIMER_REAL every 50 ms, SIGALRM handler counting;
//! - a POSIX timer (raw `timer_create`: CLOCK_MONOTONIC, SIGRTMIN+2, sigev value 777) every 30 ms, its
//!   handler counting and counting expiries whose `si_value` is not 777. Three timers are created and
//!   deleted first, so its id is not the 0 any fresh process would get.
//!
//! After the trigger: all 64 actions (raw `rt_sigaction`) and the alternate stack equal the ones read before
//! READY; SIGRTMIN+1 is still pending and its handler has not run; unblocked, it runs on the alternate stack
//! with `si_value` 4242 and SI_QUEUE; both timers keep ticking; the POSIX timer answers `timer_gettime` under
//! the id it was created with, with its 30 ms interval, and `/proc/self/timers` lists that id.
//!
//! `--inject-fault` changes SIGUSR1's handler mask and deletes the POSIX timer after the trigger.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dormant_tests::workload::{self, Report, WorkloadArgs, WorkloadError, INJECT_FAULT};

const USAGE: &str = "[--inject-fault]";
const NSIG: usize = 64;
const ALTSTACK_SIZE: usize = 64 * 1024;
const QUEUED_VALUE: u64 = 4242;
const TIMER_VALUE: u64 = 777;
const TIMER_INTERVAL_NS: i64 = 30_000_000;
const ITIMER_INTERVAL_US: i64 = 50_000;
/// Timers created and deleted before the kept one, so its id is not the first one a process gets.
const THROWAWAY_TIMERS: usize = 3;
/// Offset of `si_value` in `siginfo_t` for both SI_QUEUE and SI_TIMER layouts on x86-64.
const SI_VALUE_OFFSET: usize = 24;
/// Offset of `si_code`.
const SI_CODE_OFFSET: usize = 8;

static ALARMS: AtomicU64 = AtomicU64::new(0);
static TIMER_TICKS: AtomicU64 = AtomicU64::new(0);
static TIMER_BAD_VALUE: AtomicU64 = AtomicU64::new(0);
static QUEUED_RUNS: AtomicU64 = AtomicU64::new(0);
static QUEUED_VALUE_SEEN: AtomicU64 = AtomicU64::new(0);
static QUEUED_CODE_SEEN: AtomicU64 = AtomicU64::new(0);
static QUEUED_STACK_ADDR: AtomicU64 = AtomicU64::new(0);

fn sigrt(n: i32) -> i32 {
    libc::SIGRTMIN() + n
}

/// Reads `si_value` (as a word) and `si_code` from a raw siginfo.
///
/// # Safety
/// `info` must point at a kernel-written `siginfo_t`.
unsafe fn value_and_code(info: *const libc::siginfo_t) -> (u64, i32) {
    let base = info.cast::<u8>();
    // SAFETY: a siginfo_t is 128 bytes; both fields lie inside it (read unaligned to be safe).
    unsafe {
        (
            std::ptr::read_unaligned(base.add(SI_VALUE_OFFSET).cast::<u64>()),
            std::ptr::read_unaligned(base.add(SI_CODE_OFFSET).cast::<i32>()),
        )
    }
}

extern "C" fn on_usr1(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

extern "C" fn on_alarm(_: libc::c_int) {
    ALARMS.fetch_add(1, Ordering::Relaxed);
}

extern "C" fn on_timer(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let (value, _) = unsafe { value_and_code(info) };
    if value != TIMER_VALUE {
        TIMER_BAD_VALUE.fetch_add(1, Ordering::Relaxed);
    }
    TIMER_TICKS.fetch_add(1, Ordering::Relaxed);
}

extern "C" fn on_queued(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let local = 0u8;
    QUEUED_STACK_ADDR.store(std::ptr::addr_of!(local) as u64, Ordering::Relaxed);
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let (value, code) = unsafe { value_and_code(info) };
    QUEUED_VALUE_SEEN.store(value, Ordering::Relaxed);
    QUEUED_CODE_SEEN.store(code as u32 as u64, Ordering::Relaxed);
    QUEUED_RUNS.fetch_add(1, Ordering::Relaxed);
}

/// The kernel's `struct sigaction` as `rt_sigaction` reads it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct KSigAction {
    handler: u64,
    flags: u64,
    restorer: u64,
    mask: u64,
}

fn err(what: &str) -> WorkloadError {
    WorkloadError::setup(what, std::io::Error::last_os_error())
}

/// Every disposition via raw rt_sigaction (glibc's sigaction refuses its own reserved signals).
fn all_actions() -> Result<Vec<KSigAction>, WorkloadError> {
    (1..=NSIG as i64)
        .map(|sig| {
            let mut old = KSigAction::default();
            // SAFETY: a NULL new action only reads the disposition into `old`, a live struct.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    std::ptr::null::<KSigAction>(),
                    &mut old as *mut KSigAction,
                    8usize,
                )
            };
            if r != 0 {
                return Err(err("rt_sigaction query"));
            }
            Ok(old)
        })
        .collect()
}

fn install(sig: i32, handler: usize, flags: i32, mask: &[i32]) -> Result<(), WorkloadError> {
    // SAFETY: a zeroed sigaction is a valid starting point; every field is set below.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = handler;
    act.sa_flags = flags;
    // SAFETY: sa_mask is a live sigset_t owned by `act`.
    unsafe { libc::sigemptyset(&mut act.sa_mask) };
    for &m in mask {
        // SAFETY: as above.
        unsafe { libc::sigaddset(&mut act.sa_mask, m) };
    }
    // SAFETY: `act` is fully initialised; handlers are extern "C" fns living for the whole program.
    if unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) } != 0 {
        return Err(err("sigaction"));
    }
    Ok(())
}

fn altstack_now() -> Result<libc::stack_t, WorkloadError> {
    // SAFETY: zeroed stack_t is plain data; sigaltstack with a NULL new stack only writes `old`.
    let mut old: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    if unsafe { libc::sigaltstack(std::ptr::null(), &mut old) } != 0 {
        return Err(err("sigaltstack query"));
    }
    Ok(old)
}

fn sigmask_op(how: i32, sig: i32) -> Result<(), WorkloadError> {
    // SAFETY: a sigset_t on this stack, initialised by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is live.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
    }
    // SAFETY: `set` is initialised; no old set is requested.
    if unsafe { libc::sigprocmask(how, &set, std::ptr::null_mut()) } != 0 {
        return Err(err("sigprocmask"));
    }
    Ok(())
}

fn is_pending(sig: i32) -> Result<bool, WorkloadError> {
    // SAFETY: plain data written by sigpending.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is live.
    if unsafe { libc::sigpending(&mut set) } != 0 {
        return Err(err("sigpending"));
    }
    // SAFETY: `set` was filled by the kernel.
    Ok(unsafe { libc::sigismember(&set, sig) } == 1)
}

/// The kernel's `struct sigevent` for SIGEV_SIGNAL.
#[repr(C)]
struct SigEvent {
    value: u64,
    signo: i32,
    notify: i32,
    pad: [i32; 12],
}

/// `timer_create` as the raw syscall: the id is the kernel's, not a glibc handle.
fn create_timer() -> Result<i32, WorkloadError> {
    let sev = SigEvent {
        value: TIMER_VALUE,
        signo: sigrt(2),
        notify: libc::SIGEV_SIGNAL,
        pad: [0; 12],
    };
    let mut id: i32 = -1;
    // SAFETY: `sev` and `id` are live for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_timer_create,
            libc::CLOCK_MONOTONIC,
            &sev as *const SigEvent,
            &mut id as *mut i32,
        )
    };
    if r != 0 {
        return Err(err("timer_create"));
    }
    let spec = [0i64, TIMER_INTERVAL_NS, 0, TIMER_INTERVAL_NS];
    // SAFETY: `spec` is a live itimerspec (interval, value).
    let r = unsafe {
        libc::syscall(
            libc::SYS_timer_settime,
            id,
            0,
            spec.as_ptr(),
            std::ptr::null_mut::<i64>(),
        )
    };
    if r != 0 {
        return Err(err("timer_settime"));
    }
    Ok(id)
}

/// `timer_gettime` on a kernel id: (interval ns, value ns), or the errno.
fn timer_gettime(id: i32) -> Result<(i64, i64), String> {
    let mut spec = [0i64; 4];
    // SAFETY: `spec` is a live itimerspec the kernel writes.
    let r = unsafe { libc::syscall(libc::SYS_timer_gettime, id, spec.as_mut_ptr()) };
    if r != 0 {
        return Err(format!(
            "timer_gettime({id}): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok((
        spec[0] * 1_000_000_000 + spec[1],
        spec[2] * 1_000_000_000 + spec[3],
    ))
}

struct Before {
    actions: Vec<KSigAction>,
    altstack: libc::stack_t,
    timer_id: i32,
}

fn set_up() -> Result<Before, WorkloadError> {
    let stack: &'static mut [u8] = Box::leak(vec![0u8; ALTSTACK_SIZE].into_boxed_slice());
    let ss = libc::stack_t {
        ss_sp: stack.as_mut_ptr().cast(),
        ss_flags: 0,
        ss_size: ALTSTACK_SIZE,
    };
    // SAFETY: the stack memory is leaked, so it lives as long as the process.
    if unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) } != 0 {
        return Err(err("sigaltstack"));
    }
    install(
        libc::SIGUSR1,
        on_usr1 as *const () as usize,
        libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK,
        &[libc::SIGUSR2, sigrt(3)],
    )?;
    install(libc::SIGUSR2, libc::SIG_IGN, 0, &[])?;
    install(
        sigrt(1),
        on_queued as *const () as usize,
        libc::SA_SIGINFO | libc::SA_ONSTACK,
        &[],
    )?;
    install(
        libc::SIGALRM,
        on_alarm as *const () as usize,
        libc::SA_RESTART,
        &[],
    )?;
    install(
        sigrt(2),
        on_timer as *const () as usize,
        libc::SA_SIGINFO | libc::SA_RESTART,
        &[],
    )?;

    sigmask_op(libc::SIG_BLOCK, sigrt(1))?;
    let value = libc::sigval {
        sival_ptr: QUEUED_VALUE as *mut libc::c_void,
    };
    // SAFETY: plain sigqueue to ourselves.
    if unsafe { libc::sigqueue(libc::getpid(), sigrt(1), value) } != 0 {
        return Err(err("sigqueue"));
    }

    let it = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: ITIMER_INTERVAL_US,
        },
        it_value: libc::timeval {
            tv_sec: 0,
            tv_usec: ITIMER_INTERVAL_US,
        },
    };
    // SAFETY: `it` is a live itimerval; no old value requested.
    if unsafe { libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()) } != 0 {
        return Err(err("setitimer"));
    }
    // Burn a few ids first: a fresh process's first timer gets id 0, which a restore that ignored the saved
    // id would hand out too.
    for _ in 0..THROWAWAY_TIMERS {
        let id = create_timer()?;
        // SAFETY: deleting our own timer by its kernel id.
        if unsafe { libc::syscall(libc::SYS_timer_delete, id) } != 0 {
            return Err(err("timer_delete"));
        }
    }
    let timer_id = create_timer()?;
    Ok(Before {
        actions: all_actions()?,
        altstack: altstack_now()?,
        timer_id,
    })
}

fn inject_fault(before: &Before) -> Result<(), WorkloadError> {
    install(
        libc::SIGUSR1,
        on_usr1 as *const () as usize,
        libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK,
        &[libc::SIGUSR2],
    )?;
    // SAFETY: deleting our own timer by its kernel id.
    if unsafe { libc::syscall(libc::SYS_timer_delete, before.timer_id) } != 0 {
        return Err(err("timer_delete"));
    }
    Ok(())
}

fn check_actions(report: &mut Report, before: &Before) -> Result<(), WorkloadError> {
    let now = all_actions()?;
    let diffs: Vec<String> = before
        .actions
        .iter()
        .zip(&now)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| format!("signal {}: {a:x?} -> {b:x?}", i + 1))
        .collect();
    report.check(
        "sigactions",
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(diffs.join("; "))
        },
    );
    let usr1 = &now[libc::SIGUSR1 as usize - 1];
    let want = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
    report.check(
        "sigusr1-handler",
        if usr1.flags & want as u64 == want as u64 && usr1.handler == on_usr1 as *const () as u64 {
            Ok(())
        } else {
            Err(format!("{usr1:x?}"))
        },
    );
    let usr2 = &now[libc::SIGUSR2 as usize - 1];
    report.check(
        "sigusr2-ignored",
        if usr2.handler == libc::SIG_IGN as u64 {
            Ok(())
        } else {
            Err(format!("{usr2:x?}"))
        },
    );
    Ok(())
}

fn check_altstack(report: &mut Report, before: &Before) -> Result<(), WorkloadError> {
    let now = altstack_now()?;
    let b = &before.altstack;
    report.check(
        "sigaltstack",
        if (now.ss_sp, now.ss_flags, now.ss_size) == (b.ss_sp, b.ss_flags, b.ss_size)
            && now.ss_size == ALTSTACK_SIZE
        {
            Ok(())
        } else {
            Err(format!(
                "before sp {:p} flags {} size {}, now sp {:p} flags {} size {}",
                b.ss_sp, b.ss_flags, b.ss_size, now.ss_sp, now.ss_flags, now.ss_size
            ))
        },
    );
    Ok(())
}

fn check_queued(report: &mut Report, before: &Before) -> Result<(), WorkloadError> {
    let pending = is_pending(sigrt(1))?;
    let runs = QUEUED_RUNS.load(Ordering::Relaxed);
    report.check(
        "queued-still-pending",
        if pending && runs == 0 {
            Ok(())
        } else {
            Err(format!("pending {pending}, handler ran {runs} times"))
        },
    );
    sigmask_op(libc::SIG_UNBLOCK, sigrt(1))?;
    let runs = QUEUED_RUNS.load(Ordering::Relaxed);
    let value = QUEUED_VALUE_SEEN.load(Ordering::Relaxed);
    let code = QUEUED_CODE_SEEN.load(Ordering::Relaxed) as u32 as i32;
    report.check(
        "queued-delivered",
        if runs == 1 && value == QUEUED_VALUE && code == libc::SI_QUEUE {
            Ok(())
        } else {
            Err(format!(
                "handler ran {runs} times, si_value {value}, si_code {code}"
            ))
        },
    );
    let addr = QUEUED_STACK_ADDR.load(Ordering::Relaxed);
    let lo = before.altstack.ss_sp as u64;
    let hi = lo + before.altstack.ss_size as u64;
    report.check(
        "queued-on-altstack",
        if (lo..hi).contains(&addr) {
            Ok(())
        } else {
            Err(format!(
                "handler local at {addr:#x}, altstack {lo:#x}..{hi:#x}"
            ))
        },
    );
    Ok(())
}

fn check_timers(report: &mut Report, before: &Before) -> Result<(), WorkloadError> {
    let (a0, t0) = (
        ALARMS.load(Ordering::Relaxed),
        TIMER_TICKS.load(Ordering::Relaxed),
    );
    std::thread::sleep(Duration::from_millis(500));
    let (a1, t1) = (
        ALARMS.load(Ordering::Relaxed),
        TIMER_TICKS.load(Ordering::Relaxed),
    );
    report.note(&format!(
        "SIGALRM {a0} -> {a1}, POSIX timer ticks {t0} -> {t1}"
    ));
    report.check(
        "itimer-ticks",
        if a1 >= a0 + 3 {
            Ok(())
        } else {
            Err(format!("SIGALRM count {a0} -> {a1} in 500 ms"))
        },
    );
    // SAFETY: getitimer writes a live itimerval.
    let mut it: libc::itimerval = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    let r = unsafe { libc::getitimer(libc::ITIMER_REAL, &mut it) };
    report.check(
        "itimer-interval",
        if r == 0 && it.it_interval.tv_sec == 0 && it.it_interval.tv_usec == ITIMER_INTERVAL_US {
            Ok(())
        } else {
            Err(format!(
                "getitimer {r}: interval {}.{:06}",
                it.it_interval.tv_sec, it.it_interval.tv_usec
            ))
        },
    );
    report.check(
        "posix-timer-ticks",
        if t1 >= t0 + 5 {
            Ok(())
        } else {
            Err(format!("ticks {t0} -> {t1} in 500 ms"))
        },
    );
    let bad = TIMER_BAD_VALUE.load(Ordering::Relaxed);
    report.check(
        "posix-timer-value",
        if bad == 0 {
            Ok(())
        } else {
            Err(format!("{bad} expiries with si_value != {TIMER_VALUE}"))
        },
    );
    let id = before.timer_id;
    let listed = std::fs::read_to_string("/proc/self/timers")
        .map(|t| t.lines().any(|l| l.trim() == format!("ID: {id}")))
        .unwrap_or(false);
    report.check(
        "posix-timer-id",
        match timer_gettime(id) {
            Ok((interval, _)) if interval == TIMER_INTERVAL_NS && listed => Ok(()),
            Ok((interval, _)) => Err(format!(
                "timer {id}: interval {interval} ns, listed in /proc/self/timers: {listed}"
            )),
            Err(e) => Err(e),
        },
    );
    Ok(())
}

fn run() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env(USAGE)?;
    let mut report = Report::new("wl_signals");
    let before = set_up()?;
    report.note(&format!("POSIX timer id {}", before.timer_id));
    workload::ready()?;
    workload::wait_for_trigger(&args.trigger)?;
    if args.has_flag(INJECT_FAULT) {
        inject_fault(&before)?;
    }
    check_actions(&mut report, &before)?;
    check_altstack(&mut report, &before)?;
    check_queued(&mut report, &before)?;
    check_timers(&mut report, &before)?;
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_signals", run)
}
