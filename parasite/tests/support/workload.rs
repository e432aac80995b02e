//! Workloads run in a re-executed copy of the test binary (env `DORMANT_PARASITE_WORKLOAD=<role>`).
//! Each sets up known in-process state, prints one `READY key=value ...` line, then blocks or spins in
//! the way its role names and finally checks its own result; exit status 0 means "my check passed".

use std::io::Write;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

pub const ROLE_ENV: &str = "DORMANT_PARASITE_WORKLOAD";
pub const SHM_FD_ENV: &str = "DORMANT_PARASITE_SHM_FD";
pub const TARGET_ENV: &str = "DORMANT_PARASITE_TARGET";
/// For the "blob-injector" role: the test_hooks::Stage number at which it SIGKILLs itself.
pub const DIE_AT_ENV: &str = "DORMANT_PARASITE_DIE_AT";

/// Offsets in the shared memfd page.
pub const SHM_FUTEX: usize = 0;
pub const SHM_COUNTER: usize = 8;
pub const SHM_STOP: usize = 16;
pub const SHM_LEN: usize = 4096;

pub const PIPE_MESSAGE: &[u8] = b"hello-parasite";
pub const NANOSLEEP_SECS: i64 = 2;

/// Values the workload installs; the test expects the parasite queries to report exactly these.
pub const SA_RESTORER: u64 = 0x0400_0000;
pub const USR1_FLAGS: u64 =
    (libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART) as u64 | SA_RESTORER;
pub const USR1_MASK: u64 = (1 << (libc::SIGHUP - 1)) | (1 << (libc::SIGUSR2 - 1));
pub const ALTSTACK_SIZE: usize = 65536;
pub const SECBIT_KEEP_CAPS: u64 = 1 << 4;
pub const PDEATHSIG: i32 = libc::SIGUSR2;
pub const REAL_TIMER: (i64, i64, i64) = (7, 250_000, 1000); // interval sec, usec, value sec
pub const VIRT_TIMER: (i64, i64, i64) = (3, 0, 500);
pub const PROF_TIMER: (i64, i64, i64) = (0, 0, 900);

static CLEAR_CHILD_TID: AtomicU32 = AtomicU32::new(0);

extern "C" fn usr1_handler(_: libc::c_int) {}
extern "C" fn fake_restorer() {}

fn check(cond: bool, what: &str) {
    if !cond {
        eprintln!(
            "workload: check failed: {what} (errno {})",
            std::io::Error::last_os_error()
        );
        std::process::exit(1);
    }
}

fn set_timer(which: libc::c_int, t: (i64, i64, i64)) {
    let v = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: t.0,
            tv_usec: t.1,
        },
        it_value: libc::timeval {
            tv_sec: t.2,
            tv_usec: 0,
        },
    };
    // SAFETY: setitimer reads a valid itimerval; no old value requested.
    let rc = unsafe { libc::setitimer(which, &v, std::ptr::null_mut()) };
    check(rc == 0, "setitimer");
}

fn shm() -> *mut u8 {
    let fd: i32 = std::env::var(SHM_FD_ENV).unwrap().parse().unwrap();
    // SAFETY: maps the inherited memfd shared; the mapping is leaked for the process lifetime.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            SHM_LEN,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    check(p != libc::MAP_FAILED, "mmap shm");
    p as *mut u8
}

