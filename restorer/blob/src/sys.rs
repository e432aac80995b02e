//! Raw x86-64 system calls: the blob has no libc.

use core::arch::asm;

const SYS_READ_PREAD64: u64 = 17;
const SYS_WRITE: u64 = 1;
const SYS_CLOSE: u64 = 3;
const SYS_MMAP: u64 = 9;
const SYS_MPROTECT: u64 = 10;
const SYS_MADVISE: u64 = 28;
const SYS_MUNMAP: u64 = 11;
const SYS_RT_SIGACTION: u64 = 13;
const SYS_SETITIMER: u64 = 38;
const SYS_PRCTL: u64 = 157;
const SYS_ARCH_PRCTL: u64 = 158;
const SYS_SET_TID_ADDRESS: u64 = 218;
const SYS_EXIT_GROUP: u64 = 231;
const SYS_RSEQ: u64 = 334;
const SYS_RT_SIGPROCMASK: u64 = 14;
const SYS_GETPID: u64 = 39;
const SYS_GETTID: u64 = 186;
const SYS_RT_SIGQUEUEINFO: u64 = 129;
const SYS_TIMER_CREATE: u64 = 222;
const SYS_TIMER_SETTIME: u64 = 223;
const SYS_RT_TGSIGQUEUEINFO: u64 = 297;

#[inline(always)]
fn syscall6(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64, a6: u64) -> i64 {
    let ret: i64;
    // SAFETY: a plain system call; every pointer argument is checked by the kernel, and the callers only
    // pass addresses inside the blob area or ranges they are about to (re)map.
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

pub fn write(fd: i32, buf: *const u8, len: usize) -> i64 {
    syscall6(SYS_WRITE, fd as u64, buf as u64, len as u64, 0, 0, 0)
}

pub fn pread64(fd: i32, buf: u64, len: u64, off: u64) -> i64 {
    syscall6(SYS_READ_PREAD64, fd as u64, buf, len, off, 0, 0)
}

pub fn close(fd: i32) -> i64 {
    syscall6(SYS_CLOSE, fd as u64, 0, 0, 0, 0, 0)
}

pub fn mmap(addr: u64, len: u64, prot: u64, flags: u64, fd: u64, off: u64) -> i64 {
    syscall6(SYS_MMAP, addr, len, prot, flags, fd, off)
}

pub fn madvise(addr: u64, len: u64, advice: u64) -> i64 {
    syscall6(SYS_MADVISE, addr, len, advice, 0, 0, 0)
}

pub fn mprotect(addr: u64, len: u64, prot: u64) -> i64 {
    syscall6(SYS_MPROTECT, addr, len, prot, 0, 0, 0)
}

pub fn munmap(addr: u64, len: u64) -> i64 {
    syscall6(SYS_MUNMAP, addr, len, 0, 0, 0, 0)
}

pub fn rt_sigaction(sig: u64, act: u64, old: u64, setsize: u64) -> i64 {
    syscall6(SYS_RT_SIGACTION, sig, act, old, setsize, 0, 0)
}

pub fn setitimer(which: u64, value: u64) -> i64 {
    syscall6(SYS_SETITIMER, which, value, 0, 0, 0, 0)
}

pub fn prctl(op: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    syscall6(SYS_PRCTL, op, a2, a3, a4, a5, 0)
}

pub fn arch_prctl(code: u64, addr: u64) -> i64 {
    syscall6(SYS_ARCH_PRCTL, code, addr, 0, 0, 0, 0)
}

pub fn set_tid_address(addr: u64) -> i64 {
    syscall6(SYS_SET_TID_ADDRESS, addr, 0, 0, 0, 0, 0)
}

pub fn rseq(addr: u64, len: u64, flags: u64, sig: u64) -> i64 {
    syscall6(SYS_RSEQ, addr, len, flags, sig, 0, 0)
}

pub fn rt_sigprocmask(how: u64, set: u64, old: u64, setsize: u64) -> i64 {
    syscall6(SYS_RT_SIGPROCMASK, how, set, old, setsize, 0, 0)
}

pub fn getpid() -> i64 {
    syscall6(SYS_GETPID, 0, 0, 0, 0, 0, 0)
}

pub fn gettid() -> i64 {
    syscall6(SYS_GETTID, 0, 0, 0, 0, 0, 0)
}

pub fn rt_sigqueueinfo(pid: u64, sig: u64, info: u64) -> i64 {
    syscall6(SYS_RT_SIGQUEUEINFO, pid, sig, info, 0, 0, 0)
}

pub fn rt_tgsigqueueinfo(tgid: u64, tid: u64, sig: u64, info: u64) -> i64 {
    syscall6(SYS_RT_TGSIGQUEUEINFO, tgid, tid, sig, info, 0, 0)
}

pub fn timer_create(clock: u64, sevp: u64, id_out: u64) -> i64 {
    syscall6(SYS_TIMER_CREATE, clock, sevp, id_out, 0, 0, 0)
}

pub fn timer_settime(id: u64, flags: u64, new: u64, old: u64) -> i64 {
    syscall6(SYS_TIMER_SETTIME, id, flags, new, old, 0, 0)
}

pub fn exit_group(code: i32) -> ! {
    loop {
        syscall6(SYS_EXIT_GROUP, code as u64, 0, 0, 0, 0, 0);
    }
}

const SYS_SET_ROBUST_LIST: u64 = 273;

pub fn set_robust_list(head: u64, len: u64) -> i64 {
    syscall6(SYS_SET_ROBUST_LIST, head, len, 0, 0, 0, 0)
}
