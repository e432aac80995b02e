//! Workload `wl_fdedges`: descriptor state at the edges of what a fd table shows (issue 13), each kind
//! restored exactly.
//!
//! `wl_fdedges TRIGGER DIR KIND... [--inject-fault]`, KIND one of:
//! - `epoll`: an epoll watching a pipe through a fd number since closed (the pipe lives on through a dup),
//!   one watching a pipe whose number now holds another pipe, and one watching a second epoll (created
//!   after it). The check compares the epoll's `tfd`/`events`/`data` lines with the ones before the dump,
//!   sees each watch deliver its event, and sees the closed number still closed and the reused number
//!   still on its own pipe. Fault: the dup holding the first pipe is closed (its watch goes away).
//!
//! - `inotify`: an inotify instance watching a file since unlinked (still open here), a memfd (through
//!   `/proc/self/fd/N`) and a directory. The check compares the `wd`/`mask` lines of its fdinfo with the
//!   ones before the dump, sees no event queued, then an `IN_MODIFY` for a write to the file, an `IN_ATTRIB`
//!   for a chmod of the memfd and an `IN_CREATE` in the directory. Fault: the file's watch is removed.
//!
//! - `locks`: POSIX locks through a fd and its dup, an OFD lock through a second open of the same file,
//!   shared flocks on two descriptions of one file (one dup'ed), a POSIX lock on a file also mapped shared
//!   with an OFD lock through another open. The check compares `/proc/locks` (type, mode, pid, inode,
//!   range) and each fd's fdinfo `lock:` lines (the description that holds each) with the ones before
//!   the dump. Fault: the other open of the mapped file is closed (the POSIX lock goes with it).
//! - `leases`: a read lease and a write lease (`F_SETLEASE`), checked the same way. Fault: the read lease
//!   is released.
//!
//! `--inject-fault` damages each kind as said above after the trigger, so its check must fail.

use std::os::fd::RawFd;
use std::process::ExitCode;

use dormant_tests::workload::{self, Report, WorkloadArgs, WorkloadError, INJECT_FAULT};

const USAGE: &str = "KIND... [--inject-fault]";

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn cvt(r: libc::c_int, what: &str) -> Result<libc::c_int, WorkloadError> {
    if r < 0 {
        return Err(WorkloadError::setup(what, std::io::Error::last_os_error()));
    }
    Ok(r)
}

fn pipe() -> Result<(RawFd, RawFd), WorkloadError> {
    let mut p = [0; 2];
    // SAFETY: pipe2 writes two fds into `p`.
    cvt(
        // SAFETY: a plain syscall on our own fds and stack values.
        unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_NONBLOCK) },
        "pipe2",
    )?;
    Ok((p[0], p[1]))
}

fn write_byte(fd: RawFd) -> Result<(), String> {
    // SAFETY: writes one byte from a static.
    if unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) } != 1 {
        return Err(os_err(&format!("write fd {fd}")));
    }
    Ok(())
}

fn read_byte(fd: RawFd) -> Result<(), String> {
    let mut b = [0u8; 1];
    // SAFETY: reads one byte into `b`.
    if unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) } != 1 {
        return Err(os_err(&format!("read fd {fd}")));
    }
    Ok(())
}

/// One kind of state: set up before READY, damaged on request, checked after the trigger.
trait Edge {
    fn fault(&mut self);
    fn check(&self) -> Result<(), String>;
}

/// The `tfd`, `events` and `data` of each watch in `/proc/self/fdinfo/EPFD` (pos/ino name the current
/// inode, which a restore changes).
fn epoll_watches(epfd: RawFd) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{epfd}"))
        .map_err(|e| format!("fdinfo of {epfd}: {e}"))?;
    let mut out: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("tfd:"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(..6).map(|f| f.join(" ")).unwrap_or_default()
        })
        .collect();
    out.sort();
    Ok(out)
}

