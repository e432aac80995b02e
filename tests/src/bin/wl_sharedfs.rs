//! Workload `wl_sharedfs`: processes that share an fd table (`CLONE_FILES`) or an fs struct (`CLONE_FS`:
//! cwd, root, umask), restored sharing exactly what they shared (issue 13).
//!
//! `wl_sharedfs TRIGGER DIR [--inject-fault] [--thread-unshare] [--parent-unshared]`. The root `P` clones `A` with `CLONE_FILES`, `B` with
//! `CLONE_FS`, `C` with both and `D` with neither; `A` clones `G` with `CLONE_FILES` (a sharer that is not
//! the table's first holder's child). `P` holds a file open for appending at offset 5 with `FD_CLOEXEC`.
//! After the trigger `P` checks:
//! - `kcmp`: `KCMP_FILES` says P, A, C, G share one fd table and D, B each have their own; `KCMP_FS` says
//!   P, B, C share one fs struct and A, D, G each have their own;
//! - `files-shared`: a file A, G and C each open is readable in `P` through the same fd number, and once
//!   `P` closes it the number is gone from A's table (`/proc/A/fd`), while D never had it;
//! - `fs-shared`: after B changes directory and umask, `P` and C have both, and A and D keep theirs;
//! - `offsets`: the appending file's offset, status flags and fd flags, in `P` and as A's fdinfo shows them.
//!
//! `--inject-fault`: after the trigger A, G, B and C unshare what they shared (what a restore that does not
//! rebuild the sharing leaves), so `kcmp`, `files-shared` and `fs-shared` fail.
//!
//! Shapes a dump must refuse (the checks expect them): `--thread-unshare` gives `P` a second thread with
//! an fs struct of its own (`unshare(CLONE_FS)`); `--parent-unshared` has A unshare its fd table after
//! it cloned G, so G shares P's table through a parent that does not.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use dormant_tests::workload::{
    self, Report, SharedWords, WorkloadArgs, WorkloadError, INJECT_FAULT,
};

const USAGE: &str = "[--inject-fault] [--thread-unshare] [--parent-unshared]";
const THREAD_UNSHARE: &str = "--thread-unshare";
const PARENT_UNSHARED: &str = "--parent-unshared";
const OFFSET: i64 = 5;
/// `enum kcmp_type` of linux/kcmp.h (not in the libc crate).
const KCMP_FILES: libc::c_int = 2;
const KCMP_FS: libc::c_int = 3;

/// The clone flags of each child, by index (A, B, C, D, G); G is cloned by A.
const CHILDREN: [(&str, libc::c_int); 5] = [
    ("A", libc::CLONE_FILES),
    ("B", libc::CLONE_FS),
    ("C", libc::CLONE_FILES | libc::CLONE_FS),
    ("D", 0),
    ("G", libc::CLONE_FILES),
];
const A: usize = 0;
const B: usize = 1;
const C: usize = 2;
const D: usize = 3;
const G: usize = 4;

/// Commands a child runs (the low byte of its command word; the rest is a sequence number).
const OP_OPEN: u32 = 1;
const OP_CHDIR: u32 = 2;
const OP_UNSHARE: u32 = 3;
const OP_EXIT: u32 = 4;

/// Words of the shared page: command of child k at `CMD + k`, its acknowledged sequence at `ACK + k`, its
/// result at `RES + k`.
const CMD: usize = 0;
const ACK: usize = 16;
const RES: usize = 32;