/// Install the known state and return the READY line.
fn setup() -> String {
    let act = dormant_sys::signal::KernelSigaction {
        handler: usr1_handler as *const () as usize as u64,
        flags: USR1_FLAGS,
        restorer: fake_restorer as *const () as usize as u64,
        mask: USR1_MASK,
    };
    // SAFETY: raw rt_sigaction with a kernel-layout k_sigaction and sigsetsize 8.
    let rc = unsafe { libc::syscall(libc::SYS_rt_sigaction, libc::SIGUSR1, &act, 0usize, 8usize) };
    check(rc == 0, "rt_sigaction SIGUSR1");
    // SAFETY: plain libc call installing SIG_IGN.
    let rc = unsafe { libc::signal(libc::SIGUSR2, libc::SIG_IGN) };
    check(rc != libc::SIG_ERR, "signal SIGUSR2");

    let stack = Box::leak(vec![0u8; ALTSTACK_SIZE].into_boxed_slice());
    let ss = libc::stack_t {
        ss_sp: stack.as_mut_ptr() as *mut libc::c_void,
        ss_flags: 0,
        ss_size: ALTSTACK_SIZE,
    };
    // SAFETY: the leaked buffer outlives the process's use of it.
    check(
        unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) } == 0,
        "sigaltstack",
    );

    set_timer(libc::ITIMER_REAL, REAL_TIMER);
    set_timer(libc::ITIMER_VIRTUAL, VIRT_TIMER);
    set_timer(libc::ITIMER_PROF, PROF_TIMER);

    // SAFETY: grows the heap by an odd amount so the exact brk is not page aligned.
    check(unsafe { libc::sbrk(12345) } as isize != -1, "sbrk");
    // SAFETY: sbrk(0) only reports the current break.
    let brk = unsafe { libc::sbrk(0) } as u64;

    let tid_addr = CLEAR_CHILD_TID.as_ptr() as u64;
    // SAFETY: the static outlives the thread; the kernel writes 0 there at exit.
    unsafe { libc::syscall(libc::SYS_set_tid_address, tid_addr) };
    // SAFETY: plain prctl calls with integer arguments.
    unsafe {
        check(
            libc::prctl(libc::PR_SET_PDEATHSIG, PDEATHSIG as u64) == 0,
            "pdeathsig",
        );
        check(libc::prctl(libc::PR_SET_DUMPABLE, 0u64) == 0, "dumpable");
        check(
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1u64) == 0,
            "subreaper",
        );
        check(
            libc::prctl(libc::PR_SET_SECUREBITS, SECBIT_KEEP_CAPS) == 0,
            "securebits",
        );
    }
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    format!(
        "READY tid={tid} handler={} restorer={} altsp={} brk={brk} tidaddr={tid_addr}",
        act.handler,
        act.restorer,
        stack.as_ptr() as u64
    )
}

pub fn run(role: &str) -> ! {
    if role == "injector" {
        super::injector();
    }
    if role == "blob-injector" {
        super::blob_injector();
    }
    let shm = shm();
    let mut ready = setup();
    let mut threads = Vec::new();
    if role == "threads" {
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..2u64 {
            let tx = tx.clone();
            let shm = shm as usize;
            threads.push(std::thread::spawn(move || {
                worker_thread(i, shm as *mut u8, tx)
            }));
        }
        for _ in 0..2 {
            let (i, tid, altsp): (u64, i64, u64) = rx.recv().unwrap();
            ready.push_str(&format!(" t{i}={tid} t{i}alt={altsp}"));
        }
    }
    let mut out = std::io::stdout();
    writeln!(out, "{ready}").unwrap();
    out.flush().unwrap();
    match role {
        "spin" => spin(shm),
        "nanosleep" => nanosleep(),
        "pipe-read" => pipe_read(),
        "futex" => futex(shm),
        "epoll" => epoll(),
        "threads" => {
            spin(shm);
            for t in threads {
                check(t.join().is_ok(), "worker thread");
            }
        }
        other => {
            eprintln!("unknown workload role {other}");
            std::process::exit(2)
        }
    }
    std::process::exit(0)
}

fn spin(shm: *mut u8) {
    // SAFETY: both words lie inside the 4 KiB shared page and are 8-byte aligned.
    let (counter, stop) = unsafe {
        (
            &*(shm.add(SHM_COUNTER) as *const AtomicU64),
            &*(shm.add(SHM_STOP) as *const AtomicU32),
        )
    };
    let mut local: u64 = 0;
    while stop.load(Ordering::Relaxed) == 0 {
        local = local.wrapping_add(1);
        counter.store(local, Ordering::Relaxed);
    }
    check(local > 0, "spinner made progress");
}

fn nanosleep() {
    let start = Instant::now();
    let req = libc::timespec {
        tv_sec: NANOSLEEP_SECS,
        tv_nsec: 0,
    };
    // SAFETY: raw nanosleep with a valid request and no remainder pointer.
    let rc = unsafe { libc::syscall(libc::SYS_nanosleep, &req, 0usize) };
    let elapsed = start.elapsed().as_secs_f64();
    eprintln!("workload nanosleep: rc={rc} elapsed={elapsed:.3}s");
    check(rc == 0, "nanosleep returned 0 (restarted transparently)");
    // Restart via restart_syscall keeps the original expiry: a restart from scratch would add the
    // time the test held the task stopped (>= 0.5 s).
    check(
        elapsed >= NANOSLEEP_SECS as f64 && elapsed < NANOSLEEP_SECS as f64 + 0.35,
        "woke at the original expiry",
    );
}