/// The data of every event ready on `epfd` within `ms`.
fn epoll_ready(epfd: RawFd, ms: i32) -> Result<Vec<u64>, String> {
    let mut ev = [libc::epoll_event { events: 0, u64: 0 }; 8];
    // SAFETY: the kernel writes at most 8 events into `ev`.
    let n = unsafe { libc::epoll_wait(epfd, ev.as_mut_ptr(), 8, ms) };
    if n < 0 {
        return Err(os_err("epoll_wait"));
    }
    let mut out: Vec<u64> = ev[..n as usize].iter().map(|e| e.u64).collect();
    out.sort_unstable();
    Ok(out)
}

struct Epoll {
    ep: RawFd,
    before: Vec<String>,
    /// (write end, read end as the task holds it now, data) of each watched pipe.
    pipes: Vec<(RawFd, RawFd, u64)>,
    closed: RawFd,
    /// The reused number and the write end of the pipe it holds now.
    reused: (RawFd, RawFd),
}

const DATA_CLOSED: u64 = 0xa1;
const DATA_REUSED: u64 = 0xb2;
const DATA_INNER: u64 = 0xc3;
const DATA_NESTED: u64 = 0xd4;

fn epoll_add(ep: RawFd, fd: RawFd, events: u32, data: u64) -> Result<(), WorkloadError> {
    let mut e = libc::epoll_event { events, u64: data };
    // SAFETY: epoll_ctl reads one event from our stack.
    cvt(
        // SAFETY: a plain syscall on our own fds and stack values.
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut e) },
        "epoll_ctl",
    )?;
    Ok(())
}

fn epoll() -> Result<Box<dyn Edge>, WorkloadError> {
    // SAFETY: epoll_create1 returns a new fd.
    let ep = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }, "epoll")?;
    // SAFETY: as above; created after `ep`, so its number is higher.
    let inner = cvt(unsafe { libc::epoll_create1(0) }, "epoll")?;
    // Every pipe first, so no later one takes the number closed below; the closed one high, so no
    // later kind's fd takes it either.
    let (r1_low, w1) = pipe()?;
    // SAFETY: dup and close of our own fds.
    let r1 = cvt(unsafe { libc::fcntl(r1_low, libc::F_DUPFD, 200) }, "dup")?;
    // SAFETY: as above.
    unsafe { libc::close(r1_low) };
    let (r2, w2) = pipe()?;
    let (other_r, other_w) = pipe()?;
    let (r3, w3) = pipe()?;
    epoll_add(ep, r1, libc::EPOLLIN as u32, DATA_CLOSED)?;
    epoll_add(ep, r2, (libc::EPOLLIN | libc::EPOLLET) as u32, DATA_REUSED)?;
    epoll_add(inner, r3, libc::EPOLLIN as u32, DATA_INNER)?;
    epoll_add(ep, inner, libc::EPOLLIN as u32, DATA_NESTED)?;
    // SAFETY: dup, dup2 and close of our own fds: the first pipe lives on at `k1` with its watched
    // number closed; the second at `k2` with its watched number holding another pipe's read end.
    let (k1, k2) = unsafe {
        let k1 = cvt(libc::fcntl(r1, libc::F_DUPFD, 100), "dup")?;
        let k2 = cvt(libc::fcntl(r2, libc::F_DUPFD, 100), "dup")?;
        cvt(libc::dup2(other_r, r2), "dup2")?;
        libc::close(other_r);
        libc::close(r1);
        (k1, k2)
    };
    let before = epoll_watches(ep).map_err(|e| WorkloadError::setup("fdinfo", e))?;
    if before.len() != 3 {
        return Err(WorkloadError::setup("epoll", format!("watches {before:?}")));
    }
    Ok(Box::new(Epoll {
        ep,
        before,
        pipes: vec![
            (w1, k1, DATA_CLOSED),
            (w2, k2, DATA_REUSED),
            (w3, r3, DATA_NESTED),
        ],
        closed: r1,
        reused: (r2, other_w),
    }))
}

impl Edge for Epoll {
    fn fault(&mut self) {
        // SAFETY: closes our own fd: the last one on the first pipe's read end, so its watch goes.
        unsafe { libc::close(self.pipes[0].1) };
    }

