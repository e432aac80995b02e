//! The parasite blob: runs one dumper command inside the seized task, then returns the task to its own
//! registers.
//!
//! The host side maps it in a memfd area shared with the dumper, writes a [`Control`] block, points the
//! task at [`parasite_entry`] with `rdi` = the block and a stack inside the area, and resumes it with every
//! signal blocked. The blob checks the block, runs the command with raw syscalls, stores the answer,
//! refreshes the frame's altstack field and executes `rt_sigreturn` on the frame the host prepared from
//! the task's saved registers, mask and xstate. So every command ends with the task back in its own
//! state, whether or not the dumper is still there to watch: a dumper killed mid-command leaves a task
//! that continues its own code, never one stuck in parasite code.
//!
//! What it does NOT do: it never allocates, never uses libc or std, never blocks (vmsplice runs with
//! SPLICE_F_NONBLOCK) and never decides anything the host could decide.
#![no_std]
#![no_main]

use core::arch::{asm, naked_asm};
use core::sync::atomic::{AtomicU64, Ordering};

use dormant_parasite_proto::{
    step, Control, Iov, PipeJob, Snapshot, ThreadState, CMD_SNAPSHOT, CMD_SYSCALL,
    CMD_THREAD_STATE, CMD_VMSPLICE, CONTROL_MAGIC, PROTO_VERSION,
};
use dormant_sys::process::{
    PR_GET_CHILD_SUBREAPER, PR_GET_DUMPABLE, PR_GET_PDEATHSIG, PR_GET_SECUREBITS,
    PR_GET_TID_ADDRESS,
};
use dormant_sys::raw::{self as sys, check};
use dormant_sys::sigframe::FRAME_UC_STACK;
use dormant_sys::signal::{KernelItimerval, KernelSigaction, StackT, NSIG, SIGSET_SIZE};

// The memory functions the compiler calls (no libc here).
use dormant_sys::rt as _;

const EINVAL: i64 = 22;
const SPLICE_F_NONBLOCK: u64 = 2;
const EAGAIN: i64 = 11;

/// The block of the command being run, for the panic handler (which must still return the task).
static CURRENT: AtomicU64 = AtomicU64::new(0);

/// Entry point: `rdi` = the [`Control`] block. Aligns the stack and calls [`run`], which never returns.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn parasite_entry() -> ! {
    naked_asm!("and rsp, -16", "xor ebp, ebp", "call {run}", "ud2", run = sym run)
}

extern "C" fn run(ctl: *mut Control) -> ! {
    CURRENT.store(ctl as u64, Ordering::Relaxed);
    // SAFETY: the host placed a Control block at `ctl`, inside the area it mapped for us, and does not
    // touch it while the task runs.
    let c = unsafe { &mut *ctl };
    if c.magic != CONTROL_MAGIC || c.version != PROTO_VERSION {
        // Not ours (or a version mismatch): nothing else in the block can be trusted, so do not even
        // look at `frame`; a trap is the only safe answer.
        trap_forever();
    }
    c.failed_step = 0;
    let (ret, failed) = match c.command {
        CMD_SYSCALL => (
            sys::syscall6(
                c.args[0], c.args[1], c.args[2], c.args[3], c.args[4], c.args[5], c.args[6],
            ),
            0,
        ),
        CMD_SNAPSHOT => snapshot(c.data as *mut Snapshot),
        CMD_THREAD_STATE => thread_state(c.data as *mut ThreadState),
        CMD_VMSPLICE => vmsplice(c),
        _ => (-EINVAL, step::BAD_COMMAND),
    };
    finish(c, ret, failed)
}

/// Store the answer and return the task to its own registers.
fn finish(c: &mut Control, ret: i64, failed: u32) -> ! {
    c.ret = ret;
    c.failed_step = failed;
    c.completed = c.completed.wrapping_add(1);
    // The kernel re-installs the sigaltstack it finds in the frame: give it the current one.
    let _ = sys::sigaltstack(0, c.frame + FRAME_UC_STACK as u64);
    rt_sigreturn(c.frame)
}

fn trap_forever() -> ! {
    loop {
        // SAFETY: int3 only raises SIGTRAP; no memory or register is touched.
        unsafe { asm!("int3", options(nomem, nostack)) };
    }
}

fn snapshot(out: *mut Snapshot) -> (i64, u32) {
    match fill_snapshot(out) {
        Ok(()) => (0, 0),
        Err((errno, at)) => (errno, at),
    }
}

fn fill_snapshot(out: *mut Snapshot) -> Result<(), (i64, u32)> {
    // SAFETY: `out` is the data region of the shared area, large enough for a Snapshot (host-checked).
    let s = unsafe { &mut *out };
    for sig in 1..=NSIG {
        let slot: *mut KernelSigaction = &mut s.sigactions[sig - 1];
        check(sys::rt_sigaction(sig as u64, 0, slot as u64, SIGSET_SIZE))
            .map_err(|e| (e, step::SIGACTION))?;
    }
    for (which, slot) in s.itimers.iter_mut().enumerate() {
        let slot: *mut KernelItimerval = slot;
        check(sys::getitimer(which as u64, slot as u64)).map_err(|e| (e, step::ITIMER))?;
    }
    s.brk = check(sys::brk(0)).map_err(|e| (e, step::BRK))? as u64;
    fill_thread(&mut s.thread)?;
    let mut int = 0i32;
    let int_ptr = &mut int as *mut i32 as u64;
    check(sys::prctl(PR_GET_PDEATHSIG, int_ptr, 0, 0, 0)).map_err(|e| (e, step::PDEATHSIG))?;
    s.pdeathsig = int;
    s.dumpable = check(sys::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)).map_err(|e| (e, step::DUMPABLE))? as i32;
    int = 0;
    check(sys::prctl(PR_GET_CHILD_SUBREAPER, int_ptr, 0, 0, 0)).map_err(|e| (e, step::CHILD_SUBREAPER))?;
    s.child_subreaper = int;
    s.securebits =
        check(sys::prctl(PR_GET_SECUREBITS, 0, 0, 0, 0)).map_err(|e| (e, step::SECUREBITS))? as i32;
    Ok(())
}

