//! The task's threads as the blob recreates them: each with its tid (and its tid inside a nested pid
//! namespace), registers ([`super::regs`]), signal mask and alternate stack, rseq area, robust list,
//! `clear_child_tid`, name and credentials ([`super::creds`]); and the restorer's own rseq registration the blob drops first.

use std::path::Path;

use dormant_restorer_proto::RseqArg;

use crate::area::ThreadInput;
use crate::error::RestoreError;
use crate::image::TaskImage;
use crate::ns::pid::InnerIds;

/// rseq signature glibc registers with on x86-64.
const GLIBC_RSEQ_SIG: u32 = 0x5305_3053;

/// Every thread, the leader first. With `fresh_host_pids` a thread in a nested pid namespace gets tid 0:
/// the blob creates it with only its tid inside, and the kernel chooses the outer one.
pub fn prepare(
    task: &TaskImage,
    fresh_host_pids: bool,
    creds: Vec<Option<super::ThreadCreds>>,
    sched: Vec<dormant_restorer_proto::SchedArg>,
    seccomp: Vec<super::ThreadSeccompInput>,
) -> Vec<ThreadInput> {
    task.threads()
        .zip(creds)
        .zip(
            sched
                .into_iter()
                .chain(std::iter::repeat(Default::default())),
        )
        .zip(
            seccomp
                .into_iter()
                .chain(std::iter::repeat(Default::default())),
        )
        .map(|(((t, creds), sched), seccomp)| {
            let (regs, xstate) = super::regs::of(t);
            let ns_tid = match t.ns_tids.as_slice() {
                [outer, inner] if *outer == t.tid => inner.0,
                _ => 0,
            };
            ThreadInput {
                tid: if fresh_host_pids && ns_tid != 0 {
                    0
                } else {
                    t.tid.0
                },
                regs,
                xstate,
                sigmask: t.sigmask,
                altstack: t.sigaltstack,
                clear_child_tid: t.clear_child_tid,
                rseq: t.rseq.map(|r| RseqArg {
                    addr: r.addr,
                    len: r.len,
                    sig: r.signature,
                }),
                robust_list: t.robust_list,
                comm: t.comm.clone(),
                // Two levels only in a nested pid namespace (container or namespace init); whether that
                // restore is possible is decided for the whole tree.
                ns_tid,
                creds,
                sched,
                seccomp,
            }
        })
        .collect()
}

/// Thread `tid` of task `pid` as seen inside the tree's pid namespace, where the blob hands ids to the
/// kernel (re-queued signals, timer targets).
pub fn inner_tid(dir: &Path, pid: u32, ids: &InnerIds, tid: u32) -> Result<u32, RestoreError> {
    ids.inner(tid).ok_or_else(|| RestoreError::BadImage {
        dir: dir.to_owned(),
        reason: format!("pid {pid}: thread {tid} has no tid recorded inside its pid namespace"),
    })
}

/// The restorer's own rseq registration (inherited by the child through fork), from glibc's exports.
pub fn inherited_rseq() -> RseqArg {
    unsafe extern "C" {
        static __rseq_offset: isize;
        static __rseq_size: u32;
    }
    // SAFETY: glibc (>= 2.35) defines both as constants after startup; reading them has no side effects.
    let (offset, size) = unsafe { (__rseq_offset, __rseq_size) };
    if size == 0 {
        return RseqArg::default();
    }
    let tp: u64;
    // SAFETY: on x86-64 glibc, fs:0 holds the thread pointer (the TCB's self pointer).
    unsafe {
        std::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly, preserves_flags))
    };
    RseqArg {
        addr: tp.wrapping_add_signed(offset as i64),
        len: size,
        sig: GLIBC_RSEQ_SIG,
    }
}
