//! Building the x86-64 `rt_sigframe` the blob `rt_sigreturn`s through.
//!
//! The frame carries the saved general registers, the saved XSAVE area (64-byte aligned, with the
//! `fpx_sw_bytes` the kernel checks and `FP_XSTATE_MAGIC2` right after it), the blocked mask and the
//! sigaltstack. fs_base and gs_base are not part of a signal frame; the blob sets them separately.

use dormant_image::records::{GpRegs, SigAltStack};
use dormant_restorer_proto::sigframe::*;

/// A frame ready to be copied to `addr` in the blob area.
#[derive(Debug, Clone)]
pub struct SigFrame {
    /// Where the frame starts (`pretcode`); 64-byte aligned.
    pub addr: u64,
    pub bytes: Vec<u8>,
}

impl SigFrame {
    /// The stack pointer `rt_sigreturn` must be entered with (`&frame.uc`).
    pub fn uc_addr(&self) -> u64 {
        self.addr + UC_OFFSET as u64
    }
}

/// Why a saved XSAVE area cannot go into a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XstateError(pub String);

/// Offset of the XSAVE area from the frame start (the frame start being 64-byte aligned).
pub const fn xsave_offset() -> usize {
    FRAME_SIZE.div_ceil(XSAVE_ALIGN) * XSAVE_ALIGN
}

/// Bytes a frame with an XSAVE area of `xstate_len` bytes needs.
pub const fn frame_len(xstate_len: usize) -> usize {
    if xstate_len == 0 {
        FRAME_SIZE
    } else {
        xsave_offset() + xstate_len + 4
    }
}

