//! The tracer side of a tree restore: the restorer seizes the tree's root right after the fork
//! (TRACEFORK/TRACECLONE attach every later process and thread, EXITKILL kills them all if the restorer
//! dies), waits for every thread's trap right before its final `rt_sigreturn` and every zombie's exit,
//! steps each thread over its sigreturn and checks where it landed, removes the blob areas with an
//! injected munmap, and lets go. A failure anywhere kills the whole tree ([`kill_all`]).

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;

use dormant_parasite::{find_syscall_site, ParasiteError, RemoteTask, Tid};
use dormant_restorer_proto::{Report, Step, REPORT_SIZE};
use dormant_sys::process::TASK_SIZE;
use dormant_sys::procfs::parse_maps;
use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid as NixPid;

use super::fork::MappedArea;
use super::{BeforeRelease, HostPids, Launch, OtherThread, TreeTask};
use crate::error::RestoreError;

/// What the tracer knows about one started process.
pub(super) struct Traced {
    /// 0 until known when the kernel chooses it (fresh host pids): the tracer learns it from its parent's
    /// fork event ([`adopt`]).
    pub(super) pid: u32,
    /// Its pid inside the tree's nested pid namespace, 0 when not in one.
    pub(super) ns_pid: u32,
    /// Every thread (its `tid` 0 until known) with the rip it must have after its rt_sigreturn, leader
    /// first; empty for a zombie.
    pub(super) threads: Vec<OtherThread>,
    /// The credentials each of `threads` must have (see `Launch::thread_creds`).
    creds: Vec<Option<dormant_image::records::Creds>>,
    /// What is set and checked from outside before the release (see `Launch::finish`).
    finish: crate::task::Finish,
    area: Option<(u64, u64)>,
    /// The job-control stop it goes back to once released (see [`super::stops`]).
    pub(super) job_stop: Option<dormant_image::records::JobStop>,
    /// SIGCHLD was pending for the whole process when dumped.
    pub(super) sigchld_pending: bool,
    report: Option<File>,
    /// Files of `/proc` it opens once the whole tree exists.
    proc_files: Vec<crate::files::ProcOpen>,
    /// The wait status it must end with: a zombie's saved one, 0 for a helper; `None` for live tasks.
    pub(super) zombie: Option<u32>,
    pub(super) helper: bool,
}

impl Traced {
    /// What the tracer keeps of `task`, dropping what only the child needed (its helper fds, and the report
    /// pipe's write end: with ours closed a report pipe reads EOF if its task dies). `forked_pid` stands in
    /// for the pid of a launch that let the kernel choose (the root, in tests).
    pub(super) fn new(task: TreeTask, forked_pid: u32) -> Traced {
        match task {
            TreeTask::Live(l) => {
                let Launch {
                    pid,
                    ns_pid,
                    area,
                    helper_fds,
                    report_write,
                    report_read,
                    expected_rip,
                    other_threads,
                    thread_creds,
                    job_stop,
                    sigchld_pending,
                    finish,
                    proc_files,
                    ..
                } = *l;
                drop(helper_fds);
                drop(report_write);
                let pid = pid.unwrap_or(forked_pid);
                let ns_pid = ns_pid.unwrap_or(0);
                let mut threads = vec![OtherThread {
                    tid: pid,
                    ns_tid: ns_pid,
                    rip: expected_rip,
                }];
                threads.extend(other_threads);
                Traced {
                    pid,
                    ns_pid,
                    threads,
                    creds: thread_creds,
                    finish,
                    area: Some((area.base, area.end())),
                    job_stop,
                    sigchld_pending,
                    report: Some(File::from(report_read)),
                    proc_files,
                    zombie: None,
                    helper: false,
                }
            }
            TreeTask::Zombie {
                pid,
                status,
                ns_pid,
                ..
            } => Traced {
                pid,
                ns_pid,
                threads: Vec::new(),
                creds: Vec::new(),
                finish: Default::default(),
                area: None,
                job_stop: None,
                sigchld_pending: false,
                report: None,
                proc_files: Vec::new(),
                zombie: Some(status),
                helper: false,
            },
            TreeTask::Helper { pid, .. } => Traced {
                pid,
                ns_pid: 0,
                threads: Vec::new(),
                creds: Vec::new(),
                finish: Default::default(),
                area: None,
                job_stop: None,
                sigchld_pending: false,
                report: None,
                proc_files: Vec::new(),
                zombie: Some(0),
                helper: true,
            },
        }
    }
}

