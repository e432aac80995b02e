//! Signals: the kernel's x86-64 `struct sigaction`, `stack_t`, `itimerval`, `sigevent`, and the numbers
//! around them.

/// Number of signals `rt_sigaction` knows on x86-64 (1..=64); masks are one `u64`, bit `n - 1` = signal `n`.
pub const NSIG: usize = 64;
/// `sizeof(siginfo_t)` on x86-64.
pub const SIGINFO_SIZE: usize = 128;
/// `sizeof(sigset_t)` as the kernel takes it (`sigsetsize` of the rt_* calls).
pub const SIGSET_SIZE: u64 = 8;

pub const SIGTRAP: u32 = 5;
pub const SIGKILL: u32 = 9;
pub const SIGPIPE: u32 = 13;
pub const SIGSTOP: u32 = 19;

/// `how` of rt_sigprocmask.
pub const SIG_BLOCK: u64 = 0;
pub const SIG_SETMASK: u64 = 2;

/// `ss_flags` of `stack_t`.
pub const SS_ONSTACK: u32 = 1;
pub const SS_DISABLE: u32 = 2;

/// The mask bit of signal `sig` (1..=64; 0 for anything else).
pub const fn sig_bit(sig: u32) -> u64 {
    if sig >= 1 && sig as usize <= NSIG {
        1u64 << (sig - 1)
    } else {
        0
    }
}

/// The kernel's x86-64 `struct sigaction` exactly as `rt_sigaction` reads and writes it (not glibc's,
/// whose mask is 128 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct KernelSigaction {
    /// Handler address, or 0 (`SIG_DFL`) / 1 (`SIG_IGN`).
    pub handler: u64,
    /// `SA_*` flags (`SA_RESTORER` included when the libc set one).
    pub flags: u64,
    /// `sa_restorer`.
    pub restorer: u64,
    /// Signals blocked while the handler runs, bit `n - 1` = signal `n`.
    pub mask: u64,
}

/// `stack_t` (sigaltstack).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct StackT {
    pub sp: u64,
    /// `SS_ONSTACK` / `SS_DISABLE` / `SS_AUTODISARM` bits.
    pub flags: i32,
    pub pad: u32,
    pub size: u64,
}

/// `struct itimerval` (getitimer/setitimer): interval then value, each seconds and microseconds.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct KernelItimerval {
    pub interval_sec: i64,
    pub interval_usec: i64,
    pub value_sec: i64,
    pub value_usec: i64,
}

/// The kernel's `struct sigevent` (64 bytes on x86-64), as timer_create takes it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct SigEvent {
    /// `sigev_value`.
    pub value: u64,
    pub signo: i32,
    /// `SIGEV_*`.
    pub notify: i32,
    /// Target thread of `SIGEV_THREAD_ID`.
    pub tid: i32,
    pub pad: [i32; 11],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_kernel() {
        assert_eq!(core::mem::size_of::<KernelSigaction>(), 32);
        assert_eq!(core::mem::size_of::<StackT>(), 24);
        assert_eq!(core::mem::size_of::<KernelItimerval>(), 32);
        assert_eq!(core::mem::size_of::<SigEvent>(), 64);
        assert_eq!(sig_bit(SIGTRAP), 0x10);
        assert_eq!(sig_bit(0) | sig_bit(65), 0);
    }

    #[cfg(feature = "std")]
    #[test]
    fn layouts_match_libc() {
        assert_eq!(
            core::mem::offset_of!(libc::stack_t, ss_flags),
            core::mem::offset_of!(StackT, flags)
        );
        assert_eq!(
            core::mem::offset_of!(libc::stack_t, ss_size),
            core::mem::offset_of!(StackT, size)
        );
        assert_eq!(core::mem::size_of::<libc::sigevent>(), 64);
    }
}
