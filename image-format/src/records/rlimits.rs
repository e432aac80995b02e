//! Resource limits of a process (part of [`super::TaskCore`]).

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use crate::error::Problems;

/// One resource limit (`RLIMIT_*` number, soft, hard; `u64::MAX` = infinity).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    pub resource: u32,
    pub soft: u64,
    pub hard: u64,
}

/// Resources the kernel has (`RLIM_NLIMITS`): 0 (`RLIMIT_CPU`) to 15 (`RLIMIT_RTTIME`).
pub const RLIM_NLIMITS: u32 = 16;

/// Checks a process's limits: known resources, each once, soft within hard (as `setrlimit` demands).
pub(crate) fn check_rlimits(file: &str, rlimits: &[Rlimit], p: &mut Problems) {
    let mut seen = 0u32;
    for r in rlimits {
        if r.resource >= RLIM_NLIMITS {
            p.add(
                file,
                format!("resource limit of unknown resource {}", r.resource),
            );
            continue;
        }
        if seen & (1 << r.resource) != 0 {
            p.add(file, format!("resource {} is limited twice", r.resource));
        }
        seen |= 1 << r.resource;
        if r.soft > r.hard {
            p.add(
                file,
                format!(
                    "resource {}: soft limit {} above the hard limit {}",
                    r.resource, r.soft, r.hard
                ),
            );
        }
    }
}
