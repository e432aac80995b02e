//! The frame the blob `rt_sigreturn`s through into a restored thread's saved state, built by
//! dormant-sys's one sigframe builder (the parasite uses the same).
//!
//! The frame carries the saved general registers, the saved XSAVE area, the blocked mask and the
//! sigaltstack. fs_base and gs_base are not part of a signal frame; the blob sets them separately.

use dormant_image::records::{GpRegs, SigAltStack};
use dormant_sys::regs::UserRegs;
use dormant_sys::sigframe::{self as sys, AltStack, UC_OFFSET};
use dormant_sys::signal::StackT;

pub use dormant_sys::sigframe::{frame_len, xstate_bv};

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

/// Builds the frame for a thread whose registers are `regs`, FPU state `xstate` (the `NT_X86_XSTATE`
/// bytes; empty = reset the FPU), blocked mask `sigmask` and alternate stack `altstack` (`None`: disabled),
/// to live at `addr` (must be 64-byte aligned).
pub fn build(
    addr: u64,
    regs: &GpRegs,
    xstate: &[u8],
    sigmask: u64,
    altstack: Option<&SigAltStack>,
) -> Result<SigFrame, XstateError> {
    let altstack = match altstack {
        Some(ss) => AltStack::Set(StackT {
            sp: ss.sp,
            flags: ss.flags as i32,
            pad: 0,
            size: ss.size,
        }),
        None => AltStack::Disable,
    };
    let mut bytes = vec![0u8; frame_len(xstate.len())];
    sys::build(
        &mut bytes,
        addr,
        &UserRegs::from(*regs),
        xstate,
        sigmask,
        altstack,
    )
    .map_err(|e| {
        XstateError(match e {
            sys::FrameError::Misaligned => {
                format!("frame address {addr:#x} is not 64-byte aligned")
            }
            other => other.to_string(),
        })
    })?;
    Ok(SigFrame { addr, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dormant_sys::regs::{FPX_SW_OFFSET, XSTATE_BV_OFFSET};
    use dormant_sys::sigframe::{
        FP_XSTATE_MAGIC1, FP_XSTATE_MAGIC2, FRAME_SIZE, SC_CS, SC_EFLAGS, SC_FPSTATE, SC_R15,
        SC_R8, SC_RAX, SC_RDI, SC_RIP, SC_RSP, SC_SS, UC_FP_XSTATE, UC_MCONTEXT, UC_SIGCONTEXT_SS,
        UC_SIGMASK, UC_STACK_FLAGS, UC_STACK_SIZE, UC_STACK_SP, UC_STRICT_RESTORE_SS,
    };
    use dormant_sys::signal::SS_DISABLE;

    fn word(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }
    fn half(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
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