fn thread_state(out: *mut ThreadState) -> (i64, u32) {
    // SAFETY: `out` is the data region of the shared area, large enough for a ThreadState.
    match fill_thread(unsafe { &mut *out }) {
        Ok(()) => (0, 0),
        Err((errno, at)) => (errno, at),
    }
}

fn fill_thread(t: &mut ThreadState) -> Result<(), (i64, u32)> {
    let alt: *mut StackT = &mut t.altstack;
    check(sys::sigaltstack(0, alt as u64)).map_err(|e| (e, step::SIGALTSTACK))?;
    let mut addr = 0u64;
    match check(sys::prctl(PR_GET_TID_ADDRESS, &mut addr as *mut u64 as u64, 0, 0, 0)) {
        Ok(_) => {
            t.tid_address = addr;
            t.tid_address_ok = 1;
        }
        Err(e) if e == -EINVAL => t.tid_address_ok = 0,
        Err(e) => return Err((e, step::TID_ADDRESS)),
    }
    t.tid = sys::gettid() as i32;
    Ok(())
}

/// Move each job's pages into its pipe without blocking; stops at the first pipe that is full
/// (EAGAIN: the host sized the jobs wrongly) or fails. A partly moved iovec is advanced in place (the
/// array is scratch the host rewrites for every command). With `args[2]` set, each iovec's crc32 is
/// stored first (see [`CMD_VMSPLICE`]).
fn vmsplice(c: &mut Control) -> (i64, u32) {
    let jobs = c.data as *mut PipeJob;
    let iovs = (c.data + c.args[1]) as *mut Iov;
    let crcs = (c.args[2] != 0).then(|| (c.data + c.args[2]) as *mut u32);
    let mut total = 0i64;
    for j in 0..c.args[0] as usize {
        // SAFETY: the host wrote args[0] jobs at `data` and their iovecs at `data + args[1]`, inside the
        // data region.
        let job = unsafe { &mut *jobs.add(j) };
        job.moved = 0;
        let mut next = job.iov_first as usize;
        let end = next + job.iov_count as usize;
        if let Some(crcs) = crcs {
            for k in next..end {
                // SAFETY: `k < end`: inside the job's iovecs; the crc array has one slot per iovec
                // (host-checked to fit the data region). The iovec names pages of this task's own
                // readable mappings that the host found present, and every other thread is stopped,
                // so they are readable and stay unchanged until the vmsplice below.
                unsafe {
                    let iov = *iovs.add(k);
                    let bytes = core::slice::from_raw_parts(iov.base as *const u8, iov.len as usize);
                    *crcs.add(k) = crc32fast::hash(bytes);
                }
            }
        }
        while next < end {
            // SAFETY: `next < end`: inside the job's part of the iovec array.
            let iov = unsafe { iovs.add(next) };
            let ret = sys::vmsplice(job.fd, iov as u64, (end - next) as u64, SPLICE_F_NONBLOCK);
            let mut moved = match check(ret) {
                Ok(0) => return (-EAGAIN, step::VMSPLICE),
                Ok(moved) => moved as u64,
                Err(e) => return (e, step::VMSPLICE),
            };
            job.moved += moved;
            total += moved as i64;
            while moved > 0 && next < end {
                // SAFETY: `next < end`, as above.
                let cur = unsafe { &mut *iovs.add(next) };
                if moved < cur.len {
                    cur.base += moved;
                    cur.len -= moved;
                    moved = 0;
                } else {
                    moved -= cur.len;
                    next += 1;
                }
            }
        }
    }
    (total, 0)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    let ctl = CURRENT.load(Ordering::Relaxed) as *mut Control;
    if ctl.is_null() {
        trap_forever();
    }
    // SAFETY: CURRENT is only set from a block that passed the magic check.
    finish(unsafe { &mut *ctl }, -EINVAL, step::BAD_COMMAND)
}

/// `rt_sigreturn` from the frame at `frame` (the kernel reads it at `rsp - 8`, where a handler's `ret`
/// would have popped the return address). Never returns: the task continues in the frame's registers.
fn rt_sigreturn(frame: u64) -> ! {
    // SAFETY: the host built a complete rt_sigframe at `frame` from the task's own saved state; after
    // this syscall nothing of the blob runs any more.
    unsafe {
        asm!(
            "mov rsp, {sp}",
            "syscall",
            "ud2",
            sp = in(reg) frame + 8,
            in("rax") dormant_sys::nr::RT_SIGRETURN,
            options(noreturn)
        );
    }
}
