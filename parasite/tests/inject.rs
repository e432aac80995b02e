//! Privileged tests of the remote-syscall primitive and the in-process queries.
//!
//! `harness = false`: the same binary is re-executed as a workload when `DORMANT_PARASITE_WORKLOAD`
//! is set (see support/workload.rs), so each workload is a single-threaded process whose main thread
//! is the task under test. Run a subset with `cargo test -p dormant-parasite --test inject -- <substr>`.

#![allow(clippy::unwrap_used)] // tests may unwrap (project rule)

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use dormant_parasite::query::{self, ITimerVal, TaskSnapshot, TimeVal};
use dormant_parasite::{PagePiece, Parasite, ParasiteError, RemoteTask, Tid};
use dormant_sys::signal::KernelSigaction as SigAction;
use support::workload::*;
use support::*;

fn main() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        support::workload::run(&role);
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "the parasite tests need root (ptrace, /proc/<pid>/mem, map_files); run them as root"
    );
    let tests: &[(&str, fn())] = &[
        (
            "invariance_spinning_in_user_code",
            invariance_spinning_in_user_code,
        ),
        ("invariance_in_nanosleep", invariance_in_nanosleep),
        ("invariance_in_pipe_read", invariance_in_pipe_read),
        ("invariance_in_futex_wait", invariance_in_futex_wait),
        ("invariance_in_epoll_wait", invariance_in_epoll_wait),
        (
            "failing_syscall_returns_errno_and_restores",
            failing_syscall_returns_errno_and_restores,
        ),
        (
            "memory_helpers_reach_readonly_and_prot_none",
            memory_helpers_reach_readonly_and_prot_none,
        ),
        ("munmap_query_removes_mapping", munmap_query_removes_mapping),
        (
            "tracer_death_mid_injection_leaves_target_running",
            tracer_death_mid_injection_leaves_target_running,
        ),
        (
            "multithreaded_per_thread_commands",
            multithreaded_per_thread_commands,
        ),
        (
            "strict_seccomp_target_survives_injection",
            strict_seccomp_target_survives_injection,
        ),
        (
            "sigpipe_raised_by_the_blob_is_taken_back",
            sigpipe_raised_by_the_blob_is_taken_back,
        ),
        (
            "dumper_killed_at_each_parasite_stage",
            dumper_killed_at_each_parasite_stage,
        ),
    ];
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut ran = 0;
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        eprintln!("test {name} ...");
        let start = Instant::now();
        test();
        eprintln!("test {name} ... ok ({:.2}s)", start.elapsed().as_secs_f64());
        ran += 1;
    }
    eprintln!("{ran} tests passed");
}

/// How a workload should look when seized, and how to let it finish afterwards.
struct Scenario {
    role: &'static str,
    /// Blocking syscall the workload must sit in before we seize it (None: user code).
    blocked_in: Option<i64>,
    /// Expected orig_rax and (if known) rax at the interrupt stop.
    stop_regs: (i64, Option<i64>),
    /// Extra time to hold the task stopped (to make restart bugs observable).
    hold: Duration,
}

const ERESTARTSYS: i64 = -512;
const ERESTART_RESTARTBLOCK: i64 = -516;

fn expected_snapshot_matches(w: &Workload, snap: &TaskSnapshot) {
    let usr1 = snap.sigactions[libc::SIGUSR1 as usize - 1];
    assert_eq!(
        usr1,
        SigAction {
            handler: w.ready["handler"],
            flags: USR1_FLAGS,
            restorer: w.ready["restorer"],
            mask: USR1_MASK,
        },
        "SIGUSR1 sigaction"
    );
    assert_eq!(
        snap.sigactions[libc::SIGUSR2 as usize - 1].handler,
        1,
        "SIGUSR2 is SIG_IGN"
    );
    assert_eq!(
        snap.sigactions[libc::SIGKILL as usize - 1],
        SigAction::default(),
        "SIGKILL"
    );
    assert_eq!(
        snap.sigactions[libc::SIGSTOP as usize - 1],
        SigAction::default(),
        "SIGSTOP"
    );
    assert_eq!(
        snap.sigactions[libc::SIGTERM as usize - 1],
        SigAction::default(),
        "SIGTERM"
    );
    assert_eq!(snap.altstack.sp, w.ready["altsp"]);
    assert_eq!(snap.altstack.size, ALTSTACK_SIZE as u64);
    assert_eq!(
        snap.altstack.flags, 0,
        "not running on the altstack, not disabled"
    );
    assert_eq!(
        snap.brk, w.ready["brk"],
        "exact brk equals the workload's sbrk(0)"
    );
    assert_ne!(
        snap.brk % 4096,
        0,
        "the workload's brk is deliberately unaligned"
    );
    check_timer("real", snap.itimers.real, REAL_TIMER);
    check_timer("virtual", snap.itimers.virtual_, VIRT_TIMER);
    check_timer("prof", snap.itimers.prof, PROF_TIMER);
    assert_eq!(
        snap.tid_address,
        Some(w.ready["tidaddr"]),
        "clear_child_tid"
    );
    assert_eq!(snap.pdeathsig, PDEATHSIG);
    assert_eq!(snap.dumpable, 0);
    assert!(snap.child_subreaper);
    assert_eq!(u64::from(snap.securebits), SECBIT_KEEP_CAPS);
}

