//! Per-thread and process-tree state that the first single-process records did not carry.

use serde::{Deserialize, Serialize};

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
