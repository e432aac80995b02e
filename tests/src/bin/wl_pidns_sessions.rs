//! Workload `wl_pidns_sessions`: sessions and process groups inside a pid namespace of the tree's own,
//! whose leaders are gone or zombies.
//!
//! `wl_pidns_sessions TRIGGER DIR [--inject-fault]`. Started by the harness, the process first acts as a
//! launcher: it calls `unshare(CLONE_NEWPID)`, forks the init `i` (pid 1 inside), prints `READY <outer pid
//! of i>` once `i` is set up and waits for it. The init calls setsid and builds, with the ids it sees:
//! - session `s` (gone): `s` calls setsid and forks `a` (stays in group `s`) and `b` (leads a group of its
//!   own in session `s`); `s` exits and `i` reaps it, so `a` and `b` are reparented to `i`;
//! - group `z` led by a zombie: `z` leads a new group in `i`'s session and forks `m` (in group `z`); `z`
//!   exits with 7 and stays a zombie (`i` does not reap it), `m` is reparented to `i`;
//! - session `t` led by a zombie: `t` calls setsid and forks `u` (in group and session `t`); `t` exits with 9
//!   and stays a zombie, `u` is reparented to `i`.
//!
//! Before READY the init checks every member's pid, ppid, pgid and sid as seen inside (round 1, through a
//! page of shared anonymous memory, as `wl_orphans`) against the construction, and that `s` is gone. After
//! the trigger it runs three more rounds and compares each with round 1, checks that `s` is still gone
//! (the restore's stand-in is), then ends the protocol: the members exit 0, and the init reaps them and the
//! two zombies, which must still carry their exit codes.
//!
//! `--inject-fault`: after the trigger `m` moves to a group of its own, so its pgid check must fail.

use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dormant_tests::workload::{
    self, exit_now, fork, wait_status, Report, WorkloadArgs, WorkloadError, INJECT_FAULT,
};

const USAGE: &str = "[--inject-fault]";
const NAMES: [&str; 4] = ["a", "b", "m", "u"];
const A: usize = 0;
const B: usize = 1;
const M: usize = 2;
const U: usize = 3;
const Z_CODE: i32 = 7;
const T_CODE: i32 = 9;
const QUIT: u32 = u32::MAX;
const TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(2);

/// One shared anonymous page: word 0 the round, words 2..6 the acks, then four words (pid, ppid, pgid,
/// sid) per member from word 8.
struct Shared(*mut AtomicU32);

impl Shared {
    fn word(&self, i: usize) -> &AtomicU32 {
        // SAFETY: the page holds 1024 words and i < 32; AtomicU32 has the layout of u32 and the mapping
        // lives for the process's lifetime.
        unsafe { &*self.0.add(i) }
    }
    fn round(&self) -> &AtomicU32 {
        self.word(0)
    }
    fn ack(&self, m: usize) -> &AtomicU32 {
        self.word(2 + m)
    }
    fn ids(&self, m: usize) -> [u32; 4] {
        [0, 1, 2, 3].map(|f| self.word(8 + 4 * m + f).load(Ordering::Acquire))
    }
    fn store_ids(&self, m: usize, ids: [u32; 4]) {
        for (f, v) in ids.into_iter().enumerate() {
            self.word(8 + 4 * m + f).store(v, Ordering::Release);
        }
    }
}

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

fn until(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
    true
}

/// A member's loop: answer every round until QUIT.
fn member(shm: &Shared, m: usize, inject: bool) -> ! {
    let mut seen = 0;
    loop {
        let r = shm.round().load(Ordering::Acquire);
        if r == QUIT {
            exit_now(0);
        }
        if r == seen {
            std::thread::sleep(POLL);
            continue;
        }
        if inject && m == M && r > 1 {
            // SAFETY: moves this process into a new group of its own.
            unsafe { libc::setpgid(0, 0) };
        }
        shm.store_ids(m, own_ids());
        shm.ack(m).store(r, Ordering::Release);
        seen = r;
    }
}

fn round(shm: &Shared, r: u32) -> Result<(), String> {
    shm.round().store(r, Ordering::Release);
    for (m, name) in NAMES.iter().enumerate() {
        if !until(|| shm.ack(m).load(Ordering::Acquire) == r) {
            return Err(format!("{name} did not answer round {r}"));
        }
    }
    Ok(())
}

/// Whether no process has `pid` in our pid namespace.
fn gone(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) != 0 && *libc::__errno_location() == libc::ESRCH }
}

/// Waits until child `pid` has exited, without reaping it; its exit code.
fn exited_unreaped(pid: libc::pid_t) -> Option<i32> {
    // SAFETY: siginfo_t is plain data; waitid writes it and leaves the child a zombie (WNOWAIT).
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        )
    } != 0
    {
        return None;
    }
    // SAFETY: si_status is valid for CLD_EXITED.
    Some(unsafe { info.si_status() })
}

