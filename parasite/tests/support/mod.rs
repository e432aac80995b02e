//! Tracer-side helpers for the injection tests: spawning workloads, seizing, and capturing the
//! state that must be byte-identical before and after an injection.

pub mod workload;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use dormant_parasite::{get_sigmask, RemoteTask, SigMask, Tid};
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use workload::*;

/// A running workload child and the values it reported.
pub struct Workload {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub tid: Tid,
    pub ready: BTreeMap<String, u64>,
    pub shm: Shm,
}

/// The shared memfd page, mapped in the test too.
pub struct Shm {
    _fd: OwnedFd,
    ptr: *mut u8,
}

impl Shm {
    fn new() -> Shm {
        let fd =
            nix::sys::memfd::memfd_create(c"parasite-test", nix::sys::memfd::MFdFlags::empty())
                .unwrap();
        nix::unistd::ftruncate(&fd, SHM_LEN as i64).unwrap();
        // SAFETY: maps the memfd we own; unmapped never (test process lifetime).
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SHM_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        Shm {
            _fd: fd,
            ptr: ptr as *mut u8,
        }
    }

    pub fn u64_at(&self, off: usize) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: off is one of the aligned SHM_* offsets inside the page.
        unsafe { &*(self.ptr.add(off) as *const std::sync::atomic::AtomicU64) }
    }

    pub fn u32_at(&self, off: usize) -> &std::sync::atomic::AtomicU32 {
        // SAFETY: as above.
        unsafe { &*(self.ptr.add(off) as *const std::sync::atomic::AtomicU32) }
    }
}

impl Workload {
    pub fn spawn(role: &str) -> Workload {
        Self::spawn_with(role, &[])
    }

    pub fn spawn_with(role: &str, env: &[(&str, String)]) -> Workload {
        let shm = Shm::new();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env(ROLE_ENV, role)
            .env(SHM_FD_ENV, shm._fd.as_raw_fd().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("READY "),
            "workload {role} did not get ready: {line:?}"
        );
        let ready: BTreeMap<String, u64> = line
            .split_whitespace()
            .skip(1)
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_owned(), v.parse().unwrap())
            })
            .collect();
        let tid = Tid(ready["tid"] as i32);
        assert_eq!(tid.0 as u32, child.id(), "workload runs on its main thread");
        Workload {
            child,
            stdin,
            tid,
            ready,
            shm,
        }
    }

    /// Wait until the workload sits in syscall `nr` (per /proc/<tid>/syscall) and is sleeping.
    pub fn wait_blocked_in(&self, nr: i64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let sc = std::fs::read_to_string(format!("/proc/{}/syscall", self.tid)).unwrap();
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.tid)).unwrap();
            let state = stat.rsplit(") ").next().unwrap().chars().next().unwrap();
            if sc.split_whitespace().next() == Some(&nr.to_string()) && state == 'S' {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "workload never blocked in syscall {nr}: {sc}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn write_stdin(&mut self, bytes: &[u8]) {
        self.stdin.as_mut().unwrap().write_all(bytes).unwrap();
    }

    /// Wait for the workload to exit and assert its own check passed (status 0).
    pub fn assert_exits_ok(mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "workload failed its own check: {status}");
                return;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("workload did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// PTRACE_SEIZE + PTRACE_INTERRUPT + wait for the interrupt's event stop.
pub fn seize_and_stop(tid: Tid) {
    let pid = Pid::from_raw(tid.0);
    ptrace::seize(pid, dormant_parasite::SEIZE_OPTIONS).unwrap();
    ptrace::interrupt(pid).unwrap();
    match waitpid(pid, Some(WaitPidFlag::__WALL)).unwrap() {
        WaitStatus::PtraceEvent(_, Signal::SIGTRAP, libc::PTRACE_EVENT_STOP) => {}
        other => panic!("unexpected stop after PTRACE_INTERRUPT: {other:?}"),
    }
}

pub fn detach(tid: Tid) {
    ptrace::detach(Pid::from_raw(tid.0), None).unwrap();
}

/// Everything that must not change across an injection.
#[derive(Debug, PartialEq, Eq)]
pub struct TaskState {
    pub regs: Vec<u64>,
    pub xstate: Vec<u8>,
    pub sigmask: SigMask,
    pub maps: String,
    pub fds: Vec<(String, String)>,
}

pub fn regs_words(r: &libc::user_regs_struct) -> Vec<u64> {
    vec![
        r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx, r.rdx,
        r.rsi, r.rdi, r.orig_rax, r.rip, r.cs, r.eflags, r.rsp, r.ss, r.fs_base, r.gs_base, r.ds,
        r.es, r.fs, r.gs,
    ]
}

pub fn xstate(tid: Tid) -> Vec<u8> {
    let mut buf = vec![0u8; 8192];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: GETREGSET writes at most iov_len bytes into buf and updates iov_len.
    let rc = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGSET,
            tid.0,
            dormant_sys::regs::NT_X86_XSTATE as usize,
            &mut iov,
        )
    };
    assert_eq!(
        rc,
        0,
        "GETREGSET NT_X86_XSTATE: {}",
        std::io::Error::last_os_error()
    );
    buf.truncate(iov.iov_len);
    buf
}