/// The interval must be exact; the remaining value must be at most the armed value and have run
/// down by less than 30 s (the test takes seconds).
fn check_timer(which: &str, got: ITimerVal, set: (i64, i64, i64)) {
    assert_eq!(
        got.interval,
        TimeVal {
            sec: set.0,
            usec: set.1
        },
        "{which} interval"
    );
    let value = got.value.sec as f64 + got.value.usec as f64 / 1e6;
    assert!(
        value <= set.2 as f64 + 0.1 && value > set.2 as f64 - 30.0,
        "{which} value {value} vs armed {}",
        set.2
    );
}

/// Seize the workload, check the stop is the expected one, run every query plus a failing syscall,
/// and assert registers, xstate, mask, maps and fds are byte-identical afterwards. Leaves the task
/// detached.
fn inject_everything_and_check_invariance(w: &Workload, sc: &Scenario) {
    if let Some(nr) = sc.blocked_in {
        w.wait_blocked_in(nr);
    }
    seize_and_stop(w.tid);
    let before = capture(w.tid);
    let stop_regs = (before.regs[15] as i64, before.regs[10] as i64);
    assert_eq!(
        stop_regs.0, sc.stop_regs.0,
        "orig_rax at the interrupt stop of {}",
        sc.role
    );
    if let Some(rax) = sc.stop_regs.1 {
        assert_eq!(stop_regs.1, rax, "rax at the interrupt stop of {}", sc.role);
    }

    let mut task = RemoteTask::new(w.tid).unwrap();
    let snap = query::snapshot(&mut task).unwrap();
    expected_snapshot_matches(w, &snap);
    let ebadf = task
        .syscall(libc::SYS_close, [u64::MAX, 0, 0, 0, 0, 0])
        .unwrap();
    assert_eq!(ebadf, -(libc::EBADF as i64), "close(-1) returns -EBADF");
    let pid = task.syscall(libc::SYS_getpid, [0; 6]).unwrap();
    assert_eq!(pid, i64::from(w.tid.0), "getpid inside the target");
    drop(task);
    run_every_blob_command(w);
    std::thread::sleep(sc.hold);

    let after = capture(w.tid);
    assert_eq!(before.regs, after.regs, "registers");
    assert_eq!(before.xstate, after.xstate, "NT_X86_XSTATE bytes");
    assert_eq!(before.sigmask, after.sigmask, "signal mask");
    assert_eq!(before.maps, after.maps, "/proc/pid/maps");
    assert_eq!(before.fds, after.fds, "fd table");
    detach(w.tid);
}

