//! Threads: the per-thread record (`thread-<tid>`) with what belongs to a thread itself (tid, rseq, robust
//! list, clear_child_tid, comm) and the parts of other kinds a thread carries (its registers, see
//! [`super::regs`]; its signal mask, pending signals and alternate stack, see [`super::signals`]; its
//! credentials, see [`super::creds`]).

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use super::creds::Creds;
use super::ids::Tid;
use super::regs::GpRegs;
use super::signals::{SigAltStack, SigInfo};
use crate::error::Problems;

/// One thread's CPU and signal state (`thread-<tid>`, one entry).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadCore {
    pub tid: Tid,
    /// General registers after the syscall-restart rule was applied (see the engine's `regs` module).
    pub regs: GpRegs,
    /// The `NT_X86_XSTATE` regset exactly as the kernel returned it (standard, uncompacted XSAVE layout).
    pub xstate: Vec<u8>,
    /// Blocked signals (`PTRACE_GETSIGMASK`).
    pub sigmask: u64,
    /// Thread-private pending signals, raw `siginfo_t`s, in queue order.
    pub pending: Vec<SigInfo>,
    pub rseq: Option<Rseq>,
    pub sigaltstack: Option<SigAltStack>,
    /// `set_tid_address` value (`PR_GET_TID_ADDRESS`), when known.
    pub clear_child_tid: Option<u64>,
    pub comm: String,
    /// The robust futex list registration, when the thread had one.
    pub robust_list: Option<RobustList>,
    /// `NSpid` of the thread: its tid in each pid namespace from the dumper's down to its own (one entry
    /// outside nested pid namespaces). A thread of a task restored in a nested pid namespace is created
    /// with both levels.
    pub ns_tids: Vec<Tid>,
    /// The thread's own credentials (threads of one process can differ: credentials belong to a thread in
    /// the kernel). `None`: not recorded, in images of schema version 1, whose dump refused any thread
    /// whose credentials differed from its process's; the thread then has [`super::TaskCore::creds`].
    pub creds: Option<Creds>,
}

/// Schema version 1 of [`ThreadCore`] (before threads carried their credentials), kept to read older
/// images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadCoreV1 {
    pub tid: Tid,
    pub regs: GpRegs,
    pub xstate: Vec<u8>,
    pub sigmask: u64,
    pub pending: Vec<SigInfo>,
    pub rseq: Option<Rseq>,
    pub sigaltstack: Option<SigAltStack>,
    pub clear_child_tid: Option<u64>,
    pub comm: String,
    pub robust_list: Option<RobustList>,
    pub ns_tids: Vec<Tid>,
}

impl super::upgrade::Upgrade<ThreadCore> for ThreadCoreV1 {
    /// The credentials were not recorded per thread: `None`, the process's (see [`ThreadCore::creds`]).
    fn upgrade(self) -> Result<ThreadCore, String> {
        Ok(ThreadCore {
            tid: self.tid,
            regs: self.regs,
            xstate: self.xstate,
            sigmask: self.sigmask,
            pending: self.pending,
            rseq: self.rseq,
            sigaltstack: self.sigaltstack,
            clear_child_tid: self.clear_child_tid,
            comm: self.comm,
            robust_list: self.robust_list,
            ns_tids: self.ns_tids,
            creds: None,
        })
    }
}

/// An rseq registration (`PTRACE_GET_RSEQ_CONFIGURATION`).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rseq {
    pub addr: u64,
    pub len: u32,
    pub signature: u32,
}

/// A thread's robust futex list registration (`set_robust_list(head, len)`), read with `get_robust_list`
/// on its tid. glibc registers one per thread; the kernel walks it when the thread dies, so a restored
/// thread without it would leave robust mutexes it holds locked forever.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RobustList {
    pub head: u64,
    pub len: u64,
}

/// Checks one thread record against the tid the process tree names it by.
pub(crate) fn check_thread(file: &str, tid: Tid, thread: &ThreadCore, p: &mut Problems) {
    if thread.tid != tid {
        p.add(
            file,
            format!("holds thread {}, not {}", thread.tid.0, tid.0),
        );
    }
    super::signals::check_siginfos(file, "pending signal", &thread.pending, p);
    if thread.ns_tids.first().is_some_and(|first| *first != tid) {
        p.add(
            file,
            format!(
                "pid-namespace levels {:?} do not start with tid {}",
                thread.ns_tids.iter().map(|t| t.0).collect::<Vec<_>>(),
                tid.0
            ),
        );
    }
}
