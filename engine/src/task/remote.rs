//! State only the task itself can tell, asked with syscalls injected through `dormant-parasite` (one
//! injection session per query round, its outputs in dead stack below the thread's red zone, so nothing
//! is mapped and a dumper killed meanwhile leaves the task as it was): the process's signal
//! actions, interval timers, program break, prctl flags and securebits, where its POSIX timers stand,
//! and each further thread's alternate signal stack, clear_child_tid, securebits and parent-death signal.
//!
//! This module only runs the queries; each kind's module turns the answers into its records.

use dormant_image::records::{MmAttrs, PosixTimer};
use dormant_parasite::{query, ParasiteError, RemoteTask, Tid as RTid};

use crate::error::{DumpError, Result};
use crate::task::{mm, timers};

/// What the whole process told.
#[derive(Debug, Clone)]
pub struct ProcessRemote {
    pub snap: query::TaskSnapshot,
    pub posix_timers: Vec<PosixTimer>,
    pub mm_attrs: MmAttrs,
}

/// What one thread told.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadRemote {
    pub sigaltstack: query::AltStack,
    pub clear_child_tid: Option<u64>,
    /// `PR_GET_SECUREBITS` (per thread: part of its credentials).
    pub securebits: u32,
    /// `PR_GET_PDEATHSIG` (the kernel keeps one per thread).
    pub pdeathsig: u32,
}

fn parasite_err(pid: u32, what: &'static str) -> impl Fn(ParasiteError) -> DumpError {
    move |e| DumpError::Parasite {
        pid,
        what,
        reason: e.to_string(),
    }
}

/// Asks the (seized, stopped) leader of `pid` for the process-wide state.
pub fn query_process(pid: u32) -> Result<ProcessRemote> {
    let perr = |what| parasite_err(pid, what);
    let mut task = RemoteTask::new(RTid(pid as i32)).map_err(perr("prepare injection"))?;
    let snap = query::snapshot(&mut task).map_err(perr("task snapshot"))?;
    let asked = mm::query_attrs(pid, &mut task);
    let ended = task.finish();
    let mm_attrs = asked?;
    ended.map_err(perr("end of injection"))?;
    let entries = timers::read_entries(pid)?;
    let states = if entries.is_empty() {
        Vec::new()
    } else {
        let ids: Vec<i32> = entries.iter().map(|e| e.id).collect();
        let asked = task
            .scratch(query::SCRATCH_NEEDED)
            .and_then(|mut scratch| query::posix_timers(&mut scratch, &ids));
        let ended = task.finish();
        let states = asked.map_err(perr("posix timers"))?;
        ended.map_err(perr("end of injection"))?;
        states
    };
    Ok(ProcessRemote {
        snap,
        posix_timers: timers::posix_timers(&entries, &states),
        mm_attrs,
    })
}

/// Asks thread `tid` of `pid` (seized and stopped) for its own values.
pub fn query_thread(pid: u32, tid: u32) -> Result<ThreadRemote> {
    let perr = |what: &'static str| {
        move |e: ParasiteError| DumpError::Parasite {
            pid,
            what,
            reason: format!("thread {tid}: {e}"),
        }
    };
    let mut task = RemoteTask::new(RTid(tid as i32)).map_err(perr("prepare injection"))?;
    let asked = task.scratch(query::SCRATCH_NEEDED).and_then(|mut scratch| {
        Ok((
            query::sigaltstack(&mut scratch)?,
            query::tid_address(&mut scratch)?,
            query::securebits(scratch.task())?,
            query::pdeathsig(&mut scratch)?,
        ))
    });
    let ended = task.finish();
    let (sigaltstack, clear_child_tid, securebits, pdeathsig) =
        asked.map_err(perr("sigaltstack, tid address, securebits and pdeathsig"))?;
    ended.map_err(perr("end of injection"))?;
    Ok(ThreadRemote {
        sigaltstack,
        clear_child_tid,
        securebits,
        pdeathsig: pdeathsig as u32,
    })
}

/// The leader's part of [`ProcessRemote`] as a [`ThreadRemote`].
pub fn leader_thread(p: &ProcessRemote) -> ThreadRemote {
    ThreadRemote {
        sigaltstack: p.snap.altstack,
        clear_child_tid: p.snap.tid_address,
        securebits: p.snap.securebits,
        pdeathsig: p.snap.pdeathsig as u32,
    }
}

/// For each stopped child of `pid` (`(child, its pid as pid sees it)`), whether `pid` has already
/// collected the child's stop with `waitpid(WUNTRACED)`: asked in the parent with a `waitid(WNOWAIT)`
/// that leaves any report in place.
pub fn stop_reports(pid: u32, children: &[(u32, u32)]) -> Result<Vec<(u32, bool)>> {
    if children.is_empty() {
        return Ok(Vec::new());
    }
    let perr = parasite_err(pid, "stopped children's wait status");
    let mut task = RemoteTask::new(RTid(pid as i32)).map_err(&perr)?;
    let asked = task.scratch(SCRATCH_SIGINFO).and_then(|mut scratch| {
        children
            .iter()
            .map(|&(child, inner)| {
                query::stop_report_pending(&mut scratch, inner as i32)
                    .map(|pending| (child, !pending))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
    });
    let ended = task.finish();
    let waited = asked.map_err(&perr)?;
    ended.map_err(perr)?;
    Ok(waited)
}

/// Scratch bytes a `siginfo_t` needs.
const SCRATCH_SIGINFO: usize = 128;
