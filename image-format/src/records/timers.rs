//! Timers of a process (part of [`super::TaskCore`]): the three interval timers and the POSIX timers.

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use super::ids::Tid;
use crate::error::Problems;

/// `struct itimerval` in microseconds.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ITimer {
    pub interval_us: u64,
    pub value_us: u64,
}

/// One POSIX timer: how it notifies (from `/proc/pid/timers`) and where it stands (`timer_gettime` and
/// `timer_getoverrun` inside the task).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosixTimer {
    pub id: i32,
    pub clock: i32,
    /// `SIGEV_*` (with `SIGEV_THREAD_ID` when a thread is the target).
    pub notify: i32,
    pub signo: i32,
    /// `sigev_value` as the task gave it.
    pub value: u64,
    /// Target thread for `SIGEV_THREAD_ID`.
    pub notify_tid: Option<Tid>,
    pub interval_ns: u64,
    /// Time to the next expiry; 0 = disarmed.
    pub value_ns: u64,
    pub overrun: i32,
}

/// Checks POSIX timers: ascending ids, each once (restore creates them in that order to get the same ids).
pub(crate) fn check_posix_timers(file: &str, timers: &[PosixTimer], p: &mut Problems) {
    for pair in timers.windows(2) {
        if pair[0].id >= pair[1].id {
            p.add(
                file,
                format!(
                    "POSIX timers {} and {} are not in ascending order",
                    pair[0].id, pair[1].id
                ),
            );
        }
    }
}