/// `clone(flags | SIGCHLD)` as a fork (no new stack: the child runs on its copy of ours); 0 in the child.
fn clone_fork(flags: libc::c_int) -> Result<libc::pid_t, WorkloadError> {
    // SAFETY: without CLONE_VM the child gets a copy of our memory and continues here like after fork;
    // this process is single-threaded, and the child only makes plain syscalls and polls shared memory.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0,
            0,
            0,
            0,
        )
    };
    if r < 0 {
        return Err(WorkloadError::setup(
            "clone",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(r as libc::pid_t)
}

/// `kcmp(a, b, kind)`: whether the two processes have the same object of `kind`.
fn kcmp_same(a: i32, b: i32, kind: libc::c_int) -> Result<bool, String> {
    // SAFETY: kcmp only compares kernel objects of the two processes.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, a, b, kind, 0, 0) };
    if r < 0 {
        return Err(format!(
            "kcmp({a}, {b}): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(r == 0)
}

/// What a child needs after the clone (all prepared before it, in its copy of our memory).
struct Child<'a> {
    index: usize,
    words: &'a SharedWords,
    file: CString,
    dir: CString,
    umask: u32,
}

impl Child<'_> {
    /// Runs commands until told to exit (or its parent is gone); never returns.
    fn serve(&self, children: &[libc::pid_t]) -> ! {
        let ppid = std::os::unix::process::parent_id();
        let cmd = self.words.word(CMD + self.index);
        let ack = self.words.word(ACK + self.index);
        let mut last = 0;
        loop {
            let c = cmd.load(Ordering::SeqCst);
            if c >> 8 == last {
                if std::os::unix::process::parent_id() != ppid {
                    workload::exit_now(3);
                }
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            last = c >> 8;
            let res = match c & 0xff {
                // SAFETY: opens a NUL-terminated path prepared before the clone.
                OP_OPEN => unsafe { libc::open(self.file.as_ptr(), libc::O_RDONLY) },
                // SAFETY: chdir to a prepared path; umask cannot fail.
                OP_CHDIR => unsafe {
                    libc::umask(self.umask);
                    libc::chdir(self.dir.as_ptr())
                },
                OP_UNSHARE => {
                    let flags = CHILDREN[self.index].1;
                    // SAFETY: unshare changes only this process's tables.
                    unsafe { libc::unshare(flags) }
                }
                _ => {
                    for &c in children {
                        workload::wait_status(c);
                    }
                    ack.store(last, Ordering::SeqCst);
                    workload::exit_now(0)
                }
            };
            self.words
                .word(RES + self.index)
                .store(res as u32, Ordering::SeqCst);
            ack.store(last, Ordering::SeqCst);
        }
    }
}

/// The parent's side of the command words.
struct Commands<'a> {
    words: &'a SharedWords,
    seq: u32,
}

impl Commands<'_> {
    /// Has child `k` run `op`; its result.
    fn run(&mut self, k: usize, op: u32) -> Result<i32, String> {
        self.seq += 1;
        let seq = self.seq;
        self.words
            .word(CMD + k)
            .store(seq << 8 | op, Ordering::SeqCst);
        let ack = self.words.word(ACK + k);
        if !workload::wait_until(|| ack.load(Ordering::SeqCst) == seq) {
            return Err(format!("child {} did not run command {op}", CHILDREN[k].0));
        }
        Ok(self.words.word(RES + k).load(Ordering::SeqCst) as i32)
    }
}

fn pipe() -> Result<(RawFd, RawFd), WorkloadError> {
    let mut p = [0; 2];
    // SAFETY: pipe2 writes two fds into `p`.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(WorkloadError::setup(
            "pipe",
            std::io::Error::last_os_error(),
        ));
    }
    Ok((p[0], p[1]))
}

fn cstr(p: &std::path::Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap_or_default()
}

