//! Target roles: what this test binary does when re-executed with `DORMANT_ENGINE_TEST_ROLE` set. Each role
//! is single-threaded, sets up some state, writes `report` (key=value lines) into its directory and then
//! waits; SIGUSR1 makes the idle roles write an incremented counter to `pong`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::{DIR_ENV, FILE_ENV};

pub const PAGE: usize = 4096;
/// Callee-saved register values loaded by the register roles.
pub const RBX: u64 = 0x1111_2222_3333_4444;
pub const R12: u64 = 0x5555_6666_7777_8888;
pub const R13: u64 = 0x9999_aaaa_bbbb_cccc;
pub const R14: u64 = 0x0123_4567_89ab_cdef;
pub const R15: u64 = 0xfedc_ba98_7654_3210;

/// Layout of the memory role.
pub const ANON_PAGES: usize = 16384; // 64 MiB
pub const HOLE: std::ops::Range<usize> = 1000..2000;
pub const READ_ONLY_TOUCHED: std::ops::Range<usize> = 3000..3010;
pub const SHARED_PAGES: usize = 16;
pub const SHARED_WRITTEN: [usize; 5] = [0, 1, 2, 3, 10];
pub const FILE_PAGES: usize = 8;
pub const FILE_WRITTEN: [usize; 2] = [2, 5];

pub const SEED_ANON: u64 = 1;
pub const SEED_PROT_NONE: u64 = 2;
pub const SEED_SHARED: u64 = 3;
pub const SEED_FILE_WRITE: u64 = 4;
pub const SEED_FILE: u64 = 5;

std::arch::global_asm!(
    ".text",
    ".p2align 4",
    ".globl dormant_test_spin",
    ".globl dormant_test_spin_loop",
    "dormant_test_spin:",
    "mov rbx, 0x1111222233334444",
    "mov r12, 0x5555666677778888",
    "mov r13, 0x9999aaaabbbbcccc",
    "mov r14, 0x0123456789abcdef",
    "mov r15, 0xfedcba9876543210",
    "dormant_test_spin_loop:",
    "jmp dormant_test_spin_loop",
    ".p2align 4",
    ".globl dormant_test_nanosleep",
    ".globl dormant_test_nanosleep_after",
    "dormant_test_nanosleep:",
    "mov rbx, 0x1111222233334444",
    "mov r12, 0x5555666677778888",
    "mov r13, 0x9999aaaabbbbcccc",
    "mov r14, 0x0123456789abcdef",
    "mov r15, 0xfedcba9876543210",
    "mov r8, rdi",
    ".Ldormant_ns_loop:",
    "mov rdi, r8",
    "xor esi, esi",
    "mov eax, 35",
    "syscall",
    "dormant_test_nanosleep_after:",
    "jmp .Ldormant_ns_loop",
    ".p2align 4",
    ".globl dormant_test_pause",
    ".globl dormant_test_pause_after",
    "dormant_test_pause:",
    "mov rbx, 0x1111222233334444",
    "mov r12, 0x5555666677778888",
    "mov r13, 0x9999aaaabbbbcccc",
    "mov r14, 0x0123456789abcdef",
    "mov r15, 0xfedcba9876543210",
    ".Ldormant_pause_loop:",
    "mov eax, 34",
    "syscall",
    "dormant_test_pause_after:",
    "jmp .Ldormant_pause_loop",
);

extern "C" {
    fn dormant_test_spin() -> !;
    fn dormant_test_spin_loop();
    fn dormant_test_nanosleep(ts: *const libc::timespec) -> !;
    fn dormant_test_nanosleep_after();
    fn dormant_test_pause() -> !;
    fn dormant_test_pause_after();
}

pub fn spin_loop_addr() -> u64 {
    dormant_test_spin_loop as *const () as u64
}

