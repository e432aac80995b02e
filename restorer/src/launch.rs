//! Starting the restored task: clone3 with the exact pid, the child's last preparations, the jump into the
//! blob, and the tracer side that catches the final `rt_sigreturn`, removes the blob area and lets go.
//!
//! The caller must be single-threaded: the child runs ordinary (allocation-free) Rust between clone3 and
//! the jump, which is only safe when no other thread could have held a lock at the moment of the fork.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use dormant_parasite::{find_syscall_site, RemoteTask, Tid};
use dormant_restorer_proto::{Report, Step, REPORT_SIZE};
use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid as NixPid;

use crate::area::Area;
use crate::error::RestoreError;
use crate::procself;

/// One fd of the restored task: the helper fd `from` (open in this process, numbered above every target
/// fd) becomes `to` in the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdMove {
    pub from: RawFd,
    pub to: RawFd,
    pub cloexec: bool,
}

/// One resource limit to set in the child (already clamped to what this process may set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RlimitSet {
    pub resource: u32,
    pub soft: u64,
    pub hard: u64,
}

/// Everything needed to start one restored task.
#[derive(Debug)]
pub struct Launch {
    /// The exact pid to create (clone3 set_tid); `None` lets the kernel choose (tests only).
    pub pid: Option<u32>,
    /// The laid-out blob area (its args name the helper fds below).
    pub area: Area,
    pub fd_moves: Vec<FdMove>,
    /// Steps on the task's files after its fds are in place (epoll registrations); see [`crate::files`].
    pub child_actions: Vec<crate::files::ChildAction>,
    /// Every fd the child keeps when it enters the blob (target fds and the blob's helper fds), including
    /// the report pipe's write end.
    pub keep_fds: Vec<RawFd>,
    /// Helper fds owned by this process until the child has its copies; closed right after the fork.
    pub helper_fds: Vec<OwnedFd>,
    /// The report pipe's write end (also in `keep_fds`), numbered as `RestoreArgs::report_fd` says.
    pub report_write: OwnedFd,
    pub report_read: OwnedFd,
    pub umask: Option<u32>,
    pub rlimits: Vec<RlimitSet>,
    /// Working directory to change to (absolute), if known.
    pub cwd: Option<std::ffi::CString>,
    /// The registers the task must have after its final rt_sigreturn (checked: rip).
    pub expected_rip: u64,
    /// Stop the task with SIGSTOP once it is released (it was stopped when dumped).
    pub stopped: bool,
    /// Session and process group to give the task before it enters the blob.
    pub session: SessionPlan,
    /// The task's `comm` (PR_SET_NAME), so `ps` shows the restored program, not dormant.
    pub comm: Option<std::ffi::CString>,
    /// The task's execution domain (`personality(2)`), e.g. ADDR_NO_RANDOMIZE for later execs.
    pub personality: Option<u32>,
}

/// What the child does about its session and process group.
///
/// A single restored process can lead a new session or group itself; joining a session or group led by
/// another process needs that leader restored first (process trees), so such a task stays in dormant's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionPlan {
    /// It led its session at dump time: `setsid()`.
    NewSession,
    /// It led its process group inside another session: `setpgid(0, 0)`.
    NewGroup,
    /// Its session and group were led by others: it keeps the restorer's.
    Inherit,
}

impl SessionPlan {
    /// The plan for a task with these ids at dump time.
    pub fn for_ids(pid: u32, pgid: u32, sid: u32) -> Self {
        if sid == pid {
            Self::NewSession
        } else if pgid == pid {
            Self::NewGroup
        } else {
            Self::Inherit
        }
    }
}

/// A restored, running task.
#[derive(Debug)]
pub struct Started {
    pub pid: u32,
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Data the child reads after the fork; prepared before it, so the child allocates nothing.
struct ChildPlan<'a> {
    sync_read: RawFd,
    report_write: RawFd,
    moves: &'a [FdMove],
    actions: &'a [crate::files::ChildAction],
    keep: &'a [RawFd],
    umask: Option<u32>,
    rlimits: &'a [RlimitSet],
    cwd: Option<&'a std::ffi::CStr>,
    session: SessionPlan,
    comm: Option<&'a std::ffi::CStr>,
    personality: Option<u32>,
    entry: u64,
    args: u64,
    stack_top: u64,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), RestoreError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| RestoreError::sys("pipe2", e))
}

