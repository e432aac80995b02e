//! Per-thread state of a seized process: what ptrace tells about each thread (registers, XSAVE area,
//! signal mask, private pending signals, rseq, robust list), what `/proc/<pid>/task/<tid>` tells (name,
//! credentials), and the few values only the thread itself can tell (alternate signal stack,
//! clear_child_tid), asked with syscalls injected into that very thread.
//!
//! It does NOT seize threads (see [`crate::seize`]) nor write records (see [`super`]).

use std::fs::File;

use dormant_image::records::{Creds, GpRegs, RobustList, Rseq, SigInfo, ThreadCore, Tid};

use crate::error::{DumpError, Result};
use crate::proc;
use crate::proc::status::ProcStatus;
use crate::task::regs;
use crate::task::remote::ThreadRemote;
use crate::task::signals;

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
    let sigmask = signals::get_sigmask(tid)?;
    let xstate = regs::get_xstate(tid)?;
    let pending = signals::peek_pending(tid, false)?;
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

/// [`read_regs`] for every thread of `pid`, in the order of `tids` (the leader first).
pub fn read_all_regs(pid: u32, tids: &[u32], mem: &File) -> Result<Vec<ThreadRegs>> {
    tids.iter().map(|&tid| read_regs(pid, tid, mem)).collect()
}

/// The `/proc/<pid>/task/<tid>/status` of one thread (its own credentials and `NSpid` levels).
pub fn status(pid: u32, tid: u32) -> Result<ProcStatus> {
    let text = proc::read_string(pid, &format!("task/{tid}/status"))?;
    proc::status::parse(&text).map_err(|reason| DumpError::ProcParse {
        pid,
        file: "task status",
        reason,
    })
}

/// Assembles the record of one thread.
pub fn core(
    regs: ThreadRegs,
    remote: ThreadRemote,
    comm: String,
    ns_tids: Vec<u32>,
    status_creds: &Creds,
) -> ThreadCore {
    ThreadCore {
        tid: Tid(regs.tid),
        regs: regs.regs,
        xstate: regs.xstate,
        sigmask: regs.sigmask,
        pending: regs.pending,
        rseq: regs.rseq,
        sigaltstack: Some(signals::altstack(&remote.sigaltstack)),
        clear_child_tid: remote.clear_child_tid,
        comm,
        robust_list: regs.robust_list,
        ns_tids: ns_tids.into_iter().map(Tid).collect(),
        creds: Some(super::creds::of_thread(status_creds, remote.securebits)),
    }
}
