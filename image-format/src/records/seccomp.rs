//! seccomp: the mode of every thread of a process and the filters it runs under (`seccomp-<pid>`, one
//! entry, written only for a process with a thread under seccomp).
//!
//! The kernel keeps a thread's filters as a chain, newest first, each pointing at the one installed before
//! it; a thread created by `clone` shares its creator's chain, and `SECCOMP_FILTER_FLAG_TSYNC` makes every
//! thread share the caller's. The record keeps that shape: the process's distinct filters, each naming the
//! one before it, and each thread naming the newest filter of its chain. Filters are told apart by content
//! (the program, its flags and the filter before it), as the kernel shows no identity: two threads whose
//! chains hold the same programs in the same order are recorded as sharing them.

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use super::ids::{Pid, Tid};
use crate::error::Problems;

/// Most instructions one filter may have (the kernel's `BPF_MAXINSNS`).
pub const MAX_FILTER_INSNS: usize = 4096;

/// One classic BPF instruction (`struct sock_filter`).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BpfInsn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// One filter as `PTRACE_SECCOMP_GET_FILTER` returned it.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompFilter {
    /// Index in [`TaskSeccomp::filters`] of the filter installed before this one (it runs after it);
    /// `None` for the first of a chain.
    pub prev: Option<u32>,
    /// `SECCOMP_FILTER_FLAG_*` the kernel reports for it (`PTRACE_SECCOMP_GET_METADATA`: only
    /// `SECCOMP_FILTER_FLAG_LOG` is kept by the kernel).
    pub flags: u64,
    pub insns: Vec<BpfInsn>,
}

/// A thread's seccomp mode.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeccompMode {
    Disabled,
    /// `SECCOMP_MODE_STRICT`: only read, write, exit and rt_sigreturn.
    Strict,
    /// `SECCOMP_MODE_FILTER`: `last` is the index of the newest filter of its chain.
    Filter {
        last: u32,
    },
}

/// One thread's mode.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadSeccomp {
    pub tid: Tid,
    pub mode: SeccompMode,
}

/// The seccomp state of one process (`seccomp-<pid>`, one entry).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSeccomp {
    pub pid: Pid,
    /// Every distinct filter, each after the one before it in its chain.
    pub filters: Vec<SeccompFilter>,
    /// Every thread, in the order of the process tree (the leader first).
    pub threads: Vec<ThreadSeccomp>,
}

impl TaskSeccomp {
    /// The chain of filter indexes of `mode`, oldest first (empty unless `Filter`). Assumes a checked
    /// record (every `prev` lower than its own index).
    pub fn chain(&self, mode: SeccompMode) -> Vec<u32> {
        let SeccompMode::Filter { last } = mode else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut next = Some(last);
        while let Some(i) = next {
            out.push(i);
            next = self.filters.get(i as usize).and_then(|f| f.prev);
            if out.len() > self.filters.len() {
                break;
            }
        }
        out.reverse();
        out
    }

    /// Whether some filter may hand a syscall to a user-space supervisor (returns
    /// `SECCOMP_RET_USER_NOTIF`): the supervisor's listener fd is not carried.
    pub fn has_user_notif(&self) -> bool {
        const RET_K: u16 = 0x06; // BPF_RET | BPF_K
        const USER_NOTIF: u32 = 0x7fc0_0000;
        self.filters.iter().any(|f| {
            f.insns
                .iter()
                .any(|i| i.code == RET_K && i.k & 0xffff_0000 == USER_NOTIF)
        })
    }
}

/// Checks one process's seccomp record against its pid and the threads the tree lists for it.
pub(crate) fn check_seccomp(file: &str, pid: Pid, tids: &[Tid], s: &TaskSeccomp, p: &mut Problems) {
    if s.pid != pid {
        p.add(file, format!("holds pid {}, not {}", s.pid.0, pid.0));
    }
    let listed: Vec<Tid> = s.threads.iter().map(|t| t.tid).collect();
    if listed != tids {
        p.add(
            file,
            format!(
                "lists threads {:?}, the tree {:?}",
                listed.iter().map(|t| t.0).collect::<Vec<_>>(),
                tids.iter().map(|t| t.0).collect::<Vec<_>>()
            ),
        );
    }
    for (i, f) in s.filters.iter().enumerate() {
        if f.prev.is_some_and(|prev| prev as usize >= i) {
            p.add(
                file,
                format!("filter {i} follows filter {:?}, not an earlier one", f.prev),
            );
        }
        if f.insns.is_empty() || f.insns.len() > MAX_FILTER_INSNS {
            p.add(
                file,
                format!(
                    "filter {i} has {} instructions (1 to {MAX_FILTER_INSNS})",
                    f.insns.len()
                ),
            );
        }
    }
    for t in &s.threads {
        if let SeccompMode::Filter { last } = t.mode {
            if last as usize >= s.filters.len() {
                p.add(
                    file,
                    format!(
                        "thread {} names filter {last} of {}",
                        t.tid.0,
                        s.filters.len()
                    ),
                );
            }
        }
    }
}
