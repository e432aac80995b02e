//! In-process state only the task itself can tell, each fetched with injected syscalls whose output
//! lands in the session's scratch area on the thread's stack and is read back through /proc/<tid>/mem.
//!
//! Types are plain structs in the kernel's own units (no serde): the engine converts them to image
//! records. [`snapshot`] gathers everything in one session.

pub use dormant_sys::signal::NSIG;
use dormant_sys::signal::{KernelSigaction, SIGSET_SIZE};

use crate::error::ParasiteError;
use crate::remote::{RemoteScratch, RemoteTask, SCRATCH_LEN};

/// Scratch bytes the single-struct queries need (the largest output is 32 bytes).
pub const SCRATCH_NEEDED: usize = 32;

/// `stack_t` from sigaltstack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AltStack {
    pub sp: u64,
    /// SS_ONSTACK / SS_DISABLE / SS_AUTODISARM bits.
    pub flags: i32,
    pub size: u64,
}

/// A `struct timeval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeVal {
    pub sec: i64,
    pub usec: i64,
}

/// `struct itimerval` from getitimer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ITimerVal {
    pub interval: TimeVal,
    pub value: TimeVal,
}

/// The three per-process interval timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ITimers {
    pub real: ITimerVal,
    pub virtual_: ITimerVal,
    pub prof: ITimerVal,
}

/// Everything this module can fetch, in one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSnapshot {
    /// Index `n - 1` holds signal `n`.
    pub sigactions: [KernelSigaction; NSIG],
    pub altstack: AltStack,
    pub brk: u64,
    pub itimers: ITimers,
    /// clear_child_tid (PR_GET_TID_ADDRESS; needs CONFIG_CHECKPOINT_RESTORE, else `None`).
    pub tid_address: Option<u64>,
    pub pdeathsig: i32,
    pub dumpable: i32,
    pub child_subreaper: bool,
    pub securebits: u32,
}

const SIGACT_SIZE: usize = std::mem::size_of::<KernelSigaction>();

/// Run every query in one session (ended before returning).
pub fn snapshot(task: &mut RemoteTask) -> Result<TaskSnapshot, ParasiteError> {
    let asked = (|| {
        let mut scratch = task.scratch(SCRATCH_LEN)?;
        Ok(TaskSnapshot {
            sigactions: sigactions(&mut scratch)?,
            altstack: sigaltstack(&mut scratch)?,
            brk: brk(scratch.task())?,
            itimers: itimers(&mut scratch)?,
            tid_address: tid_address(&mut scratch)?,
            pdeathsig: pdeathsig(&mut scratch)?,
            dumpable: dumpable(scratch.task())?,
            child_subreaper: child_subreaper(&mut scratch)?,
            securebits: securebits(scratch.task())?,
        })
    })();
    let ended = task.finish();
    let snap = asked?;
    ended?;
    Ok(snap)
}

/// All 64 dispositions via `rt_sigaction(sig, NULL, &old, 8)`, as many per read-back as the scratch
/// holds. SIGKILL and SIGSTOP are queryable (the kernel only refuses to *change* them) and report SIG_DFL.
pub fn sigactions(
    scratch: &mut RemoteScratch<'_>,
) -> Result<[KernelSigaction; NSIG], ParasiteError> {
    let base = scratch.addr();
    let per_batch = (scratch.len() / SIGACT_SIZE).max(1);
    let mut actions = [KernelSigaction::default(); NSIG];
    for (batch, chunk) in actions.chunks_mut(per_batch).enumerate() {
        for (i, _) in chunk.iter().enumerate() {
            let sig = (batch * per_batch + i + 1) as u64;
            let out = base + (i * SIGACT_SIZE) as u64;
            let ret = scratch
                .task()
                .syscall(libc::SYS_rt_sigaction, [sig, 0, out, SIGSET_SIZE, 0, 0])?;
            scratch.task().check_ret("rt_sigaction", ret)?;
        }
        let mut raw = vec![0u8; chunk.len() * SIGACT_SIZE];
        scratch.read(0, &mut raw)?;
        for (action, bytes) in chunk.iter_mut().zip(raw.chunks_exact(SIGACT_SIZE)) {
            *action = KernelSigaction {
                handler: u64_at(bytes, 0),
                flags: u64_at(bytes, 8),
                restorer: u64_at(bytes, 16),
                mask: u64_at(bytes, 24),
            };
        }
    }
    Ok(actions)
}

