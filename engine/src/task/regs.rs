//! CPU state of a seized thread, read with ptrace: general registers (fs/gs base included), the XSAVE area,
//! the rseq registration and the robust futex list; plus the two rules the kernel would have applied on the
//! way back to user space (syscall restart, rseq abort). Signal state is in [`super::signals`].

use dormant_image::records::{GpRegs, RobustList, Rseq};
use dormant_sys::host;
use dormant_sys::regs::{
    UserRegs, ERESTARTNOHAND, ERESTARTNOINTR, ERESTARTSYS, ERESTART_RESTARTBLOCK, NT_PRSTATUS,
    SYSCALL_INSN_LEN,
};
use dormant_sys::rseq::{
    RSEQ_CS_ABORT_IP, RSEQ_CS_LEN, RSEQ_CS_OFFSET, RSEQ_CS_POST_COMMIT_OFFSET, RSEQ_CS_START_IP,
};
use nix::errno::Errno;

use crate::error::{DumpError, Result};

/// What the restart rule did to a set of saved registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartFixup {
    /// Not interrupted in a restartable syscall.
    None,
    /// The syscall re-executes after restore (rax = orig_rax, rip backed up onto the `syscall`).
    Reexecute,
    /// A restart-block syscall (nanosleep, clock_nanosleep, poll with timeout...) returns -EINTR instead.
    Eintr,
}

/// Applies the kernel's syscall-restart rule to registers saved in a syscall-exit stop: what the kernel would
/// have done on its way back to user space had the task not been stopped. `orig_rax < 0` means "not in a
/// syscall" (also what the parasite uses for injected code).
pub fn apply_restart_rule(regs: &mut GpRegs) -> RestartFixup {
    if (regs.orig_rax as i64) < 0 {
        return RestartFixup::None;
    }
    match -(regs.rax as i64) {
        ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
            regs.rax = regs.orig_rax;
            regs.rip = regs.rip.wrapping_sub(SYSCALL_INSN_LEN);
            RestartFixup::Reexecute
        }
        ERESTART_RESTARTBLOCK => {
            regs.rax = (-(libc::EINTR as i64)) as u64;
            RestartFixup::Eintr
        }
        _ => RestartFixup::None,
    }
}

/// General registers (NT_PRSTATUS) as the kernel saved them; refuses a 32-bit (compat) task.
pub fn get_gpregs(tid: u32) -> Result<GpRegs> {
    let mut raw = [0u8; std::mem::size_of::<UserRegs>()];
    let n = host::ptrace_getregset(tid as i32, NT_PRSTATUS, &mut raw).map_err(|source| {
        DumpError::Ptrace {
            pid: tid,
            op: "PTRACE_GETREGSET(NT_PRSTATUS)",
            source,
        }
    })?;
    if n != raw.len() {
        return Err(DumpError::ProcParse {
            pid: tid,
            file: "NT_PRSTATUS",
            reason: format!("{n} bytes of registers: a 32-bit task cannot be dumped"),
        });
    }
    // SAFETY: UserRegs is the kernel's user_regs_struct, plain old data (only u64 fields), and raw holds
    // exactly its size.
    let regs: UserRegs = unsafe { std::ptr::read_unaligned(raw.as_ptr().cast()) };
    Ok(GpRegs::from(regs))
}

/// The size of the XSAVE area for the features enabled in XCR0 (CPUID leaf 0xD, sub-leaf 0, EBX).
pub fn xsave_size() -> usize {
    dormant_sys::cpu::xsave_size() as usize
}

/// The NT_X86_XSTATE regset exactly as the kernel returns it (uncompacted XSAVE layout).
pub fn get_xstate(tid: u32) -> Result<Vec<u8>> {
    host::get_xstate(tid as i32).map_err(|source| DumpError::Ptrace {
        pid: tid,
        op: "PTRACE_GETREGSET(NT_X86_XSTATE)",
        source,
    })
}

/// The rseq registration (PTRACE_GET_RSEQ_CONFIGURATION). `None` when the thread registered none or the
/// kernel lacks the request (it then cannot have told us anything, and the restorer leaves rseq off).
pub fn get_rseq(tid: u32) -> Result<Option<Rseq>> {
    let conf = match host::get_rseq_configuration(tid as i32) {
        Ok(conf) => conf,
        Err(Errno::EIO) | Err(Errno::EINVAL) => {
            log::info!("pid {tid}: PTRACE_GET_RSEQ_CONFIGURATION not supported; rseq not recorded");
            return Ok(None);
        }
        Err(source) => {
            return Err(DumpError::Ptrace {
                pid: tid,
                op: "PTRACE_GET_RSEQ_CONFIGURATION",
                source,
            })
        }
    };
    if conf.rseq_abi_pointer == 0 {
        return Ok(None);
    }
    Ok(Some(Rseq {
        addr: conf.rseq_abi_pointer,
        len: conf.rseq_abi_size,
        signature: conf.signature,
    }))
}