    fn check(&self) -> Result<(), String> {
        let now = epoll_watches(self.ep)?;
        if now != self.before {
            return Err(format!(
                "watches {now:?}, before the dump {:?}",
                self.before
            ));
        }
        if !epoll_ready(self.ep, 0)?.is_empty() {
            return Err("events ready before any write".into());
        }
        for &(w, r, data) in &self.pipes {
            write_byte(w)?;
            let got = epoll_ready(self.ep, 1000)?;
            if got != [data] {
                return Err(format!(
                    "a write to fd {w} made {got:x?} ready, want [{data:x}]"
                ));
            }
            read_byte(r)?;
        }
        // SAFETY: F_GETFD on a number this process closed.
        if unsafe { libc::fcntl(self.closed, libc::F_GETFD) } >= 0 {
            return Err(format!("fd {} is open, it was closed", self.closed));
        }
        let (n, w) = self.reused;
        write_byte(w)?;
        read_byte(n).map_err(|e| format!("fd {n} no longer reads its own pipe: {e}"))?;
        if !epoll_ready(self.ep, 0)?.is_empty() {
            return Err(format!("a write to the pipe now at fd {n} woke the epoll"));
        }
        Ok(())
    }
}

/// The `wd` and `mask` of each watch in `/proc/self/fdinfo/FD` (ino/sdev/handle name the inode, which a
/// restore recreates).
fn inotify_watches(fd: RawFd) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .map_err(|e| format!("fdinfo of {fd}: {e}"))?;
    let mut out: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("inotify "))
        .map(|l| {
            l.split_whitespace()
                .filter(|f| f.starts_with("wd:") || f.starts_with("mask:"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Every queued event of a non-blocking inotify fd: (wd, mask).
fn inotify_events(fd: RawFd) -> Result<Vec<(i32, u32)>, String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reads at most `buf.len()` bytes into `buf`.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
                return Ok(out);
            }
            return Err(os_err("read inotify"));
        }
        let mut at = 0usize;
        while at + 16 <= n as usize {
            let word = |o: usize| {
                let mut w = [0u8; 4];
                w.copy_from_slice(&buf[at + o..at + o + 4]);
                w
            };
            out.push((i32::from_ne_bytes(word(0)), u32::from_ne_bytes(word(4))));
            at += 16 + u32::from_ne_bytes(word(12)) as usize;
        }
    }
}

fn add_watch(fd: RawFd, path: &str, mask: u32) -> Result<i32, WorkloadError> {
    let c = std::ffi::CString::new(path).map_err(|e| WorkloadError::setup("path", e))?;
    // SAFETY: reads the NUL-terminated path.
    cvt(
        // SAFETY: a plain syscall on our own fds and stack values.
        unsafe { libc::inotify_add_watch(fd, c.as_ptr(), mask) },
        "inotify_add_watch",
    )
}

struct Inotify {
    fd: RawFd,
    before: Vec<String>,
    /// The unlinked file and the memfd, each with the wd watching it.
    deleted: (RawFd, i32),
    memfd: (RawFd, i32),
    dir: std::path::PathBuf,
    dir_wd: i32,
}

