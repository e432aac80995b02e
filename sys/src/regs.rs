//! x86-64 registers as ptrace sees them: `struct user_regs_struct`, the regset notes, the XSAVE area's
//! fixed offsets, and the syscall-restart codes a stopped thread's `rax` may hold.

/// `NT_PRSTATUS`: the general registers regset.
pub const NT_PRSTATUS: u32 = 1;
/// `NT_X86_XSTATE`: the XSAVE area regset (standard, uncompacted layout).
pub const NT_X86_XSTATE: u32 = 0x202;
/// Largest XSAVE image accepted from the kernel (AMX tiles included, with room to spare).
pub const XSTATE_MAX: usize = 64 * 1024;
/// Offset of the software-reserved bytes of the legacy FXSAVE area (`fpx_sw_bytes` in a signal frame;
/// PTRACE_GETREGSET puts XCR0 in its first word instead).
pub const FPX_SW_OFFSET: usize = 464;
/// Offset of `xstate_bv` (the XSAVE header's first word).
pub const XSTATE_BV_OFFSET: usize = 512;
/// Minimum XSAVE area: legacy FXSAVE region plus the XSAVE header.
pub const XSAVE_MIN_SIZE: usize = 576;
/// Required alignment of an XSAVE area in memory.
pub const XSAVE_ALIGN: usize = 64;
/// x87 | SSE: the feature bits every XCR0 has.
pub const XFEATURES_FP_SSE: u64 = 0x3;

/// EFLAGS.TF (single step).
pub const EFLAGS_TF: u64 = 1 << 8;
/// EFLAGS.DF (direction); the ABI wants it clear on function entry.
pub const EFLAGS_DF: u64 = 1 << 10;

/// Length of the `syscall` instruction: restarting a syscall backs rip up by it.
pub const SYSCALL_INSN_LEN: u64 = 2;
/// `-rax` of a thread stopped in a syscall that the kernel restarts on its way back to user space.
pub const ERESTARTSYS: i64 = 512;
pub const ERESTARTNOINTR: i64 = 513;
pub const ERESTARTNOHAND: i64 = 514;
/// Restarted through `restart_syscall` and the thread's restart block (nanosleep, poll with a timeout...).
pub const ERESTART_RESTARTBLOCK: i64 = 516;

/// The kernel's x86-64 `struct user_regs_struct` (the `NT_PRSTATUS` regset), field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct UserRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    /// The syscall number while in a syscall; -1 (as u64) when not.
    pub orig_rax: u64,
    pub rip: u64,
    pub cs: u64,
    pub eflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

impl UserRegs {
    /// Stopped inside a syscall (a syscall-exit or signal stop taken on the way out of one).
    pub fn in_syscall(&self) -> bool {
        (self.orig_rax as i64) >= 0
    }

    /// Stopped in a syscall that resumes through `restart_syscall` and its restart block.
    pub fn needs_restart_block(&self) -> bool {
        self.in_syscall() && self.rax as i64 == -ERESTART_RESTARTBLOCK
    }

    /// The registers this thread continues with if it leaves its stop with no signal to handle: a syscall
    /// it was interrupted in is set up to restart exactly as the kernel would do it (rip back over the
    /// `syscall` instruction, rax = the syscall or `restart_syscall`), and `orig_rax` says "not in a
    /// syscall". This is what a signal frame must hold, since `rt_sigreturn` does no restart processing.
    pub fn resumable(&self) -> UserRegs {
        let mut r = *self;
        if r.in_syscall() {
            match -(r.rax as i64) {
                ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
                    r.rax = r.orig_rax;
                    r.rip = r.rip.wrapping_sub(SYSCALL_INSN_LEN);
                }
                ERESTART_RESTARTBLOCK => {
                    r.rax = crate::nr::RESTART_SYSCALL;
                    r.rip = r.rip.wrapping_sub(SYSCALL_INSN_LEN);
                }
                _ => {}
            }
        }
        r.orig_rax = u64::MAX;
        r
    }
}

/// `From` both ways between two structs that hold `user_regs_struct`'s fields under the same names (ours,
/// libc's, the image's record): the field list is written here once.
#[macro_export]
macro_rules! user_regs_conversions {
    ($a:path, $b:path) => {
        $crate::user_regs_conversions!(@fields $a, $b, r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi
            rdi orig_rax rip cs eflags rsp ss fs_base gs_base ds es fs gs);
    };
    (@fields $a:path, $b:path, $($f:ident)*) => {
        impl From<$a> for $b {
            fn from(r: $a) -> Self {
                use $b as B;
                B { $($f: r.$f),* }
            }
        }
        impl From<$b> for $a {
            fn from(r: $b) -> Self {
                use $a as A;
                A { $($f: r.$f),* }
            }
        }
    };
}

#[cfg(feature = "std")]
user_regs_conversions!(UserRegs, libc::user_regs_struct);

#[cfg(test)]
mod tests {
    use super::*;

    fn regs(orig_rax: u64, rax: i64, rip: u64) -> UserRegs {
        UserRegs {
            orig_rax,
            rax: rax as u64,
            rip,
            ..UserRegs::default()
        }
    }

    #[test]
    fn restart_fixup_matches_the_kernel() {
        let f = regs(35, -516, 0x1000).resumable();
        assert_eq!((f.rax, f.rip, f.orig_rax), (219, 0xffe, u64::MAX));
        let f = regs(0, -512, 0x1000).resumable();
        assert_eq!((f.rax, f.rip), (0, 0xffe));
        // EINTR: the syscall already returned, nothing to restart.
        assert_eq!(regs(0, -4, 0x1000).resumable().rip, 0x1000);
        // Not in a syscall: rax is just a value.
        assert_eq!(
            regs(u64::MAX, -512, 0x1000).resumable().rax,
            (-512i64) as u64
        );
        assert!(regs(230, -516, 0).needs_restart_block());
        assert!(!regs(u64::MAX, -516, 0).needs_restart_block());
    }

    #[cfg(feature = "std")]
    #[test]
    fn user_regs_match_libc() {
        assert_eq!(
            core::mem::size_of::<UserRegs>(),
            core::mem::size_of::<libc::user_regs_struct>()
        );
        assert_eq!(
            core::mem::offset_of!(UserRegs, orig_rax),
            core::mem::offset_of!(libc::user_regs_struct, orig_rax)
        );
        assert_eq!(
            core::mem::offset_of!(UserRegs, gs),
            core::mem::offset_of!(libc::user_regs_struct, gs)
        );
    }
}
