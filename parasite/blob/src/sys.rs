//! Raw x86-64 system calls: the blob has no libc.

use core::arch::asm;

const SYS_RT_SIGACTION: u64 = 13;
const SYS_RT_SIGRETURN: u64 = 15;
const SYS_GETITIMER: u64 = 36;
const SYS_BRK: u64 = 12;
const SYS_SIGALTSTACK: u64 = 131;
const SYS_PRCTL: u64 = 157;
const SYS_GETTID: u64 = 186;
const SYS_VMSPLICE: u64 = 278;

/// One system call with six arguments; the raw result (-errno on failure).
#[inline(always)]
pub fn syscall6(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64, a6: u64) -> i64 {
    let ret: i64;
    // SAFETY: a plain system call; the kernel checks every pointer argument, and the callers pass
    // addresses inside the shared area or values the host chose for this task.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr as i64 => ret,
            in("rdi") a1,
            in("rsi") a2,
            in("rdx") a3,
            in("r10") a4,
            in("r8") a5,
            in("r9") a6,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    ret
}

pub fn rt_sigaction(sig: u64, act: u64, old: u64, setsize: u64) -> i64 {
    syscall6(SYS_RT_SIGACTION, sig, act, old, setsize, 0, 0)
}

pub fn getitimer(which: u64, out: u64) -> i64 {
    syscall6(SYS_GETITIMER, which, out, 0, 0, 0, 0)
}

pub fn brk(addr: u64) -> i64 {
    syscall6(SYS_BRK, addr, 0, 0, 0, 0, 0)
}

pub fn sigaltstack(new: u64, old: u64) -> i64 {
    syscall6(SYS_SIGALTSTACK, new, old, 0, 0, 0, 0)
}

pub fn prctl(option: u64, arg2: u64) -> i64 {
    syscall6(SYS_PRCTL, option, arg2, 0, 0, 0, 0)
}

pub fn gettid() -> i64 {
    syscall6(SYS_GETTID, 0, 0, 0, 0, 0, 0)
}

pub fn vmsplice(fd: i32, iov: u64, count: u64, flags: u64) -> i64 {
    syscall6(SYS_VMSPLICE, fd as u64, iov, count, flags, 0, 0)
}

/// `rt_sigreturn` from the frame at `frame` (the kernel reads it at `rsp - 8`, where a handler's `ret`
/// would have popped the return address). Never returns: the task continues in the frame's registers.
pub fn rt_sigreturn(frame: u64) -> ! {
    // SAFETY: the host built a complete rt_sigframe at `frame` from the task's own saved state; after
    // this syscall nothing of the blob runs any more.
    unsafe {
        asm!(
            "mov rsp, {sp}",
            "syscall",
            "ud2",
            sp = in(reg) frame + 8,
            in("rax") SYS_RT_SIGRETURN,
            options(noreturn)
        );
    }
}
