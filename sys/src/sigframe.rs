//! The x86-64 signal frame (`struct rt_sigframe`, `struct ucontext`, `struct sigcontext`, the XSAVE
//! fpstate) and the one builder of such frames.
//!
//! `rt_sigreturn` reads the frame at `rsp - 8` and restores from it, in one step: the general registers,
//! the blocked mask, the alternate signal stack and, when `uc_flags` has `UC_FP_XSTATE` and the fpstate
//! carries the magics the kernel writes for a signal, the full XSAVE state. Two places build one: the
//! parasite (the way back to a seized thread's own state, whatever happens to the dumper) and the restorer
//! (the way into a restored thread's saved state). fs_base and gs_base are not part of a frame.

use crate::regs::{
    UserRegs, FPX_SW_OFFSET, XFEATURES_FP_SSE, XSAVE_ALIGN, XSAVE_MIN_SIZE, XSTATE_BV_OFFSET,
};
use crate::signal::{StackT, SS_DISABLE};

/// `rt_sigframe`: `pretcode` (8), then `ucontext`, then `siginfo` (128, not read by `rt_sigreturn`).
pub const UC_OFFSET: usize = 8;
/// Size of `struct ucontext` on x86-64.
pub const UCONTEXT_SIZE: usize = 304;
/// Size of `struct rt_sigframe` without the fpstate.
pub const FRAME_SIZE: usize = UC_OFFSET + UCONTEXT_SIZE + 128;
/// Offset of the XSAVE area from the frame start (a 64-byte aligned frame start keeps it aligned).
pub const XSAVE_OFFSET: usize = FRAME_SIZE.div_ceil(XSAVE_ALIGN) * XSAVE_ALIGN;

/// Offsets inside `ucontext`.
pub const UC_FLAGS: usize = 0;
pub const UC_LINK: usize = 8;
pub const UC_STACK_SP: usize = 16;
pub const UC_STACK_FLAGS: usize = 24;
pub const UC_STACK_SIZE: usize = 32;
pub const UC_MCONTEXT: usize = 40;
pub const UC_SIGMASK: usize = 296;
/// Offset of `uc.uc_stack` from the frame start (a blob refreshes it right before `rt_sigreturn`).
pub const FRAME_UC_STACK: usize = UC_OFFSET + UC_STACK_SP;

/// Offsets inside `sigcontext` (from `UC_MCONTEXT`).
pub const SC_R8: usize = 0;
pub const SC_R9: usize = 8;
pub const SC_R10: usize = 16;
pub const SC_R11: usize = 24;
pub const SC_R12: usize = 32;
pub const SC_R13: usize = 40;
pub const SC_R14: usize = 48;
pub const SC_R15: usize = 56;
pub const SC_RDI: usize = 64;
pub const SC_RSI: usize = 72;
pub const SC_RBP: usize = 80;
pub const SC_RBX: usize = 88;
pub const SC_RDX: usize = 96;
pub const SC_RAX: usize = 104;
pub const SC_RCX: usize = 112;
pub const SC_RSP: usize = 120;
pub const SC_RIP: usize = 128;
pub const SC_EFLAGS: usize = 136;
pub const SC_CS: usize = 144;
pub const SC_GS: usize = 146;
pub const SC_FS: usize = 148;
pub const SC_SS: usize = 150;
pub const SC_ERR: usize = 152;
pub const SC_TRAPNO: usize = 160;
pub const SC_OLDMASK: usize = 168;
pub const SC_CR2: usize = 176;
pub const SC_FPSTATE: usize = 184;

/// `uc_flags` bits.
pub const UC_FP_XSTATE: u64 = 0x1;
pub const UC_SIGCONTEXT_SS: u64 = 0x2;
pub const UC_STRICT_RESTORE_SS: u64 = 0x4;
pub const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
pub const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;

/// Bytes a frame with an XSAVE area of `xstate_len` bytes needs (0: no fpstate).
pub const fn frame_len(xstate_len: usize) -> usize {
    if xstate_len == 0 {
        FRAME_SIZE
    } else {
        XSAVE_OFFSET + xstate_len + 4
    }
}

/// `xstate_bv` of a saved XSAVE area (the features it holds non-initial state for).
pub fn xstate_bv(xstate: &[u8]) -> Option<u64> {
    word(xstate, XSTATE_BV_OFFSET)
}

