//! Per-thread state of a seized process: what ptrace tells about each thread (registers, XSAVE area,
//! signal mask, private pending signals, rseq, robust list), what `/proc/<pid>/task/<tid>` tells (name,
//! credentials), and the few values only the thread itself can tell (alternate signal stack,
//! clear_child_tid), asked with syscalls injected into that very thread.
//!
//! It does NOT seize threads (see [`crate::seize`]) nor write records (see [`crate::dump`]).

use std::fs::File;

use dormant_image::records::{
    Creds, GpRegs, RobustList, Rseq, SigAltStack, SigInfo, ThreadCore, Tid,
};

use crate::error::{DumpError, Result};
use crate::proc;
use crate::regs;

/// A thread's CPU and signal state read with ptrace, before anything is injected into it.
#[derive(Debug, Clone)]
pub struct ThreadRegs {
    pub tid: u32,
    /// After the syscall-restart rule and the rseq abort rule were applied.
    pub regs: GpRegs,
    pub xstate: Vec<u8>,
    pub sigmask: u64,
    pub pending: Vec<SigInfo>,
    pub rseq: Option<Rseq>,
    pub robust_list: Option<RobustList>,
}

/// Reads the ptrace-visible state of the stopped thread `tid` of process `pid`; `mem` is the process's
/// `/proc/<pid>/mem` (for the rseq critical-section descriptor).
pub fn read_regs(pid: u32, tid: u32, mem: &File) -> Result<ThreadRegs> {
    let mut gpregs = regs::get_gpregs(tid)?;
    let rseq = regs::get_rseq(tid)?;
    let sigmask = regs::get_sigmask(tid)?;
    let xstate = regs::get_xstate(tid)?;
    let pending = regs::peek_pending(tid, false)?;
    let robust_list = regs::get_robust_list(tid)?;
    let fixup = regs::apply_restart_rule(&mut gpregs);
    log::debug!("pid {pid} tid {tid}: restart fixup {fixup:?}");
    if let Some(r) = &rseq {
        regs::apply_rseq_abort(&mut gpregs, r, |a, b| regs::read_mem_exact(mem, a, b)).map_err(
            |source| DumpError::MemRead {
                pid,
                addr: r.addr,
                len: u64::from(r.len),
                source,
            },
        )?;
    }
    Ok(ThreadRegs {
        tid,
        regs: gpregs,
        xstate,
        sigmask,
        pending,
        rseq,
        robust_list,
    })
}

/// Values only the thread can tell: its alternate signal stack and its clear_child_tid.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadRemote {
    pub sigaltstack: Option<SigAltStack>,
    pub clear_child_tid: Option<u64>,
}

/// Asks thread `tid` (seized and stopped) for [`ThreadRemote`] with injected syscalls.
pub fn remote(pid: u32, tid: u32) -> Result<ThreadRemote> {
    use dormant_parasite::{query, RemoteTask, Tid as RTid};
    let perr = |what: &'static str| {
        move |e: dormant_parasite::ParasiteError| DumpError::Parasite {
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
        ))
    });
    let ended = task.finish();
    let (alt, clear_child_tid) = asked.map_err(perr("sigaltstack and tid address"))?;
    ended.map_err(perr("end of injection"))?;
    Ok(ThreadRemote {
        sigaltstack: Some(SigAltStack {
            sp: alt.sp,
            flags: alt.flags as u32,
            size: alt.size,
        }),
        clear_child_tid,
    })
}

/// The thread's name (`/proc/<pid>/task/<tid>/comm`).
pub fn comm(pid: u32, tid: u32) -> Result<String> {
    Ok(proc::read_string(pid, &format!("task/{tid}/comm"))?
        .trim_end_matches('\n')
        .to_string())
}

/// Refuses a thread whose credentials differ from the leader's: the restorer creates every thread with
/// the process's credentials and has no way to give one thread others. Returns the thread's `NSpid`
/// levels (its tid in each pid namespace, the dumper's first).
pub fn check_creds(pid: u32, tid: u32, leader: &Creds) -> Result<Vec<u32>> {
    let file = format!("task/{tid}/status");
    let text = proc::read_string(pid, &file)?;
    let status = proc::status::parse(&text).map_err(|reason| DumpError::ProcParse {
        pid,
        file: "task status",
        reason,
    })?;
    let c = &status.creds;
    let what = if c.uids != leader.uids {
        "uids"
    } else if c.gids != leader.gids {
        "gids"
    } else if c.groups != leader.groups {
        "supplementary groups"
    } else if (c.cap_inh, c.cap_prm, c.cap_eff, c.cap_bnd, c.cap_amb)
        != (
            leader.cap_inh,
            leader.cap_prm,
            leader.cap_eff,
            leader.cap_bnd,
            leader.cap_amb,
        )
    {
        "capabilities"
    } else if c.no_new_privs != leader.no_new_privs {
        "no_new_privs"
    } else {
        return Ok(status.ns_pids);
    };
    Err(DumpError::ThreadCredsDiffer { pid, tid, what })
}

/// Assembles the record of one thread.
pub fn core(regs: ThreadRegs, remote: ThreadRemote, comm: String, ns_tids: Vec<u32>) -> ThreadCore {
    ThreadCore {
        tid: Tid(regs.tid),
        regs: regs.regs,
        xstate: regs.xstate,
        sigmask: regs.sigmask,
        pending: regs.pending,
        rseq: regs.rseq,
        sigaltstack: remote.sigaltstack,
        clear_child_tid: remote.clear_child_tid,
        comm,
        robust_list: regs.robust_list,
        ns_tids: ns_tids.into_iter().map(Tid).collect(),
    }
}
