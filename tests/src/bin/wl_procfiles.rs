//! Workload `wl_procfiles`: open files of `/proc` (issue 13), reopened for the restored process.
//!
//! `wl_procfiles TRIGGER DIR KIND... [--inject-fault]`, KIND one of:
//! - `files`: this process holds `/proc/self/maps` read partly (offset mid-file), `/proc/self/status` read
//!   partly, `/proc/CHILD/stat` of its child (forked first, named `pf-child`), `/proc/self/task/TID/comm`
//!   of one of its threads (named `pf-worker`), `/proc/sys/kernel/ostype` read partly (no pid) and an
//!   `O_DIRECTORY` fd on `/proc/self/fd` read partly with getdents. After the trigger each fd is checked:
//!   its link names the path of this (restored) pid, its offset (`SEEK_CUR`), fdinfo `flags` and
//!   `mnt_id` are the ones before the dump, and what it reads is about the right process: status's `Pid:`
//!   is getpid(), the child's stat starts with the child's pid and `(pf-child)`, the thread's comm is
//!   `pf-worker`, the rest of ostype is the rest of the file read afresh, the maps rest holds `[stack]`
//!   and the directory lists this fd. Fault: each fd is moved (lseek to 0) or replaced by another proc
//!   file (the child's status, our own stat and comm, `/proc/self/task`).
//! - `outside`: `/proc/PID/stat` of a process outside this tree (a grandchild whose parent exited; its pid
//!   in DIR/outside.pid), which a dump must refuse. The check reads it (it is still that process) and
//!   kills that process.

use std::os::fd::RawFd;
use std::process::ExitCode;

use dormant_tests::workload::{self, Report, WorkloadArgs, WorkloadError, INJECT_FAULT};

const USAGE: &str = "KIND... [--inject-fault]";

fn open(path: &str, flags: i32) -> Result<RawFd, WorkloadError> {
    let c = std::ffi::CString::new(path).map_err(|e| WorkloadError::setup(path, e))?;
    // SAFETY: open with a NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), flags) };
    if fd < 0 {
        return Err(WorkloadError::setup(
            format!("open {path}"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(fd)
}

fn read_n(fd: RawFd, n: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; n];
    // SAFETY: reads at most `n` bytes into `buf`.
    let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), n) };
    if r < 0 {
        return Err(format!("read fd {fd}: {}", std::io::Error::last_os_error()));
    }
    buf.truncate(r as usize);
    Ok(buf)
}

/// Everything left to read on `fd`.
fn read_rest(fd: RawFd) -> Result<String, String> {
    let mut out = Vec::new();
    loop {
        let b = read_n(fd, 4096)?;
        if b.is_empty() {
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
        out.extend_from_slice(&b);
    }
}

fn offset(fd: RawFd) -> i64 {
    // SAFETY: lseek on our own fd.
    unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) }
}

fn link(fd: RawFd) -> String {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("<{e}>"))
}