/// Maps the area at its base in this process (it is inherited by the child through the fork).
struct MappedArea {
    base: u64,
    len: usize,
}

impl MappedArea {
    fn map(area: &Area) -> Result<MappedArea, RestoreError> {
        let len = area.bytes.len();
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; the new private anonymous range
        // belongs to us alone.
        let p = unsafe {
            libc::mmap(
                area.base as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED || p as u64 != area.base {
            let e = Errno::last();
            if p != libc::MAP_FAILED {
                // SAFETY: `p` is the mapping just created (the kernel placed it elsewhere).
                unsafe { libc::munmap(p, len) };
            }
            return Err(RestoreError::sys(
                format!("mapping the blob area at {:#x}", area.base),
                e,
            ));
        }
        let mapped = MappedArea {
            base: area.base,
            len,
        };
        // SAFETY: `p` is a fresh writable mapping of `len` bytes, and `area.bytes` has exactly `len` bytes.
        unsafe { std::ptr::copy_nonoverlapping(area.bytes.as_ptr(), p.cast::<u8>(), len) };
        Ok(mapped)
    }
}

impl Drop for MappedArea {
    fn drop(&mut self) {
        // SAFETY: the range is the area mapped in `map`; nothing of ours refers into it.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// Blocks every signal but SIGTRAP for the lifetime of the guard (the child inherits that mask).
struct MaskGuard(libc::sigset_t);

impl MaskGuard {
    fn block() -> Result<MaskGuard, RestoreError> {
        // SAFETY: sigset_t is plain data; the libc calls only write the sets we pass.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::sigdelset(&mut all, libc::SIGTRAP);
            if libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old) != 0 {
                return Err(RestoreError::sys("blocking signals", Errno::last()));
            }
            Ok(MaskGuard(old))
        }
    }
}

impl Drop for MaskGuard {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `block`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

/// Starts the task described by `launch`, returns once it runs its own code again.
pub fn start(launch: Launch) -> Result<Started, RestoreError> {
    let threads = procself::thread_count()?;
    if threads != 1 {
        return Err(RestoreError::NotSingleThreaded { threads });
    }
    let Launch {
        pid: want_pid,
        area,
        fd_moves,
        child_actions,
        keep_fds,
        helper_fds,
        report_write,
        report_read,
        umask,
        rlimits,
        cwd,
        expected_rip,
        stopped,
        session,
        comm,
        personality,
    } = launch;
    let (sync_read, sync_write) = pipe()?;
    let mapped = MappedArea::map(&area)?;
    let plan = ChildPlan {
        sync_read: sync_read.as_raw_fd(),
        report_write: report_write.as_raw_fd(),
        moves: &fd_moves,
        actions: &child_actions,
        keep: &keep_fds,
        umask,
        rlimits: &rlimits,
        cwd: cwd.as_deref(),
        session,
        comm: comm.as_deref(),
        personality,
        entry: area.entry,
        args: area.args,
        stack_top: area.stack_top,
    };
    let set_tid = [want_pid.unwrap_or(0) as libc::pid_t];
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: if want_pid.is_some() {
            set_tid.as_ptr() as u64
        } else {
            0
        },
        set_tid_size: want_pid.is_some() as u64,
        ..Default::default()
    };
    let mask = MaskGuard::block()?;
    // SAFETY: clone3 without CLONE_VM is a fork; the child only runs `child_main`, which never returns.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            size_of::<CloneArgs>(),
        )
    };
    if ret == 0 {
        child_main(&plan);
    }
    drop(mask);
    // Only the child's copies of the helper fds and of the report pipe's write end matter now; with ours
    // closed the report pipe reads EOF if the child dies.
    drop(helper_fds);
    drop(report_write);
    drop(sync_read);
    if ret < 0 {
        let e = Errno::last();
        let pid = want_pid.unwrap_or(0);
        return Err(match e {
            Errno::EEXIST => RestoreError::PidTaken { pid, owner: None },
            _ => RestoreError::sys(format!("clone3 with pid {pid}"), e),
        });
    }
    let pid = ret as u32;
    log::debug!(
        "pid {pid}: forked, blob area {:#x}-{:#x}",
        area.base,
        area.end()
    );
    // From here on a failure kills the child; EXITKILL covers our own death.
    let outcome = trace(
        pid,
        &area,
        expected_rip,
        stopped,
        sync_write,
        mapped,
        File::from(report_read),
    );
    if let Err(e) = &outcome {
        log::debug!("pid {pid}: restore failed ({e}); killing it");
        let _ = kill(NixPid::from_raw(pid as i32), Signal::SIGKILL);
        let _ = waitpid(NixPid::from_raw(pid as i32), None);
    }
    outcome.map(|()| Started { pid })
}

