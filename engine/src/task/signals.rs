//! Signal state of a seized process: the blocked mask and the private pending signals of each thread and
//! the process-wide pending queue (ptrace, nothing dequeued), the signal actions and each thread's
//! alternate signal stack (asked from the task, see [`super::remote`]).

use dormant_image::records::{SigAction, SigAltStack, SigInfo};
use dormant_parasite::query;
use dormant_sys::host;
pub use dormant_sys::signal::SIGINFO_SIZE;

use crate::error::{DumpError, Result};

/// The blocked-signal mask (PTRACE_GETSIGMASK).
pub fn get_sigmask(tid: u32) -> Result<u64> {
    host::get_sigmask(tid as i32).map_err(|source| DumpError::Ptrace {
        pid: tid,
        op: "PTRACE_GETSIGMASK",
        source,
    })
}

/// Queued signals without dequeuing them (PTRACE_PEEKSIGINFO): thread-private, or process-wide when `shared`.
pub fn peek_pending(tid: u32, shared: bool) -> Result<Vec<SigInfo>> {
    const BATCH: usize = 32;
    let mut out = Vec::new();
    let mut buf = vec![0u8; BATCH * SIGINFO_SIZE];
    loop {
        let n = host::peek_siginfo(tid as i32, shared, out.len() as u64, &mut buf).map_err(
            |source| DumpError::Ptrace {
                pid: tid,
                op: "PTRACE_PEEKSIGINFO",
                source,
            },
        )?;
        if n == 0 {
            return Ok(out);
        }
        for si in buf.chunks_exact(SIGINFO_SIZE).take(n.min(BATCH)) {
            out.push(SigInfo(si.to_vec()));
        }
    }
}

/// The signal actions as the task reported them.
pub fn actions(snap: &query::TaskSnapshot) -> Vec<SigAction> {
    snap.sigactions
        .iter()
        .copied()
        .map(SigAction::from)
        .collect()
}

/// An alternate signal stack as a thread reported it.
pub fn altstack(alt: &query::AltStack) -> SigAltStack {
    SigAltStack {
        sp: alt.sp,
        flags: alt.flags as u32,
        size: alt.size,
    }
}