/// What the frame does to the alternate signal stack at `rt_sigreturn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AltStack {
    /// Leave it as it is: an all-zero `uc_stack` is refused by the kernel (ENOMEM, which `rt_sigreturn`
    /// ignores), so the current one stays.
    Keep,
    /// `SS_DISABLE`.
    Disable,
    /// Install this one.
    Set(StackT),
}

/// Why a frame cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The frame address is not 64-byte aligned (the fpstate must be).
    Misaligned,
    /// The XSAVE image is shorter than the legacy area plus the XSAVE header.
    ShortXstate,
    /// The output buffer is smaller than [`frame_len`].
    ShortBuffer,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FrameError::Misaligned => "frame address is not 64-byte aligned",
            FrameError::ShortXstate => "xstate image shorter than the legacy area and XSAVE header",
            FrameError::ShortBuffer => "buffer smaller than the frame",
        })
    }
}

/// Writes into `out` the frame that, placed at target address `at` (64-byte aligned) and entered with
/// `rsp = at + 8`, makes `rt_sigreturn` continue with `regs`, blocked mask `sigmask`, the XSAVE state
/// `xstate` (the `NT_X86_XSTATE` bytes as PTRACE_GETREGSET returns them; empty = reset the FPU) and the
/// alternate stack as `altstack` says. Returns the frame's length.
///
/// `regs` is taken as is: `rt_sigreturn` does no syscall-restart processing, so a thread stopped in a
/// syscall must be given [`UserRegs::resumable`] registers. The fpstate's software bytes get what the
/// kernel writes for a signal: the magics, the sizes and the feature mask, which is the XCR0 that
/// PTRACE_GETREGSET leaves in the first software word, or else the image's `xstate_bv` (plus x87|SSE).
pub fn build(
    out: &mut [u8],
    at: u64,
    regs: &UserRegs,
    xstate: &[u8],
    sigmask: u64,
    altstack: AltStack,
) -> Result<usize, FrameError> {
    if !at.is_multiple_of(XSAVE_ALIGN as u64) {
        return Err(FrameError::Misaligned);
    }
    if !xstate.is_empty() && xstate.len() < XSAVE_MIN_SIZE {
        return Err(FrameError::ShortXstate);
    }
    let len = frame_len(xstate.len());
    let f = out.get_mut(..len).ok_or(FrameError::ShortBuffer)?;
    f.fill(0);
    let uc = UC_OFFSET;
    let sc = uc + UC_MCONTEXT;
    let mut flags = UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS;
    if !xstate.is_empty() {
        flags |= UC_FP_XSTATE;
    }
    put64(f, uc + UC_FLAGS, flags);
    match altstack {
        AltStack::Keep => {}
        AltStack::Disable => put32(f, uc + UC_STACK_FLAGS, SS_DISABLE),
        AltStack::Set(ss) => {
            put64(f, uc + UC_STACK_SP, ss.sp);
            put32(f, uc + UC_STACK_FLAGS, ss.flags as u32);
            put64(f, uc + UC_STACK_SIZE, ss.size);
        }
    }
    for (off, v) in [
        (SC_R8, regs.r8),
        (SC_R9, regs.r9),
        (SC_R10, regs.r10),
        (SC_R11, regs.r11),
        (SC_R12, regs.r12),
        (SC_R13, regs.r13),
        (SC_R14, regs.r14),
        (SC_R15, regs.r15),
        (SC_RDI, regs.rdi),
        (SC_RSI, regs.rsi),
        (SC_RBP, regs.rbp),
        (SC_RBX, regs.rbx),
        (SC_RDX, regs.rdx),
        (SC_RAX, regs.rax),
        (SC_RCX, regs.rcx),
        (SC_RSP, regs.rsp),
        (SC_RIP, regs.rip),
        (SC_EFLAGS, regs.eflags),
    ] {
        put64(f, sc + off, v);
    }
    put16(f, sc + SC_CS, regs.cs as u16);
    put16(f, sc + SC_GS, regs.gs as u16);
    put16(f, sc + SC_FS, regs.fs as u16);
    put16(f, sc + SC_SS, regs.ss as u16);
    put64(f, uc + UC_SIGMASK, sigmask);
    if !xstate.is_empty() {
        let x = XSAVE_OFFSET;
        f[x..x + xstate.len()].copy_from_slice(xstate);
        let xcr0 = word(xstate, FPX_SW_OFFSET).unwrap_or(0);
        let features = if xcr0 & XFEATURES_FP_SSE == XFEATURES_FP_SSE {
            xcr0
        } else {
            xstate_bv(xstate).unwrap_or(0) | XFEATURES_FP_SSE
        };
        let size = xstate.len() as u32;
        let sw = x + FPX_SW_OFFSET;
        put32(f, sw, FP_XSTATE_MAGIC1);
        put32(f, sw + 4, size + 4);
        put64(f, sw + 8, features);
        put32(f, sw + 16, size);
        f[sw + 20..sw + 48].fill(0);
        put32(f, x + xstate.len(), FP_XSTATE_MAGIC2);
        put64(f, sc + SC_FPSTATE, at + x as u64);
    }
    Ok(len)
}