/// Inject the blob, run each command (syscall, snapshot, thread state, vmsplice of real pages) and
/// cure; the caller checks that the task is byte-identical afterwards.
fn run_every_blob_command(w: &Workload) {
    let mut p = Parasite::inject(w.tid, &[]).unwrap();
    let (base, len) = p.area();
    let area_line = format!("{base:x}-{:x} rwxp", base + len);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", w.tid)).unwrap();
    assert!(
        maps.lines().any(|l| l.starts_with(&area_line)),
        "the area is mapped in the target:\n{maps}"
    );
    let fds = std::fs::read_dir(format!("/proc/{}/fd", w.tid))
        .unwrap()
        .count();
    assert_eq!(
        p.syscall(w.tid, libc::SYS_getpid, [0; 6]).unwrap(),
        i64::from(w.tid.0)
    );
    assert_eq!(
        p.syscall(w.tid, libc::SYS_close, [u64::MAX, 0, 0, 0, 0, 0])
            .unwrap(),
        -(libc::EBADF as i64)
    );
    let snap = p.task_state().unwrap();
    expected_snapshot_matches(w, &snap);
    let t = p.thread_state(w.tid).unwrap();
    assert_eq!(
        t.altstack, snap.altstack,
        "thread state agrees with the snapshot"
    );

    // vmsplice: the first two mappings' first pages, through two pipes, equal what /proc/pid/mem shows.
    let cap = p.open_page_pipes(2, 1 << 20).unwrap();
    assert!(cap >= 4096, "pipe capacity {cap}");
    assert_eq!(
        std::fs::read_dir(format!("/proc/{}/fd", w.tid))
            .unwrap()
            .count(),
        fds + 2,
        "only the two write ends stay in the target (with the blob's socket, counted before)"
    );
    let mut ranges: Vec<(u64, u64, u32)> = maps
        .lines()
        .filter(|l| l.split_whitespace().nth(1).unwrap().starts_with('r'))
        .take(2)
        .map(|l| {
            let start = u64::from_str_radix(l.split('-').next().unwrap(), 16).unwrap();
            (start, 4096, 7)
        })
        .collect();
    // And random bytes in a fresh anonymous mapping, in pieces of odd sizes (split at pipe capacity,
    // filling both pipes in one command, drained by two threads), so the blob's crc (crc32fast built
    // no_std with carry-less multiplication) is checked against the host's on data with no pattern.
    let random_len = (3 << 20) + 7 * 4096;
    let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    let random_at = p
        .syscall(
            w.tid,
            libc::SYS_mmap,
            [0, random_len, prot, flags, u64::MAX, 0],
        )
        .unwrap() as u64;
    assert!(
        random_at < u64::MAX - 4095,
        "mmap in the target: {random_at:#x}"
    );
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(w.child.id());
    let random: Vec<u8> = (0..random_len / 8)
        .flat_map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed.to_le_bytes()
        })
        .collect();
    {
        use std::os::unix::fs::FileExt;
        let mem = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{}/mem", w.tid))
            .unwrap();
        mem.write_all_at(&random, random_at).unwrap();
    }
    for (off, len) in [(0, 5 * 4096), (5 * 4096, (1 << 20) + 2 * 4096)] {
        ranges.push((random_at + off, len, 7));
    }
    let rest = 5 * 4096 + (1 << 20) + 2 * 4096;
    ranges.push((random_at + rest, random_len - rest, 7));
    let got = std::sync::Mutex::new(Vec::new());
    let moved = p
        .splice_pages(
            &ranges,
            2,
            |piece: PagePiece, fd| -> Result<(), std::io::Error> {
                assert_eq!(piece.tag, 7, "the tag travels with the piece");
                assert!(piece.len <= cap, "pieces are split at pipe capacity");
                let mut buf = vec![0u8; piece.len as usize];
                let mut done = 0;
                while done < buf.len() {
                    done += nix::unistd::read(fd, &mut buf[done..])?;
                }
                got.lock().unwrap().push((piece.vaddr, piece.crc32, buf));
                Ok(())
            },
        )
        .unwrap();
    let expected: u64 = ranges.iter().map(|r| r.1).sum();
    assert_eq!(moved, expected);
    let mut got = got.into_inner().unwrap();
    got.sort();
    let got_bytes: u64 = got.iter().map(|g| g.2.len() as u64).sum();
    assert_eq!(got_bytes, expected, "every piece reached the sink once");
    for (vaddr, crc, bytes) in &got {
        assert_eq!(
            bytes,
            &peek(w.child.id(), *vaddr, bytes.len()),
            "pages at {vaddr:#x}"
        );
        assert_eq!(
            *crc,
            crc32fast::hash(bytes),
            "the blob's crc32 of {:#x} bytes at {vaddr:#x} equals crc32fast's",
            bytes.len()
        );
    }
    let in_random: Vec<u8> = got
        .iter()
        .filter(|g| g.0 >= random_at)
        .flat_map(|g| g.2.iter().copied())
        .collect();
    assert!(in_random == random, "the random mapping arrived whole");
    assert_eq!(
        p.syscall(
            w.tid,
            libc::SYS_munmap,
            [random_at, random_len, 0, 0, 0, 0,]
        )
        .unwrap(),
        0
    );
    p.cure().unwrap();
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", w.tid)).unwrap();
    assert!(
        !maps.lines().any(|l| l.starts_with(&area_line)),
        "area unmapped by the cure"
    );
}

fn invariance_spinning_in_user_code() {
    let w = Workload::spawn("spin");
    let counter = w.shm.u64_at(SHM_COUNTER);
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "spinner never started");
    }
    let sc = Scenario {
        role: "spin",
        blocked_in: None,
        stop_regs: (-1, None), // in user code: not in a syscall, rax is whatever the loop holds
        hold: Duration::ZERO,
    };
    inject_everything_and_check_invariance(&w, &sc);
    let c1 = counter.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(200));
    let c2 = counter.load(Ordering::Relaxed);
    assert!(
        c2 > c1,
        "spinner keeps counting after detach ({c1} -> {c2})"
    );
    w.shm.u32_at(SHM_STOP).store(1, Ordering::Relaxed);
    w.assert_exits_ok(Duration::from_secs(10));
}

