//! Workload `wl_tree`: a session with two process groups, children, a grandchild, a zombie and a protocol
//! between them over shared memory, all of which must survive a checkpoint of the whole tree.
//!
//! `wl_tree TRIGGER DIR [--inject-fault]`. The root (started as a session leader by the harness) maps a
//! page of `DIR/tree.shm` shared and forks:
//! - `a`: leads a new process group and forks `g` (the grandchild, in `a`'s group);
//! - `b`: joins `a`'s group (a member whose group leader is its sibling);
//! - `c`: stays in the root's group;
//! - `z`: exits at once with code 7 and is left unreaped (a zombie).
//!
//! Protocol: the root bumps a round counter (a shared futex word) and wakes everybody; each of `a`, `g`,
//! `b`, `c` writes its pid, ppid, pgid and sid into its slot, stores the round in its ack word and wakes
//! the root. Round 1 runs before READY and its slots are the reference. After the trigger the root runs
//! three more rounds and compares each slot with the reference, checks that `z` is still its zombie child
//! and reaps it with status 7, then ends the protocol: every child exits 0 (`a` only after reaping `g`
//! with status 0), and the root reaps them all.
//!
//! Every answer also increments a word of anonymous shared memory (inherited by all); after each round the
//! root checks the count, so the restored processes must still share that one page.
//!
//! `--inject-fault`: after the trigger `b` moves to its own process group, so the pgid check must fail.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dormant_tests::workload::{
    self, exit_now, fork, wait_status, Report, WorkloadArgs, WorkloadError, INJECT_FAULT,
};

const USAGE: &str = "[--inject-fault]";
const NAMES: [&str; 4] = ["a", "g", "b", "c"];
const A: usize = 0;
const G: usize = 1;
const B: usize = 2;
const C: usize = 3;
const QUIT: u32 = u32::MAX;
const ZOMBIE_CODE: i32 = 7;
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);

/// The shared page: word 0 the round, words 1..=4 the acks, then four words per member; and one word of
/// anonymous shared memory that every member increments once per round.
struct Shared {
    base: *mut AtomicU32,
    anon: *mut AtomicU32,
}

impl Shared {
    fn word(&self, i: usize) -> &AtomicU32 {
        // SAFETY: the page holds 1024 words and i < 32; AtomicU32 has the layout of u32 and the mapping
        // lives for the process's lifetime.
        unsafe { &*self.base.add(i) }
    }
    fn round(&self) -> &AtomicU32 {
        self.word(0)
    }
    fn ack(&self, m: usize) -> &AtomicU32 {
        self.word(1 + m)
    }
    fn slot(&self, m: usize, field: usize) -> &AtomicU32 {
        self.word(8 + 4 * m + field)
    }
    fn answers(&self) -> &AtomicU32 {
        // SAFETY: `anon` is a shared anonymous page mapped for the process's lifetime.
        unsafe { &*self.anon }
    }
    fn ids(&self, m: usize) -> [u32; 4] {
        [0, 1, 2, 3].map(|f| self.slot(m, f).load(Ordering::Acquire))
    }
}

fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: a shared futex wait on a word of our mapping with a relative timeout on our stack.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
        )
    };
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: a shared futex wake on a word of our mapping.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX) };
}

/// This process's pid, ppid, pgid and sid.
fn own_ids() -> [u32; 4] {
    // SAFETY: plain id queries of the calling process.
    unsafe {
        [
            libc::getpid() as u32,
            libc::getppid() as u32,
            libc::getpgid(0) as u32,
            libc::getsid(0) as u32,
        ]
    }
}

/// A member's loop: answer every round until QUIT.
fn member(shm: &Shared, m: usize, inject: bool) {
    // Rounds start at 1: a member forked after the root bumped the counter still answers round 1.
    let mut seen = 0;
    loop {
        let r = shm.round().load(Ordering::Acquire);
        if r == seen {
            futex_wait(shm.round(), seen, Duration::from_secs(1));
            continue;
        }
        if r == QUIT {
            return;
        }
        if inject && m == B && r > 1 {
            // SAFETY: moves this process into a new group of its own.
            unsafe { libc::setpgid(0, 0) };
        }
        for (f, v) in own_ids().into_iter().enumerate() {
            shm.slot(m, f).store(v, Ordering::Release);
        }
        shm.answers().fetch_add(1, Ordering::AcqRel);
        shm.ack(m).store(r, Ordering::Release);
        futex_wake(shm.ack(m));
        seen = r;
    }
}

/// Runs one round from the root; `Err` names the members that did not answer.
fn round(shm: &Shared, r: u32) -> Result<(), String> {
    shm.round().store(r, Ordering::Release);
    futex_wake(shm.round());
    let deadline = Instant::now() + ROUND_TIMEOUT;
    for (m, name) in NAMES.iter().enumerate() {
        loop {
            let a = shm.ack(m).load(Ordering::Acquire);
            if a == r {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("{name} did not answer round {r} (ack {a})"));
            }
            futex_wait(shm.ack(m), a, Duration::from_millis(100));
        }
    }
    Ok(())
}

