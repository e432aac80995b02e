//! State only the task itself can tell, asked with syscalls injected through `dormant-parasite` (one
//! scratch mapping per query round, gone again before the mappings are read): the process's signal
//! actions, interval timers, program break, prctl flags and securebits, where its POSIX timers stand,
//! and each further thread's alternate signal stack and clear_child_tid.
//!
//! This module only runs the queries; each kind's module turns the answers into its records.

use dormant_image::records::PosixTimer;
use dormant_parasite::{query, ParasiteError, RemoteTask, Tid as RTid};

use crate::error::{DumpError, Result};
use crate::task::timers;

/// What the whole process told.
#[derive(Debug, Clone)]
pub struct ProcessRemote {
    pub snap: query::TaskSnapshot,
    pub posix_timers: Vec<PosixTimer>,
}

/// What one thread told.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadRemote {
    pub sigaltstack: query::AltStack,
    pub clear_child_tid: Option<u64>,
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
    let entries = timers::read_entries(pid)?;
    let states = if entries.is_empty() {
        Vec::new()
    } else {
        let ids: Vec<i32> = entries.iter().map(|e| e.id).collect();
        let mut scratch = task.scratch(4096).map_err(perr("timer scratch"))?;
        let states = query::posix_timers(&mut scratch, &ids).map_err(perr("posix timers"))?;
        scratch.close().map_err(perr("timer scratch"))?;
        states
    };
    Ok(ProcessRemote {
        snap,
        posix_timers: timers::posix_timers(&entries, &states),
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
    let mut scratch = task.scratch(4096).map_err(perr("thread scratch"))?;
    let sigaltstack = query::sigaltstack(&mut scratch).map_err(perr("sigaltstack"))?;
    let clear_child_tid = query::tid_address(&mut scratch).map_err(perr("tid address"))?;
    scratch.close().map_err(perr("thread scratch"))?;
    Ok(ThreadRemote {
        sigaltstack,
        clear_child_tid,
    })
}

/// The leader's part of [`ProcessRemote`] as a [`ThreadRemote`].
pub fn leader_thread(p: &ProcessRemote) -> ThreadRemote {
    ThreadRemote {
        sigaltstack: p.snap.altstack,
        clear_child_tid: p.snap.tid_address,
    }
}
