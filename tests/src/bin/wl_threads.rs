//! Workload `wl_threads`: seven threads, each blocked or running in a different way, each with its own
//! thread-local value, blocked-signal set and name, all of which must survive a checkpoint.
//!
//! `wl_threads TRIGGER DIR LINE [--inject-fault]`; stdin must be a terminal or pipe on which LINE arrives
//! after the trigger (the harness types it into a pty). Set-up before READY (the main thread waits until every
//! thread sits in its blocking call, read from `/proc/self/task/<tid>/syscall`):
//! - `t-futex`: FUTEX_WAIT on a private futex word;
//! - `t-pipe`: `read` on stdin (a pty under the harness);
//! - `t-sleep`: `nanosleep` in 50 ms steps until told to stop;
//! - `t-busy`: a busy loop counting until told to stop;
//! - `t-condvar`: waiting on a `Condvar` (futex under glibc);
//! - `t-sigwait`: `sigwaitinfo` for SIGUSR2 (blocked in its mask);
//! - `t-poll`: `poll` on no fds with a 200 ms timeout (a restart-block syscall) until told to stop.
//!
//! After the trigger the main thread wakes each one the way it waits (futex wake, a flag, a condvar notify,
//! `tgkill(SIGUSR2)`); the line typed by the harness wakes the reader, which checks it. Each thread checks after waking that `gettid()` is the
//! tid it had before READY, that its thread-local value is its own, that its blocked set is the one it
//! installed (each thread blocks a different real-time signal) and that its name is unchanged; the busy
//! thread also that its counter still moves. The main thread checks the tids in `/proc/self/task`.
//!
//! `--inject-fault` changes the pipe thread's blocked set after the trigger, so the check must fail.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dormant_tests::workload::{self, Report, WorkloadArgs, WorkloadError, INJECT_FAULT};

const USAGE: &str = "LINE [--inject-fault]";
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

thread_local! {
    static TLS_VALUE: Cell<u64> = const { Cell::new(0) };
}

static FUTEX_WORD: AtomicU32 = AtomicU32::new(0);
static STOP: AtomicBool = AtomicBool::new(false);
static BUSY_COUNT: AtomicU64 = AtomicU64::new(0);

fn gettid() -> u32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

fn sigrt(n: i32) -> i32 {
    libc::SIGRTMIN() + n
}

fn bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// The calling thread's blocked set as a 64-bit mask (raw `rt_sigprocmask`).
fn blocked() -> u64 {
    let mut old = 0u64;
    // SAFETY: queries only, the kernel writes 8 bytes into `old`.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK,
            std::ptr::null::<u64>(),
            &mut old as *mut u64,
            8usize,
        )
    };
    old
}

fn block(mask: u64) {
    // SAFETY: adds `mask` to the calling thread's blocked set; the kernel reads 8 bytes.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK,
            &mask as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        )
    };
}

fn thread_name() -> String {
    let mut buf = [0u8; 16];
    // SAFETY: PR_GET_NAME writes at most 16 bytes into `buf`.
    unsafe { libc::prctl(libc::PR_GET_NAME, buf.as_mut_ptr()) };
    let n = buf.iter().position(|&b| b == 0).unwrap_or(16);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// What one thread knows about itself before READY.
#[derive(Debug, Clone)]
struct Identity {
    name: &'static str,
    tid: u32,
    tls: u64,
    mask: u64,
}

/// Per-thread set-up: thread-local value and one extra blocked signal; returns what it should see later.
fn setup(name: &'static str, index: i32, extra_mask: u64) -> Identity {
    let tls = 0x7715_0000 + index as u64;
    TLS_VALUE.with(|v| v.set(tls));
    block(bit(sigrt(index + 1)) | extra_mask);
    Identity {
        name,
        tid: gettid(),
        tls,
        mask: blocked(),
    }
}

/// The checks each thread runs once woken: same tid, thread-local value, blocked set and name.
fn verify(id: &Identity) -> Vec<(String, Result<(), String>)> {
    let mut out = Vec::new();
    let tid = gettid();
    out.push((
        format!("{}-tid", id.name),
        if tid == id.tid {
            Ok(())
        } else {
            Err(format!("gettid() {tid}, before {}", id.tid))
        },
    ));
    let tls = TLS_VALUE.with(|v| v.get());
    out.push((
        format!("{}-tls", id.name),
        if tls == id.tls {
            Ok(())
        } else {
            Err(format!("thread-local {tls:#x}, expected {:#x}", id.tls))
        },
    ));
    let mask = blocked();
    out.push((
        format!("{}-sigmask", id.name),
        if mask == id.mask {
            Ok(())
        } else {
            Err(format!("blocked {mask:#x}, expected {:#x}", id.mask))
        },
    ));
    let name = thread_name();
    out.push((
        format!("{}-name", id.name),
        if name == id.name {
            Ok(())
        } else {
            Err(format!("name {name:?}"))
        },
    ));
    out
}

type Checks = Vec<(String, Result<(), String>)>;

struct Spawned {
    name: &'static str,
    handle: JoinHandle<Checks>,
}

fn spawn(
    name: &'static str,
    ids: &Arc<Mutex<Vec<Identity>>>,
    body: impl FnOnce(Identity) -> Checks + Send + 'static,
    index: i32,
    extra_mask: u64,
) -> Result<Spawned, WorkloadError> {
    let ids = Arc::clone(ids);
    let handle = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let id = setup(name, index, extra_mask);
            ids.lock().map(|mut v| v.push(id.clone())).ok();
            body(id)
        })
        .map_err(|e| WorkloadError::setup(format!("spawning {name}"), e))?;
    Ok(Spawned { name, handle })
}

