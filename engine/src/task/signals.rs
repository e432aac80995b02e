//! Signal state of a seized process: the blocked mask and the private pending signals of each thread and
//! the process-wide pending queue (ptrace, nothing dequeued), the signal actions and each thread's
//! alternate signal stack (asked from the task, see [`super::remote`]).

use dormant_image::records::{SigAction, SigAltStack, SigInfo};
use dormant_parasite::query;
use nix::errno::Errno;

use crate::error::{DumpError, Result};

const PTRACE_PEEKSIGINFO: libc::c_uint = 0x4209;
const PTRACE_GETSIGMASK: libc::c_uint = 0x420a;
const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
/// `sizeof(siginfo_t)` on x86-64.
pub const SIGINFO_SIZE: usize = 128;

/// The blocked-signal mask (PTRACE_GETSIGMASK).
pub fn get_sigmask(tid: u32) -> Result<u64> {
    let mut mask = 0u64;
    // SAFETY: the kernel writes 8 bytes (the size passed in addr) into `mask`.
    let rc = unsafe {
        libc::ptrace(
            PTRACE_GETSIGMASK,
            tid as libc::pid_t,
            std::mem::size_of::<u64>(),
            &mut mask as *mut u64,
        )
    };
    Errno::result(rc).map_err(|source| DumpError::Ptrace {
        pid: tid,
        op: "PTRACE_GETSIGMASK",
        source,
    })?;
    Ok(mask)
}

#[repr(C)]
struct PeekSiginfoArgs {
    off: u64,
    flags: u32,
    nr: i32,
}

/// Queued signals without dequeuing them (PTRACE_PEEKSIGINFO): thread-private, or process-wide when `shared`.
pub fn peek_pending(tid: u32, shared: bool) -> Result<Vec<SigInfo>> {
    const BATCH: usize = 32;
    let mut out = Vec::new();
    let mut buf = vec![0u8; BATCH * SIGINFO_SIZE];
    loop {
        let args = PeekSiginfoArgs {
            off: out.len() as u64,
            flags: if shared { PTRACE_PEEKSIGINFO_SHARED } else { 0 },
            nr: BATCH as i32,
        };
        // SAFETY: args is a valid ptrace_peeksiginfo_args; the kernel writes at most nr siginfos into buf,
        // which holds BATCH of them.
        let rc = unsafe {
            libc::ptrace(
                PTRACE_PEEKSIGINFO,
                tid as libc::pid_t,
                &args as *const PeekSiginfoArgs,
                buf.as_mut_ptr(),
            )
        };
        let n = Errno::result(rc).map_err(|source| DumpError::Ptrace {
            pid: tid,
            op: "PTRACE_PEEKSIGINFO",
            source,
        })? as usize;
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
        .map(|a| SigAction {
            handler: a.handler,
            flags: a.flags,
            restorer: a.restorer,
            mask: a.mask,
        })
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
