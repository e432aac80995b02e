//! Per-thread and process-tree state that the first single-process records did not carry.

use serde::{Deserialize, Serialize};

use super::{Pid, RecordKind};
use crate::Record;

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

/// A thread's robust futex list registration (`set_robust_list(head, len)`), read with `get_robust_list`
/// on its tid. glibc registers one per thread; the kernel walks it when the thread dies, so a restored
/// thread without it would leave robust mutexes it holds locked forever.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RobustList {
    pub head: u64,
    pub len: u64,
}

/// A zombie of the dumped tree (`zombies`, one entry per zombie): a child that exited and was not reaped
/// yet. The restorer recreates it as a child of `ppid` that exits at once with `exit_status`, so the
/// parent's `wait` still finds it.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zombie {
    pub pid: Pid,
    pub ppid: Pid,
    pub pgid: Pid,
    pub sid: Pid,
    /// The raw wait status (`exit code << 8`, or the terminating signal in the low 7 bits).
    pub exit_status: u32,
    /// Its pid in the pid namespace one level below the dumper's, when it lived in one (the second
    /// `NSpid` entry; deeper nesting is not restorable anyway).
    #[serde(default)]
    pub inner_pid: Option<Pid>,
}

impl Record for Zombie {
    const KIND: RecordKind = RecordKind::Zombie;
}