/// nanosleep is interrupted with -ERESTART_RESTARTBLOCK; the restored registers must make it resume
/// through restart_syscall with its original expiry (the workload checks it woke at 2 s, not 2 s plus
/// the 0.6 s we held it).
fn invariance_in_nanosleep() {
    let w = Workload::spawn("nanosleep");
    let sc = Scenario {
        role: "nanosleep",
        blocked_in: Some(libc::SYS_nanosleep),
        stop_regs: (libc::SYS_nanosleep, Some(ERESTART_RESTARTBLOCK)),
        hold: Duration::from_millis(600),
    };
    inject_everything_and_check_invariance(&w, &sc);
    w.assert_exits_ok(Duration::from_secs(10));
}

/// read() on a pipe is interrupted with -ERESTARTSYS and must be re-executed: the workload then
/// reads exactly the bytes written after detach.
fn invariance_in_pipe_read() {
    let mut w = Workload::spawn("pipe-read");
    let sc = Scenario {
        role: "pipe-read",
        blocked_in: Some(libc::SYS_read),
        stop_regs: (libc::SYS_read, Some(ERESTARTSYS)),
        hold: Duration::ZERO,
    };
    inject_everything_and_check_invariance(&w, &sc);
    w.write_stdin(PIPE_MESSAGE);
    w.assert_exits_ok(Duration::from_secs(10));
}

/// FUTEX_WAIT is re-executed after the injection; we only wake it once it is back in futex wait.
fn invariance_in_futex_wait() {
    let w = Workload::spawn("futex");
    let sc = Scenario {
        role: "futex",
        blocked_in: Some(libc::SYS_futex),
        stop_regs: (libc::SYS_futex, Some(ERESTARTSYS)),
        hold: Duration::ZERO,
    };
    inject_everything_and_check_invariance(&w, &sc);
    w.wait_blocked_in(libc::SYS_futex);
    let word = w.shm.u32_at(SHM_FUTEX);
    word.store(1, Ordering::SeqCst);
    // SAFETY: shared FUTEX_WAKE on the memfd word both processes map.
    let woken = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            1,
            0usize,
            0usize,
            0u32,
        )
    };
    assert_eq!(woken, 1, "FUTEX_WAKE woke the restored waiter");
    w.assert_exits_ok(Duration::from_secs(10));
}

/// epoll_wait is never restarted: the seize itself makes it return EINTR (rax = -EINTR at the stop);
/// the restored registers must hand exactly that to the workload, which retries and then gets the
/// event for the bytes written after detach.
fn invariance_in_epoll_wait() {
    let mut w = Workload::spawn("epoll");
    let sc = Scenario {
        role: "epoll",
        blocked_in: Some(libc::SYS_epoll_wait),
        stop_regs: (libc::SYS_epoll_wait, Some(-(libc::EINTR as i64))),
        hold: Duration::ZERO,
    };
    inject_everything_and_check_invariance(&w, &sc);
    w.write_stdin(PIPE_MESSAGE);
    w.assert_exits_ok(Duration::from_secs(10));
}