/// `sigaltstack(NULL, &old)` of the injected thread.
pub fn sigaltstack(scratch: &mut RemoteScratch<'_>) -> Result<AltStack, ParasiteError> {
    let out = scratch.addr();
    let ret = scratch
        .task()
        .syscall(libc::SYS_sigaltstack, [0, out, 0, 0, 0, 0])?;
    scratch.task().check_ret("sigaltstack", ret)?;
    let mut raw = [0u8; 24];
    scratch.read(0, &mut raw)?;
    Ok(AltStack {
        sp: u64_at(&raw, 0),
        flags: i32_at(&raw, 8),
        size: u64_at(&raw, 16),
    })
}

/// The exact program break, `brk(0)` (the `[heap]` end in maps is page-rounded).
pub fn brk(task: &mut RemoteTask) -> Result<u64, ParasiteError> {
    let ret = task.syscall(libc::SYS_brk, [0; 6])?;
    Ok(task.check_ret("brk", ret)? as u64)
}

/// ITIMER_REAL, ITIMER_VIRTUAL and ITIMER_PROF via getitimer.
pub fn itimers(scratch: &mut RemoteScratch<'_>) -> Result<ITimers, ParasiteError> {
    let mut get = |which: i32| -> Result<ITimerVal, ParasiteError> {
        let out = scratch.addr();
        let ret = scratch
            .task()
            .syscall(libc::SYS_getitimer, [which as u64, out, 0, 0, 0, 0])?;
        scratch.task().check_ret("getitimer", ret)?;
        let mut raw = [0u8; 32];
        scratch.read(0, &mut raw)?;
        Ok(ITimerVal {
            interval: TimeVal {
                sec: u64_at(&raw, 0) as i64,
                usec: u64_at(&raw, 8) as i64,
            },
            value: TimeVal {
                sec: u64_at(&raw, 16) as i64,
                usec: u64_at(&raw, 24) as i64,
            },
        })
    };
    Ok(ITimers {
        real: get(libc::ITIMER_REAL)?,
        virtual_: get(libc::ITIMER_VIRTUAL)?,
        prof: get(libc::ITIMER_PROF)?,
    })
}

/// clear_child_tid via PR_GET_TID_ADDRESS; `None` when the kernel lacks it (EINVAL without
/// CONFIG_CHECKPOINT_RESTORE).
pub fn tid_address(scratch: &mut RemoteScratch<'_>) -> Result<Option<u64>, ParasiteError> {
    let out = scratch.addr();
    let ret = prctl(scratch.task(), libc::PR_GET_TID_ADDRESS, out)?;
    if ret == -(libc::EINVAL as i64) {
        return Ok(None);
    }
    scratch.task().check_ret("prctl(PR_GET_TID_ADDRESS)", ret)?;
    let mut raw = [0u8; 8];
    scratch.read(0, &mut raw)?;
    Ok(Some(u64::from_le_bytes(raw)))
}

/// The parent-death signal (0 = none), PR_GET_PDEATHSIG.
pub fn pdeathsig(scratch: &mut RemoteScratch<'_>) -> Result<i32, ParasiteError> {
    int_out(scratch, libc::PR_GET_PDEATHSIG, "prctl(PR_GET_PDEATHSIG)")
}

/// PR_GET_CHILD_SUBREAPER.
pub fn child_subreaper(scratch: &mut RemoteScratch<'_>) -> Result<bool, ParasiteError> {
    int_out(
        scratch,
        libc::PR_GET_CHILD_SUBREAPER,
        "prctl(PR_GET_CHILD_SUBREAPER)",
    )
    .map(|v| v != 0)
}

