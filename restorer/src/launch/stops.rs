//! The tracer side of job-control stops (the attrs kind): a task that was stopped by SIGSTOP, SIGTSTP,
//! SIGTTIN or SIGTTOU when dumped is stopped again by the same signal, and its parent's view of the stop
//! is made what it was.
//!
//! The signal is sent while every thread of the task is still held by the tracer (its children are let go
//! first, its parent after it), so on release the task enters its stop before running one instruction of
//! its own. Its group stop then tells the parent, as
//! the kernel always does: `signal->group_exit_code` holds the report `waitpid(WUNTRACED)` collects, and
//! a SIGCHLD is queued. When the dumped parent had already collected the report, the report is collected
//! again here, from inside the parent (an injected `wait4`), before the parent is let go; when it had no
//! SIGCHLD pending, the new one is taken off its queue (`rt_sigtimedwait`). So a parent that was owed the
//! report still gets it, and one that was not sees nothing new.
//!
//! The restore returns only once every stopped task is in its stop (`T` for each thread), so a caller
//! that looks right after the restore sees the task stopped.

use std::time::{Duration, Instant};

use dormant_image::records::JobStop;
use dormant_parasite::{query, ParasiteError, RemoteTask, Tid};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid as NixPid;

use super::tracer::Traced;
use crate::error::RestoreError;

/// How long a released task may take to enter its stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a SIGTSTP, SIGTTIN or SIGTTOU may go without stopping the task before it is taken for
/// discarded (the kernel drops them in an orphaned process group) and SIGSTOP is sent instead.
const DISCARD_TIMEOUT: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(1);
/// Scratch bytes the injected calls need (a siginfo).
const SCRATCH: usize = 128;

fn err(pid: u32, what: impl Into<String>) -> RestoreError {
    RestoreError::JobStop {
        pid,
        what: what.into(),
    }
}

fn remote_err(pid: u32, what: &'static str) -> impl Fn(ParasiteError) -> RestoreError {
    move |e| err(pid, format!("{what} in its parent: {e}"))
}

/// Sends `t` its stop signal while it is still held, right before it is let go (after any injection
/// into it: a pending SIGSTOP cannot be blocked while injected code runs).
pub(super) fn send(t: &Traced) -> Result<(), RestoreError> {
    match t.job_stop {
        Some(stop) if !t.helper && t.zombie.is_none() => send_one(t.pid, stop.signal as i32),
        _ => Ok(()),
    }
}

fn send_one(pid: u32, sig: i32) -> Result<(), RestoreError> {
    let sig = Signal::try_from(sig).map_err(|e| err(pid, format!("signal {sig}: {e}")))?;
    kill(NixPid::from_raw(pid as i32), sig).map_err(|e| err(pid, format!("kill({sig}): {e}")))
}

/// Before `parent` (still held) is let go: waits until each of its stopped children (released before it)
/// has told it of its stop, then collects the report if the dumped parent had, and takes the SIGCHLD
/// away again if the dumped parent had none pending.
pub(super) fn settle_parent(parent: &Traced, traced: &[Traced]) -> Result<(), RestoreError> {
    if parent.zombie.is_some() {
        return Ok(());
    }
    let children: Vec<&Traced> = traced
        .iter()
        .filter(|c| c.job_stop.is_some() && c.zombie.is_none() && ppid(c.pid) == Some(parent.pid))
        .collect();
    if children.is_empty() {
        return Ok(());
    }
    let pid = parent.pid;
    let site = dormant_parasite::find_syscall_site(Tid(pid as i32))
        .map_err(remote_err(pid, "finding a syscall site"))?;
    let mut task =
        RemoteTask::with_site(Tid(pid as i32), site).map_err(remote_err(pid, "injection"))?;
    let settled = settle_children(&mut task, parent, &children);
    let ended = task
        .finish()
        .map_err(remote_err(pid, "ending the injection"));
    settled.and(ended)
}