fn ptrace_err(pid: u32, op: &'static str) -> impl Fn(Errno) -> RestoreError {
    move |source| RestoreError::Ptrace { pid, op, source }
}

fn trace(
    pid: u32,
    area: &Area,
    expected_rip: u64,
    stopped: bool,
    sync_write: OwnedFd,
    mapped: MappedArea,
    mut report_file: File,
) -> Result<(), RestoreError> {
    let npid = NixPid::from_raw(pid as i32);
    let opts = ptrace::Options::PTRACE_O_EXITKILL | ptrace::Options::PTRACE_O_TRACESYSGOOD;
    ptrace::seize(npid, opts).map_err(ptrace_err(pid, "SEIZE"))?;
    nix::unistd::write(&sync_write, &[1])
        .map_err(|e| RestoreError::sys("releasing the child", e))?;
    drop(sync_write);
    drop(mapped);

    // 1. The int3 right before the final rt_sigreturn (or a failure exit).
    loop {
        match waitpid(npid, Some(WaitPidFlag::__WALL))
            .map_err(|e| RestoreError::sys("waitpid", e))?
        {
            WaitStatus::Stopped(_, Signal::SIGTRAP) => break,
            WaitStatus::Exited(_, code) => {
                return Err(failure(
                    pid,
                    &mut report_file,
                    format!("exited with {code}"),
                ))
            }
            WaitStatus::Signaled(_, sig, _) => {
                return Err(failure(pid, &mut report_file, format!("killed by {sig}")));
            }
            WaitStatus::Stopped(_, sig) => {
                let rip = ptrace::getregs(npid).map(|r| r.rip).unwrap_or(0);
                return Err(RestoreError::ChildLost {
                    pid,
                    what: format!("got {sig} at rip {rip:#x} in the restorer"),
                });
            }
            WaitStatus::PtraceEvent(..) => {
                ptrace::cont(npid, None).map_err(ptrace_err(pid, "CONT"))?;
            }
            other => {
                return Err(RestoreError::ChildLost {
                    pid,
                    what: format!("unexpected wait status {other:?}"),
                })
            }
        }
    }
    let report = read_report(&mut report_file).ok_or_else(|| RestoreError::ChildLost {
        pid,
        what: "trapped without reporting success".into(),
    })?;
    if report.step != Step::Done as u32 {
        return Err(step_error(pid, &report));
    }

    // 2. rt_sigreturn entry, then exit: the task is in its restored state.
    for (stage, op) in [
        ("entry", "SYSCALL to rt_sigreturn entry"),
        ("exit", "SYSCALL to rt_sigreturn exit"),
    ] {
        ptrace::syscall(npid, None).map_err(ptrace_err(pid, op))?;
        match waitpid(npid, Some(WaitPidFlag::__WALL))
            .map_err(|e| RestoreError::sys("waitpid", e))?
        {
            WaitStatus::PtraceSyscall(_) => {}
            other => {
                return Err(RestoreError::ChildLost {
                    pid,
                    what: format!("at rt_sigreturn {stage}: {other:?}"),
                });
            }
        }
    }
    let regs = ptrace::getregs(npid).map_err(ptrace_err(pid, "GETREGS"))?;
    if regs.rip != expected_rip {
        return Err(RestoreError::ChildLost {
            pid,
            what: format!(
                "after rt_sigreturn rip is {:#x}, expected {:#x}",
                regs.rip, expected_rip
            ),
        });
    }

    // 3. Remove the blob area with one injected munmap, from a syscall site outside it.
    let (base, end) = (area.base, area.end());
    let tid = Tid(pid as i32);
    let site = choose_site(pid, base, end)?;
    let mut remote =
        RemoteTask::with_site(tid, site).map_err(|source| RestoreError::Cleanup { pid, source })?;
    remote
        .munmap(base, end - base)
        .map_err(|source| RestoreError::Cleanup { pid, source })?;
    ptrace::detach(npid, None).map_err(ptrace_err(pid, "DETACH"))?;
    if stopped {
        kill(npid, Signal::SIGSTOP)
            .map_err(|e| RestoreError::sys(format!("stopping pid {pid}"), e))?;
    }
    log::info!("pid {pid}: restored");
    Ok(())
}