/// `xstate_bv` of a saved XSAVE area (the features it holds non-initial state for).
pub fn xstate_bv(xstate: &[u8]) -> Option<u64> {
    xstate
        .get(XSTATE_BV_OFFSET..XSTATE_BV_OFFSET + 8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
}

/// Builds the frame for a thread whose registers are `regs`, FPU state `xstate` (the `NT_X86_XSTATE`
/// bytes; empty = reset the FPU), blocked mask `sigmask` and alternate stack `altstack`, to live at `addr`
/// (must be 64-byte aligned).
pub fn build(
    addr: u64,
    regs: &GpRegs,
    xstate: &[u8],
    sigmask: u64,
    altstack: Option<&SigAltStack>,
) -> Result<SigFrame, XstateError> {
    if !addr.is_multiple_of(XSAVE_ALIGN as u64) {
        return Err(XstateError(format!(
            "frame address {addr:#x} is not 64-byte aligned"
        )));
    }
    if !xstate.is_empty() && xstate.len() < XSAVE_MIN_SIZE {
        return Err(XstateError(format!(
            "shorter than the {XSAVE_MIN_SIZE}-byte minimum"
        )));
    }
    let mut f = vec![0u8; frame_len(xstate.len())];
    let put64 =
        |f: &mut [u8], off: usize, v: u64| f[off..off + 8].copy_from_slice(&v.to_le_bytes());
    let put32 =
        |f: &mut [u8], off: usize, v: u32| f[off..off + 4].copy_from_slice(&v.to_le_bytes());
    let put16 =
        |f: &mut [u8], off: usize, v: u16| f[off..off + 2].copy_from_slice(&v.to_le_bytes());
    let uc = UC_OFFSET;
    let sc = uc + UC_MCONTEXT;

    let mut flags = UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS;
    if !xstate.is_empty() {
        flags |= UC_FP_XSTATE;
    }
    put64(&mut f, uc + UC_FLAGS, flags);
    put64(&mut f, uc + UC_LINK, 0);
    match altstack {
        Some(ss) => {
            put64(&mut f, uc + UC_STACK_SP, ss.sp);
            put32(&mut f, uc + UC_STACK_FLAGS, ss.flags);
            put64(&mut f, uc + UC_STACK_SIZE, ss.size);
        }
        None => put32(&mut f, uc + UC_STACK_FLAGS, SS_DISABLE),
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
        put64(&mut f, sc + off, v);
    }
    put16(&mut f, sc + SC_CS, regs.cs as u16);
    put16(&mut f, sc + SC_GS, regs.gs as u16);
    put16(&mut f, sc + SC_FS, regs.fs as u16);
    put16(&mut f, sc + SC_SS, regs.ss as u16);
    put64(&mut f, uc + UC_SIGMASK, sigmask);

    if !xstate.is_empty() {
        let xoff = xsave_offset();
        f[xoff..xoff + xstate.len()].copy_from_slice(xstate);
        let size = xstate.len() as u32;
        let bv = xstate_bv(xstate).unwrap_or(0);
        let sw = xoff + FPX_SW_OFFSET;
        put32(&mut f, sw, FP_XSTATE_MAGIC1);
        put32(&mut f, sw + 4, size + 4);
        put64(&mut f, sw + 8, bv);
        put32(&mut f, sw + 16, size);
        f[sw + 20..sw + 48].fill(0);
        put32(&mut f, xoff + xstate.len(), FP_XSTATE_MAGIC2);
        put64(&mut f, sc + SC_FPSTATE, addr + xoff as u64);
    }
    Ok(SigFrame { addr, bytes: f })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }
    fn half(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }

    #[test]
    fn layout_matches_the_kernel_abi() {
        // Cross-check the proto offsets against libc's own definitions of the same structs.
        assert!(std::mem::size_of::<libc::ucontext_t>() >= UC_SIGMASK + 8);
        assert_eq!(
            std::mem::offset_of!(libc::ucontext_t, uc_mcontext),
            UC_MCONTEXT
        );
        assert_eq!(
            std::mem::offset_of!(libc::ucontext_t, uc_stack),
            UC_STACK_SP
        );
        assert_eq!(
            std::mem::offset_of!(libc::stack_t, ss_flags),
            UC_STACK_FLAGS - UC_STACK_SP
        );
        assert_eq!(
            std::mem::offset_of!(libc::stack_t, ss_size),
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
        // glibc: gregs[23] then `fpregs` pointer.
        assert_eq!(23 * 8, SC_FPSTATE);
        assert_eq!(UC_MCONTEXT + 256, UC_SIGMASK);
    }

    #[test]
    fn frame_carries_registers_mask_and_xstate_with_magics() {
        let regs = GpRegs {
            r8: 8,
            r15: 15,
            rdi: 0xd1,
            rax: 0xa,
            rsp: 0x7fff_0000,
            rip: 0x40_1000,
            eflags: 0x246,
            cs: 0x33,
            ss: 0x2b,
            ..Default::default()
        };
        let mut xstate = vec![0u8; 2432];
        xstate[XSTATE_BV_OFFSET..XSTATE_BV_OFFSET + 8].copy_from_slice(&0xe7u64.to_le_bytes());
        xstate[24] = 0x80; // mxcsr low byte
        let addr = 0x7000_0000_1000;
        let ss = SigAltStack {
            sp: 0x5000,
            flags: 0,
            size: 0x2000,
        };
        let f = build(addr, &regs, &xstate, 0x4001, Some(&ss)).unwrap();
        let b = &f.bytes;
        assert_eq!(f.uc_addr(), addr + 8);
        let uc = UC_OFFSET;
        let sc = uc + UC_MCONTEXT;
        assert_eq!(
            word(b, uc),
            UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS
        );
        assert_eq!(word(b, uc + UC_STACK_SP), 0x5000);
        assert_eq!(word(b, uc + UC_STACK_SIZE), 0x2000);
        assert_eq!(word(b, sc + SC_R8), 8);
        assert_eq!(word(b, sc + SC_R15), 15);
        assert_eq!(word(b, sc + SC_RDI), 0xd1);
        assert_eq!(word(b, sc + SC_RAX), 0xa);
        assert_eq!(word(b, sc + SC_RSP), 0x7fff_0000);
        assert_eq!(word(b, sc + SC_RIP), 0x40_1000);
        assert_eq!(word(b, sc + SC_EFLAGS), 0x246);
        assert_eq!(u16::from_le_bytes([b[sc + SC_CS], b[sc + SC_CS + 1]]), 0x33);
        assert_eq!(u16::from_le_bytes([b[sc + SC_SS], b[sc + SC_SS + 1]]), 0x2b);
        assert_eq!(word(b, uc + UC_SIGMASK), 0x4001);
        let fp = word(b, sc + SC_FPSTATE);
        assert_eq!(fp % 64, 0, "fpstate must be 64-byte aligned");
        let xo = (fp - addr) as usize;
        assert!(xo >= FRAME_SIZE);
        assert_eq!(b[xo + 24], 0x80, "xsave bytes copied");
        assert_eq!(half(b, xo + FPX_SW_OFFSET), FP_XSTATE_MAGIC1);
        assert_eq!(half(b, xo + FPX_SW_OFFSET + 4), 2432 + 4);
        assert_eq!(word(b, xo + FPX_SW_OFFSET + 8), 0xe7);
        assert_eq!(half(b, xo + FPX_SW_OFFSET + 16), 2432);
        assert_eq!(half(b, xo + 2432), FP_XSTATE_MAGIC2);
        assert_eq!(b.len(), xo + 2432 + 4);
    }

    #[test]
    fn no_altstack_means_ss_disable_and_unaligned_frames_are_refused() {
        let f = build(0x1000, &GpRegs::default(), &[], 0, None).unwrap();
        assert_eq!(half(&f.bytes, UC_OFFSET + UC_STACK_FLAGS), SS_DISABLE);
        assert_eq!(word(&f.bytes, UC_OFFSET + UC_MCONTEXT + SC_FPSTATE), 0);
        assert!(build(0x1008, &GpRegs::default(), &[], 0, None).is_err());
        assert!(build(0x1000, &GpRegs::default(), &[0; 100], 0, None).is_err());
    }
}