fn inotify(args: &WorkloadArgs) -> Result<Box<dyn Edge>, WorkloadError> {
    let dir = args.dir.join("watched");
    std::fs::create_dir_all(&dir).map_err(|e| WorkloadError::setup("dir", e))?;
    let path = dir.join("deleted");
    std::fs::write(&path, b"before").map_err(|e| WorkloadError::setup("file", e))?;
    let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| WorkloadError::setup("path", e))?;
    // SAFETY: opens the file just written.
    let file = cvt(unsafe { libc::open(cpath.as_ptr(), libc::O_RDWR) }, "open")?;
    // SAFETY: memfd_create reads the NUL-terminated name.
    let memfd = cvt(
        // SAFETY: a plain syscall on our own fds and stack values.
        unsafe { libc::memfd_create(c"watched".as_ptr(), 0) },
        "memfd",
    )?;
    // SAFETY: inotify_init1 returns a new fd.
    let fd = cvt(unsafe { libc::inotify_init1(libc::IN_NONBLOCK) }, "inotify")?;
    let wd_file = add_watch(
        fd,
        &path.to_string_lossy(),
        libc::IN_MODIFY | libc::IN_ATTRIB,
    )?;
    let wd_dir = add_watch(fd, &dir.to_string_lossy(), libc::IN_CREATE)?;
    // Writes to a memfd notify nobody (a pseudo file); a change of its mode does.
    let wd_memfd = add_watch(fd, &format!("/proc/self/fd/{memfd}"), libc::IN_ATTRIB)?;
    std::fs::remove_file(&path).map_err(|e| WorkloadError::setup("unlink", e))?;
    // The unlink queued IN_ATTRIB (the link count): read it, a dump refuses unread events.
    let ev = inotify_events(fd).map_err(|e| WorkloadError::setup("drain", e))?;
    if ev != [(wd_file, libc::IN_ATTRIB)] {
        return Err(WorkloadError::setup("drain", format!("{ev:?}")));
    }
    let before = inotify_watches(fd).map_err(|e| WorkloadError::setup("fdinfo", e))?;
    Ok(Box::new(Inotify {
        fd,
        before,
        deleted: (file, wd_file),
        memfd: (memfd, wd_memfd),
        dir,
        dir_wd: wd_dir,
    }))
}

impl Edge for Inotify {
    fn fault(&mut self) {
        // SAFETY: removes a watch of our own instance (its IN_IGNORED is read by the check).
        unsafe { libc::inotify_rm_watch(self.fd, self.deleted.1) };
    }

    fn check(&self) -> Result<(), String> {
        let now = inotify_watches(self.fd)?;
        if now != self.before {
            return Err(format!(
                "watches {now:?}, before the dump {:?}",
                self.before
            ));
        }
        let ev = inotify_events(self.fd)?;
        if !ev.is_empty() {
            return Err(format!("events queued before any change: {ev:?}"));
        }
        let (f, wd) = self.deleted;
        write_byte(f)?;
        let ev = inotify_events(self.fd)?;
        if ev != [(wd, libc::IN_MODIFY)] {
            return Err(format!(
                "a write to fd {f} queued {ev:?}, want IN_MODIFY on wd {wd}"
            ));
        }
        let (m, wd) = self.memfd;
        // SAFETY: changes the mode of our own memfd.
        if unsafe { libc::fchmod(m, 0o640) } != 0 {
            return Err(os_err("fchmod memfd"));
        }
        let ev = inotify_events(self.fd)?;
        if ev != [(wd, libc::IN_ATTRIB)] {
            return Err(format!(
                "a chmod of fd {m} queued {ev:?}, want IN_ATTRIB on wd {wd}"
            ));
        }
        std::fs::write(self.dir.join("new"), b"").map_err(|e| e.to_string())?;
        let ev = inotify_events(self.fd)?;
        if ev != [(self.dir_wd, libc::IN_CREATE)] {
            return Err(format!(
                "a create queued {ev:?}, want IN_CREATE on wd {}",
                self.dir_wd
            ));
        }
        Ok(())
    }
}

/// The `lock:` lines of `/proc/self/fdinfo/FD` without their ordinal: kind, mode, type, pid, device and
/// inode, range. fdinfo lists the locks taken through that very description, so this tells which one
/// holds each lock.
fn fd_locks(fd: RawFd) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .map_err(|e| format!("fdinfo of {fd}: {e}"))?;
    let mut out: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("lock:"))
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        .collect();
    out.sort();
    Ok(out)
}

/// The lines of `/proc/locks` on `inodes` (`dev:ino` as listed there), without their ordinal.
fn proc_locks(inodes: &[String]) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string("/proc/locks").map_err(|e| format!("/proc/locks: {e}"))?;
    let mut out: Vec<String> = text
        .lines()
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>())
        .filter(|f| f.iter().any(|x| inodes.contains(&x.to_string())))
        .map(|f| f.join(" "))
        .collect();
    out.sort();
    Ok(out)
}

