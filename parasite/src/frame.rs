//! The x86-64 `rt_sigframe` the blob returns through, built by the dumper from a thread's saved state.
//!
//! Layout (kernel ABI): `pretcode` (8), then `ucontext` = `uc_flags` (8), `uc_link` (8), `uc_stack`
//! (24), `uc_mcontext` = `struct sigcontext` (256), `uc_sigmask` (8); `siginfo` follows and is not read
//! by `rt_sigreturn`. `sigcontext.fpstate` points at an XSAVE image (64-byte aligned) whose software
//! bytes carry FP_XSTATE_MAGIC1 and which is followed by FP_XSTATE_MAGIC2, as the kernel writes it for
//! a signal: then `rt_sigreturn` restores general registers, signal mask, sigaltstack and the full
//! xstate in one step.

use libc::user_regs_struct;

use crate::error::ParasiteError;
use crate::remote::Tid;

/// Offset of the XSAVE image from the frame start (64-byte aligned, after the 440-byte frame).
pub(crate) const FPSTATE_OFFSET: usize = 512;
const UC_FLAGS: usize = 8;
const MCONTEXT: usize = 48;
const FPSTATE_PTR: usize = MCONTEXT + 184;
const SIGMASK: usize = MCONTEXT + 256;
/// UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS: full xstate, and `ss` taken as saved.
const UC_FLAGS_VALUE: u64 = 0x1 | 0x2 | 0x4;
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
/// Offset of `sw_reserved.magic1` / `xstate_size` in the legacy FXSAVE area.
const SW_MAGIC1: usize = 464;
const SW_EXTENDED_SIZE: usize = 468;
const SW_XFEATURES: usize = 472;
const SW_XSTATE_SIZE: usize = 480;
const SYS_RESTART_SYSCALL: u64 = 219;

/// Bytes a frame needs for an xstate image of `xstate_len` bytes (frame, image, magic2).
pub(crate) fn frame_len(xstate_len: usize) -> usize {
    FPSTATE_OFFSET + xstate_len + 4
}

/// The registers a thread would continue with if it left its stop with no signal to handle: a
/// syscall it was interrupted in is set up to restart exactly as the kernel would do it (rip back
/// over the `syscall` instruction, rax = the syscall or restart_syscall). This is what the frame
/// holds, since `rt_sigreturn` itself does no restart processing.
pub(crate) fn resumable_regs(saved: &user_regs_struct) -> user_regs_struct {
    let mut r = *saved;
    if (r.orig_rax as i64) >= 0 {
        match r.rax as i64 {
            // ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND
            -514..=-512 => {
                r.rax = r.orig_rax;
                r.rip -= 2;
            }
            // ERESTART_RESTARTBLOCK
            -516 => {
                r.rax = SYS_RESTART_SYSCALL;
                r.rip -= 2;
            }
            _ => {}
        }
    }
    r.orig_rax = u64::MAX;
    r
}

/// A thread stopped in a syscall that resumes through `restart_syscall` and its restart block.
pub(crate) fn needs_restart_block(saved: &user_regs_struct) -> bool {
    (saved.orig_rax as i64) >= 0 && saved.rax as i64 == -516
}