/// PR_GET_DUMPABLE (0, 1 or 2).
pub fn dumpable(task: &mut RemoteTask) -> Result<i32, ParasiteError> {
    let ret = prctl(task, libc::PR_GET_DUMPABLE, 0)?;
    Ok(task.check_ret("prctl(PR_GET_DUMPABLE)", ret)? as i32)
}

/// PR_GET_THP_DISABLE: 0, or 1 with `PR_THP_DISABLE_EXCEPT_ADVISED` (bit 1) possibly set.
pub fn thp_disable(task: &mut RemoteTask) -> Result<u32, ParasiteError> {
    let ret = prctl(task, libc::PR_GET_THP_DISABLE, 0)?;
    Ok(task.check_ret("prctl(PR_GET_THP_DISABLE)", ret)? as u32)
}

/// Maps one inaccessible anonymous page in the task and returns its address: the kernel gives a new
/// mapping the mm's default flags (`mlockall(MCL_FUTURE)`'s `VM_LOCKED`), which no existing mapping shows.
/// The caller reads what it needs and unmaps it ([`RemoteTask::munmap`]) in the same session.
pub fn probe_mapping(task: &mut RemoteTask) -> Result<u64, ParasiteError> {
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE) as u64;
    let ret = task.syscall(
        libc::SYS_mmap,
        [0, 4096, libc::PROT_NONE as u64, flags, u64::MAX, 0],
    )?;
    Ok(task.check_ret("mmap (probe page)", ret)? as u64)
}

/// PR_GET_SECUREBITS.
pub fn securebits(task: &mut RemoteTask) -> Result<u32, ParasiteError> {
    let ret = prctl(task, libc::PR_GET_SECUREBITS, 0)?;
    Ok(task.check_ret("prctl(PR_GET_SECUREBITS)", ret)? as u32)
}

/// `munmap(addr, len)` in the target; see [`RemoteTask::munmap`].
pub fn munmap(task: &mut RemoteTask, addr: u64, len: u64) -> Result<(), ParasiteError> {
    task.munmap(addr, len)
}

fn prctl(task: &mut RemoteTask, option: i32, arg2: u64) -> Result<i64, ParasiteError> {
    task.syscall(libc::SYS_prctl, [option as u64, arg2, 0, 0, 0, 0])
}

/// A prctl that writes one `int` through its second argument.
fn int_out(
    scratch: &mut RemoteScratch<'_>,
    option: i32,
    call: &'static str,
) -> Result<i32, ParasiteError> {
    let out = scratch.addr();
    // Clear the slot so a kernel that writes nothing cannot hand us a previous query's bytes.
    scratch.write(0, &[0u8; 4])?;
    let ret = prctl(scratch.task(), option, out)?;
    scratch.task().check_ret(call, ret)?;
    let mut raw = [0u8; 4];
    scratch.read(0, &mut raw)?;
    Ok(i32::from_le_bytes(raw))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

fn i32_at(b: &[u8], off: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    i32::from_le_bytes(a)
}

/// Where one POSIX timer stands: `timer_gettime` and `timer_getoverrun` run inside the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimerState {
    pub interval_ns: u64,
    /// Time to the next expiry; 0 = disarmed.
    pub value_ns: u64,
    pub overrun: i32,
}