/// `MAJ:MIN:INO` of fd `fd` as `/proc/locks` writes it (hex device numbers).
fn lock_inode(fd: RawFd) -> Result<String, WorkloadError> {
    // SAFETY: fstat writes one struct stat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    cvt(unsafe { libc::fstat(fd, &mut st) }, "fstat")?;
    Ok(format!(
        "{:02x}:{:02x}:{}",
        libc::major(st.st_dev),
        libc::minor(st.st_dev),
        st.st_ino
    ))
}

fn open_file(path: &std::path::Path, flags: libc::c_int) -> Result<RawFd, WorkloadError> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| WorkloadError::setup("path", e))?;
    // SAFETY: reads the NUL-terminated path; returns a new fd.
    cvt(
        // SAFETY: a plain syscall on our own fds and stack values.
        unsafe { libc::open(c.as_ptr(), flags | libc::O_CREAT, 0o644) },
        "open",
    )
}

fn record_lock(
    fd: RawFd,
    cmd: libc::c_int,
    ty: libc::c_int,
    start: i64,
    len: i64,
) -> Result<(), WorkloadError> {
    // SAFETY: flock is plain data; all-zero is valid.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = ty as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = len;
    // SAFETY: fcntl reads one struct flock.
    cvt(unsafe { libc::fcntl(fd, cmd, &fl) }, "fcntl lock")?;
    Ok(())
}

/// Locks of every kind on several fds: compared line by line in `/proc/locks` and in each fd's fdinfo.
struct Locks {
    fds: Vec<RawFd>,
    inodes: Vec<String>,
    before_all: Vec<String>,
    before_fds: Vec<Vec<String>>,
    /// What the fault drops: a close of another fd on a POSIX-locked file.
    fault_fd: RawFd,
}

impl Locks {
    fn new(fds: Vec<RawFd>, fault_fd: RawFd) -> Result<Self, WorkloadError> {
        let mut inodes = Vec::new();
        for &f in &fds {
            inodes.push(lock_inode(f)?);
        }
        let before_all = proc_locks(&inodes).map_err(|e| WorkloadError::setup("locks", e))?;
        let before_fds = fds
            .iter()
            .map(|&f| fd_locks(f))
            .collect::<Result<_, _>>()
            .map_err(|e| WorkloadError::setup("locks", e))?;
        Ok(Locks {
            fds,
            inodes,
            before_all,
            before_fds,
            fault_fd,
        })
    }
}

fn locks(args: &WorkloadArgs) -> Result<Box<dyn Edge>, WorkloadError> {
    let (a, b, c) = (
        args.dir.join("locks-a"),
        args.dir.join("locks-b"),
        args.dir.join("locks-c"),
    );
    std::fs::write(&c, vec![7u8; 4096]).map_err(|e| WorkloadError::setup("file", e))?;
    // File a opened twice, the first open dup'ed: POSIX locks (the process's) through a1 and its dup,
    // an OFD lock through a2.
    let a1 = open_file(&a, libc::O_RDWR)?;
    let a2 = open_file(&a, libc::O_RDWR)?;
    // SAFETY: dup of our own fd.
    let a3 = cvt(unsafe { libc::dup(a1) }, "dup")?;
    record_lock(a1, libc::F_SETLK, libc::F_WRLCK, 0, 10)?;
    record_lock(a3, libc::F_SETLK, libc::F_RDLCK, 100, 0)?;
    record_lock(a2, libc::F_OFD_SETLK, libc::F_WRLCK, 20, 10)?;
    // File b: a shared flock on two descriptions (b1 with its dup b2, and b3).
    let b1 = open_file(&b, libc::O_RDONLY)?;
    // SAFETY: dup of our own fd.
    let b2 = cvt(unsafe { libc::dup(b1) }, "dup")?;
    let b3 = open_file(&b, libc::O_RDONLY)?;
    // SAFETY: flock on our own fds.
    cvt(unsafe { libc::flock(b1, libc::LOCK_SH) }, "flock")?;
    // SAFETY: as above.
    cvt(unsafe { libc::flock(b3, libc::LOCK_SH) }, "flock")?;
    // File c: mapped shared and POSIX-locked, an OFD read lock on another open past that range.
    let c1 = open_file(&c, libc::O_RDWR)?;
    let c2 = open_file(&c, libc::O_RDONLY)?;
    // SAFETY: maps 4 KiB of our own file; the mapping is never unmapped.
    let m = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_SHARED,
            c1,
            0,
        )
    };
    if m == libc::MAP_FAILED {
        return Err(WorkloadError::setup(
            "mmap",
            std::io::Error::last_os_error(),
        ));
    }
    record_lock(c1, libc::F_SETLK, libc::F_WRLCK, 0, 4000)?;
    record_lock(c2, libc::F_OFD_SETLK, libc::F_RDLCK, 4000, 96)?;
    Ok(Box::new(Locks::new(
        vec![a1, a2, a3, b1, b2, b3, c1, c2],
        c2,
    )?))
}