fn run() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env(USAGE)?;
    let mut report = Report::new("wl_sharedfs");
    let words = SharedWords::new()?;
    for (name, _) in CHILDREN {
        std::fs::write(
            args.dir.join(format!("file-{name}")),
            format!("opened by {name}"),
        )
        .map_err(|e| WorkloadError::setup("file", e))?;
        std::fs::create_dir_all(args.dir.join(format!("dir-{name}")))
            .map_err(|e| WorkloadError::setup("dir", e))?;
    }
    let appended = args.dir.join("appended");
    std::fs::write(&appended, b"0123456789").map_err(|e| WorkloadError::setup("appended", e))?;
    let file = std::fs::OpenOptions::new()
        .append(true)
        .read(true)
        .open(&appended)
        .map_err(|e| WorkloadError::setup("appended", e))?;
    let app_fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    // SAFETY: moves the offset of our own fd (O_APPEND moves it only when writing).
    if unsafe { libc::lseek(app_fd, OFFSET, libc::SEEK_SET) } != OFFSET {
        return Err(WorkloadError::setup(
            "lseek",
            std::io::Error::last_os_error(),
        ));
    }
    let child = |k: usize| Child {
        index: k,
        words: &words,
        file: cstr(&args.dir.join(format!("file-{}", CHILDREN[k].0))),
        dir: cstr(&args.dir.join(format!("dir-{}", CHILDREN[k].0))),
        umask: 0o027,
    };
    let mut pids = [0; 5];
    for k in [A, B, C, D] {
        let pid = clone_fork(CHILDREN[k].1)?;
        if pid == 0 {
            if k == A {
                let g = clone_fork(CHILDREN[G].1).unwrap_or(-1);
                if g == 0 {
                    child(G).serve(&[]);
                }
                if args.has_flag(PARENT_UNSHARED) {
                    // SAFETY: unshare changes only this process's fd table.
                    unsafe { libc::unshare(libc::CLONE_FILES) };
                }
                words.word(RES + G).store(g as u32, Ordering::SeqCst);
                child(A).serve(&[g]);
            }
            child(k).serve(&[]);
        }
        pids[k] = pid;
    }
    let a_res = words.word(RES + G);
    if !workload::wait_until(|| a_res.load(Ordering::SeqCst) != 0) {
        return Err(WorkloadError::setup("clone", "A did not clone G"));
    }
    pids[G] = a_res.load(Ordering::SeqCst) as i32;
    let mut cmds = Commands {
        words: &words,
        seq: 0,
    };
    let (hold_r, hold_w) = pipe()?;
    if args.has_flag(THREAD_UNSHARE) {
        // SAFETY: the thread unshares its own fs struct, then blocks reading a pipe until we exit.
        std::thread::spawn(move || unsafe {
            libc::unshare(libc::CLONE_FS);
            let mut b = [0u8; 1];
            libc::read(hold_r, b.as_mut_ptr().cast(), 1);
        });
    }
    workload::ready()?;
    workload::wait_for_trigger(&args.trigger)?;
    if args.has_flag(INJECT_FAULT) {
        for k in [A, G, B, C] {
            let r = cmds
                .run(k, OP_UNSHARE)
                .map_err(|e| WorkloadError::setup("unshare", e))?;
            if r != 0 {
                return Err(WorkloadError::setup("unshare", format!("child {k}: {r}")));
            }
        }
    }
    let me = std::process::id() as i32;
    let a_shares = !args.has_flag(PARENT_UNSHARED);
    report.check("kcmp", check_kcmp(me, &pids, a_shares));
    report.check("files-shared", check_files(&mut cmds, &pids, a_shares));
    report.check("fs-shared", check_fs(&mut cmds, &args.dir, &pids));
    report.check("offsets", check_offsets(app_fd, pids[A]));
    // A reaps G once told to exit; G has to be told first.
    for k in [G, A, B, C, D] {
        let _ = cmds.run(k, OP_EXIT);
    }
    for k in [A, B, C, D] {
        workload::wait_status(pids[k]);
    }
    drop(file);
    let _ = hold_w;
    Ok(report.finish())
}

/// Every pair of the tree shares an fd table / fs struct exactly when it did at setup (A's fd table only
/// when `a_shares`).
fn check_kcmp(me: i32, pids: &[i32; 5], a_shares: bool) -> Result<(), String> {
    let all = [
        ("P", me),
        ("A", pids[A]),
        ("B", pids[B]),
        ("C", pids[C]),
        ("D", pids[D]),
        ("G", pids[G]),
    ];
    let files: &[&str] = if a_shares {
        &["P", "A", "C", "G"]
    } else {
        &["P", "C", "G"]
    };
    let fs = ["P", "B", "C"];
    let mut wrong = Vec::new();
    for (i, (n1, p1)) in all.iter().enumerate() {
        for (n2, p2) in &all[i + 1..] {
            for (kind, group, what) in [(KCMP_FILES, files, "files"), (KCMP_FS, &fs[..], "fs")] {
                let want = group.contains(n1) && group.contains(n2);
                if kcmp_same(*p1, *p2, kind)? != want {
                    wrong.push(format!("{n1}-{n2} {what} shared: {}", !want));
                }
            }
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join(", "))
    }
}