fn zombie_status_exited(code: i32) -> u32 {
    ((code as u32) & 0xff) << 8
}

fn check_zombie(t: &Traced, got: u32) -> Result<(), RestoreError> {
    let want = t.zombie.unwrap_or(0);
    // Only the exit code or signal matters; the core-dump bit depends on the core limit.
    if got & 0xff7f != want & 0xff7f {
        let what = if t.helper {
            "helper process (stand-in for a gone session or group leader)"
        } else {
            "zombie"
        };
        return Err(RestoreError::ChildLost {
            pid: t.pid,
            what: format!("{what} ended with wait status {got:#x}, expected {want:#x}"),
        });
    }
    Ok(())
}

/// Steps thread `tid` (stopped at its trap) over `rt_sigreturn` (entry, exit) and checks that it ended
/// up at `expected_rip`; it stays stopped there.
fn step_over_sigreturn(pid: u32, tid: u32, expected_rip: u64) -> Result<(), RestoreError> {
    let ntid = NixPid::from_raw(tid as i32);
    for (stage, op) in [
        ("entry", "SYSCALL to rt_sigreturn entry"),
        ("exit", "SYSCALL to rt_sigreturn exit"),
    ] {
        ptrace::syscall(ntid, None).map_err(ptrace_err(tid, op))?;
        match waitpid(ntid, Some(WaitPidFlag::__WALL))
            .map_err(|e| RestoreError::sys("waitpid", e))?
        {
            WaitStatus::PtraceSyscall(_) => {}
            other => {
                return Err(RestoreError::ChildLost {
                    pid,
                    what: format!("thread {tid} at rt_sigreturn {stage}: {other:?}"),
                });
            }
        }
    }
    let regs = ptrace::getregs(ntid).map_err(ptrace_err(tid, "GETREGS"))?;
    if regs.rip != expected_rip {
        return Err(RestoreError::ChildLost {
            pid,
            what: format!(
                "thread {tid}: after rt_sigreturn rip is {:#x}, expected {:#x}",
                regs.rip, expected_rip
            ),
        });
    }
    Ok(())
}