/// A failing injected syscall (close(-1)) returns -EBADF and leaves nothing behind once its session
/// ends, also when it is the only injection (no scratch area involved); a following injection (a new
/// session) still works.
fn failing_syscall_returns_errno_and_restores() {
    let mut w = Workload::spawn("pipe-read");
    w.wait_blocked_in(libc::SYS_read);
    seize_and_stop(w.tid);
    let before = capture(w.tid);
    let mut task = RemoteTask::new(w.tid).unwrap();
    let mut site_bytes = vec![0u8; 8];
    task.read_mem(task.site(), &mut site_bytes).unwrap();
    for fd in [u64::MAX, 9999] {
        let ret = task.syscall(libc::SYS_close, [fd, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(
            ret,
            -(libc::EBADF as i64),
            "close({}) in the target",
            fd as i64
        );
        task.finish().unwrap();
        assert_eq!(
            capture(w.tid),
            before,
            "state after failing close({})",
            fd as i64
        );
        let mut now = vec![0u8; 8];
        task.read_mem(task.site(), &mut now).unwrap();
        assert_eq!(now, site_bytes, "site bytes restored");
    }
    // The typed helpers turn a raw -errno into an error naming the call.
    match task.munmap(0x1234, 4096) {
        Err(ParasiteError::RemoteSyscall {
            call: "munmap",
            errno,
            ..
        }) => {
            assert_eq!(errno, nix::errno::Errno::EINVAL)
        }
        other => panic!("munmap of an unaligned address: {other:?}"),
    }
    task.finish().unwrap();
    assert_eq!(capture(w.tid), before, "state after failing munmap");
    assert_eq!(
        task.syscall(libc::SYS_getppid, [0; 6]).unwrap(),
        i64::from(std::process::id() as i32)
    );
    task.finish().unwrap();
    assert_eq!(capture(w.tid), before, "state after getppid");
    drop(task);
    detach(w.tid);
    w.write_stdin(PIPE_MESSAGE);
    w.assert_exits_ok(Duration::from_secs(10));
}

/// /proc/<pid>/mem access reaches read-only and PROT_NONE pages: write through pages made PROT_NONE by
/// an injected mmap, read them back, and write into the read-only site page. The session's scratch is
/// dead stack below the red zone (nothing mapped for it) and bounds checked.
fn memory_helpers_reach_readonly_and_prot_none() {
    let mut w = Workload::spawn("pipe-read");
    w.wait_blocked_in(libc::SYS_read);
    seize_and_stop(w.tid);
    let before = capture(w.tid);
    let rsp = before.regs[19];
    let mut task = RemoteTask::new(w.tid).unwrap();
    {
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        let addr = task
            .syscall(libc::SYS_mmap, [0, 8192, 0, flags, u64::MAX, 0])
            .unwrap() as u64;
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", w.tid)).unwrap();
        assert!(
            maps.contains(&format!("{addr:x}-{:x} ---p", addr + 8192)),
            "PROT_NONE pages mapped"
        );
        let pattern: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        task.write_mem(addr + 1000, &pattern).unwrap();
        let mut back = vec![0u8; pattern.len()];
        task.read_mem(addr + 1000, &mut back).unwrap();
        assert_eq!(back, pattern, "round trip through PROT_NONE pages");
        task.munmap(addr, 8192).unwrap();
        let scratch = task.scratch(dormant_parasite::SCRATCH_LEN).unwrap();
        let at = scratch.addr();
        assert!(
            at + dormant_parasite::SCRATCH_LEN as u64 <= rsp - 128,
            "scratch below the red zone"
        );
        let stack = maps
            .lines()
            .find(|l| l.ends_with("[stack]"))
            .and_then(|l| l.split_whitespace().next()?.split_once('-'))
            .map(|(s, e)| {
                (
                    u64::from_str_radix(s, 16).unwrap(),
                    u64::from_str_radix(e, 16).unwrap(),
                )
            })
            .unwrap();
        assert!(
            stack.0 <= at && at < stack.1,
            "scratch on the thread's stack"
        );
        assert!(
            scratch.read(200, &mut [0u8; 100]).is_err(),
            "scratch reads are bounds checked"
        );
        scratch.close().unwrap();
        assert!(
            task.scratch(dormant_parasite::SCRATCH_LEN + 1).is_err(),
            "no more scratch than the session has"
        );
    }
    // The site lies in an r-x file mapping: writable only through /proc/pid/mem (FOLL_FORCE).
    let site = task.site();
    let mut orig = [0u8; 8];
    task.read_mem(site, &mut orig).unwrap();
    task.write_mem(site, &[0x90; 8]).unwrap();
    let mut now = [0u8; 8];
    task.read_mem(site, &mut now).unwrap();
    assert_eq!(now, [0x90; 8]);
    task.write_mem(site, &orig).unwrap();
    assert!(
        matches!(
            task.read_mem(8, &mut [0u8; 8]),
            Err(ParasiteError::Mem { .. })
        ),
        "reading an unmapped address is an error naming the address"
    );
    task.finish().unwrap();
    assert_eq!(capture(w.tid), before);
    drop(task);
    detach(w.tid);
    w.write_stdin(PIPE_MESSAGE);
    w.assert_exits_ok(Duration::from_secs(10));
}

/// The restorer's use: munmap an area of the target (here one the target mapped itself: its
/// sigaltstack buffer's pages are heap, so map a fresh area via the primitive and drop it).
fn munmap_query_removes_mapping() {
    let mut w = Workload::spawn("pipe-read");
    w.wait_blocked_in(libc::SYS_read);
    seize_and_stop(w.tid);
    let maps_before = std::fs::read_to_string(format!("/proc/{}/maps", w.tid)).unwrap();
    let mut task = RemoteTask::new(w.tid).unwrap();
    let prot = (libc::PROT_READ | libc::PROT_EXEC) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    let addr = task
        .syscall(libc::SYS_mmap, [0, 3 * 4096, prot, flags, u64::MAX, 0])
        .unwrap() as u64;
    let maps_mid = std::fs::read_to_string(format!("/proc/{}/maps", w.tid)).unwrap();
    assert!(maps_mid.contains(&format!("{addr:x}-{:x} r-xp", addr + 3 * 4096)));
    query::munmap(&mut task, addr, 3 * 4096).unwrap();
    let maps_after = std::fs::read_to_string(format!("/proc/{}/maps", w.tid)).unwrap();
    assert_eq!(maps_after, maps_before);
    drop(task);
    detach(w.tid);
    w.write_stdin(PIPE_MESSAGE);
    w.assert_exits_ok(Duration::from_secs(10));
}

/// Kill the injecting process while the target sits at the syscall site with the injected registers
/// loaded and every signal blocked (test hook). ptrace detaches the target, which executes the
/// `rt_sigreturn` it was loaded with (the syscall number is only swapped in at the entry stop) through
/// the rescue frame on its stack: it resumes with its own registers and mask and passes its own check.
/// The code stays in the ELF padding (past the end of an executable segment), never executed again.
fn tracer_death_mid_injection_leaves_target_running() {
    let w = Workload::spawn("spin");
    let counter = w.shm.u64_at(SHM_COUNTER);
    while counter.load(Ordering::Relaxed) == 0 {}
    let sigblk = |tid: Tid| {
        let s = std::fs::read_to_string(format!("/proc/{tid}/status")).unwrap();
        s.lines()
            .find(|l| l.starts_with("SigBlk:"))
            .unwrap()
            .to_string()
    };
    // Before the injector starts: it blocks every signal right after it reports READY, so a mask read
    // after that line may already be the injected one.
    let mask_before = sigblk(w.tid);
    let mut injector = Command::new(std::env::current_exe().unwrap())
        .env(ROLE_ENV, "injector")
        .env(TARGET_ENV, w.tid.0.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(injector.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let site: u64 = line
        .trim()
        .strip_prefix("READY site=")
        .unwrap()
        .parse()
        .unwrap();

    // The site must lie in the tail of an r-x file mapping (the padding past its segment), 64-byte
    // aligned with at least 64 bytes to the mapping's end, per the site policy.
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", w.tid)).unwrap();
    let in_padding = maps.lines().any(|l| {
        let (range, rest) = l.split_once(' ').unwrap();
        let (start, end) = range.split_once('-').unwrap();
        let (start, end) = (
            u64::from_str_radix(start, 16).unwrap(),
            u64::from_str_radix(end, 16).unwrap(),
        );
        rest.starts_with("r-x") && rest.contains('/') && start <= site && site + 64 <= end
    });
    assert!(
        in_padding && site.is_multiple_of(64),
        "site {site:#x} is in the tail of an r-x file mapping:
{maps}"
    );

    let patched = dormant_parasite::test_hooks::SITE_CODE[..8].to_vec();
    let deadline = Instant::now() + Duration::from_secs(10);
    while peek(w.child.id(), site, 8) != patched || sigblk(w.tid) == mask_before {
        assert!(Instant::now() < deadline, "injector never patched the site");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The target is still stopped by the injector.
    let c_stopped = counter.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        counter.load(Ordering::Relaxed),
        c_stopped,
        "target stopped while patched"
    );

    injector.kill().unwrap();
    injector.wait().unwrap();

    let deadline = Instant::now() + Duration::from_secs(5);
    while counter.load(Ordering::Relaxed) == c_stopped {
        assert!(
            Instant::now() < deadline,
            "target did not resume after the tracer died"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let c1 = counter.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(200));
    assert!(counter.load(Ordering::Relaxed) > c1, "target keeps running");
    assert_eq!(
        peek(w.child.id(), site, 8),
        patched,
        "(documented) the code stays in the padding, unexecuted"
    );
    assert_eq!(sigblk(w.tid), mask_before, "the frame put the mask back");
    let tracer = std::fs::read_to_string(format!("/proc/{}/status", w.tid)).unwrap();
    assert!(tracer.contains("TracerPid:\t0"), "target no longer traced");
    w.shm.u32_at(SHM_STOP).store(1, Ordering::Relaxed);
    w.assert_exits_ok(Duration::from_secs(10));
}

/// SIGKILL the dumper (a separate injector process) at each stage of a parasite session, at the first,
/// second and fifth time it passes that stage, and check what the target is left with: nothing. At every
/// point the target is no longer traced, runs its own code again (its counter moves), has exactly its
/// mappings, descriptors, blocked mask and pending signals of before, and passes its own check at exit.
/// The site's bytes are the original ones or the injected code, which the task never executes.
fn dumper_killed_at_each_parasite_stage() {
    use dormant_parasite::test_hooks::Stage;
    let mut points = 0;
    for stage in Stage::ALL {
        for skip in [0u32, 1, 4] {
            let w = Workload::spawn("spin");
            let counter = w.shm.u64_at(SHM_COUNTER);
            while counter.load(Ordering::Relaxed) == 0 {}
            let fds_before = fd_names(w.tid);
            let maps_before = std::fs::read_to_string(format!("/proc/{}/maps", w.tid)).unwrap();
            let masks_before = masks(w.tid);
            let site = dormant_parasite::find_syscall_site(w.tid).unwrap();
            let site_bytes = peek(w.child.id(), site, 64);
            let status = Command::new(std::env::current_exe().unwrap())
                .env(ROLE_ENV, "blob-injector")
                .env(TARGET_ENV, w.tid.0.to_string())
                .env(DIE_AT_ENV, format!("{}:{skip}", stage as u32))
                .status()
                .unwrap();
            use std::os::unix::process::ExitStatusExt;
            if status.signal() != Some(libc::SIGKILL) {
                // The stage is passed fewer than skip + 1 times in a session.
                assert!(status.success(), "injector at {stage:?}/{skip}: {status:?}");
                w.shm.u32_at(SHM_STOP).store(1, Ordering::Relaxed);
                w.assert_exits_ok(Duration::from_secs(10));
                continue;
            }
            points += 1;
            let deadline = Instant::now() + Duration::from_secs(5);
            let c0 = counter.load(Ordering::Relaxed);
            while counter.load(Ordering::Relaxed) == c0 {
                assert!(
                    Instant::now() < deadline,
                    "{stage:?}/{skip}: target does not run after the dumper died"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            let status = std::fs::read_to_string(format!("/proc/{}/status", w.tid)).unwrap();
            assert!(
                status.contains("TracerPid:\t0"),
                "{stage:?}/{skip}: target no longer traced"
            );
            // The blob cleans up after the dumper's death on its own: give it a moment.
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let maps = std::fs::read_to_string(format!("/proc/{}/maps", w.tid)).unwrap();
                let same = maps == maps_before
                    && fd_names(w.tid) == fds_before
                    && masks(w.tid) == masks_before;
                if same {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{stage:?}/{skip}: left behind:\nmaps before\n{maps_before}\nafter\n{maps}\nfds {:?} -> {:?}\nmasks {:?} -> {:?}",
                    fds_before,
                    fd_names(w.tid),
                    masks_before,
                    masks(w.tid)
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            let now = peek(w.child.id(), site, 64);
            let mut code = site_bytes.clone();
            let code_len = dormant_parasite::test_hooks::SITE_CODE.len();
            code[..code_len].copy_from_slice(dormant_parasite::test_hooks::SITE_CODE);
            assert!(
                now == site_bytes || now == code,
                "{stage:?}/{skip}: site bytes are the original ones or the unexecuted code"
            );
            w.shm.u32_at(SHM_STOP).store(1, Ordering::Relaxed);
            w.assert_exits_ok(Duration::from_secs(10));
        }
    }
    eprintln!("  {points} kill points");
}

/// Descriptor numbers and what they point at.
fn fd_names(tid: Tid) -> Vec<(String, String)> {
    let mut v: Vec<_> = std::fs::read_dir(format!("/proc/{tid}/fd"))
        .unwrap()
        .flatten()
        .map(|e| {
            let link = std::fs::read_link(e.path()).unwrap_or_default();
            (
                e.file_name().to_string_lossy().into_owned(),
                link.to_string_lossy().into_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

/// SigBlk, SigPnd and ShdPnd of the thread.
fn masks(tid: Tid) -> Vec<String> {
    let s = std::fs::read_to_string(format!("/proc/{tid}/status")).unwrap();
    s.lines()
        .filter(|l| {
            l.starts_with("SigBlk:") || l.starts_with("SigPnd:") || l.starts_with("ShdPnd:")
        })
        .map(str::to_string)
        .collect()
}

/// A three-thread target, every thread seized: the leader answers the snapshot, each worker answers
/// its own thread-state command (its own altstack, its own tid), and after the cure every thread's
/// registers, xstate and mask are byte-identical; the workload then checks itself.
fn multithreaded_per_thread_commands() {
    let w = Workload::spawn("threads");
    let counter = w.shm.u64_at(SHM_COUNTER);
    while counter.load(Ordering::Relaxed) == 0 {}
    let workers = [Tid(w.ready["t0"] as i32), Tid(w.ready["t1"] as i32)];
    let all = [w.tid, workers[0], workers[1]];
    for &t in &all {
        seize_and_stop(t);
    }
    let before: Vec<_> = all.iter().map(|&t| capture(t)).collect();
    let mut p = Parasite::inject(w.tid, &workers).unwrap();
    for (i, &t) in workers.iter().enumerate() {
        let info = p.thread_state(t).unwrap();
        assert_eq!(
            info.altstack.sp,
            w.ready[&format!("t{i}alt")],
            "altstack of worker {i}"
        );
        assert_eq!(info.altstack.size, (ALTSTACK_SIZE + 4096 * (i + 1)) as u64);
    }
    let snap = p.task_state().unwrap();
    expected_snapshot_matches(&w, &snap);
    assert_eq!(
        p.syscall(workers[1], libc::SYS_gettid, [0; 6]).unwrap(),
        i64::from(workers[1].0)
    );
    p.cure().unwrap();
    for (&t, b) in all.iter().zip(&before) {
        let a = capture(t);
        assert_eq!(b.regs, a.regs, "registers of {t}");
        assert_eq!(b.xstate, a.xstate, "xstate of {t}");
        assert_eq!(b.sigmask, a.sigmask, "mask of {t}");
        assert_eq!(b.maps, a.maps, "maps");
    }
    for &t in &all {
        detach(t);
    }
    let c1 = counter.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(100));
    assert!(counter.load(Ordering::Relaxed) > c1, "leader runs again");
    w.shm.u32_at(SHM_STOP).store(1, Ordering::Relaxed);
    w.assert_exits_ok(Duration::from_secs(10));
}

/// A target in seccomp strict mode (only read, write, exit, rt_sigreturn) is seized with its filters
/// suspended (`seize_options` adds PTRACE_O_SUSPEND_SECCOMP for it): the queries, the blob and its cure
/// run, and the target then reads its message and exits 0. Seized without the suspension, the first
/// injected syscall is the target's death (SIGKILL from seccomp): the option is what keeps it alive.
fn strict_seccomp_target_survives_injection() {
    let mut w = Workload::spawn("seccomp-strict");
    w.wait_blocked_in(libc::SYS_read);
    assert_eq!(
        dormant_parasite::seccomp_mode(w.tid),
        Some(1),
        "strict mode"
    );
    seize_and_stop(w.tid);
    let mut task = RemoteTask::new(w.tid).unwrap();
    let snap = query::snapshot(&mut task).unwrap();
    assert_ne!(snap.brk, 0);
    drop(task);
    let mut p = Parasite::inject(w.tid, &[]).unwrap();
    p.task_state().unwrap();
    p.cure().unwrap();
    detach(w.tid);
    w.write_stdin(PIPE_MESSAGE);
    w.assert_exits_ok(Duration::from_secs(10));

    let mut w = Workload::spawn("seccomp-strict");
    w.wait_blocked_in(libc::SYS_read);
    seize_and_stop_with(w.tid, dormant_parasite::SEIZE_OPTIONS);
    let mut task = RemoteTask::new(w.tid).unwrap();
    // The injection's own wait reaps the target and reports how it died.
    match task.syscall(libc::SYS_getpid, [0; 6]) {
        Err(ParasiteError::TaskDied { what, .. }) => {
            assert!(what.contains("SIGKILL"), "killed by seccomp: {what}")
        }
        other => panic!("a strict-seccomp target without suspension: {other:?}"),
    }
    drop(task);
    let _ = w.child.wait();
}

/// The blob's vmsplice into a pipe nobody reads any more (the dumper died, or here closed its ends)
/// fails with EPIPE and queues a SIGPIPE to the thread, blocked meanwhile; the blob takes it back before
/// it returns, so the target (whose SIGPIPE action is the default: death) keeps running with exactly its
/// pending and blocked sets of before.
fn sigpipe_raised_by_the_blob_is_taken_back() {
    let w = Workload::spawn("spin");
    let counter = w.shm.u64_at(SHM_COUNTER);
    while counter.load(Ordering::Relaxed) == 0 {}
    seize_and_stop(w.tid);
    let before = masks(w.tid);
    let mut p = Parasite::inject(w.tid, &[]).unwrap();
    let (base, _) = p.area();
    p.open_page_pipes(1, 1 << 16).unwrap();
    dormant_parasite::test_hooks::close_page_pipe_readers(&mut p);
    let r = p.splice_pages(
        &[(base, 4096, 0)],
        1,
        |_: PagePiece, _| -> Result<(), nix::Error> { Ok(()) },
    );
    match r {
        Err(dormant_parasite::SpliceError::Parasite(ParasiteError::Command { errno, .. })) => {
            assert_eq!(errno, nix::errno::Errno::EPIPE)
        }
        other => panic!("vmsplice into a pipe without readers: {other:?}"),
    }
    let pending = masks(w.tid)
        .into_iter()
        .find(|l| l.starts_with("SigPnd:"))
        .unwrap();
    assert!(
        u64::from_str_radix(pending.trim_start_matches("SigPnd:").trim(), 16).unwrap()
            & (1 << (libc::SIGPIPE - 1))
            != 0,
        "SIGPIPE queued (and blocked) while the blob runs: {pending}"
    );
    p.cure().unwrap();
    assert_eq!(
        masks(w.tid),
        before,
        "pending and blocked sets after the cure"
    );
    detach(w.tid);
    let c1 = counter.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(100));
    assert!(counter.load(Ordering::Relaxed) > c1, "target runs on");
    w.shm.u32_at(SHM_STOP).store(1, Ordering::Relaxed);
    w.assert_exits_ok(Duration::from_secs(10));
}