pub fn capture(tid: Tid) -> TaskState {
    let regs = ptrace::getregs(Pid::from_raw(tid.0)).unwrap();
    let mut fds: Vec<(String, String)> = std::fs::read_dir(format!("/proc/{tid}/fd"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let target = std::fs::read_link(e.path()).unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                target.to_string_lossy().into_owned(),
            )
        })
        .collect();
    fds.sort();
    TaskState {
        regs: regs_words(&regs),
        xstate: xstate(tid),
        sigmask: get_sigmask(tid).unwrap(),
        maps: std::fs::read_to_string(format!("/proc/{tid}/maps")).unwrap(),
        fds,
    }
}

/// Read target memory as an outside (non-tracer, root) observer.
pub fn peek(pid: u32, addr: u64, len: usize) -> Vec<u8> {
    let mut f = File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut buf = vec![0u8; len];
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(addr)).unwrap();
    f.read_exact(&mut buf).unwrap();
    buf
}

/// The "injector" role: seize the target named in the environment, then inject with the
/// stall-after-poke hook on, reporting the site first. Never returns (killed by the test).
pub fn injector() -> ! {
    let target: i32 = std::env::var(TARGET_ENV).unwrap().parse().unwrap();
    let tid = Tid(target);
    seize_and_stop(tid);
    let mut task = RemoteTask::new(tid).unwrap();
    let mut out = std::io::stdout();
    writeln!(out, "READY site={}", task.site()).unwrap();
    out.flush().unwrap();
    dormant_parasite::test_hooks::stall_after_poke(true);
    let _ = task.syscall(libc::SYS_getpid, [0; 6]);
    unreachable!("the stall hook never returns");
}

/// The "blob-injector" role: seize the target named in the environment and run a whole parasite
/// session (inject, snapshot, vmsplice one page, cure) with the die-at hook set to the stage in
/// DIE_AT_ENV, so this process is SIGKILLed there. Exits 0 if the stage was never reached.
pub fn blob_injector() -> ! {
    use dormant_parasite::test_hooks::{die_at, Stage};
    let target: i32 = std::env::var(TARGET_ENV).unwrap().parse().unwrap();
    let stage: u32 = std::env::var(DIE_AT_ENV).unwrap().parse().unwrap();
    let tid = Tid(target);
    seize_and_stop(tid);
    die_at(Stage::ALL.iter().copied().find(|s| *s as u32 == stage));
    let mut p = dormant_parasite::Parasite::inject(tid, &[]).unwrap();
    p.task_state().unwrap();
    p.open_page_pipes(1, 1 << 16).unwrap();
    let (base, _) = p.area();
    p.splice_pages(
        &[(base, 4096, 0)],
        1,
        |piece: dormant_parasite::PagePiece, fd| -> Result<(), nix::Error> {
            let mut buf = vec![0u8; piece.len as usize];
            let mut done = 0;
            while done < buf.len() {
                done += nix::unistd::read(fd, &mut buf[done..])?;
            }
            Ok(())
        },
    )
    .unwrap();
    p.cure().unwrap();
    detach(tid);
    std::process::exit(0)
}
