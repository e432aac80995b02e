//! Workload `wl_orphans`: a tree whose session and process-group leaders are gone (exited and reaped, not
//! even zombies), the shapes a shell pipeline and a double-forking daemon leave behind, all of which must
//! survive a checkpoint of the whole tree.
//!
//! `wl_orphans TRIGGER DIR [--inject-fault]`. The root `r` (started as a session leader by the harness)
//! becomes a child subreaper and builds:
//! - group `l` (gone): `l` leads a new group and forks `m1`; `r` forks `m2`, which joins `l`'s group; then
//!   `l` exits and `r` reaps it, so `m1` is reparented to `r`. Group `l` lives on with `m1` and `m2`.
//! - session `s` (gone): `s` calls setsid and forks `d` (stays in group `s`) and `d2` (leads its own group);
//!   `d` forks `e` (leads its own group in session `s`); then `s` exits and `r` reaps it, so `d` and `d2`
//!   are reparented to `r`.
//!
//! Before READY the root checks that `l` and `s` are gone and every member's pid, ppid, pgid and sid are
//! what the construction says. Protocol: the root bumps a round counter in shared anonymous memory; each
//! member writes its ids into its slot and acks the round (members poll). After the trigger the root runs
//! three more rounds and compares each slot with round 1, checks that the pids of `l` and `s` are still
//! free (the restore's stand-ins are gone), then ends the protocol: every member exits 0 (`d` after
//! reaping `e`) and the root reaps its four children.
//!
//! `--inject-fault`: after the trigger `m2` moves to its own process group, so its pgid check must fail.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dormant_tests::workload::{
    self, exit_now, fork, wait_status, Report, WorkloadArgs, WorkloadError, INJECT_FAULT,
};

const USAGE: &str = "[--inject-fault]";
const NAMES: [&str; 5] = ["m1", "m2", "d", "d2", "e"];
const M1: usize = 0;
const M2: usize = 1;
const D: usize = 2;
const D2: usize = 3;
const E: usize = 4;
const QUIT: u32 = u32::MAX;
const TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(2);

/// One shared anonymous page: word 0 the round, word 1 a setup flag, words 2..7 the acks, then four
/// words (pid, ppid, pgid, sid) per member.
struct Shared(*mut AtomicU32);