/// Build the frame that returns `tid` to `regs` with blocked mask `mask` and xstate `xstate` (as read
/// with PTRACE_GETREGSET NT_X86_XSTATE), to be placed at target address `at` (64-byte aligned).
pub(crate) fn build(
    tid: Tid,
    regs: &user_regs_struct,
    mask: u64,
    xstate: &[u8],
    at: u64,
) -> Result<Vec<u8>, ParasiteError> {
    let bad = |why: &str| ParasiteError::Blob(format!("tid {tid}: sigframe: {why}"));
    if !at.is_multiple_of(64) {
        return Err(bad("frame address not 64-byte aligned"));
    }
    if xstate.len() < SW_XSTATE_SIZE + 4 + 64 {
        return Err(bad("xstate image shorter than the legacy area and header"));
    }
    // PTRACE_GETREGSET leaves the enabled-feature mask (XCR0) in the first software-reserved word;
    // a signal frame wants the kernel's fpx_sw_bytes there instead.
    let mut xs = xstate.to_vec();
    let xcr0 = u64::from_le_bytes(xs[SW_MAGIC1..SW_MAGIC1 + 8].try_into().unwrap_or_default());
    if xcr0 & 0x3 != 0x3 {
        return Err(bad(
            "xstate lacks the XCR0 word (x87|SSE) in its software bytes",
        ));
    }
    let xsize = xs.len() as u32;
    xs[SW_MAGIC1..SW_MAGIC1 + 4].copy_from_slice(&FP_XSTATE_MAGIC1.to_le_bytes());
    xs[SW_EXTENDED_SIZE..SW_EXTENDED_SIZE + 4].copy_from_slice(&(xsize + 4).to_le_bytes());
    xs[SW_XFEATURES..SW_XFEATURES + 8].copy_from_slice(&xcr0.to_le_bytes());
    xs[SW_XSTATE_SIZE..SW_XSTATE_SIZE + 4].copy_from_slice(&xsize.to_le_bytes());
    let xstate = &xs[..];
    let xsize = xsize as usize;
    let mut f = vec![0u8; frame_len(xstate.len())];
    let mut put = |off: usize, v: u64| f[off..off + 8].copy_from_slice(&v.to_le_bytes());
    put(UC_FLAGS, UC_FLAGS_VALUE);
    let gprs = [
        regs.r8,
        regs.r9,
        regs.r10,
        regs.r11,
        regs.r12,
        regs.r13,
        regs.r14,
        regs.r15,
        regs.rdi,
        regs.rsi,
        regs.rbp,
        regs.rbx,
        regs.rdx,
        regs.rax,
        regs.rcx,
        regs.rsp,
        regs.rip,
        regs.eflags,
    ];
    for (i, v) in gprs.iter().enumerate() {
        put(MCONTEXT + i * 8, *v);
    }
    // cs, gs, fs, ss as 16-bit fields (gs/fs unused on x86-64: the bases are not touched).
    let segs = (regs.cs & 0xffff) | ((regs.ss & 0xffff) << 48);
    put(MCONTEXT + 144, segs);
    put(FPSTATE_PTR, at + FPSTATE_OFFSET as u64);
    put(SIGMASK, mask);
    f[FPSTATE_OFFSET..FPSTATE_OFFSET + xstate.len()].copy_from_slice(xstate);
    let m2 = FPSTATE_OFFSET + xsize;
    f[m2..m2 + 4].copy_from_slice(&FP_XSTATE_MAGIC2.to_le_bytes());
    Ok(f)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn regs() -> user_regs_struct {
        // SAFETY: user_regs_struct is plain integers; all-zero is a valid value.
        let mut r: user_regs_struct = unsafe { std::mem::zeroed() };
        r.rip = 0x1000;
        r
    }

    #[test]
    fn restart_fixup_matches_the_kernel() {
        let mut r = regs();
        r.orig_rax = 35;
        r.rax = (-516i64) as u64;
        let f = resumable_regs(&r);
        assert_eq!((f.rax, f.rip, f.orig_rax), (219, 0xffe, u64::MAX));
        r.orig_rax = 0;
        r.rax = (-512i64) as u64;
        let f = resumable_regs(&r);
        assert_eq!((f.rax, f.rip), (0, 0xffe));
        r.rax = (-4i64) as u64; // EINTR: the syscall already returned, nothing to restart
        assert_eq!(resumable_regs(&r).rip, 0x1000);
        r.orig_rax = u64::MAX;
        r.rax = (-512i64) as u64; // not in a syscall: rax is just a value
        assert_eq!(resumable_regs(&r).rax, (-512i64) as u64);
    }

    #[test]
    fn frame_carries_registers_mask_and_xstate_magics() {
        let mut xs = vec![0u8; 1000];
        xs[SW_MAGIC1] = 0xe7; // XCR0 as PTRACE_GETREGSET reports it
        let mut r = regs();
        r.rsp = 0x7ffd_0000;
        let f = build(Tid(1), &r, 0xabc, &xs, 0x10000).unwrap();
        let at = |o: usize| u64::from_le_bytes(f[o..o + 8].try_into().unwrap());
        assert_eq!(at(MCONTEXT + 15 * 8), 0x7ffd_0000, "rsp");
        assert_eq!(at(MCONTEXT + 16 * 8), 0x1000, "rip");
        assert_eq!(at(SIGMASK), 0xabc);
        assert_eq!(at(FPSTATE_PTR), 0x10000 + FPSTATE_OFFSET as u64);
        let m2 = FPSTATE_OFFSET + 1000;
        assert_eq!(&f[m2..m2 + 4], &FP_XSTATE_MAGIC2.to_le_bytes());
        assert!(build(Tid(1), &r, 0, &xs, 0x10008).is_err(), "misaligned");
        let fpx = FPSTATE_OFFSET + SW_MAGIC1;
        assert_eq!(&f[fpx..fpx + 4], &FP_XSTATE_MAGIC1.to_le_bytes());
        assert_eq!(at(FPSTATE_OFFSET + SW_XFEATURES), 0xe7);
        assert!(
            build(Tid(1), &r, 0, &[0u8; 600], 0x10000).is_err(),
            "no XCR0 word"
        );
    }
}