/// The syscall number a thread is blocked in, from `/proc/self/task/<tid>/syscall`.
fn syscall_of(tid: u32) -> Option<i64> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn run() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env(USAGE)?;
    let inject = args.has_flag(INJECT_FAULT);
    let ids: Arc<Mutex<Vec<Identity>>> = Arc::new(Mutex::new(Vec::new()));
    let line = args
        .rest
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .ok_or(WorkloadError::Usage {
            program: "wl_threads".into(),
            usage: USAGE,
        })?;
    let cond = Arc::new((Mutex::new(false), Condvar::new()));
    let sigwait_tid = Arc::new(AtomicU32::new(0));

    let mut threads = Vec::new();
    threads.push(spawn(
        "t-futex",
        &ids,
        |id| {
            while FUTEX_WORD.load(Ordering::Acquire) == 0 {
                // SAFETY: waits on our static word while it still holds 0.
                unsafe {
                    libc::syscall(
                        libc::SYS_futex,
                        FUTEX_WORD.as_ptr(),
                        libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                        0u32,
                        std::ptr::null::<libc::timespec>(),
                    )
                };
            }
            verify(&id)
        },
        0,
        0,
    )?);
    threads.push(spawn(
        "t-pipe",
        &ids,
        move |id| {
            let mut buf = [0u8; 256];
            let mut got = Vec::new();
            while !got.ends_with(b"\n") && got.len() < 4096 {
                // SAFETY: reads into our buffer from stdin, which stays open for the process's life.
                let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n as usize]);
            }
            // Stay alive until the main thread has compared the task list.
            while !STOP.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(5));
            }
            if inject {
                block(bit(libc::SIGPROF));
            }
            let mut out = verify(&id);
            let text = String::from_utf8_lossy(&got);
            out.push((
                "t-pipe-read".into(),
                if text.trim_end() == line {
                    Ok(())
                } else {
                    Err(format!("read {text:?}, expected {line:?}"))
                },
            ));
            out
        },
        1,
        0,
    )?);
    threads.push(spawn(
        "t-sleep",
        &ids,
        |id| {
            while !STOP.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(50));
            }
            verify(&id)
        },
        2,
        0,
    )?);
    threads.push(spawn(
        "t-busy",
        &ids,
        |id| {
            while !STOP.load(Ordering::Acquire) {
                BUSY_COUNT.fetch_add(1, Ordering::Relaxed);
                std::hint::spin_loop();
            }
            verify(&id)
        },
        3,
        0,
    )?);
    let c2 = Arc::clone(&cond);
    threads.push(spawn(
        "t-condvar",
        &ids,
        move |id| {
            let (lock, cv) = &*c2;
            let mut go = lock.lock().unwrap_or_else(|e| e.into_inner());
            while !*go {
                go = cv.wait(go).unwrap_or_else(|e| e.into_inner());
            }
            drop(go);
            verify(&id)
        },
        4,
        0,
    )?);
    let st = Arc::clone(&sigwait_tid);
    threads.push(spawn(
        "t-sigwait",
        &ids,
        move |id| {
            st.store(id.tid, Ordering::Release);
            // SAFETY: sigset_t is plain data; sigwaitinfo writes the siginfo into ours.
            let got = unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGUSR2);
                let mut info: libc::siginfo_t = std::mem::zeroed();
                loop {
                    let r = libc::sigwaitinfo(&set, &mut info);
                    if r >= 0 || *libc::__errno_location() != libc::EINTR {
                        break r;
                    }
                }
            };
            let mut out = verify(&id);
            out.push((
                "t-sigwait-signal".into(),
                if got == libc::SIGUSR2 {
                    Ok(())
                } else {
                    Err(format!("sigwaitinfo returned {got}"))
                },
            ));
            out
        },
        5,
        bit(libc::SIGUSR2),
    )?);
    threads.push(spawn(
        "t-poll",
        &ids,
        move |id| {
            let mut polls = 0u64;
            while !STOP.load(Ordering::Acquire) {
                // SAFETY: no fds, only the timeout.
                unsafe { libc::poll(std::ptr::null_mut(), 0, 200) };
                polls += 1;
            }
            let mut out = verify(&id);
            out.push((
                "t-poll-loops".into(),
                if polls > 0 {
                    Ok(())
                } else {
                    Err("never polled".into())
                },
            ));
            out
        },
        6,
        0,
    )?);

    // Wait until every thread has set itself up and sits where it should.
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let expect = [
        ("t-futex", libc::SYS_futex),
        ("t-pipe", libc::SYS_read),
        ("t-sleep", libc::SYS_clock_nanosleep),
        ("t-condvar", libc::SYS_futex),
        ("t-sigwait", libc::SYS_rt_sigtimedwait),
        ("t-poll", libc::SYS_poll),
    ];
    loop {
        let snapshot = ids.lock().map(|v| v.clone()).unwrap_or_default();
        let settled = snapshot.len() == threads.len()
            && expect.iter().all(|(name, nr)| {
                snapshot
                    .iter()
                    .find(|i| i.name == *name)
                    .and_then(|i| syscall_of(i.tid))
                    .is_some_and(|s| s == *nr || (*nr == libc::SYS_poll && s == libc::SYS_ppoll))
            });
        if settled {
            break;
        }
        if Instant::now() > deadline {
            return Err(WorkloadError::setup(
                "threads settling",
                format!("{} of {} set up", snapshot.len(), threads.len()),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let before: BTreeSet<u32> = ids
        .lock()
        .map(|v| v.iter().map(|i| i.tid).collect())
        .unwrap_or_default();
    workload::ready()?;
    workload::wait_for_trigger(&args.trigger)?;

    let mut report = Report::new("wl_threads");
    let now: BTreeSet<u32> = std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let main_tid = std::process::id();
    let mut want = before.clone();
    want.insert(main_tid);
    report.check(
        "task-list",
        if now == want {
            Ok(())
        } else {
            Err(format!("/proc/self/task {now:?}, expected {want:?}"))
        },
    );
    let count = BUSY_COUNT.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(50));
    let later = BUSY_COUNT.load(Ordering::Relaxed);
    report.check(
        "t-busy-runs",
        if later > count {
            Ok(())
        } else {
            Err(format!("counter stuck at {count}"))
        },
    );

    // Wake everybody.
    FUTEX_WORD.store(1, Ordering::Release);
    // SAFETY: wakes waiters of our static word.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            FUTEX_WORD.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        )
    };
    STOP.store(true, Ordering::Release);
    {
        let (lock, cv) = &*cond;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }
    let tid = sigwait_tid.load(Ordering::Acquire);
    // SAFETY: sends SIGUSR2 to our own thread `tid`, which waits for it with the signal blocked.
    unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            main_tid as libc::c_long,
            tid as libc::c_long,
            libc::SIGUSR2,
        )
    };

    let deadline = Instant::now() + JOIN_TIMEOUT;
    for t in threads {
        while !t.handle.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !t.handle.is_finished() {
            report.check(&format!("{}-woke", t.name), Err("still blocked".into()));
            continue;
        }
        match t.handle.join() {
            Ok(checks) => {
                for (what, result) in checks {
                    report.check(&what, result);
                }
            }
            Err(_) => report.check(&format!("{}-woke", t.name), Err("panicked".into())),
        }
    }
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_threads", run)
}