/// Files opened by A (when `a_shares`), G and C are ours; closed by us, gone from the other sharers'
/// tables.
fn check_files(cmds: &mut Commands<'_>, pids: &[i32; 5], a_shares: bool) -> Result<(), String> {
    let openers: &[usize] = if a_shares { &[A, G, C] } else { &[G, C] };
    for &k in openers {
        let name = CHILDREN[k].0;
        let fd: RawFd = cmds.run(k, OP_OPEN)?;
        if fd < 0 {
            return Err(format!("{name} could not open its file"));
        }
        let got = std::fs::read_to_string(format!("/proc/self/fd/{fd}"))
            .map_err(|e| format!("fd {fd} {name} opened is not in our table: {e}"))?;
        if got != format!("opened by {name}") {
            return Err(format!("fd {fd} {name} opened reads {got:?}"));
        }
        let in_d = std::fs::read_link(format!("/proc/{}/fd/{fd}", pids[D]));
        if in_d.is_ok_and(|l| l.to_string_lossy().contains(&format!("file-{name}"))) {
            return Err(format!("D has fd {fd} {name} opened"));
        }
        // SAFETY: closes the fd the child opened, in the table we share.
        unsafe { libc::close(fd) };
        for &o in openers.iter().filter(|&&o| o != k) {
            if std::fs::symlink_metadata(format!("/proc/{}/fd/{fd}", pids[o])).is_ok() {
                return Err(format!(
                    "fd {fd} {name} opened, closed by us, is still in {}'s table",
                    CHILDREN[o].0
                ));
            }
        }
    }
    Ok(())
}

/// B's chdir and umask are ours and C's, not A's or D's.
fn check_fs(cmds: &mut Commands<'_>, dir: &std::path::Path, pids: &[i32; 5]) -> Result<(), String> {
    let umask_of = |pid: i32| -> Result<String, String> {
        let s =
            std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
        Ok(s.lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .map(|u| u.trim().to_string())
            .unwrap_or_default())
    };
    let cwd_of =
        |pid: i32| std::fs::read_link(format!("/proc/{pid}/cwd")).map_err(|e| e.to_string());
    let before = [
        (A, cwd_of(pids[A])?, umask_of(pids[A])?),
        (D, cwd_of(pids[D])?, umask_of(pids[D])?),
    ];
    if cmds.run(B, OP_CHDIR)? != 0 {
        return Err("B could not change directory".into());
    }
    let want = dir.join("dir-B");
    let me = std::process::id() as i32;
    for (name, pid) in [("P", me), ("C", pids[C]), ("B", pids[B])] {
        let (cwd, mask) = (cwd_of(pid)?, umask_of(pid)?);
        if cwd != want || mask != "0027" {
            return Err(format!(
                "{name}: cwd {} umask {mask}, want {} and 0027 (set by B)",
                cwd.display(),
                want.display()
            ));
        }
    }
    for (k, cwd, mask) in before {
        let now = (cwd_of(pids[k])?, umask_of(pids[k])?);
        if now != (cwd.clone(), mask.clone()) {
            return Err(format!(
                "{}: cwd and umask {now:?} changed from {:?} with B's",
                CHILDREN[k].0,
                (cwd, mask)
            ));
        }
    }
    Ok(())
}

/// The appending file: offset, status flags and FD_CLOEXEC in our table, the same through A's.
fn check_offsets(fd: RawFd, a: i32) -> Result<(), String> {
    // SAFETY: fcntl/lseek on our own fd.
    let (pos, fl, fdfl) = unsafe {
        (
            libc::lseek(fd, 0, libc::SEEK_CUR),
            libc::fcntl(fd, libc::F_GETFL),
            libc::fcntl(fd, libc::F_GETFD),
        )
    };
    if pos != OFFSET
        || fl & libc::O_APPEND == 0
        || fl & libc::O_ACCMODE != libc::O_RDWR
        || fdfl != libc::FD_CLOEXEC
    {
        return Err(format!(
            "offset {pos} flags {fl:o} fd flags {fdfl}, want {OFFSET}, O_APPEND|O_RDWR, FD_CLOEXEC"
        ));
    }
    let info = std::fs::read_to_string(format!("/proc/{a}/fdinfo/{fd}"))
        .map_err(|e| format!("A's fd {fd}: {e}"))?;
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| i32::from_str_radix(f.trim(), 8).ok())
        .unwrap_or(0);
    let want = libc::O_APPEND | libc::O_CLOEXEC | libc::O_RDWR;
    if !info.contains(&format!("pos:\t{OFFSET}\n")) || flags & want != want {
        return Err(format!("A's fdinfo of fd {fd}: {info:?}"));
    }
    Ok(())
}

fn main() -> ExitCode {
    workload::main_with("wl_sharedfs", run)
}
