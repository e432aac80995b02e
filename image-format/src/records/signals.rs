//! Signal state: the process's actions and shared pending queue (in [`super::TaskCore`]), each thread's
//! mask, private pending queue and alternate stack (in [`super::ThreadCore`]). Raw `siginfo_t`s are carried
//! as bytes, never re-interpreted here.

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use crate::error::Problems;

/// One signal's disposition as the image stores it; the fields of the kernel's x86-64 `struct
/// sigaction` ([`dormant_sys::signal::KernelSigaction`], which `rt_sigaction` reads and writes).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SigAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

// The one conversion each way between the kernel layout and the record.
impl From<dormant_sys::signal::KernelSigaction> for SigAction {
    fn from(k: dormant_sys::signal::KernelSigaction) -> Self {
        SigAction {
            handler: k.handler,
            flags: k.flags,
            restorer: k.restorer,
            mask: k.mask,
        }
    }
}

impl From<SigAction> for dormant_sys::signal::KernelSigaction {
    fn from(a: SigAction) -> Self {
        dormant_sys::signal::KernelSigaction {
            handler: a.handler,
            flags: a.flags,
            restorer: a.restorer,
            mask: a.mask,
        }
    }
}

/// A raw `siginfo_t` (128 bytes on x86-64), re-queued with `rt_tgsigqueueinfo` at restore.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigInfo(pub Vec<u8>);

/// `stack_t`.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigAltStack {
    pub sp: u64,
    pub flags: u32,
    pub size: u64,
}

/// Bytes of a `siginfo_t` on this architecture.
pub const SIGINFO_SIZE: usize = 128;
/// Signals 1 to `NSIG` exist (`_NSIG` = 64 on x86-64).
pub const NSIG: usize = 64;

/// Checks raw `siginfo_t`s: each of [`SIGINFO_SIZE`] bytes, for a signal number the kernel has.
pub(crate) fn check_siginfos(file: &str, what: &str, queue: &[SigInfo], p: &mut Problems) {
    for (i, si) in queue.iter().enumerate() {
        if si.0.len() != SIGINFO_SIZE {
            p.add(
                file,
                format!(
                    "{what} {i}: siginfo of {} bytes instead of {SIGINFO_SIZE}",
                    si.0.len()
                ),
            );
            continue;
        }
        let signo = i32::from_le_bytes([si.0[0], si.0[1], si.0[2], si.0[3]]);
        if !(1..=NSIG as i32).contains(&signo) {
            p.add(file, format!("{what} {i}: signal number {signo}"));
        }
    }
}

/// Checks the signal actions of a process: all of them or none.
pub(crate) fn check_sigactions(file: &str, actions: Option<&[SigAction]>, p: &mut Problems) {
    if let Some(a) = actions {
        if a.len() != NSIG {
            p.add(
                file,
                format!("{} signal actions instead of {NSIG}", a.len()),
            );
        }
    }
}
