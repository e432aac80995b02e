//! Raw x86-64 system calls for the no_std blobs, which have no libc: one inline `syscall` and a named
//! wrapper per call they make.
//!
//! These take and return what the kernel does: addresses as integers, results as `-errno` on failure.
//! The kernel checks every address it is given, so a bad one is an `EFAULT`, not a wild write; still,
//! they are meant for code that owns its whole address space (the blobs). Host code calls [`crate::host`]
//! or nix instead.

use core::arch::asm;

use crate::nr;

/// One system call with six arguments; the raw result (-errno on failure).
#[inline(always)]
pub fn syscall6(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64, a6: u64) -> i64 {
    let ret: i64;
    // SAFETY: a plain system call; the kernel checks every pointer argument, and the callers pass
    // addresses of memory they own or values chosen for this task.
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

/// `Ok(value)` or `Err(-errno)` of a raw result.
pub fn check(ret: i64) -> Result<i64, i64> {
    if (-4095..0).contains(&ret) {
        Err(ret)
    } else {
        Ok(ret)
    }
}

pub fn read(fd: i32, buf: u64, len: u64) -> i64 {
    syscall6(nr::READ, fd as u64, buf, len, 0, 0, 0)
}

pub fn write(fd: i32, buf: u64, len: u64) -> i64 {
    syscall6(nr::WRITE, fd as u64, buf, len, 0, 0, 0)
}

pub fn pread64(fd: i32, buf: u64, len: u64, off: u64) -> i64 {
    syscall6(nr::PREAD64, fd as u64, buf, len, off, 0, 0)
}

pub fn close(fd: i32) -> i64 {
    syscall6(nr::CLOSE, fd as u64, 0, 0, 0, 0, 0)
}

pub fn mmap(addr: u64, len: u64, prot: u64, flags: u64, fd: u64, off: u64) -> i64 {
    syscall6(nr::MMAP, addr, len, prot, flags, fd, off)
}

pub fn mprotect(addr: u64, len: u64, prot: u64) -> i64 {
    syscall6(nr::MPROTECT, addr, len, prot, 0, 0, 0)
}

pub fn munmap(addr: u64, len: u64) -> i64 {
    syscall6(nr::MUNMAP, addr, len, 0, 0, 0, 0)
}

pub fn madvise(addr: u64, len: u64, advice: u64) -> i64 {
    syscall6(nr::MADVISE, addr, len, advice, 0, 0, 0)
}

pub fn mlock2(addr: u64, len: u64, flags: u64) -> i64 {
    syscall6(nr::MLOCK2, addr, len, flags, 0, 0, 0)
}

pub fn mlockall(flags: u64) -> i64 {
    syscall6(nr::MLOCKALL, flags, 0, 0, 0, 0, 0)
}

pub fn pkey_alloc(flags: u64, access_rights: u64) -> i64 {
    syscall6(nr::PKEY_ALLOC, flags, access_rights, 0, 0, 0, 0)
}

pub fn pkey_free(pkey: u64) -> i64 {
    syscall6(nr::PKEY_FREE, pkey, 0, 0, 0, 0, 0)
}

pub fn pkey_mprotect(addr: u64, len: u64, prot: u64, pkey: u64) -> i64 {
    syscall6(nr::PKEY_MPROTECT, addr, len, prot, pkey, 0, 0)
}

pub fn brk(addr: u64) -> i64 {
    syscall6(nr::BRK, addr, 0, 0, 0, 0, 0)
}

pub fn rt_sigaction(sig: u64, act: u64, old: u64, setsize: u64) -> i64 {
    syscall6(nr::RT_SIGACTION, sig, act, old, setsize, 0, 0)
}

pub fn rt_sigprocmask(how: u64, set: u64, old: u64, setsize: u64) -> i64 {
    syscall6(nr::RT_SIGPROCMASK, how, set, old, setsize, 0, 0)
}

pub fn rt_sigpending(set: u64, setsize: u64) -> i64 {
    syscall6(nr::RT_SIGPENDING, set, setsize, 0, 0, 0, 0)
}

/// rt_sigtimedwait(set, info, timeout, setsize); a zero timeout only dequeues what is pending.
pub fn rt_sigtimedwait(set: u64, info: u64, timeout: u64, setsize: u64) -> i64 {
    syscall6(nr::RT_SIGTIMEDWAIT, set, info, timeout, setsize, 0, 0)
}

pub fn rt_sigqueueinfo(pid: u64, sig: u64, info: u64) -> i64 {
    syscall6(nr::RT_SIGQUEUEINFO, pid, sig, info, 0, 0, 0)
}

pub fn rt_tgsigqueueinfo(tgid: u64, tid: u64, sig: u64, info: u64) -> i64 {
    syscall6(nr::RT_TGSIGQUEUEINFO, tgid, tid, sig, info, 0, 0)
}

pub fn sigaltstack(new: u64, old: u64) -> i64 {
    syscall6(nr::SIGALTSTACK, new, old, 0, 0, 0, 0)
}

pub fn getitimer(which: u64, out: u64) -> i64 {
    syscall6(nr::GETITIMER, which, out, 0, 0, 0, 0)
}

pub fn setitimer(which: u64, value: u64) -> i64 {
    syscall6(nr::SETITIMER, which, value, 0, 0, 0, 0)
}

pub fn prctl(op: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    syscall6(nr::PRCTL, op, a2, a3, a4, a5, 0)
}

pub fn arch_prctl(code: u64, addr: u64) -> i64 {
    syscall6(nr::ARCH_PRCTL, code, addr, 0, 0, 0, 0)
}

pub fn getpid() -> i64 {
    syscall6(nr::GETPID, 0, 0, 0, 0, 0, 0)
}

pub fn gettid() -> i64 {
    syscall6(nr::GETTID, 0, 0, 0, 0, 0, 0)
}

pub fn set_tid_address(addr: u64) -> i64 {
    syscall6(nr::SET_TID_ADDRESS, addr, 0, 0, 0, 0, 0)
}

pub fn set_robust_list(head: u64, len: u64) -> i64 {
    syscall6(nr::SET_ROBUST_LIST, head, len, 0, 0, 0, 0)
}

pub fn rseq(addr: u64, len: u64, flags: u64, sig: u64) -> i64 {
    syscall6(nr::RSEQ, addr, len, flags, sig, 0, 0)
}

pub fn timer_create(clock: u64, sevp: u64, id_out: u64) -> i64 {
    syscall6(nr::TIMER_CREATE, clock, sevp, id_out, 0, 0, 0)
}

pub fn timer_settime(id: u64, flags: u64, new: u64, old: u64) -> i64 {
    syscall6(nr::TIMER_SETTIME, id, flags, new, old, 0, 0)
}

pub fn vmsplice(fd: i32, iov: u64, count: u64, flags: u64) -> i64 {
    syscall6(nr::VMSPLICE, fd as u64, iov, count, flags, 0, 0)
}

pub fn pipe2(fds: u64, flags: u64) -> i64 {
    syscall6(nr::PIPE2, fds, flags, 0, 0, 0, 0)
}

pub fn socketpair(domain: u64, kind: u64, protocol: u64, fds: u64) -> i64 {
    syscall6(nr::SOCKETPAIR, domain, kind, protocol, fds, 0, 0)
}

pub fn sendto(fd: i32, buf: u64, len: u64, flags: u64, addr: u64, addrlen: u64) -> i64 {
    syscall6(nr::SENDTO, fd as u64, buf, len, flags, addr, addrlen)
}

pub fn recvfrom(fd: i32, buf: u64, len: u64, flags: u64, addr: u64, addrlen: u64) -> i64 {
    syscall6(nr::RECVFROM, fd as u64, buf, len, flags, addr, addrlen)
}

pub fn fcntl(fd: i32, cmd: u64, arg: u64) -> i64 {
    syscall6(nr::FCNTL, fd as u64, cmd, arg, 0, 0, 0)
}

pub fn sendmsg(fd: i32, msg: u64, flags: u64) -> i64 {
    syscall6(nr::SENDMSG, fd as u64, msg, flags, 0, 0, 0)
}

pub fn recvmsg(fd: i32, msg: u64, flags: u64) -> i64 {
    syscall6(nr::RECVMSG, fd as u64, msg, flags, 0, 0, 0)
}

// Credentials: each call changes the calling thread's credentials only (the kernel's rule; glibc's
// broadcast to every thread is a library convention these wrappers do not follow).

pub fn setgroups(count: u64, list: u64) -> i64 {
    syscall6(nr::SETGROUPS, count, list, 0, 0, 0, 0)
}

pub fn setresuid(r: u32, e: u32, s: u32) -> i64 {
    syscall6(nr::SETRESUID, r as u64, e as u64, s as u64, 0, 0, 0)
}

pub fn setresgid(r: u32, e: u32, s: u32) -> i64 {
    syscall6(nr::SETRESGID, r as u64, e as u64, s as u64, 0, 0, 0)
}

/// Returns the previous fsuid (never an error code).
pub fn setfsuid(id: u32) -> i64 {
    syscall6(nr::SETFSUID, id as u64, 0, 0, 0, 0, 0)
}

/// Returns the previous fsgid (never an error code).
pub fn setfsgid(id: u32) -> i64 {
    syscall6(nr::SETFSGID, id as u64, 0, 0, 0, 0, 0)
}

/// `capget(header, data)`: `data` points at two `CapData`.
pub fn capget(header: u64, data: u64) -> i64 {
    syscall6(nr::CAPGET, header, data, 0, 0, 0, 0)
}

/// `capset(header, data)`: `data` points at two `CapData`.
pub fn capset(header: u64, data: u64) -> i64 {
    syscall6(nr::CAPSET, header, data, 0, 0, 0, 0)
}

// Scheduling and seccomp: each call acts on the calling thread only (`who`/`pid` 0).

/// `setpriority(PRIO_PROCESS, 0, nice)`: the calling thread's nice value.
pub fn setpriority_self(nice: i32) -> i64 {
    syscall6(nr::SETPRIORITY, 0, 0, nice as i64 as u64, 0, 0, 0)
}

/// `sched_setattr(0, attr, 0)`: `attr` points at a [`crate::process::SchedAttr`].
pub fn sched_setattr_self(attr: u64) -> i64 {
    syscall6(nr::SCHED_SETATTR, 0, attr, 0, 0, 0, 0)
}

/// `sched_setaffinity(0, len, mask)`.
pub fn sched_setaffinity_self(len: u64, mask: u64) -> i64 {
    syscall6(nr::SCHED_SETAFFINITY, 0, len, mask, 0, 0, 0)
}

/// `ioprio_set(IOPRIO_WHO_PROCESS, 0, ioprio)`.
pub fn ioprio_set_self(ioprio: u32) -> i64 {
    syscall6(nr::IOPRIO_SET, 1, 0, ioprio as u64, 0, 0, 0)
}

/// `seccomp(op, flags, args)`.
pub fn seccomp(op: u64, flags: u64, args: u64) -> i64 {
    syscall6(nr::SECCOMP, op, flags, args, 0, 0, 0)
}

pub fn futex(addr: u64, op: u64, val: u64, timeout: u64) -> i64 {
    syscall6(nr::FUTEX, addr, op, val, timeout, 0, 0)
}

/// Ends the whole process; never returns.
pub fn exit_group(code: i32) -> ! {
    loop {
        syscall6(nr::EXIT_GROUP, code as u64, 0, 0, 0, 0, 0);
    }
}