/// The pattern word `w` of page `page` for `seed`.
pub fn pattern_word(seed: u64, page: usize, w: usize) -> u64 {
    let mut z = (seed << 40) ^ ((page as u64) << 12) ^ w as u64;
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The bytes of a pattern page.
pub fn pattern_page(seed: u64, page: usize) -> Vec<u8> {
    (0..PAGE / 8)
        .flat_map(|w| pattern_word(seed, page, w).to_ne_bytes())
        .collect()
}

fn fill_page(base: *mut u8, seed: u64, page: usize) {
    for w in 0..PAGE / 8 {
        // SAFETY: callers pass a writable mapping holding `page`.
        unsafe {
            (base.add(page * PAGE) as *mut u64)
                .add(w)
                .write_volatile(pattern_word(seed, page, w))
        };
    }
}

static PONG: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    PONG.store(true, Ordering::SeqCst);
}

fn install_usr1() {
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_usr1 as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
}

fn dir() -> PathBuf {
    PathBuf::from(std::env::var(DIR_ENV).expect("target without a directory"))
}

fn write_atomic(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, dir.join(name)).unwrap();
}

fn idle_loop(dir: &Path) -> ! {
    let mut n = 0u64;
    loop {
        if PONG.swap(false, Ordering::SeqCst) {
            n += 1;
            write_atomic(dir, "pong", &n.to_string());
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn map(len: usize, prot: i32, flags: i32, fd: i32) -> *mut u8 {
    // SAFETY: a fresh mapping chosen by the kernel.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) };
    assert_ne!(p, libc::MAP_FAILED);
    p.cast()
}

pub fn run(role: &str) -> ! {
    // Drop fds inherited from the test runner (cargo's jobserver pipe): targets hold only fds 0-2.
    // SAFETY: closing descriptors this fresh process does not use.
    unsafe { libc::close_range(3, u32::MAX, 0) };
    let dir = dir();
    install_usr1();
    match role {
        "idle" => {
            write_atomic(&dir, "report", &format!("pid={}\n", std::process::id()));
            idle_loop(&dir)
        }
        "memory" => role_memory(&dir),
        "timers" => role_timers(&dir),
        "spin" => {
            write_atomic(&dir, "report", &format!("loop={:#x}\n", spin_loop_addr()));
            // SAFETY: never returns; clobbers only callee-saved registers of a frame that never resumes.
            unsafe { dormant_test_spin() }
        }
        "nanosleep" => {
            let ts = Box::leak(Box::new(libc::timespec {
                tv_sec: 100_000,
                tv_nsec: 0,
            }));
            write_atomic(
                &dir,
                "report",
                &format!(
                    "after={:#x}\n",
                    dormant_test_nanosleep_after as *const () as u64
                ),
            );
            // SAFETY: ts lives forever; the function never returns.
            unsafe { dormant_test_nanosleep(ts) }
        }
        "pause" => {
            write_atomic(
                &dir,
                "report",
                &format!(
                    "after={:#x}\n",
                    dormant_test_pause_after as *const () as u64
                ),
            );
            // SAFETY: never returns.
            unsafe { dormant_test_pause() }
        }
        "stdin_reader" => {
            write_atomic(&dir, "report", "ready=1\n");
            let mut got = Vec::new();
            loop {
                let mut b = [0u8; 256];
                // SAFETY: reading into our own buffer.
                let n = unsafe { libc::read(0, b.as_mut_ptr().cast(), b.len()) };
                if n > 0 {
                    got.extend_from_slice(&b[..n as usize]);
                    write_atomic(&dir, "got", &String::from_utf8_lossy(&got));
                } else if n == 0 {
                    idle_loop(&dir)
                }
            }
        }
        "reaper" => {
            let child_dir = dir.join("child");
            std::fs::create_dir(&child_dir).unwrap();
            let mut child = std::process::Command::new(std::env::current_exe().unwrap())
                .env(super::ROLE_ENV, "idle")
                .env(DIR_ENV, &child_dir)
                .stdin(std::process::Stdio::null())
                .spawn()
                .unwrap();
            while !child_dir.join("report").exists() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            write_atomic(&dir, "report", &format!("child={}\n", child.id()));
            let st = child.wait().unwrap();
            use std::os::unix::process::ExitStatusExt;
            write_atomic(
                &dir,
                "status",
                &format!("signal={:?} code={:?}\n", st.signal(), st.code()),
            );
            std::process::exit(0)
        }
        other => panic!("unknown role {other}"),
    }
}

/// Two POSIX timers (one armed, 5 s then every 2 s, SIGRTMIN+2 value 0x309; one disarmed, SIGEV_NONE) and
/// SIGRTMIN+1 blocked with one `sigqueue` (value 4242) pending.
fn role_timers(dir: &Path) -> ! {
    #[repr(C)]
    struct SigEvent {
        value: u64,
        signo: i32,
        notify: i32,
        pad: [i32; 12],
    }
    let create = |clock: libc::clockid_t, notify: i32, signo: i32, value: u64| -> i32 {
        let sev = SigEvent {
            value,
            signo,
            notify,
            pad: [0; 12],
        };
        let mut id = -1i32;
        // SAFETY: `sev` and `id` are live for the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_timer_create,
                clock,
                &sev as *const SigEvent,
                &mut id as *mut i32,
            )
        };
        assert_eq!(r, 0, "timer_create");
        id
    };
    let armed = create(
        libc::CLOCK_MONOTONIC,
        libc::SIGEV_SIGNAL,
        libc::SIGRTMIN() + 2,
        0x309,
    );
    let spec = [2i64, 0, 5, 0];
    // SAFETY: `spec` is a live itimerspec (interval, value).
    let r = unsafe {
        libc::syscall(
            libc::SYS_timer_settime,
            armed,
            0,
            spec.as_ptr(),
            std::ptr::null_mut::<i64>(),
        )
    };
    assert_eq!(r, 0, "timer_settime");
    let idle = create(libc::CLOCK_REALTIME, libc::SIGEV_NONE, 0, 0);
    // SAFETY: plain signal-mask and sigqueue calls on this process.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGRTMIN() + 1);
        assert_eq!(
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()),
            0
        );
        let value = libc::sigval {
            sival_ptr: 4242usize as *mut libc::c_void,
        };
        assert_eq!(
            libc::sigqueue(libc::getpid(), libc::SIGRTMIN() + 1, value),
            0
        );
    }
    write_atomic(dir, "report", &format!("armed={armed}\nidle={idle}\n"));
    idle_loop(dir)
}