fn stat_of(pid: libc::pid_t) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((state, ppid))
}

fn run() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env(USAGE)?;
    let inject = args.has_flag(INJECT_FAULT);
    let path = args.dir.join("tree.shm");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| WorkloadError::setup("creating tree.shm", e))?;
    file.set_len(4096)
        .map_err(|e| WorkloadError::setup("sizing tree.shm", e))?;
    // SAFETY: a new shared mapping of our own file; it stays mapped for the process's life.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(WorkloadError::setup(
            "mapping tree.shm",
            std::io::Error::last_os_error(),
        ));
    }
    drop(file);
    let anon = workload::shared_anon_page()?;
    let shm = Shared {
        base: base.cast::<AtomicU32>(),
        anon: anon.cast::<AtomicU32>(),
    };

    let a = fork()?;
    if a == 0 {
        // SAFETY: makes this child the leader of a new group.
        unsafe { libc::setpgid(0, 0) };
        let g = match fork() {
            Ok(0) => {
                member(&shm, G, inject);
                exit_now(0)
            }
            Ok(g) => g,
            Err(_) => exit_now(3),
        };
        member(&shm, A, inject);
        let ok = wait_status(g).is_some_and(|s| libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0);
        exit_now(if ok { 0 } else { 4 })
    }
    // b joins a's group once it exists (a may not have run setpgid yet: the root does it for a too).
    // SAFETY: the parent may set a child's group before it execs; racing the child's own call is benign.
    unsafe { libc::setpgid(a, a) };
    let b = fork()?;
    if b == 0 {
        // SAFETY: joins the group led by our sibling a.
        unsafe { libc::setpgid(0, a) };
        member(&shm, B, inject);
        exit_now(0)
    }
    // SAFETY: as above.
    unsafe { libc::setpgid(b, a) };
    let c = fork()?;
    if c == 0 {
        member(&shm, C, inject);
        exit_now(0)
    }
    let z = fork()?;
    if z == 0 {
        exit_now(ZOMBIE_CODE)
    }

    round(&shm, 1).map_err(|e| WorkloadError::setup("round 1", e))?;
    let reference: Vec<[u32; 4]> = (0..NAMES.len()).map(|m| shm.ids(m)).collect();
    let deadline = Instant::now() + ROUND_TIMEOUT;
    while stat_of(z).is_none_or(|(s, _)| s != 'Z') {
        if Instant::now() > deadline {
            return Err(WorkloadError::setup("zombie", "z never became a zombie"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let root = own_ids();
    workload::ready()?;
    workload::wait_for_trigger(&args.trigger)?;

    let mut report = Report::new("wl_tree");
    let now = own_ids();
    report.check(
        "root-ids",
        if [now[0], now[2], now[3]] == [root[0], root[2], root[3]] {
            Ok(())
        } else {
            Err(format!("pid/pgid/sid {now:?}, before {root:?}"))
        },
    );
    let expected = [
        [a as u32, root[0], a as u32, root[3]],
        [reference[G][0], a as u32, a as u32, root[3]],
        [b as u32, root[0], a as u32, root[3]],
        [c as u32, root[0], root[2], root[3]],
    ];
    for ((name, got), want) in NAMES.iter().zip(&reference).zip(&expected) {
        report.check(
            &format!("{name}-reference"),
            if got == want {
                Ok(())
            } else {
                Err(format!("round 1 {got:?}, expected {want:?}"))
            },
        );
    }
    for r in 2..=4 {
        let answered = round(&shm, r);
        let failed = answered.is_err();
        report.check(&format!("round-{r}"), answered);
        if failed {
            break;
        }
        let count = shm.answers().load(Ordering::Acquire);
        let want = r * NAMES.len() as u32;
        report.check(
            &format!("anon-shared-round-{r}"),
            if count == want {
                Ok(())
            } else {
                Err(format!(
                    "{count} answers counted in shared anonymous memory, want {want}"
                ))
            },
        );
        for (m, (name, before)) in NAMES.iter().zip(&reference).enumerate() {
            let ids = shm.ids(m);
            report.check(
                &format!("{name}-ids-round-{r}"),
                if ids == *before {
                    Ok(())
                } else {
                    Err(format!("pid/ppid/pgid/sid {ids:?}, before {before:?}"))
                },
            );
        }
    }
    report.check(
        "z-zombie",
        match stat_of(z) {
            Some(('Z', ppid)) if ppid == root[0] => Ok(()),
            other => Err(format!("state/ppid {other:?}")),
        },
    );
    report.check(
        "z-status",
        match wait_status(z) {
            Some(s) if libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == ZOMBIE_CODE => Ok(()),
            other => Err(format!("wait status {other:?}")),
        },
    );
    shm.round().store(QUIT, Ordering::Release);
    futex_wake(shm.round());
    for (name, pid) in [("a", a), ("b", b), ("c", c)] {
        report.check(
            &format!("{name}-exit"),
            match wait_status(pid) {
                Some(s) if libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0 => Ok(()),
                other => Err(format!("wait status {other:?}")),
            },
        );
    }
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_tree", run)
}