fn choose_site(pid: u32, base: u64, end: u64) -> Result<u64, RestoreError> {
    let tid = Tid(pid as i32);
    let site = find_syscall_site(tid).map_err(|source| RestoreError::Cleanup { pid, source })?;
    if site < base || site >= end {
        return Ok(site);
    }
    let path = format!("/proc/{pid}/maps");
    let text = std::fs::read_to_string(&path).map_err(|source| RestoreError::Proc {
        path: path.into(),
        source,
    })?;
    text.lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|p| p.starts_with("r-x") || p.starts_with("r-xp"))
        })
        .filter_map(|l| {
            let (s, e) = l.split_whitespace().next()?.split_once('-')?;
            Some((
                u64::from_str_radix(s, 16).ok()?,
                u64::from_str_radix(e, 16).ok()?,
            ))
        })
        .find(|&(s, e)| (e <= base || s >= end) && s < 0x7fff_ffff_f000 && e - s >= 8)
        .map(|(s, _)| s)
        .ok_or_else(|| RestoreError::ChildLost {
            pid,
            what: "no executable mapping outside the blob area".into(),
        })
}

fn read_report(file: &mut File) -> Option<Report> {
    let mut buf = [0u8; REPORT_SIZE];
    file.read_exact(&mut buf).ok()?;
    Some(Report {
        step: u32::from_ne_bytes(buf[0..4].try_into().ok()?),
        errno: i32::from_ne_bytes(buf[4..8].try_into().ok()?),
        detail: u64::from_ne_bytes(buf[8..16].try_into().ok()?),
    })
}

fn step_error(pid: u32, r: &Report) -> RestoreError {
    let what = Step::from_u32(r.step).map_or("unknown step", Step::describe);
    RestoreError::StepFailed {
        pid,
        step: r.step,
        what,
        errno: Errno::from_raw(r.errno),
        detail: r.detail,
    }
}

fn failure(pid: u32, report: &mut File, how: String) -> RestoreError {
    match read_report(report) {
        Some(r) if r.step != Step::Done as u32 => step_error(pid, &r),
        _ => RestoreError::ChildLost {
            pid,
            what: format!("{how} before finishing the restore"),
        },
    }
}

// ---------------------------------------------------------------------------------------------------------
// The child
// ---------------------------------------------------------------------------------------------------------

fn child_fail(report_fd: RawFd, step: Step, errno: i32, detail: u64) -> ! {
    let r = Report {
        step: step as u32,
        errno,
        detail,
    };
    // SAFETY: writes the plain-data report from our stack; then ends the process without running any
    // destructor or atexit handler of the parent's copy.
    unsafe {
        libc::write(report_fd, (&r as *const Report).cast(), REPORT_SIZE);
        libc::syscall(
            libc::SYS_exit_group,
            dormant_restorer_proto::EXIT_BASE + step as i32,
        );
    }
    // exit_group does not return.
    loop {
        std::hint::spin_loop();
    }
}

fn errno() -> i32 {
    Errno::last_raw()
}