impl Shared {
    fn word(&self, i: usize) -> &AtomicU32 {
        // SAFETY: the page holds 1024 words and i < 40; AtomicU32 has the layout of u32 and the mapping
        // lives for the process's lifetime.
        unsafe { &*self.0.add(i) }
    }
    fn round(&self) -> &AtomicU32 {
        self.word(0)
    }
    fn flag(&self) -> &AtomicU32 {
        self.word(1)
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

fn exited_0(s: Option<i32>) -> bool {
    s.is_some_and(|s| libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0)
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
fn member(shm: &Shared, m: usize, inject: bool) {
    let mut seen = 0;
    loop {
        let r = shm.round().load(Ordering::Acquire);
        if r == QUIT {
            return;
        }
        if r == seen {
            std::thread::sleep(POLL);
            continue;
        }
        if inject && m == M2 && r > 1 {
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

fn pid_gone(pid: libc::pid_t) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn run() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env(USAGE)?;
    let inject = args.has_flag(INJECT_FAULT);
    let page = workload::shared_anon_page()?;
    let shm = Shared(page.cast());
    // SAFETY: PR_SET_CHILD_SUBREAPER changes only this process.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(WorkloadError::setup(
            "PR_SET_CHILD_SUBREAPER",
            std::io::Error::last_os_error(),
        ));
    }
    let r = own_ids();

    // Group l: its leader forks m1, m2 joins from outside, then the leader goes.
    let l = fork()?;
    if l == 0 {
        // SAFETY: makes this child the leader of a new group.
        unsafe { libc::setpgid(0, 0) };
        match fork() {
            Ok(0) => {
                member(&shm, M1, inject);
                exit_now(0)
            }
            Ok(_) => {}
            Err(_) => exit_now(3),
        }
        shm.flag().store(1, Ordering::Release);
        while shm.flag().load(Ordering::Acquire) != 2 {
            std::thread::sleep(POLL);
        }
        exit_now(0)
    }
    if !until(|| shm.flag().load(Ordering::Acquire) == 1) {
        return Err(WorkloadError::setup("group l", "its leader never set up"));
    }
    let m2 = fork()?;
    if m2 == 0 {
        // SAFETY: joins the group led by l, which still exists.
        if unsafe { libc::setpgid(0, l) } != 0 {
            exit_now(5)
        }
        member(&shm, M2, inject);
        exit_now(0)
    }
    // SAFETY: as above, from the parent's side (whichever runs first).
    unsafe { libc::setpgid(m2, l) };
    shm.flag().store(2, Ordering::Release);
    if !exited_0(wait_status(l)) {
        return Err(WorkloadError::setup("group l", "its leader did not exit 0"));
    }

    // Session s: a double fork, the session leader goes.
    let s = fork()?;
    if s == 0 {
        // SAFETY: makes this child the leader of a new session.
        unsafe { libc::setsid() };
        match fork() {
            Ok(0) => {
                let e = match fork() {
                    Ok(0) => {
                        // SAFETY: leads a new group inside session s.
                        unsafe { libc::setpgid(0, 0) };
                        member(&shm, E, inject);
                        exit_now(0)
                    }
                    Ok(e) => e,
                    Err(_) => exit_now(3),
                };
                // SAFETY: as above, from the parent's side.
                unsafe { libc::setpgid(e, e) };
                member(&shm, D, inject);
                exit_now(if exited_0(wait_status(e)) { 0 } else { 4 })
            }
            Ok(_) => {}
            Err(_) => exit_now(3),
        }
        match fork() {
            Ok(0) => {
                // SAFETY: leads a new group inside session s.
                unsafe { libc::setpgid(0, 0) };
                member(&shm, D2, inject);
                exit_now(0)
            }
            Ok(d2) => {
                // SAFETY: as above, from the parent's side.
                unsafe { libc::setpgid(d2, d2) };
            }
            Err(_) => exit_now(3),
        }
        exit_now(0)
    }
    if !exited_0(wait_status(s)) {
        return Err(WorkloadError::setup(
            "session s",
            "its leader did not exit 0",
        ));
    }

    round(&shm, 1).map_err(|e| WorkloadError::setup("round 1", e))?;
    let reference: Vec<[u32; 4]> = (0..NAMES.len()).map(|m| shm.ids(m)).collect();
    let (l, s, root) = (l as u32, s as u32, r[0]);
    let expected = [
        [reference[M1][0], root, l, root],
        [m2 as u32, root, l, root],
        [reference[D][0], root, s, s],
        [reference[D2][0], root, reference[D2][0], s],
        [reference[E][0], reference[D][0], reference[E][0], s],
    ];
    for ((name, got), want) in NAMES.iter().zip(&reference).zip(&expected) {
        if got != want {
            return Err(WorkloadError::setup(
                format!("{name} before the dump"),
                format!("pid/ppid/pgid/sid {got:?}, expected {want:?}"),
            ));
        }
    }
    if !pid_gone(l as i32) || !pid_gone(s as i32) {
        return Err(WorkloadError::setup("gone leaders", "l or s still exists"));
    }
    workload::ready()?;
    workload::wait_for_trigger(&args.trigger)?;

    let mut report = Report::new("wl_orphans");
    let now = own_ids();
    report.check(
        "root-ids",
        if [now[0], now[2], now[3]] == [r[0], r[2], r[3]] {
            Ok(())
        } else {
            Err(format!("pid/pgid/sid {now:?}, before {r:?}"))
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
    for (name, pid) in [("l", l), ("s", s)] {
        report.check(
            &format!("{name}-still-gone"),
            if pid_gone(pid as i32) {
                Ok(())
            } else {
                Err(format!("pid {pid} exists"))
            },
        );
    }
    shm.round().store(QUIT, Ordering::Release);
    for (m, name) in [(M1, "m1"), (M2, "m2"), (D, "d"), (D2, "d2")] {
        let pid = reference[m][0] as libc::pid_t;
        report.check(
            &format!("{name}-exit"),
            match wait_status(pid) {
                Some(st) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 => Ok(()),
                other => Err(format!("wait status {other:?}")),
            },
        );
    }
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_orphans", run)
}