fn settle_children(
    task: &mut RemoteTask,
    parent: &Traced,
    children: &[&Traced],
) -> Result<(), RestoreError> {
    let pid = parent.pid;
    for child in children {
        let Some(stop) = child.job_stop else { continue };
        // The child as its parent names it.
        let inner = if child.ns_pid != 0 {
            child.ns_pid
        } else {
            child.pid
        };
        await_report(task, child, stop, inner as i32)?;
        if stop.parent_waited
            && !query::collect_stop_report(task, inner as i32)
                .map_err(remote_err(child.pid, "collecting the stop report"))?
        {
            return Err(err(child.pid, "its parent had no stop report to collect"));
        }
    }
    if !parent.sigchld_pending && sigchld_pending(pid)? {
        let mut scratch = task
            .scratch(SCRATCH)
            .map_err(remote_err(pid, "scratch memory"))?;
        query::dequeue_signal(&mut scratch, libc::SIGCHLD)
            .map_err(remote_err(pid, "taking back the SIGCHLD"))?;
    }
    Ok(())
}

/// Waits until the parent (`task`) can see the group stop of `child` (`inner` in the parent's view),
/// i.e. every thread of the child is in the stop. A SIGTSTP-like signal the kernel discarded (orphaned
/// process group) is replaced by SIGSTOP, with a warning: the task is stopped, but a parent that asks
/// learns SIGSTOP.
fn await_report(
    task: &mut RemoteTask,
    child: &Traced,
    stop: JobStop,
    inner: i32,
) -> Result<(), RestoreError> {
    let start = Instant::now();
    let mut fell_back = stop.signal as i32 == libc::SIGSTOP;
    loop {
        let mut scratch = task
            .scratch(SCRATCH)
            .map_err(remote_err(child.pid, "scratch memory"))?;
        if query::stop_report_pending(&mut scratch, inner)
            .map_err(remote_err(child.pid, "asking for the stop report"))?
        {
            return Ok(());
        }
        if !fell_back && start.elapsed() > DISCARD_TIMEOUT {
            log::warn!(
                "pid {}: signal {} did not stop it (its process group is orphaned, so the kernel \
                 discards it); stopping it with SIGSTOP",
                child.pid,
                stop.signal
            );
            send_one(child.pid, libc::SIGSTOP)?;
            fell_back = true;
        }
        if start.elapsed() > STOP_TIMEOUT {
            return Err(err(
                child.pid,
                format!("not stopped after {}s", STOP_TIMEOUT.as_secs()),
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// Once everything is let go: waits until every stopped task is in its stop (each thread `T`).
pub(super) fn await_stopped(traced: &[Traced]) -> Result<(), RestoreError> {
    for t in traced
        .iter()
        .filter(|t| t.job_stop.is_some() && t.zombie.is_none())
    {
        let start = Instant::now();
        let mut fell_back = t.job_stop.is_some_and(|s| s.signal as i32 == libc::SIGSTOP);
        while !all_stopped(t) {
            if !fell_back && start.elapsed() > DISCARD_TIMEOUT {
                log::warn!(
                    "pid {}: its stop signal did not stop it (orphaned process group); stopping it \
                     with SIGSTOP",
                    t.pid
                );
                send_one(t.pid, libc::SIGSTOP)?;
                fell_back = true;
            }
            if start.elapsed() > STOP_TIMEOUT {
                return Err(err(
                    t.pid,
                    format!("not stopped after {}s", STOP_TIMEOUT.as_secs()),
                ));
            }
            std::thread::sleep(POLL);
        }
    }
    Ok(())
}

/// Every thread of `t` is in a job-control stop.
fn all_stopped(t: &Traced) -> bool {
    t.threads.iter().all(|th| {
        std::fs::read_to_string(format!("/proc/{}/task/{}/stat", t.pid, th.tid))
            .ok()
            .and_then(|s| state_of(&s))
            == Some('T')
    })
}

/// The state letter of a `stat` line (after the parenthesised name, which may hold anything).
fn state_of(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The parent of `pid` (`stat` field 4).
fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// SIGCHLD is pending for the whole process `pid` (`ShdPnd`).
fn sigchld_pending(pid: u32) -> Result<bool, RestoreError> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|source| RestoreError::Proc {
        path: path.into(),
        source,
    })?;
    let mask = text
        .lines()
        .find_map(|l| l.strip_prefix("ShdPnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or_else(|| err(pid, "no ShdPnd in /proc status"))?;
    Ok(mask & (1 << (libc::SIGCHLD - 1)) != 0)
}
