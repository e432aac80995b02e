//! time namespaces: the offsets of CLOCK_MONOTONIC and CLOCK_BOOTTIME against the host (`time-<id>`,
//! inside an `NsState`).

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use super::NsId;

/// A dumped time namespace: what `/proc/PID/timens_offsets` showed. Restore writes the same offsets into a
/// new time namespace before any task enters it, so the clocks the tasks read keep their values relative
/// to the host's (and so never jump backwards).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeNamespace {
    pub id: NsId,
    pub monotonic: ClockOffset,
    pub boottime: ClockOffset,
}

/// One clock's offset: seconds and nanoseconds (`0 <= nanos < 1e9`; seconds may be negative).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClockOffset {
    pub secs: i64,
    pub nanos: u32,
}