/// The thread's robust futex list registration (`get_robust_list` on its tid); `None` when it registered
/// none. Needs only ptrace-read access to the thread, no injection.
pub fn get_robust_list(tid: u32) -> Result<Option<RobustList>> {
    let mut head: u64 = 0;
    let mut len: usize = 0;
    // SAFETY: the kernel writes one pointer into `head` and one size into `len`, both on our stack.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            tid as libc::c_long,
            &mut head as *mut u64,
            &mut len as *mut usize,
        )
    };
    Errno::result(rc).map_err(|source| DumpError::Ptrace {
        pid: tid,
        op: "get_robust_list",
        source,
    })?;
    Ok((head != 0).then_some(RobustList {
        head,
        len: len as u64,
    }))
}

/// If the thread stopped inside an rseq critical section, its saved rip moves to the section's abort
/// handler: the kernel would have done that on return to user space. `read` reads target memory.
pub fn apply_rseq_abort(
    regs: &mut GpRegs,
    rseq: &Rseq,
    read: impl Fn(u64, &mut [u8]) -> std::io::Result<()>,
) -> std::io::Result<bool> {
    let mut cs_ptr = [0u8; 8];
    read(rseq.addr + RSEQ_CS_OFFSET, &mut cs_ptr)?;
    let cs = u64::from_ne_bytes(cs_ptr);
    if cs == 0 {
        return Ok(false);
    }
    let mut raw = [0u8; RSEQ_CS_LEN];
    read(cs, &mut raw)?;
    let word = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&raw[o..o + 8]);
        u64::from_ne_bytes(b)
    };
    let (start, len, abort) = (
        word(RSEQ_CS_START_IP),
        word(RSEQ_CS_POST_COMMIT_OFFSET),
        word(RSEQ_CS_ABORT_IP),
    );
    if regs.rip >= start && regs.rip - start < len {
        log::debug!(
            "rip {:#x} in rseq section {start:#x}+{len:#x}: abort at {abort:#x}",
            regs.rip
        );
        regs.rip = abort;
        return Ok(true);
    }
    Ok(false)
}

/// Reads target memory through `/proc/<pid>/mem` into `buf` (a helper for [`apply_rseq_abort`]).
pub fn read_mem_exact(mem: &std::fs::File, addr: u64, buf: &mut [u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    mem.read_exact_at(buf, addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs(orig_rax: u64, rax: i64, rip: u64) -> GpRegs {
        GpRegs {
            orig_rax,
            rax: rax as u64,
            rip,
            ..Default::default()
        }
    }

    #[test]
    fn erestartsys_family_reexecutes() {
        for code in [512i64, 513, 514] {
            let mut r = regs(0, -code, 0x1000);
            assert_eq!(apply_restart_rule(&mut r), RestartFixup::Reexecute);
            assert_eq!(r.rax, 0, "rax = orig_rax (read is 0)");
            assert_eq!(r.rip, 0x0ffe);
            let mut r = regs(202, -code, 0x5555_0000_0010);
            apply_restart_rule(&mut r);
            assert_eq!((r.rax, r.rip), (202, 0x5555_0000_000e));
        }
    }

    #[test]
    fn restart_block_becomes_eintr() {
        let mut r = regs(230, -516, 0x2000);
        assert_eq!(apply_restart_rule(&mut r), RestartFixup::Eintr);
        assert_eq!(r.rax as i64, -4);
        assert_eq!(r.rip, 0x2000, "rip unchanged");
    }

    #[test]
    fn not_in_syscall_untouched() {
        // orig_rax = -1: interrupted in user space (or injected code); rax may hold anything.
        let mut r = regs(u64::MAX, -512, 0x3000);
        let before = r;
        assert_eq!(apply_restart_rule(&mut r), RestartFixup::None);
        assert_eq!(r, before);
    }

    #[test]
    fn other_results_untouched() {
        for rax in [0i64, 5, -4, -11, -515, -517] {
            let mut r = regs(0, rax, 0x3000);
            let before = r;
            assert_eq!(apply_restart_rule(&mut r), RestartFixup::None);
            assert_eq!(r, before);
        }
    }

    #[test]
    fn xsave_size_is_sane() {
        let s = xsave_size();
        // Legacy area (512) + XSAVE header (64) at least; not a multiple of 64 in general (2440 with
        // PKRU on AMD EPYC).
        assert!(s >= 576, "{s}");
    }

    #[test]
    fn rseq_abort_moves_rip_inside_section() {
        let mem = |addr: u64, buf: &mut [u8]| -> std::io::Result<()> {
            match addr {
                0x1008 => buf.copy_from_slice(&0x2000u64.to_ne_bytes()),
                0x2000 => {
                    buf.fill(0);
                    buf[8..16].copy_from_slice(&0x4000u64.to_ne_bytes());
                    buf[16..24].copy_from_slice(&0x20u64.to_ne_bytes());
                    buf[24..32].copy_from_slice(&0x5000u64.to_ne_bytes());
                }
                _ => panic!("unexpected read {addr:#x}"),
            }
            Ok(())
        };
        let rseq = Rseq {
            addr: 0x1000,
            len: 32,
            signature: 0x53053053,
        };
        let mut r = regs(u64::MAX, 0, 0x4010);
        assert!(apply_rseq_abort(&mut r, &rseq, mem).unwrap());
        assert_eq!(r.rip, 0x5000);
        let mut r = regs(u64::MAX, 0, 0x4020);
        assert!(!apply_rseq_abort(&mut r, &rseq, mem).unwrap());
        assert_eq!(r.rip, 0x4020);
    }
}