/// `flags` and `mnt_id` of the fd's fdinfo.
fn fdinfo(fd: RawFd) -> String {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .map(|t| {
            t.lines()
                .filter(|l| l.starts_with("flags:") || l.starts_with("mnt_id:"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|e| format!("<{e}>"))
}

/// Reads a few directory entries (the position moves past them).
fn getdents_some(fd: RawFd) -> Result<Vec<String>, String> {
    let mut buf = [0u8; 64];
    // SAFETY: the kernel writes at most 64 bytes of dirents into `buf`.
    let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
    if n < 0 {
        return Err(format!("getdents64: {}", std::io::Error::last_os_error()));
    }
    let mut names = Vec::new();
    let mut at = 0usize;
    while at + 19 < n as usize {
        let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
        if reclen == 0 {
            break;
        }
        let name = &buf[at + 19..at + reclen];
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        names.push(String::from_utf8_lossy(&name[..end]).into_owned());
        at += reclen;
    }
    Ok(names)
}

/// One open proc file and what it was before the dump.
struct Held {
    name: &'static str,
    fd: RawFd,
    /// The path its link must name, `{pid}` standing for getpid() at check time.
    path: String,
    offset: i64,
    fdinfo: String,
}

impl Held {
    fn new(name: &'static str, fd: RawFd, path: String) -> Self {
        Self {
            name,
            fd,
            path,
            offset: offset(fd),
            fdinfo: fdinfo(fd),
        }
    }

    /// Link, offset and fdinfo as before the dump.
    fn check_common(&self) -> Result<(), String> {
        let want = self.path.replace("{pid}", &std::process::id().to_string());
        let got = link(self.fd);
        if got != want {
            return Err(format!("fd {} names {got}, want {want}", self.fd));
        }
        let at = offset(self.fd);
        if at != self.offset {
            return Err(format!(
                "fd {} is at {at}, before the dump {}",
                self.fd, self.offset
            ));
        }
        let info = fdinfo(self.fd);
        if info != self.fdinfo {
            return Err(format!(
                "fd {}: fdinfo {info:?}, before the dump {:?}",
                self.fd, self.fdinfo
            ));
        }
        Ok(())
    }
}

struct Files {
    child: libc::pid_t,
    tid: libc::pid_t,
    held: Vec<Held>,
    /// The bytes of ostype read before the dump.
    ostype_head: usize,
}

fn files() -> Result<Files, WorkloadError> {
    let child = workload::fork()?;
    if child == 0 {
        // SAFETY: prctl with a static NUL-terminated name, then pause until killed.
        unsafe {
            libc::prctl(libc::PR_SET_NAME, c"pf-child".as_ptr());
            loop {
                libc::pause();
            }
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("pf-worker".into())
        .spawn(move || {
            // SAFETY: gettid has no arguments.
            let _ = tx.send(unsafe { libc::gettid() });
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        })
        .map_err(|e| WorkloadError::setup("thread", e))?;
    let tid = rx
        .recv()
        .map_err(|e| WorkloadError::setup("thread tid", e))?;
    let rd = libc::O_RDONLY | libc::O_CLOEXEC;
    let maps = open("/proc/self/maps", rd)?;
    read_n(maps, 100).map_err(|e| WorkloadError::setup("maps", e))?;
    let status = open("/proc/self/status", libc::O_RDONLY)?;
    read_n(status, 6).map_err(|e| WorkloadError::setup("status", e))?;
    let stat = open(&format!("/proc/{child}/stat"), rd | libc::O_NONBLOCK)?;
    let comm = open(&format!("/proc/self/task/{tid}/comm"), rd)?;
    let ostype = open("/proc/sys/kernel/ostype", rd)?;
    let ostype_head = read_n(ostype, 2)
        .map_err(|e| WorkloadError::setup("ostype", e))?
        .len();
    let dir = open("/proc/self/fd", rd | libc::O_DIRECTORY)?;
    getdents_some(dir).map_err(|e| WorkloadError::setup("getdents", e))?;
    let held = vec![
        Held::new("maps", maps, "/proc/{pid}/maps".into()),
        Held::new("status", status, "/proc/{pid}/status".into()),
        Held::new("child-stat", stat, format!("/proc/{child}/stat")),
        Held::new(
            "thread-comm",
            comm,
            format!("/proc/{{pid}}/task/{tid}/comm"),
        ),
        Held::new("sysctl", ostype, "/proc/sys/kernel/ostype".into()),
        Held::new("fd-dir", dir, "/proc/{pid}/fd".into()),
    ];
    Ok(Files {
        child,
        tid,
        held,
        ostype_head,
    })
}

impl Files {
    fn fault(&self) {
        for h in &self.held {
            let other = match h.name {
                "status" => format!("/proc/{}/status", self.child),
                "child-stat" => "/proc/self/stat".into(),
                "thread-comm" => "/proc/self/comm".into(),
                "fd-dir" => "/proc/self/task".into(),
                _ => {
                    // SAFETY: lseek on our own fd.
                    unsafe { libc::lseek(h.fd, 0, libc::SEEK_SET) };
                    continue;
                }
            };
            if let Ok(fd) = open(&other, libc::O_RDONLY) {
                // SAFETY: dup2 onto our own fd number, then the temporary is closed.
                unsafe {
                    libc::dup2(fd, h.fd);
                    libc::close(fd);
                }
            }
        }
    }

    /// What the fd reads is about the right process.
    fn check_content(&self, h: &Held) -> Result<(), String> {
        let me = std::process::id();
        let rest = if h.name == "fd-dir" {
            String::new()
        } else {
            read_rest(h.fd)?
        };
        match h.name {
            "maps" if rest.contains("[stack]") => Ok(()),
            "maps" => Err(format!("the rest of maps has no [stack] line: {rest:?}")),
            "status" => {
                let pid = rest
                    .lines()
                    .find_map(|l| l.strip_prefix("Pid:"))
                    .map(str::trim);
                if pid == Some(me.to_string().as_str()) {
                    Ok(())
                } else {
                    Err(format!("status says Pid {pid:?}, getpid() is {me}"))
                }
            }
            "child-stat" if rest.starts_with(&format!("{} (pf-child) ", self.child)) => Ok(()),
            "child-stat" => Err(format!("stat of child {}: {rest:?}", self.child)),
            "thread-comm" if rest == "pf-worker\n" => Ok(()),
            "thread-comm" => Err(format!("comm of thread {}: {rest:?}", self.tid)),
            "sysctl" => {
                let all = std::fs::read_to_string("/proc/sys/kernel/ostype")
                    .map_err(|e| format!("ostype: {e}"))?;
                if all.get(self.ostype_head..) == Some(rest.as_str()) {
                    Ok(())
                } else {
                    Err(format!("rest of ostype {rest:?}, the file is {all:?}"))
                }
            }
            "fd-dir" => {
                let mut names = Vec::new();
                loop {
                    let some = getdents_some(h.fd)?;
                    if some.is_empty() {
                        break;
                    }
                    names.extend(some);
                }
                if names.contains(&h.fd.to_string()) && !names.iter().any(|n| n == ".") {
                    Ok(())
                } else {
                    Err(format!("fd dir lists {names:?} after the dumped position"))
                }
            }
            other => Err(format!("unknown file {other}")),
        }
    }

    fn check(&self, report: &mut Report) {
        for h in &self.held {
            report.check(
                h.name,
                h.check_common().and_then(|()| self.check_content(h)),
            );
        }
        // SAFETY: kills and reaps our own child.
        unsafe { libc::kill(self.child, libc::SIGKILL) };
        workload::wait_status(self.child);
    }
}

/// A process outside this tree (a grandchild whose parent exited) and an open `/proc/PID/stat` of it.
fn outside(args: &WorkloadArgs) -> Result<(libc::pid_t, RawFd), WorkloadError> {
    let pid = workload::outside_process()?;
    let fd = open(&format!("/proc/{pid}/stat"), libc::O_RDONLY)?;
    std::fs::write(args.dir.join("outside.pid"), pid.to_string())
        .map_err(|e| WorkloadError::setup("outside.pid", e))?;
    Ok((pid, fd))
}

fn check_outside(pid: libc::pid_t, fd: RawFd) -> Result<(), String> {
    let rest = read_rest(fd)?;
    // SAFETY: kills the outside process we started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    if rest.starts_with(&format!("{pid} ")) {
        Ok(())
    } else {
        Err(format!("stat of {pid}: {rest:?}"))
    }
}

fn run() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env(USAGE)?;
    let kinds = args.kinds()?;
    let mut held = None;
    let mut out = None;
    for k in &kinds {
        match k.as_str() {
            "files" => held = Some(files()?),
            "outside" => out = Some(outside(&args)?),
            other => {
                return Err(WorkloadError::setup(
                    "kind",
                    format!("unknown kind {other:?}"),
                ))
            }
        }
    }
    workload::ready()?;
    workload::wait_for_trigger(&args.trigger)?;
    if args.has_flag(INJECT_FAULT) {
        if let Some(f) = &held {
            f.fault();
        }
    }
    let mut report = Report::new("wl_procfiles");
    if let Some(f) = &held {
        f.check(&mut report);
    }
    if let Some((pid, fd)) = out {
        report.check("outside", check_outside(pid, fd));
    }
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_procfiles", run)
}