fn child_main(plan: &ChildPlan<'_>) -> ! {
    let rep = plan.report_write;
    let mut byte = [0u8; 1];
    // SAFETY: reads one byte into our stack buffer.
    if unsafe { libc::read(plan.sync_read, byte.as_mut_ptr().cast(), 1) } != 1 {
        child_fail(rep, Step::ChildSync, errno(), 0);
    }
    for m in plan.moves {
        // SAFETY: `from` is a helper fd inherited from the parent, `to` a target fd number below every
        // helper fd, so no helper is overwritten.
        if unsafe { libc::dup2(m.from, m.to) } != m.to {
            child_fail(rep, Step::ChildDupFd, errno(), m.to as u64);
        }
        let flags = if m.cloexec { libc::FD_CLOEXEC } else { 0 };
        // SAFETY: sets the fd flags of the fd just installed.
        if unsafe { libc::fcntl(m.to, libc::F_SETFD, flags) } != 0 {
            child_fail(rep, Step::ChildDupFd, errno(), m.to as u64);
        }
    }
    // Close every fd outside `keep` (sorted ascending), gap by gap.
    let mut next: u32 = 0;
    for &k in plan.keep.iter().chain(std::iter::once(&-1)) {
        let hi = if k < 0 { u32::MAX } else { k as u32 };
        if hi > next {
            // SAFETY: close_range only closes fds of this (child) process.
            if unsafe { libc::syscall(libc::SYS_close_range, next, hi - 1, 0) } != 0 {
                child_fail(rep, Step::ChildCloseFds, errno(), next as u64);
            }
        }
        if k < 0 {
            break;
        }
        next = k as u32 + 1;
    }
    // After the close: closing any fd of a file drops the process's POSIX locks on it, so they are taken
    // only once the helper copies are gone.
    for a in plan.actions {
        if let Err(e) = crate::files::run_child_action(a) {
            child_fail(rep, Step::ChildDupFd, e, 0);
        }
    }
    if let Some(dir) = plan.cwd {
        // SAFETY: `dir` is a NUL-terminated path prepared before the fork.
        if unsafe { libc::chdir(dir.as_ptr()) } != 0 {
            child_fail(rep, Step::ChildChdir, errno(), 0);
        }
    }
    match plan.session {
        // SAFETY: setsid/setpgid change only this (child) process's ids.
        SessionPlan::NewSession => unsafe {
            if libc::setsid() < 0 {
                child_fail(rep, Step::ChildSession, errno(), 0);
            }
        },
        // SAFETY: as above.
        SessionPlan::NewGroup => unsafe {
            if libc::setpgid(0, 0) != 0 {
                child_fail(rep, Step::ChildSession, errno(), 1);
            }
        },
        SessionPlan::Inherit => {}
    }
    if let Some(name) = plan.comm {
        // SAFETY: PR_SET_NAME reads at most 16 bytes of the NUL-terminated string prepared before the fork.
        if unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) } != 0 {
            child_fail(rep, Step::ChildComm, errno(), 0);
        }
    }
    if let Some(p) = plan.personality {
        // SAFETY: personality only changes this (child) task's execution domain flags.
        if unsafe { libc::personality(p as libc::c_ulong) } < 0 {
            child_fail(rep, Step::ChildPersonality, errno(), p as u64);
        }
    }
    if let Some(mask) = plan.umask {
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(mask as libc::mode_t) };
    }
    for r in plan.rlimits {
        let lim = libc::rlimit {
            rlim_cur: r.soft,
            rlim_max: r.hard,
        };
        // SAFETY: setrlimit reads the struct on our stack.
        if unsafe { libc::setrlimit(r.resource as _, &lim) } != 0 {
            child_fail(rep, Step::ChildRlimit, errno(), r.resource as u64);
        }
    }
    // SAFETY: switches to the blob's stack inside the area (mapped, inherited from the parent) and jumps
    // to its entry with the args pointer; nothing of this function runs afterwards.
    unsafe {
        std::arch::asm!(
            "mov rsp, {stack}",
            "jmp {entry}",
            stack = in(reg) plan.stack_top,
            entry = in(reg) plan.entry,
            in("rdi") plan.args,
            options(noreturn)
        )
    }
}