fn choose_site(pid: u32, base: u64, end: u64) -> Result<u64, RestoreError> {
    let tid = Tid(pid as i32);
    // ELF padding is preferred (no code of the task is touched); a task with no file-backed code (a
    // hand-built image) gets the start of any executable mapping outside the blob area.
    match find_syscall_site(tid) {
        Ok(site) if site < base || site >= end => return Ok(site),
        Ok(_) | Err(ParasiteError::NoSyscallSite { .. }) => {}
        Err(source) => return Err(RestoreError::Cleanup { pid, source }),
    }
    let path = format!("/proc/{pid}/maps");
    let text = std::fs::read_to_string(&path).map_err(|source| RestoreError::Proc {
        path: path.clone().into(),
        source,
    })?;
    let maps = parse_maps(&text).map_err(|e| RestoreError::Proc {
        path: path.into(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    maps.iter()
        .filter(|m| m.read && !m.write && m.exec)
        .find(|m| (m.end <= base || m.start >= end) && m.start < TASK_SIZE && m.len() >= 8)
        .map(|m| m.start)
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

/// The report in `file` if one can be read at once (a task that is still running has written none).
fn ready_report(file: &mut File) -> Option<Report> {
    use std::os::fd::AsFd;
    let mut fds = [nix::poll::PollFd::new(
        file.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    match nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO) {
        Ok(1)
            if fds[0]
                .revents()
                .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLIN)) =>
        {
            read_report(file)
        }
        _ => None,
    }
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

fn failure(pid: u32, report: Option<&mut File>, how: String) -> RestoreError {
    match report.and_then(read_report) {
        Some(r) if r.step != Step::Done as u32 => step_error(pid, &r),
        _ => RestoreError::ChildLost {
            pid,
            what: format!("{how} before finishing the restore"),
        },
    }
}

/// Kills every process of a failed restore and collects what the tracer must collect.
pub(super) fn kill_all(traced: &[Traced]) {
    for t in traced {
        if t.pid != 0 {
            let _ = kill(NixPid::from_raw(t.pid as i32), Signal::SIGKILL);
        }
    }
    for t in traced.iter().rev() {
        // Traced threads stay zombies until their tracer collects them; only then is a leader's end
        // reported. A tid that never existed answers ECHILD at once.
        for th in t.threads.iter().skip(1).filter(|th| th.tid != 0) {
            let _ = waitpid(NixPid::from_raw(th.tid as i32), Some(WaitPidFlag::__WALL));
        }
        if t.pid != 0 {
            let _ = waitpid(NixPid::from_raw(t.pid as i32), Some(WaitPidFlag::__WALL));
        }
    }
}

fn ptrace_err(pid: u32, op: &'static str) -> impl Fn(Errno) -> RestoreError {
    move |source| RestoreError::Ptrace { pid, op, source }
}

/// How often the tracer polls its tracees while waiting for every thread to reach its trap.
const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(1);

/// Waits for the next event of any of `tids` without blocking on one that does not exist (yet): a thread
/// is only traced once the leader has created it.
fn wait_any(pid: u32, tids: &[u32]) -> Result<WaitStatus, RestoreError> {
    loop {
        for &tid in tids {
            match waitpid(
                NixPid::from_raw(tid as i32),
                Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG),
            ) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) | Err(Errno::EINTR) => {}
                Ok(status) => return Ok(status),
                Err(e) => return Err(RestoreError::sys(format!("waitpid {tid} (of {pid})"), e)),
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Traces the restored tree from the fork until every thread has run its final `rt_sigreturn` and every
/// zombie has exited, then removes the blob areas and lets all threads go.
pub(super) fn trace(
    pid: u32,
    traced: &mut [Traced],
    sync_write: OwnedFd,
    mapped: Vec<MappedArea>,
    before_release: &mut BeforeRelease<'_>,
) -> Result<(), RestoreError> {
    let npid = NixPid::from_raw(pid as i32);
    let mut opts = ptrace::Options::PTRACE_O_EXITKILL
        | ptrace::Options::PTRACE_O_TRACESYSGOOD
        | ptrace::Options::PTRACE_O_TRACECLONE
        | ptrace::Options::PTRACE_O_TRACEFORK;
    // The blob installs seccomp filters before it is done, and the tracer injects a munmap after that:
    // with the option (inherited by every task and thread the tree creates) neither is filtered until
    // the release detaches them.
    if traced.iter().any(|t| t.finish.suspend_seccomp) {
        opts |=
            ptrace::Options::from_bits_retain(dormant_sys::ptrace::PTRACE_O_SUSPEND_SECCOMP as i32);
    }
    ptrace::seize(npid, opts).map_err(ptrace_err(pid, "SEIZE"))?;
    nix::unistd::write(&sync_write, &[1])
        .map_err(|e| RestoreError::sys("releasing the child", e))?;
    drop(sync_write);
    drop(mapped);
    wait_for_traps(pid, traced)?;
    release(pid, traced, before_release)
}

/// Waits for each thread's int3 right before its final rt_sigreturn and each zombie's exit (or a failure).
fn wait_for_traps(pid: u32, traced: &mut [Traced]) -> Result<(), RestoreError> {
    // Every thread and zombie still to finish, with the index of its process. Those whose host pid the
    // kernel chooses join once their parent's fork (or clone) event names them.
    let mut pending: Vec<(u32, usize)> = Vec::new();
    for (i, t) in traced.iter().enumerate() {
        if t.zombie.is_some() && t.pid != 0 {
            pending.push((t.pid, i));
        }
        pending.extend(
            t.threads
                .iter()
                .filter(|th| th.tid != 0)
                .map(|th| (th.tid, i)),
        );
    }
    // Every traced thread, polled until the end: one that already passed its rt_sigreturn stays stopped,
    // so an event from it means it was killed. That happens when the init of the tree's pid namespace
    // fails: its exit kills the namespace, and it waits in the kernel until we reap the traced zombies,
    // so waiting only for its own event would wait forever.
    let mut all: Vec<u32> = pending.iter().map(|&(t, _)| t).collect();
    while !pending.is_empty() || unknown(traced) > 0 {
        if pending.is_empty() {
            // Every known task is done, so every fork has happened: one was never seen.
            return Err(RestoreError::ChildLost {
                pid,
                what: format!(
                    "{} task(s) or thread(s) of the tree never appeared",
                    unknown(traced)
                ),
            });
        }
        let status = wait_any(pid, &all)?;
        let tid = status.pid().map_or(0, |p| p.as_raw() as u32);
        let Some(&(_, idx)) = pending.iter().find(|&&(t, _)| t == tid) else {
            return Err(ended_early(traced, tid, status));
        };
        if let WaitStatus::PtraceEvent(_, _, event) = status {
            let thread = event == libc::PTRACE_EVENT_CLONE;
            if thread || event == libc::PTRACE_EVENT_FORK {
                let ntid = NixPid::from_raw(tid as i32);
                let new = ptrace::getevent(ntid).map_err(ptrace_err(tid, "GETEVENTMSG"))? as u32;
                if !all.contains(&new) {
                    if let Some(at) = adopt(traced, idx, new, thread)? {
                        pending.push((new, at));
                        all.push(new);
                    }
                }
            }
        }
        if on_event(&mut traced[idx], tid, status)? {
            pending.retain(|&(t, _)| t != tid);
        }
    }
    Ok(())
}

/// How many tasks and threads of the tree the tracer has not seen yet (host pid chosen by the kernel).
fn unknown(traced: &[Traced]) -> usize {
    traced
        .iter()
        .map(|t| {
            let task = usize::from(t.pid == 0 && t.zombie.is_some());
            task + t.threads.iter().filter(|th| th.tid == 0).count()
        })
        .sum()
}

/// Takes `new`, just forked (or cloned, `thread`) by a task of process `parent` and not known yet, as the
/// task or thread of the tree whose pid inside the tree's pid namespace it has (the last `NSpid` of its
/// status). Returns the index of its process, `None` if it is nothing the tree expects.
fn adopt(
    traced: &mut [Traced],
    parent: usize,
    new: u32,
    thread: bool,
) -> Result<Option<usize>, RestoreError> {
    let path = format!("/proc/{new}/status");
    let text = std::fs::read_to_string(&path).map_err(|source| RestoreError::Proc {
        path: path.clone().into(),
        source,
    })?;
    let inner = text
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|w| w.parse::<u32>().ok())
        .unwrap_or(0);
    if inner == 0 {
        return Ok(None);
    }
    if thread {
        let Some(t) = traced.get_mut(parent) else {
            return Ok(None);
        };
        let Some(th) = t
            .threads
            .iter_mut()
            .find(|th| th.tid == 0 && th.ns_tid == inner)
        else {
            return Ok(None);
        };
        th.tid = new;
        log::debug!("pid {}: thread {inner} inside is {new}", t.pid);
        return Ok(Some(parent));
    }
    let Some((at, t)) = traced
        .iter_mut()
        .enumerate()
        .find(|(_, t)| t.pid == 0 && t.ns_pid == inner)
    else {
        return Ok(None);
    };
    t.pid = new;
    if let Some(leader) = t.threads.first_mut() {
        leader.tid = new;
    }
    log::debug!("pid {inner} inside the tree's pid namespace is {new}");
    Ok(Some(at))
}

/// A thread that had already passed its rt_sigreturn ended: the task that failed wrote why before it
/// exited, and its report says more than the kill.
fn ended_early(traced: &mut [Traced], tid: u32, status: WaitStatus) -> RestoreError {
    for t in traced.iter_mut() {
        if let Some(r) = t.report.as_mut().and_then(ready_report) {
            if r.step != Step::Done as u32 {
                return step_error(t.pid, &r);
            }
        }
    }
    let owner = traced
        .iter()
        .find(|t| t.threads.iter().any(|th| th.tid == tid))
        .map_or(tid, |t| t.pid);
    RestoreError::ChildLost {
        pid: owner,
        what: format!(
            "thread {tid}, already restored, ended while the rest of the tree was being restored \
             ({status:?}): another task failed, or the init of its pid namespace did"
        ),
    }
}

/// Handles one event of thread `tid` of `owner`; true when the thread (or zombie) is done.
fn on_event(owner: &mut Traced, tid: u32, status: WaitStatus) -> Result<bool, RestoreError> {
    let ntid = NixPid::from_raw(tid as i32);
    match status {
        WaitStatus::Stopped(_, Signal::SIGTRAP) if owner.zombie.is_none() => {
            if tid == owner.pid {
                let report = owner.report.as_mut().and_then(read_report).ok_or_else(|| {
                    RestoreError::ChildLost {
                        pid: owner.pid,
                        what: "trapped without reporting success".into(),
                    }
                })?;
                if report.step != Step::Done as u32 {
                    return Err(step_error(owner.pid, &report));
                }
            }
            let want = owner
                .threads
                .iter()
                .find(|th| th.tid == tid)
                .map_or(0, |th| th.rip);
            step_over_sigreturn(owner.pid, tid, want)?;
            Ok(true)
        }
        WaitStatus::Exited(_, code) if owner.zombie.is_some() => {
            check_zombie(owner, zombie_status_exited(code))?;
            Ok(true)
        }
        WaitStatus::Signaled(_, sig, core) if owner.zombie.is_some() => {
            check_zombie(owner, sig as u32 | if core { 0x80 } else { 0 })?;
            Ok(true)
        }
        WaitStatus::Exited(_, code) => Err(failure(
            owner.pid,
            owner.report.as_mut(),
            format!("thread {tid} exited with {code}"),
        )),
        WaitStatus::Signaled(_, sig, _) => Err(failure(
            owner.pid,
            owner.report.as_mut(),
            format!("thread {tid} killed by {sig}"),
        )),
        // A zombie-to-be killing itself: a tracee stops on delivery; hand the signal over.
        WaitStatus::Stopped(_, sig) if owner.zombie.is_some() => {
            ptrace::cont(ntid, Some(sig)).map_err(ptrace_err(tid, "CONT"))?;
            Ok(false)
        }
        WaitStatus::Stopped(_, sig) => {
            let rip = ptrace::getregs(ntid).map(|r| r.rip).unwrap_or(0);
            Err(RestoreError::ChildLost {
                pid: owner.pid,
                what: format!("thread {tid} got {sig} at rip {rip:#x} in the restorer"),
            })
        }
        // Fork and clone events, a new task's first stop (auto-attached by TRACEFORK/TRACECLONE).
        WaitStatus::PtraceEvent(..) => {
            ptrace::cont(ntid, None).map_err(ptrace_err(tid, "CONT"))?;
            Ok(false)
        }
        other => Err(RestoreError::ChildLost {
            pid: owner.pid,
            what: format!("unexpected wait status {other:?}"),
        }),
    }
}

/// Every thread stopped in its own code: removes each blob area with one injected munmap in its
/// leader, from a syscall site outside it; then lets everything go.
fn release(
    pid: u32,
    traced: &[Traced],
    before_release: &mut BeforeRelease<'_>,
) -> Result<(), RestoreError> {
    for t in traced.iter() {
        for (th, want) in t.threads.iter().zip(&t.creds) {
            if let Some(want) = want {
                crate::task::verify_creds(t.pid, th.tid, want)?;
            }
        }
        if t.zombie.is_none() {
            let tids: Vec<u32> = t.threads.iter().map(|th| th.tid).collect();
            t.finish.apply_and_verify(t.pid, &tids)?;
        }
    }
    for t in traced.iter() {
        let Some((base, end)) = t.area else { continue };
        let site = choose_site(t.pid, base, end)?;
        let mut remote = RemoteTask::with_site_unguarded(Tid(t.pid as i32), site)
            .map_err(|source| RestoreError::Cleanup { pid: t.pid, source })?;
        let unmapped = remote.munmap(base, end - base);
        let ended = remote.finish();
        unmapped
            .and(ended)
            .map_err(|source| RestoreError::Cleanup { pid: t.pid, source })?;
    }
    let mut hosts = HostPids::default();
    for t in traced.iter() {
        for th in t.threads.iter().filter(|th| th.ns_tid != 0) {
            hosts.0.insert(th.ns_tid, th.tid);
        }
        if t.ns_pid != 0 {
            hosts.0.insert(t.ns_pid, t.pid);
        }
    }
    before_release(pid, &hosts)?;
    // Every task and thread exists, and a container's proc shows the tree's pids: the proc files.
    for t in traced.iter().filter(|t| !t.proc_files.is_empty()) {
        let (base, end) = t.area.unwrap_or((0, 0));
        let site = choose_site(t.pid, base, end)?;
        super::proc_files::reopen_in(t.pid, site, &t.proc_files)?;
    }
    // Children are let go before their parents; a parent is settled with its stopped children before it
    // is, and a stopped task gets its stop signal right before it is let go (see `stops`).
    for t in traced.iter().rev() {
        if t.helper {
            continue;
        }
        super::stops::settle_parent(t, traced)?;
        super::stops::send(t)?;
        for th in t.threads.iter().rev() {
            ptrace::detach(NixPid::from_raw(th.tid as i32), None)
                .map_err(ptrace_err(th.tid, "DETACH"))?;
        }
        log::info!("pid {}: restored ({} thread(s))", t.pid, t.threads.len());
    }
    super::stops::await_stopped(traced)
}