fn word(b: &[u8], off: usize) -> Option<u64> {
    let mut w = [0u8; 8];
    w.copy_from_slice(b.get(off..off + 8)?);
    Some(u64::from_le_bytes(w))
}

fn put64(f: &mut [u8], off: usize, v: u64) {
    f[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn put32(f: &mut [u8], off: usize, v: u32) {
    f[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put16(f: &mut [u8], off: usize, v: u16) {
    f[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (project rule)
mod tests {
    use super::*;

    fn at(b: &[u8], off: usize) -> u64 {
        word(b, off).unwrap()
    }

    fn half(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }

    #[cfg(feature = "std")]
    #[test]
    fn layout_matches_libc() {
        // Cross-check the offsets against libc's own definitions of the same structs.
        assert!(core::mem::size_of::<libc::ucontext_t>() >= UC_SIGMASK + 8);
        assert_eq!(
            core::mem::offset_of!(libc::ucontext_t, uc_mcontext),
            UC_MCONTEXT
        );
        assert_eq!(
            core::mem::offset_of!(libc::ucontext_t, uc_stack),
            UC_STACK_SP
        );
        assert_eq!(
            core::mem::offset_of!(libc::stack_t, ss_flags),
            UC_STACK_FLAGS - UC_STACK_SP
        );
        assert_eq!(
            core::mem::offset_of!(libc::stack_t, ss_size),
            UC_STACK_SIZE - UC_STACK_SP
        );
        // glibc's mcontext_t gregs follow the kernel's sigcontext order: r8 first, rip at REG_RIP.
        assert_eq!(libc::REG_R8 as usize * 8, SC_R8);
        assert_eq!(libc::REG_RDI as usize * 8, SC_RDI);
        assert_eq!(libc::REG_RSP as usize * 8, SC_RSP);
        assert_eq!(libc::REG_RIP as usize * 8, SC_RIP);
        assert_eq!(libc::REG_EFL as usize * 8, SC_EFLAGS);
        assert_eq!(libc::REG_CSGSFS as usize * 8, SC_CS);
        assert_eq!(libc::REG_CR2 as usize * 8, SC_CR2);
        // glibc: gregs[23] then the `fpregs` pointer.
        assert_eq!(23 * 8, SC_FPSTATE);
        assert_eq!(UC_MCONTEXT + 256, UC_SIGMASK);
        assert_eq!(FRAME_UC_STACK, 24);
    }

    #[test]
    fn frame_carries_registers_mask_altstack_and_xstate_with_magics() {
        let regs = UserRegs {
            r8: 8,
            r15: 15,
            rdi: 0xd1,
            rax: 0xa,
            rsp: 0x7fff_0000,
            rip: 0x40_1000,
            eflags: 0x246,
            cs: 0x33,
            ss: 0x2b,
            ..UserRegs::default()
        };
        let mut xstate = [0u8; 2440];
        xstate[XSTATE_BV_OFFSET..XSTATE_BV_OFFSET + 8].copy_from_slice(&0xe7u64.to_le_bytes());
        xstate[24] = 0x80; // mxcsr low byte
        let base = 0x7000_0000_1000;
        let ss = StackT {
            sp: 0x5000,
            size: 0x2000,
            ..StackT::default()
        };
        let mut b = [0u8; 4096];
        let n = build(&mut b, base, &regs, &xstate, 0x4001, AltStack::Set(ss)).unwrap();
        assert_eq!(n, XSAVE_OFFSET + 2440 + 4);
        let uc = UC_OFFSET;
        let sc = uc + UC_MCONTEXT;
        assert_eq!(
            at(&b, uc),
            UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS
        );
        assert_eq!(at(&b, uc + UC_STACK_SP), 0x5000);
        assert_eq!(at(&b, uc + UC_STACK_SIZE), 0x2000);
        for (off, want) in [
            (SC_R8, 8),
            (SC_R15, 15),
            (SC_RDI, 0xd1),
            (SC_RAX, 0xa),
            (SC_RSP, 0x7fff_0000),
            (SC_RIP, 0x40_1000),
            (SC_EFLAGS, 0x246),
        ] {
            assert_eq!(at(&b, sc + off), want, "sigcontext offset {off}");
        }
        assert_eq!(u16::from_le_bytes([b[sc + SC_CS], b[sc + SC_CS + 1]]), 0x33);
        assert_eq!(u16::from_le_bytes([b[sc + SC_SS], b[sc + SC_SS + 1]]), 0x2b);
        assert_eq!(at(&b, uc + UC_SIGMASK), 0x4001);
        let fp = at(&b, sc + SC_FPSTATE);
        assert_eq!(fp % 64, 0, "fpstate must be 64-byte aligned");
        let xo = (fp - base) as usize;
        assert!(xo >= FRAME_SIZE);
        assert_eq!(b[xo + 24], 0x80, "xsave bytes copied");
        assert_eq!(half(&b, xo + FPX_SW_OFFSET), FP_XSTATE_MAGIC1);
        assert_eq!(half(&b, xo + FPX_SW_OFFSET + 4), 2440 + 4);
        assert_eq!(
            at(&b, xo + FPX_SW_OFFSET + 8),
            0xe7,
            "xstate_bv as features"
        );
        assert_eq!(half(&b, xo + FPX_SW_OFFSET + 16), 2440);
        assert_eq!(half(&b, xo + 2440), FP_XSTATE_MAGIC2);
    }

    #[test]
    fn xcr0_from_ptrace_is_the_feature_mask() {
        let mut xs = [0u8; 1000];
        xs[FPX_SW_OFFSET] = 0xe7; // XCR0 as PTRACE_GETREGSET reports it
        xs[XSTATE_BV_OFFSET] = 0x3;
        let mut b = [0u8; 2048];
        build(
            &mut b,
            0x10000,
            &UserRegs::default(),
            &xs,
            0,
            AltStack::Keep,
        )
        .unwrap();
        assert_eq!(at(&b, XSAVE_OFFSET + FPX_SW_OFFSET + 8), 0xe7);
        assert_eq!(
            at(&b, UC_OFFSET + UC_MCONTEXT + SC_FPSTATE),
            0x10000 + XSAVE_OFFSET as u64
        );
        // Keep: an all-zero uc_stack, which the kernel refuses and rt_sigreturn ignores.
        assert_eq!(&b[FRAME_UC_STACK..FRAME_UC_STACK + 24], &[0u8; 24]);
    }

    #[test]
    fn disabled_altstack_misalignment_and_short_input() {
        let mut b = [0u8; 1024];
        let r = UserRegs::default();
        assert_eq!(
            build(&mut b, 0x1000, &r, &[], 0, AltStack::Disable),
            Ok(FRAME_SIZE)
        );
        assert_eq!(half(&b, UC_OFFSET + UC_STACK_FLAGS), SS_DISABLE);
        assert_eq!(at(&b, UC_OFFSET + UC_MCONTEXT + SC_FPSTATE), 0);
        assert_eq!(
            build(&mut b, 0x1008, &r, &[], 0, AltStack::Keep),
            Err(FrameError::Misaligned)
        );
        assert_eq!(
            build(&mut b, 0x1000, &r, &[0; 100], 0, AltStack::Keep),
            Err(FrameError::ShortXstate)
        );
        assert_eq!(
            build(&mut b, 0x1000, &r, &[0; 2440], 0, AltStack::Keep),
            Err(FrameError::ShortBuffer)
        );
    }
}