fn role_memory(dir: &Path) -> ! {
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let anon = map(
        ANON_PAGES * PAGE,
        rw,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
    );
    for p in 0..ANON_PAGES {
        if HOLE.contains(&p) {
            continue;
        }
        if READ_ONLY_TOUCHED.contains(&p) {
            // SAFETY: inside the mapping; a read fault maps the zero page.
            let _ = unsafe { anon.add(p * PAGE).read_volatile() };
            continue;
        }
        fill_page(anon, SEED_ANON, p);
    }
    let prot_none = map(PAGE, rw, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1);
    fill_page(prot_none, SEED_PROT_NONE, 0);
    // SAFETY: our own mapping.
    let rc = unsafe { libc::mprotect(prot_none.cast(), PAGE, libc::PROT_NONE) };
    assert_eq!(rc, 0);
    let shared = map(
        SHARED_PAGES * PAGE,
        rw,
        libc::MAP_SHARED | libc::MAP_ANONYMOUS,
        -1,
    );
    for p in SHARED_WRITTEN {
        fill_page(shared, SEED_SHARED, p);
    }
    let path = std::env::var(FILE_ENV).unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    use std::os::fd::AsRawFd;
    let file = map(FILE_PAGES * PAGE, rw, libc::MAP_PRIVATE, f.as_raw_fd());
    drop(f);
    for p in 0..FILE_PAGES {
        // SAFETY: inside the mapping; faults the file page in.
        let _ = unsafe { file.add(p * PAGE).read_volatile() };
    }
    for p in FILE_WRITTEN {
        fill_page(file, SEED_FILE_WRITE, p);
    }
    write_atomic(
        dir,
        "report",
        &format!(
            "anon={:#x}\nprot_none={:#x}\nshared={:#x}\nfile={:#x}\n",
            anon as u64, prot_none as u64, shared as u64, file as u64
        ),
    );
    idle_loop(dir)
}