/// A read lease on one file and a write lease on another.
fn leases(args: &WorkloadArgs) -> Result<Box<dyn Edge>, WorkloadError> {
    let (r, w) = (args.dir.join("lease-r"), args.dir.join("lease-w"));
    let fr = open_file(&r, libc::O_RDONLY)?;
    let fw = open_file(&w, libc::O_RDWR)?;
    // SAFETY: F_SETLEASE on our own fds.
    cvt(
        // SAFETY: a plain syscall on our own fds and stack values.
        unsafe { libc::fcntl(fr, libc::F_SETLEASE, libc::F_RDLCK) },
        "F_SETLEASE read",
    )?;
    // SAFETY: as above.
    cvt(
        // SAFETY: a plain syscall on our own fds and stack values.
        unsafe { libc::fcntl(fw, libc::F_SETLEASE, libc::F_WRLCK) },
        "F_SETLEASE write",
    )?;
    let second = open_file(&r, libc::O_RDONLY)?;
    Ok(Box::new(Locks::new(vec![fr, fw], second)?))
}

impl Edge for Locks {
    fn fault(&mut self) {
        // SAFETY: closes our own fd: for a POSIX-locked file this drops the process's locks on it (POSIX
        // semantics); for the leases, the second open of the leased file goes and F_UNLCK drops the lease.
        // SAFETY: a plain syscall on our own fds and stack values.
        unsafe {
            libc::close(self.fault_fd);
            libc::fcntl(self.fds[0], libc::F_SETLEASE, libc::F_UNLCK);
        }
    }

    fn check(&self) -> Result<(), String> {
        let all = proc_locks(&self.inodes)?;
        if all != self.before_all {
            return Err(format!(
                "/proc/locks {all:#?}, before the dump {:#?}",
                self.before_all
            ));
        }
        for (f, before) in self.fds.iter().zip(&self.before_fds) {
            let now = fd_locks(*f)?;
            if &now != before {
                return Err(format!(
                    "fd {f} holds locks {now:?}, before the dump {before:?}"
                ));
            }
        }
        Ok(())
    }
}

fn set_up(kind: &str, args: &WorkloadArgs) -> Result<Box<dyn Edge>, WorkloadError> {
    match kind {
        "epoll" => epoll(),
        "inotify" => inotify(args),
        "locks" => locks(args),
        "leases" => leases(args),
        other => Err(WorkloadError::setup(
            "kind",
            format!("unknown kind {other:?}"),
        )),
    }
}

fn run() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env(USAGE)?;
    let kinds = args.kinds()?;
    let mut edges = Vec::new();
    for k in &kinds {
        edges.push((k.clone(), set_up(k, &args)?));
    }
    workload::ready()?;
    workload::wait_for_trigger(&args.trigger)?;
    if args.has_flag(INJECT_FAULT) {
        for (_, e) in edges.iter_mut() {
            e.fault();
        }
    }
    let mut report = Report::new("wl_fdedges");
    for (k, e) in &edges {
        report.check(k, e.check());
    }
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_fdedges", run)
}