fn pipe_read() {
    let mut buf = [0u8; 64];
    // SAFETY: raw read into a local buffer of the given length.
    let n = unsafe { libc::syscall(libc::SYS_read, 0, buf.as_mut_ptr(), buf.len()) };
    check(
        n == PIPE_MESSAGE.len() as i64,
        "read returned the message length",
    );
    check(
        &buf[..PIPE_MESSAGE.len()] == PIPE_MESSAGE,
        "read returned the message",
    );
}

fn futex(shm: *mut u8) {
    // SAFETY: the futex word lies in the shared page.
    let word = unsafe { &*(shm.add(SHM_FUTEX) as *const AtomicU32) };
    // SAFETY: shared (not PRIVATE) FUTEX_WAIT on a live word, expected value 0, no timeout.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            0u32,
            0usize,
            0usize,
            0u32,
        )
    };
    check(rc == 0, "FUTEX_WAIT woken by FUTEX_WAKE");
    check(
        word.load(Ordering::SeqCst) == 1,
        "futex word set by the waker",
    );
}

fn epoll() {
    // SAFETY: plain epoll setup on stdin.
    let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    check(epfd >= 0, "epoll_create1");
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: 7,
    };
    // SAFETY: valid epoll fd, fd 0 and event.
    check(
        unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, 0, &mut ev) } == 0,
        "epoll_ctl",
    );
    let mut eintr = 0;
    let rc = loop {
        let mut out = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: raw epoll_wait into one local event, infinite timeout.
        let rc = unsafe { libc::syscall(libc::SYS_epoll_wait, epfd, &mut out, 1, -1) };
        if rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            // epoll_wait is never restarted: the ptrace interrupt itself makes it return EINTR.
            eintr += 1;
            continue;
        }
        check(
            out.u64 == 7 && out.events & libc::EPOLLIN as u32 != 0,
            "epoll event",
        );
        break rc;
    };
    eprintln!("workload epoll: rc={rc} eintr={eintr}");
    check(rc == 1, "one ready event");
    check(eintr <= 1, "at most the one EINTR caused by the seize");
    pipe_read();
}

/// A worker of the "threads" role: its own sigaltstack, then thread 0 spins and thread 1 sleeps in
/// nanosleep until the stop word is set; both check their altstack is still theirs at the end.
fn worker_thread(i: u64, shm: *mut u8, tx: std::sync::mpsc::Sender<(u64, i64, u64)>) {
    let size = ALTSTACK_SIZE + 4096 * (i as usize + 1);
    let stack = Box::leak(vec![0u8; size].into_boxed_slice());
    let ss = libc::stack_t {
        ss_sp: stack.as_mut_ptr() as *mut libc::c_void,
        ss_flags: 0,
        ss_size: size,
    };
    // SAFETY: the leaked buffer outlives the thread's use of it.
    check(
        unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) } == 0,
        "thread sigaltstack",
    );
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    tx.send((i, tid, stack.as_ptr() as u64)).unwrap();
    // SAFETY: the stop word lies inside the shared page and is 4-byte aligned.
    let stop = unsafe { &*(shm.add(SHM_STOP) as *const AtomicU32) };
    let mut n = 0u64;
    while stop.load(Ordering::Relaxed) == 0 {
        if i == 1 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        n = n.wrapping_add(1);
    }
    let mut now: libc::stack_t = libc::stack_t {
        ss_sp: std::ptr::null_mut(),
        ss_flags: 0,
        ss_size: 0,
    };
    // SAFETY: reads the current altstack into a local.
    check(
        unsafe { libc::sigaltstack(std::ptr::null(), &mut now) } == 0,
        "read altstack",
    );
    check(
        now.ss_sp as u64 == stack.as_ptr() as u64 && now.ss_size == size,
        "thread altstack kept",
    );
    check(n > 0, "worker made progress");
}