/// Forks a child that calls `lead` (setsid or setpgid), forks `members` (each with its own group when
/// asked) and exits with `code`. Returns the child's pid; never returns in the children, which close
/// `ready` (the launcher's pipe must stay out of the tree).
fn leader(
    shm: &Shared,
    inject: bool,
    ready: &OwnedFd,
    lead: fn() -> libc::c_int,
    members: &[(usize, bool)],
    code: i32,
) -> Result<libc::pid_t, WorkloadError> {
    let pid = fork()?;
    if pid != 0 {
        return Ok(pid);
    }
    // SAFETY: closes this child's copy of the ready pipe, which it never uses.
    unsafe { libc::close(std::os::fd::AsRawFd::as_raw_fd(ready)) };
    if lead() < 0 {
        exit_now(3);
    }
    for &(m, own_group) in members {
        match fork() {
            Ok(0) => {
                // SAFETY: leads a new group inside the session.
                if own_group && unsafe { libc::setpgid(0, 0) } != 0 {
                    exit_now(4);
                }
                member(shm, m, inject)
            }
            Ok(child) => {
                if own_group {
                    // SAFETY: as above, from the parent's side (whichever runs first).
                    unsafe { libc::setpgid(child, child) };
                }
            }
            Err(_) => exit_now(3),
        }
    }
    exit_now(code)
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

fn setsid() -> libc::c_int {
    // SAFETY: makes the calling child the leader of a new session.
    unsafe { libc::setsid() }
}

fn setpgid_own() -> libc::c_int {
    // SAFETY: makes the calling child the leader of a new group.
    unsafe { libc::setpgid(0, 0) }
}

fn init_main(ready: OwnedFd) -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env(USAGE)?;
    let inject = args.has_flag(INJECT_FAULT);
    let page = workload::shared_anon_page()?;
    let shm = Shared(page.cast());
    // SAFETY: a new session for the init (it was in the launcher's, which is outside the tree).
    unsafe { libc::setsid() };
    let s = leader(&shm, inject, &ready, setsid, &[(A, false), (B, true)], 0)?;
    if wait_status(s).is_none_or(|st| !libc::WIFEXITED(st) || libc::WEXITSTATUS(st) != 0) {
        return Err(WorkloadError::setup(
            "session s",
            "its leader did not exit 0",
        ));
    }
    let z = leader(&shm, inject, &ready, setpgid_own, &[(M, false)], Z_CODE)?;
    let t = leader(&shm, inject, &ready, setsid, &[(U, false)], T_CODE)?;
    for (name, pid, code) in [("z", z, Z_CODE), ("t", t, T_CODE)] {
        if exited_unreaped(pid) != Some(code) {
            return Err(WorkloadError::setup(
                name,
                format!("did not exit with {code}"),
            ));
        }
    }

    round(&shm, 1).map_err(|e| WorkloadError::setup("round 1", e))?;
    let reference: Vec<[u32; 4]> = (0..NAMES.len()).map(|m| shm.ids(m)).collect();
    let (s, z, t) = (s as u32, z as u32, t as u32);
    let expected = [
        [reference[A][0], 1, s, s],
        [reference[B][0], 1, reference[B][0], s],
        [reference[M][0], 1, z, 1],
        [reference[U][0], 1, t, t],
    ];
    for ((name, got), want) in NAMES.iter().zip(&reference).zip(&expected) {
        if got != want {
            return Err(WorkloadError::setup(
                format!("{name} before the dump"),
                format!("pid/ppid/pgid/sid {got:?}, expected {want:?}"),
            ));
        }
    }
    if own_ids() != [1, 0, 1, 1] || !gone(s as libc::pid_t) {
        return Err(WorkloadError::setup(
            "init",
            format!("ids {:?} (want [1, 0, 1, 1]) or s still there", own_ids()),
        ));
    }
    // The launcher announces our outer pid; inside we are pid 1 (the verdict's own pid check).
    workload::set_ready_pid(1);
    nix::unistd::write(&ready, b"R")
        .map_err(|e| WorkloadError::setup("ready pipe", std::io::Error::from(e)))?;
    drop(ready);
    workload::wait_for_trigger(&args.trigger)?;

    let mut report = Report::new("wl_pidns_sessions");
    let now = own_ids();
    report.check(
        "i-ids",
        if now == [1, 0, 1, 1] {
            Ok(())
        } else {
            Err(format!("pid/ppid/pgid/sid {now:?}"))
        },
    );
    for rnd in 2..=4 {
        let answered = round(&shm, rnd);
        let failed = answered.is_err();
        report.check(&format!("round-{rnd}"), answered);
        if failed {
            break;
        }
        for (m, (name, before)) in NAMES.iter().zip(&reference).enumerate() {
            let ids = shm.ids(m);
            report.check(
                &format!("{name}-ids-round-{rnd}"),
                if ids == *before {
                    Ok(())
                } else {
                    Err(format!("pid/ppid/pgid/sid {ids:?}, before {before:?}"))
                },
            );
        }
    }
    report.check(
        "s-still-gone",
        if gone(s as libc::pid_t) {
            Ok(())
        } else {
            Err(format!("pid {s} exists"))
        },
    );
    shm.round().store(QUIT, Ordering::Release);
    for (m, name) in NAMES.iter().enumerate() {
        let pid = reference[m][0] as libc::pid_t;
        report.check(
            &format!("{name}-exit"),
            match wait_status(pid) {
                Some(st) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 => Ok(()),
                other => Err(format!("wait status {other:?}")),
            },
        );
    }
    for (name, pid, code) in [("z", z, Z_CODE), ("t", t, T_CODE)] {
        report.check(
            &format!("{name}-zombie-reaped"),
            match wait_status(pid as libc::pid_t) {
                Some(st) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == code => Ok(()),
                other => Err(format!("wait status {other:?}, expected exit {code}")),
            },
        );
    }
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_pidns_sessions", launch)
}