/// `timer_gettime` and `timer_getoverrun` for each id (timers are per process, so any thread of it will
/// do); the ids come from `/proc/<pid>/timers`.
pub fn posix_timers(
    scratch: &mut RemoteScratch<'_>,
    ids: &[i32],
) -> Result<Vec<TimerState>, ParasiteError> {
    let out = scratch.addr();
    let ns = |sec: u64, nsec: u64| (sec as i64).max(0) as u64 * 1_000_000_000 + nsec;
    let mut states = Vec::with_capacity(ids.len());
    for &id in ids {
        let ret = scratch
            .task()
            .syscall(libc::SYS_timer_gettime, [id as u64, out, 0, 0, 0, 0])?;
        scratch.task().check_ret("timer_gettime", ret)?;
        let mut raw = [0u8; 32];
        scratch.read(0, &mut raw)?;
        let ret = scratch
            .task()
            .syscall(libc::SYS_timer_getoverrun, [id as u64, 0, 0, 0, 0, 0])?;
        let overrun = scratch.task().check_ret("timer_getoverrun", ret)? as i32;
        states.push(TimerState {
            interval_ns: ns(u64_at(&raw, 0), u64_at(&raw, 8)),
            value_ns: ns(u64_at(&raw, 16), u64_at(&raw, 24)),
            overrun,
        });
    }
    Ok(states)
}

/// Whether the task (a parent) would be told of its child `child` (its pid as the task sees it) being
/// stopped, i.e. the child's group stop is still to be collected with `waitpid(WUNTRACED)`:
/// `waitid(P_PID, child, WSTOPPED | WNOHANG | WNOWAIT)`, which leaves the report where it is.
pub fn stop_report_pending(
    scratch: &mut RemoteScratch<'_>,
    child: i32,
) -> Result<bool, ParasiteError> {
    const SIGINFO_LEN: usize = 128;
    // si_pid: after si_signo, si_errno, si_code (and padding to 16 on 64-bit).
    const SI_PID: usize = 16;
    if scratch.len() < SIGINFO_LEN {
        return Err(ParasiteError::ShortMem {
            tid: scratch.task().tid(),
            op: "waitid siginfo in scratch",
            addr: scratch.addr(),
            len: SIGINFO_LEN,
            done: scratch.len(),
        });
    }
    scratch.write(0, &[0u8; SIGINFO_LEN])?;
    let info = scratch.addr();
    let ret = scratch.task().syscall(
        libc::SYS_waitid,
        [
            libc::P_PID as u64,
            child as u64,
            info,
            (libc::WSTOPPED | libc::WNOHANG | libc::WNOWAIT) as u64,
            0,
            0,
        ],
    )?;
    scratch.task().check_ret("waitid(WSTOPPED|WNOWAIT)", ret)?;
    let mut pid = [0u8; 4];
    scratch.read(SI_PID, &mut pid)?;
    Ok(i32::from_le_bytes(pid) != 0)
}

/// Collects the stop report of child `child` (its pid as the task sees it), as the task's own
/// `waitpid(child, WUNTRACED | WNOHANG)` would; `Ok(false)` when there is none (yet).
pub fn collect_stop_report(task: &mut RemoteTask, child: i32) -> Result<bool, ParasiteError> {
    let ret = task.syscall(
        libc::SYS_wait4,
        [
            child as u64,
            0,
            (libc::WUNTRACED | libc::WNOHANG) as u64,
            0,
            0,
            0,
        ],
    )?;
    Ok(task.check_ret("wait4(WUNTRACED)", ret)? != 0)
}

/// Takes one pending `sig` off the task's queues without delivering it (`rt_sigtimedwait` with a zero
/// timeout); `Ok(false)` when none was pending.
pub fn dequeue_signal(scratch: &mut RemoteScratch<'_>, sig: i32) -> Result<bool, ParasiteError> {
    // The set at 0, a zero timespec at 16.
    let mut buf = [0u8; 32];
    buf[..8].copy_from_slice(&(1u64 << (sig - 1)).to_le_bytes());
    scratch.write(0, &buf)?;
    let base = scratch.addr();
    let ret = scratch.task().syscall(
        libc::SYS_rt_sigtimedwait,
        [base, 0, base + 16, SIGSET_SIZE, 0, 0],
    )?;
    if ret == -(libc::EAGAIN as i64) {
        return Ok(false);
    }
    scratch.task().check_ret("rt_sigtimedwait", ret)?;
    Ok(true)
}
