//! The restorer blob: the last stage of restoring one process.
//!
//! It runs in a forked child of dormant, on a stack inside its own anonymous area, with one argument block
//! ([`RestoreArgs`]) laid out by the host side. It unmaps everything but that area, maps the saved VMAs,
//! reads their pages from the page store, maps the vDSO, installs the mm layout, signal actions, rseq,
//! interval timers and fs/gs base, blocks every signal but SIGTRAP, re-creates POSIX timers with their
//! saved ids and re-queues pending signals, reports success on a pipe, traps (`int3`) so the tracing parent
//! can catch the moment, then `rt_sigreturn`s into the saved registers. On any failure it reports the
//! step and errno and exits.
//!
//! Every other thread is created by the leader once memory, actions and the signal block are in place,
//! with `clone3(CLONE_VM | CLONE_THREAD | ...)` and its saved tid (`set_tid`); it starts on its own small
//! stack in the area ([`thread_entry`]), installs its per-thread state (robust list, clear_child_tid,
//! rseq, fs/gs base, name), traps and `rt_sigreturn`s into its own frame, which also restores its signal
//! mask and alternate stack.
//!
//! Credentials come last, per thread ([`set_creds`]): each thread sets its own with raw syscalls once
//! everything that needs privileges is done (memory, timers, signals, its threads created with their
//! tids), and the leader sets its own after every other thread has, then sets dumpable and the
//! parent-death signal again, which any id change resets.
//!
//! Each thread sets its own scheduling attributes ([`set_sched`]) and installs its seccomp filters
//! ([`install_filters`]) before its credentials, while it still has the privileges they need; the leader
//! installs its filters while it creates the threads, so a thread shares the leader's filters it had
//! (see `SeccompArg`). The tracer keeps every thread's seccomp suspended until the release, so nothing
//! after the filters is filtered; strict mode ([`enter_strict`]) is the very last change of a thread.
//!
//! What it does NOT do: it never allocates, never uses libc or std, and makes no decision the host side
//! could make.
#![no_std]
#![no_main]

use core::arch::{asm, naked_asm};

use core::sync::atomic::{AtomicU32, Ordering};

use dormant_restorer_proto::{
    CredsArg, ExtentArg, FilterArg, LockArg, QueuedSigArg, Report, RestoreArgs, RseqArg, SchedArg,
    SeccompArg, Step, ThreadArgs, TimerArg, VmaArg, VmaKind, EXIT_BASE, PROTO_VERSION, REPORT_SIZE,
    THREAD_STACK_SIZE,
};
use dormant_sys::process::{
    SockFprog, PR_SET_TIMERSLACK, SECCOMP_MODE_FILTER, SECCOMP_MODE_STRICT, SECCOMP_SET_MODE_FILTER,
    SECCOMP_SET_MODE_STRICT,
};
use dormant_sys::mman::{
    MADV_POPULATE_WRITE, MAP_ANONYMOUS, MAP_FIXED, MAP_GROWSDOWN, MAP_PRIVATE, MAP_SHARED,
    NR_PKEYS, PROT_EXEC, PROT_WRITE,
};
use dormant_sys::process::{
    CapData, CapHeader, CloneArgs, ARCH_MAP_VDSO_64, ARCH_SET_FS, ARCH_SET_GS, CLONE_FILES, CLONE_FS, CLONE_SIGHAND, CLONE_SYSVSEM, CLONE_THREAD, CLONE_VM, FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE, LINUX_CAPABILITY_VERSION_3, PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, PR_CAP_AMBIENT_RAISE, PR_GET_DUMPABLE, PR_GET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_MM, PR_SET_MM_MAP, PR_SET_NAME, PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG, PR_SET_SECUREBITS, PR_SET_THP_DISABLE, PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_OFF, PR_TIMER_CREATE_RESTORE_IDS_ON, SECBIT_KEEP_CAPS, SECBIT_NO_SETUID_FIXUP, TASK_SIZE,
};
use dormant_sys::raw as sys;
use dormant_sys::rseq::{RSEQ_FLAG_UNREGISTER, RSEQ_GLIBC_LEN};
use dormant_sys::signal::{
    sig_bit, KernelSigaction, SigEvent, NSIG, SIGKILL, SIGSET_SIZE, SIGSTOP, SIGTRAP, SIG_SETMASK,
};

// The memory functions the compiler calls (no libc here).
use dormant_sys::rt as _;

/// Entry point: `rdi` = the argument block. Realigns the stack and calls [`restore`], which never returns.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn restorer_entry() -> ! {
    naked_asm!("and rsp, -16", "xor ebp, ebp", "call {main}", "ud2", main = sym restore)
}

/// A failed step: what, the errno, and a detail word (an address or a number).
struct Failure {
    step: Step,
    errno: i32,
    detail: u64,
}

/// The kernel's `struct flock` on x86-64.
#[repr(C)]
struct KernelFlock {
    l_type: i16,
    l_whence: i16,
    l_start: i64,
    l_len: i64,
    l_pid: i32,
}

const F_SETLK: u64 = 6;
const F_RDLCK: i16 = 0;
const F_WRLCK: i16 = 1;

/// Takes one POSIX record lock: after the helper fds are closed, since a close of any fd of the file
/// would drop it.
fn posix_lock(l: &LockArg) -> Result<(), Failure> {
    let fl = KernelFlock {
        l_type: if l.write != 0 { F_WRLCK } else { F_RDLCK },
        l_whence: 0,
        l_start: l.start as i64,
        l_len: l.len as i64,
        l_pid: 0,
    };
    let ret = sys::fcntl(l.fd, F_SETLK, &fl as *const KernelFlock as u64);
    check(Step::PosixLock, ret, l.fd as u64).map(|_| ())
}

fn check(step: Step, ret: i64, detail: u64) -> Result<i64, Failure> {
    if (-4095..0).contains(&ret) {
        Err(Failure {
            step,
            errno: -ret as i32,
            detail,
        })
    } else {
        Ok(ret)
    }
}

extern "C" fn restore(args: *const RestoreArgs) -> ! {
    // SAFETY: the host side placed a valid block at `args` inside the area, which nothing unmaps.
    let a = unsafe { &*args };
    let report_fd = a.report_fd;
    match run(a) {
        // `run` only returns on failure; success ends in rt_sigreturn.
        Ok(never) => match never {},
        Err(f) => {
            let report = Report {
                step: f.step as u32,
                errno: f.errno,
                detail: f.detail,
            };
            write_report(report_fd, &report);
            sys::exit_group(EXIT_BASE + f.step as i32)
        }
    }
}

fn write_report(fd: i32, report: &Report) -> i64 {
    sys::write(fd, report as *const Report as u64, REPORT_SIZE as u64)
}

enum Never {}

/// Builds a slice from a pointer and count of the argument block; an empty slice for a zero count.
///
/// # Safety
/// `ptr` must point at `len` valid `T`s inside the blob area when `len != 0`.
unsafe fn block_slice<'a, T>(ptr: u64, len: u64) -> &'a [T] {
    if len == 0 {
        &[]
    } else {
        // SAFETY: guaranteed by the caller (the host side laid out `len` entries at `ptr`).
        unsafe { core::slice::from_raw_parts(ptr as *const T, len as usize) }
    }
}

fn run(a: &RestoreArgs) -> Result<Never, Failure> {
    if a.version != PROTO_VERSION
        || a.nr_threads == 0
        || a.area_start >= a.area_end
        || a.area_end > TASK_SIZE
    {
        return Err(Failure {
            step: Step::BadArgs,
            errno: 22,
            detail: a.version as u64,
        });
    }
    // SAFETY: the host laid out these arrays inside the area (see `RestoreArgs`).
    let (vmas, extents, close_fds, threads, timers, siginfos) = unsafe {
        (
            block_slice::<VmaArg>(a.vmas, a.nr_vmas),
            block_slice::<ExtentArg>(a.extents, a.nr_extents),
            block_slice::<i32>(a.close_fds, a.nr_close_fds),
            block_slice::<ThreadArgs>(a.threads, a.nr_threads as u64),
            block_slice::<TimerArg>(a.timers, a.nr_timers),
            block_slice::<QueuedSigArg>(a.siginfos, a.nr_siginfos),
        )
    };
    let leader = &threads[0];

    // The inherited registration points into memory that is about to go away; the kernel would fault the
    // task on its next preemption if it stayed.
    unregister_rseq(&a.inherited_rseq)?;

    if a.area_start > 0 {
        check(Step::UnmapLow, sys::munmap(0, a.area_start), a.area_start)?;
    }
    check(
        Step::UnmapHigh,
        sys::munmap(a.area_end, TASK_SIZE - a.area_end),
        a.area_end,
    )?;

    for v in vmas {
        map_vma(v)?;
    }
    for e in extents {
        read_extent(a.pages_fd, e)?;
    }
    for v in vmas
        .iter()
        .filter(|v| v.fill != 0 && v.prot as u64 & PROT_WRITE == 0)
    {
        check(
            Step::Protect,
            sys::mprotect(v.start, v.end - v.start, v.prot as u64),
            v.start,
        )?;
    }

    memory_attrs(a, vmas)?;

    if a.has_vdso != 0 {
        check(
            Step::MapVdso,
            sys::arch_prctl(ARCH_MAP_VDSO_64, a.vdso_map_addr),
            a.vdso_map_addr,
        )?;
    }
    if a.has_mm_map != 0 {
        let map = &a.mm_map as *const _ as u64;
        let size = core::mem::size_of_val(&a.mm_map) as u64;
        check(
            Step::SetMm,
            sys::prctl(PR_SET_MM, PR_SET_MM_MAP, map, size, 0),
            0,
        )?;
    }
    set_sigactions(a)?;
    thread_state(leader)?;
    if a.has_itimers != 0 {
        for (which, t) in a.itimers.iter().enumerate() {
            let ret = sys::setitimer(which as u64, t as *const _ as u64);
            check(Step::SetItimer, ret, which as u64)?;
        }
    }
    for &fd in close_fds {
        check(Step::CloseFd, sys::close(fd), fd as u64)?;
    }
    // SAFETY: the host laid out this array inside the area (see `RestoreArgs`).
    for l in unsafe { block_slice::<LockArg>(a.locks, a.nr_locks) } {
        posix_lock(l)?;
    }
    // Locking future mappings last: what the blob maps from here on is not the task's.
    if a.has_mm_attrs != 0 && a.mlock_future != 0 {
        let ret = sys::mlockall(a.mlock_future as u64);
        check(Step::MlockAll, ret, a.mlock_future as u64)?;
    }
    // Timers are armed as late as possible so little of their time passes before the task runs; their
    // signals stay blocked until rt_sigreturn installs the saved mask.
    block_signals()?;
    // What the child set and any id change resets (the threads' too, since dumpable is the mm's).
    let kept = KeptPrctl::read()?;
    // Threads inherit the blocked mask; they exist before timers and signals may name them. Each is
    // created once the leader has installed the filters it shares with the leader (see `SeccompArg`).
    let leader_filters = filter_count(&leader.seccomp);
    for level in 0..=leader_filters {
        install_filters(&leader.seccomp, level.saturating_sub(1), level)?;
        for t in threads[1..]
            .iter()
            .filter(|t| t.seccomp.inherited.min(leader_filters) == level)
        {
            clone_thread(t, a.report_fd, siginfos)?;
        }
    }
    create_timers(timers)?;
    queue_signals(siginfos, true)?;
    set_sched(&leader.sched, leader.tid)?;
    wait_for_thread_creds(leader.creds_pending)?;
    set_creds(&leader.creds)?;
    kept.apply()?;
    enter_strict(&leader.seccomp)?;

    let ok = Report {
        step: Step::Done as u32,
        errno: 0,
        detail: 0,
    };
    let written = write_report(a.report_fd, &ok);
    if written != REPORT_SIZE as i64 {
        let errno = if written < 0 { -written as i32 } else { 5 };
        return Err(Failure {
            step: Step::WriteReport,
            errno,
            detail: written as u64,
        });
    }
    sys::close(a.report_fd);
    sigreturn(leader.sigframe_uc)
}

/// The per-thread state every thread installs for itself: robust list, clear_child_tid, rseq, fs and gs
/// base. (The signal mask and alternate stack come from its frame at `rt_sigreturn`.)
fn thread_state(t: &ThreadArgs) -> Result<(), Failure> {
    if t.has_robust_list != 0 {
        check(
            Step::SetRobustList,
            sys::set_robust_list(t.robust_head, t.robust_len),
            t.robust_head,
        )?;
    }
    if t.has_clear_child_tid != 0 {
        check(
            Step::SetTidAddress,
            sys::set_tid_address(t.clear_child_tid),
            t.clear_child_tid,
        )?;
    }
    if t.rseq.len != 0 {
        let r = &t.rseq;
        check(
            Step::RseqRegister,
            sys::rseq(r.addr, r.len as u64, 0, r.sig as u64),
            r.addr,
        )?;
    }
    check(
        Step::SetFs,
        sys::arch_prctl(ARCH_SET_FS, t.fs_base),
        t.fs_base,
    )?;
    check(
        Step::SetGs,
        sys::arch_prctl(ARCH_SET_GS, t.gs_base),
        t.gs_base,
    )?;
    Ok(())
}

/// Creates thread `t` with its saved tid; the new thread runs [`thread_entry`] on its own stack and
/// re-queues its own pending signals from `siginfos`.
fn clone_thread(t: &ThreadArgs, report_fd: i32, siginfos: &[QueuedSigArg]) -> Result<(), Failure> {
    // Innermost namespace first, as clone3 wants them; a tid of 0 in a nested namespace lets the kernel
    // choose the outer one (fresh host pids).
    let (tids, levels): ([i32; 2], u64) = match (t.ns_tid, t.tid) {
        (0, tid) => ([tid as i32, 0], 1),
        (ns, 0) => ([ns as i32, 0], 1),
        (ns, tid) => ([ns as i32, tid as i32], 2),
    };
    let args = CloneArgs {
        flags: CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: 0,
        stack: t.stack_top - THREAD_STACK_SIZE,
        stack_size: THREAD_STACK_SIZE,
        tls: 0,
        set_tid: tids.as_ptr() as u64,
        set_tid_size: levels,
        cgroup: 0,
    };
    let ret: i64;
    // SAFETY: clone3 with CLONE_VM on a fresh stack inside the area. In the parent the block only returns
    // the result; in the child (rax == 0) it never falls through: it calls `thread_entry` with the thread's
    // args and the signal block (r12-r15 are copied into the child) on the new stack, and that never
    // returns.
    unsafe {
        asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r12",
            "mov esi, r13d",
            "mov rdx, r14",
            "mov rcx, r15",
            "and rsp, -16",
            "xor ebp, ebp",
            "call {entry}",
            "ud2",
            "2:",
            entry = sym thread_entry,
            inlateout("rax") dormant_sys::nr::CLONE3 as i64 => ret,
            in("rdi") &args as *const CloneArgs as u64,
            in("rsi") core::mem::size_of::<CloneArgs>() as u64,
            in("r12") t as *const ThreadArgs as u64,
            in("r13") report_fd as u64,
            in("r14") siginfos.as_ptr() as u64,
            in("r15") siginfos.len() as u64,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    check(Step::CloneThread, ret, u64::from(if t.tid != 0 { t.tid } else { t.ns_tid })).map(drop)
}

/// First code of a non-leader thread: its own state, then the trap and its `rt_sigreturn`.
extern "C" fn thread_entry(
    t: *const ThreadArgs,
    report_fd: i32,
    siginfos: *const QueuedSigArg,
    nr_siginfos: u64,
) -> ! {
    // SAFETY: the leader passed a pointer to this thread's entry of the args block inside the area, and
    // the args block's signal array with its length.
    let (t, siginfos) = unsafe { (&*t, block_slice::<QueuedSigArg>(siginfos as u64, nr_siginfos)) };
    let result = thread_state(t).and_then(|()| {
        if t.comm[0] != 0 {
            check(
                Step::ThreadComm,
                sys::prctl(PR_SET_NAME, t.comm.as_ptr() as u64, 0, 0, 0),
                t.tid as u64,
            )?;
        }
        queue_signals(siginfos, false)?;
        let set = install_filters(&t.seccomp, t.seccomp.inherited, filter_count(&t.seccomp))
            .and_then(|()| set_sched(&t.sched, t.tid))
            .and_then(|()| set_creds(&t.creds))
            .and_then(|()| set_pdeathsig(&t.sched, t.tid));
        thread_creds_done(t.creds_pending);
        set?;
        enter_strict(&t.seccomp)
    });
    match result {
        Ok(()) => sigreturn(t.sigframe_uc),
        Err(f) => {
            // The leader may have closed the pipe already; the tracer then sees the exit code alone.
            let report = Report {
                step: f.step as u32,
                errno: f.errno,
                detail: f.detail,
            };
            write_report(report_fd, &report);
            sys::exit_group(EXIT_BASE + f.step as i32)
        }
    }
}

/// How many filters thread `s` runs under (0 unless in filter mode).
fn filter_count(s: &SeccompArg) -> u32 {
    if s.mode == SECCOMP_MODE_FILTER {
        s.nr_filters
    } else {
        0
    }
}

/// Installs filters `from..to` of a thread's chain (oldest first) on the calling thread. Its seccomp is
/// suspended by the tracer until the release, so what the blob does afterwards is not filtered.
fn install_filters(s: &SeccompArg, from: u32, to: u32) -> Result<(), Failure> {
    if from >= to {
        return Ok(());
    }
    // SAFETY: the host laid out `nr_filters` filter descriptions at `filters` inside the area.
    let filters = unsafe { block_slice::<FilterArg>(s.filters, s.nr_filters as u64) };
    for (i, f) in filters
        .iter()
        .enumerate()
        .take(to as usize)
        .skip(from as usize)
    {
        let prog = SockFprog {
            len: f.len as u16,
            _pad: [0; 3],
            filter: f.insns,
        };
        let ret = sys::seccomp(
            SECCOMP_SET_MODE_FILTER,
            f.flags,
            &prog as *const SockFprog as u64,
        );
        check(Step::SeccompFilter, ret, i as u64)?;
    }
    Ok(())
}

/// Strict mode, the calling thread's very last change: from here on only read, write, exit and
/// rt_sigreturn pass (once the tracer lets go).
fn enter_strict(s: &SeccompArg) -> Result<(), Failure> {
    if s.mode != SECCOMP_MODE_STRICT {
        return Ok(());
    }
    let ret = sys::seccomp(SECCOMP_SET_MODE_STRICT, 0, 0);
    check(Step::SeccompStrict, ret, 0).map(drop)
}

/// The calling thread's own scheduling attributes (see `SchedArg`). The policy goes in before the timer
/// slack: entering a real-time policy sets the slack to 0 and leaving one resets it to the default.
fn set_sched(a: &SchedArg, tid: u32) -> Result<(), Failure> {
    if a.set == 0 {
        return Ok(());
    }
    check(Step::Nice, sys::setpriority_self(a.nice), tid as u64)?;
    let ret = sys::sched_setattr_self(&a.attr as *const _ as u64);
    check(Step::SchedSetattr, ret, tid as u64)?;
    if a.timer_slack_ns != 0 {
        let ret = sys::prctl(PR_SET_TIMERSLACK, a.timer_slack_ns, 0, 0, 0);
        check(Step::TimerSlack, ret, tid as u64)?;
    }
    if a.nr_affinity != 0 {
        let ret = sys::sched_setaffinity_self(
            u64::from(a.nr_affinity) * 8,
            a.affinity.as_ptr() as u64,
        );
        check(Step::Affinity, ret, tid as u64)?;
    }
    check(Step::Ioprio, sys::ioprio_set_self(a.ioprio), tid as u64).map(drop)
}

/// A thread's parent-death signal, after its credentials (whose change resets it).
fn set_pdeathsig(a: &SchedArg, tid: u32) -> Result<(), Failure> {
    if a.set == 0 || a.pdeathsig == 0 {
        return Ok(());
    }
    let ret = sys::prctl(PR_SET_PDEATHSIG, a.pdeathsig as u64, 0, 0, 0);
    check(Step::ThreadPdeathsig, ret, tid as u64).map(drop)
}

/// The counter of threads that have not set their credentials yet (see `RestoreArgs::creds_pending`).
fn creds_counter(addr: u64) -> &'static AtomicU32 {
    // SAFETY: the host put the address of `RestoreArgs::creds_pending` (an aligned u32 inside the area,
    // which stays mapped) in every thread's args; it is only ever accessed atomically.
    unsafe { AtomicU32::from_ptr(addr as *mut u32) }
}

/// A thread has set its credentials (or failed, and is about to end the process).
fn thread_creds_done(counter: u64) {
    if creds_counter(counter).fetch_sub(1, Ordering::SeqCst) == 1 {
        sys::futex(counter, FUTEX_WAKE_PRIVATE, i32::MAX as u64, 0);
    }
}

/// The leader waits until every other thread has set its credentials.
fn wait_for_thread_creds(counter: u64) -> Result<(), Failure> {
    loop {
        let left = creds_counter(counter).load(Ordering::SeqCst);
        if left == 0 {
            return Ok(());
        }
        let ret = sys::futex(counter, FUTEX_WAIT_PRIVATE, left as u64, 0);
        // EAGAIN: it changed meanwhile; EINTR: look again.
        if ret < 0 && ret != -11 && ret != -4 {
            check(Step::CredsWait, ret, left as u64)?;
        }
    }
}

/// Dumpable (the mm's) and the leader's parent-death signal as the child set them: a change of ids
/// resets both (`commit_creds`), so they are read before any thread changes its credentials and set
/// again after the last one has.
struct KeptPrctl {
    /// `None`: 2 (`suid_dumpable`), which prctl cannot set; left as the kernel makes it.
    dumpable: Option<u64>,
    pdeathsig: u64,
}

impl KeptPrctl {
    fn read() -> Result<Self, Failure> {
        let d = check(Step::KeepPrctl, sys::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0)?;
        let mut sig: i32 = 0;
        check(
            Step::KeepPrctl,
            sys::prctl(PR_GET_PDEATHSIG, &mut sig as *mut i32 as u64, 0, 0, 0),
            1,
        )?;
        Ok(KeptPrctl {
            dumpable: (d <= 1).then_some(d as u64),
            pdeathsig: sig as u64,
        })
    }

    fn apply(&self) -> Result<(), Failure> {
        if let Some(d) = self.dumpable {
            check(Step::KeepPrctl, sys::prctl(PR_SET_DUMPABLE, d, 0, 0, 0), 2)?;
        }
        check(
            Step::KeepPrctl,
            sys::prctl(PR_SET_PDEATHSIG, self.pdeathsig, 0, 0, 0),
            3,
        )
        .map(drop)
    }
}

/// The calling thread's effective and permitted sets.
fn capget() -> Result<(u64, u64), Failure> {
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    let ret = sys::capget(
        &header as *const CapHeader as u64,
        data.as_mut_ptr() as u64,
    );
    check(Step::Capset, ret, 0)?;
    let join = |lo: u32, hi: u32| lo as u64 | (hi as u64) << 32;
    Ok((
        join(data[0].effective, data[1].effective),
        join(data[0].permitted, data[1].permitted),
    ))
}

/// `capset` of the calling thread with three 64-bit sets.
fn capset(eff: u64, prm: u64, inh: u64) -> Result<(), Failure> {
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let half = |shift: u32| CapData {
        effective: (eff >> shift) as u32,
        permitted: (prm >> shift) as u32,
        inheritable: (inh >> shift) as u32,
    };
    let data = [half(0), half(32)];
    let ret = sys::capset(
        &header as *const CapHeader as u64,
        data.as_ptr() as u64,
    );
    check(Step::Capset, ret, prm).map(drop)
}

/// Sets the calling thread's credentials to `c` (raw syscalls: this thread only), in the order the kernel
/// demands. The thread starts with the restorer's (all the capabilities `c` has and more, checked by the
/// host): groups and ids need CAP_SETGID/CAP_SETUID, securebits and bounding drops CAP_SETPCAP, so the
/// capability sets are narrowed to `c`'s last. Securebits with NO_SETUID_FIXUP and KEEP_CAPS first keep
/// every capability across the id changes (the kernel would clear them, and the ambient set, when the
/// uids leave 0); the inheritable set goes in before the bounding set shrinks (capset takes no
/// inheritable bit outside it) and before the ambient set (raised only from permitted and inheritable);
/// the final securebits (perhaps locked, perhaps forbidding ambient raises) before the capset that may
/// drop CAP_SETPCAP; no_new_privs, which nothing can undo, at the end. Restored capabilities can only be
/// fewer than the restorer's, never more than `c` says: each set is set exactly.
fn set_creds(c: &CredsArg) -> Result<(), Failure> {
    if c.set == 0 {
        return Ok(());
    }
    check(
        Step::SetGroups,
        sys::setgroups(c.nr_groups as u64, c.groups),
        c.nr_groups as u64,
    )?;
    check(
        Step::SetSecurebits,
        sys::prctl(
            PR_SET_SECUREBITS,
            SECBIT_KEEP_CAPS | SECBIT_NO_SETUID_FIXUP,
            0,
            0,
            0,
        ),
        0,
    )?;
    let [rg, eg, sg, fsg] = c.gids;
    check(Step::SetGids, sys::setresgid(rg, eg, sg), eg as u64)?;
    sys::setfsgid(fsg);
    let [ru, eu, su, fsu] = c.uids;
    check(Step::SetUids, sys::setresuid(ru, eu, su), eu as u64)?;
    sys::setfsuid(fsu);
    // Every capability still held (NO_SETUID_FIXUP): only the inheritable set changes here.
    let (eff, prm) = capget()?;
    capset(eff, prm, c.cap_inh)?;
    for cap in 0..64u64 {
        if c.cap_bnd_drop & (1 << cap) != 0 {
            check(
                Step::CapBoundDrop,
                sys::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0),
                cap,
            )?;
        }
    }
    check(
        Step::CapAmbient,
        sys::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0),
        64,
    )?;
    for cap in 0..64u64 {
        if c.cap_amb & (1 << cap) != 0 {
            check(
                Step::CapAmbient,
                sys::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0),
                cap,
            )?;
        }
    }
    check(
        Step::SetSecurebits,
        sys::prctl(PR_SET_SECUREBITS, c.securebits as u64, 0, 0, 0),
        c.securebits as u64,
    )?;
    capset(c.cap_eff, c.cap_prm, c.cap_inh)?;
    if c.no_new_privs != 0 {
        check(
            Step::NoNewPrivs,
            sys::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
            0,
        )?;
    }
    Ok(())
}

fn unregister_rseq(r: &RseqArg) -> Result<(), Failure> {
    if r.len == 0 {
        return Ok(());
    }
    let mut ret = sys::rseq(r.addr, r.len as u64, RSEQ_FLAG_UNREGISTER, r.sig as u64);
    // glibc >= 2.40 exports the feature size (20) as __rseq_size but registers 32 bytes.
    if ret == -22 && r.len != RSEQ_GLIBC_LEN {
        ret = sys::rseq(
            r.addr,
            u64::from(RSEQ_GLIBC_LEN),
            RSEQ_FLAG_UNREGISTER,
            r.sig as u64,
        );
    }
    check(Step::RseqUnregister, ret, r.addr).map(drop)
}

fn map_vma(v: &VmaArg) -> Result<(), Failure> {
    let len = v.end - v.start;
    let mut prot = v.prot as u64;
    if v.fill != 0 {
        prot |= PROT_WRITE;
    }
    let (flags, fd, off) = match v.kind {
        k if k == VmaKind::Anon as u32 => (MAP_PRIVATE | MAP_ANONYMOUS, -1i64, 0),
        k if k == VmaKind::AnonGrowsDown as u32 => {
            (MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN, -1, 0)
        }
        k if k == VmaKind::FilePrivate as u32 => (MAP_PRIVATE, v.fd as i64, v.pgoff),
        k if k == VmaKind::Shared as u32 => (MAP_SHARED, v.fd as i64, v.pgoff),
        _ => {
            return Err(Failure {
                step: Step::BadArgs,
                errno: 22,
                detail: v.start,
            })
        }
    };
    let extra = (v.extra_flags & dormant_restorer_proto::PASSED_MAP_FLAGS) as u64;
    let ret = sys::mmap(
        v.start,
        len,
        prot,
        flags | extra | MAP_FIXED,
        fd as u64,
        off,
    );
    let ret = check(Step::MapVma, ret, v.start)?;
    // Advice is state the task can see (smaps VmFlags) but not behaviour it depends on: a kernel that
    // lacks one (e.g. MADV_MERGEABLE without KSM) must not fail the restore, so errors are ignored.
    for advice in 0..32u64 {
        if v.madvise & (1 << advice) != 0 {
            let _ = sys::madvise(v.start, len, advice);
        }
    }
    if ret as u64 != v.start {
        return Err(Failure {
            step: Step::MapVma,
            errno: 14,
            detail: v.start,
        });
    }
    Ok(())
}

/// What the mappings carry besides their contents, once those are in place: protection keys, locks (a
/// lock populates, so after the pages are read) and the address space's THP setting.
fn memory_attrs(a: &RestoreArgs, vmas: &[VmaArg]) -> Result<(), Failure> {
    protection_keys(vmas)?;
    for v in vmas.iter().filter(|v| v.lock != 0) {
        let ret = sys::mlock2(v.start, v.end - v.start, (v.lock - 1) as u64);
        check(Step::Mlock, ret, v.start)?;
    }
    if a.has_mm_attrs != 0 {
        let ret = sys::prctl(
            PR_SET_THP_DISABLE,
            (a.thp_disable & 1) as u64,
            (a.thp_disable & !1) as u64,
            0,
            0,
        );
        check(Step::ThpDisable, ret, a.thp_disable as u64)?;
    }
    Ok(())
}

/// Allocates the keys the mappings use (pkey_alloc hands out the lowest free one, so keys are taken in
/// order and the ones no mapping uses are freed again), then gives each mapping its key. An execute-only
/// mapping keeps the key the kernel chose for it when it was mapped.
fn protection_keys(vmas: &[VmaArg]) -> Result<(), Failure> {
    let wanted = vmas
        .iter()
        .filter(|v| v.pkey != 0 && v.pkey < NR_PKEYS)
        .fold(0u32, |m, v| m | 1 << v.pkey);
    if wanted == 0 {
        return Ok(());
    }
    let highest = 31 - wanted.leading_zeros();
    let mut taken = 0u32;
    loop {
        let key = check(Step::PkeyAlloc, sys::pkey_alloc(0, 0), highest as u64)? as u32;
        taken |= 1 << key;
        if key >= highest {
            break;
        }
    }
    for key in 1..NR_PKEYS {
        if taken & !wanted & (1 << key) != 0 {
            sys::pkey_free(key as u64);
        }
    }
    for v in vmas
        .iter()
        .filter(|v| v.pkey != 0 && v.prot as u64 != PROT_EXEC)
    {
        let ret = sys::pkey_mprotect(v.start, v.end - v.start, v.prot as u64, v.pkey as u64);
        check(Step::PkeyProtect, ret, v.start)?;
    }
    Ok(())
}

fn read_extent(fd: i32, e: &ExtentArg) -> Result<(), Failure> {
    // Allocate the extent's pages in one batch instead of one fault per page inside pread's copy; only
    // the pages that hold data, so holes stay unpopulated. A kernel without it just takes the faults.
    let _ = sys::madvise(e.vaddr, e.len, MADV_POPULATE_WRITE);
    let mut done = 0u64;
    while done < e.len {
        let ret = sys::pread64(fd, e.vaddr + done, e.len - done, e.file_offset + done);
        let n = check(Step::ReadPages, ret, e.vaddr + done)?;
        if n == 0 {
            // The data file is shorter than the index says (the host checked; the file changed since).
            return Err(Failure {
                step: Step::ReadPages,
                errno: 5,
                detail: e.vaddr + done,
            });
        }
        done += n as u64;
    }
    Ok(())
}

fn set_sigactions(a: &RestoreArgs) -> Result<(), Failure> {
    let default = KernelSigaction::default();
    for (i, act) in a.sigactions.iter().enumerate().take(NSIG) {
        let sig = i as u32 + 1;
        if sig == SIGKILL || sig == SIGSTOP {
            continue;
        }
        let act = if a.has_sigactions != 0 { act } else { &default };
        let ret = sys::rt_sigaction(
            u64::from(sig),
            act as *const KernelSigaction as u64,
            0,
            SIGSET_SIZE,
        );
        check(Step::SigAction, ret, sig as u64)?;
    }
    Ok(())
}

/// Blocks every signal but SIGTRAP (and the unblockable two) until rt_sigreturn installs the saved mask:
/// re-queued signals and timer expiries must wait for the restored task. SIGTRAP stays open because the
/// final `int3` forces it, and a forced signal that is blocked gets its action reset to SIG_DFL.
fn block_signals() -> Result<(), Failure> {
    let set: u64 = !sig_bit(SIGTRAP);
    let ret = sys::rt_sigprocmask(SIG_SETMASK, &set as *const u64 as u64, 0, SIGSET_SIZE);
    check(Step::BlockSignals, ret, set).map(drop)
}

/// Re-creates each timer with its saved id (the kernel hands out the id in `*timer_id` while
/// PR_TIMER_CREATE_RESTORE_IDS is on) and arms it relative to now.
fn create_timers(timers: &[TimerArg]) -> Result<(), Failure> {
    if timers.is_empty() {
        return Ok(());
    }
    check(
        Step::TimerRestoreIds,
        sys::prctl(
            PR_TIMER_CREATE_RESTORE_IDS,
            PR_TIMER_CREATE_RESTORE_IDS_ON,
            0,
            0,
            0,
        ),
        0,
    )?;
    for t in timers {
        let sev = SigEvent {
            value: t.value,
            signo: t.signo,
            notify: t.notify,
            tid: t.notify_tid,
            pad: [0; 11],
        };
        let mut id: i32 = t.id;
        let ret = sys::timer_create(
            t.clock as u64,
            &sev as *const SigEvent as u64,
            &mut id as *mut i32 as u64,
        );
        check(Step::TimerCreate, ret, t.id as u64)?;
        if id != t.id {
            return Err(Failure {
                step: Step::TimerCreate,
                errno: 17,
                detail: t.id as u64,
            });
        }
    }
    check(
        Step::TimerRestoreIds,
        sys::prctl(
            PR_TIMER_CREATE_RESTORE_IDS,
            PR_TIMER_CREATE_RESTORE_IDS_OFF,
            0,
            0,
            0,
        ),
        1,
    )?;
    for t in timers {
        if t.value_sec == 0 && t.value_nsec == 0 {
            continue;
        }
        let spec: [i64; 4] = [t.interval_sec, t.interval_nsec, t.value_sec, t.value_nsec];
        let ret = sys::timer_settime(t.id as u64, 0, spec.as_ptr() as u64, 0);
        check(Step::TimerSettime, ret, t.id as u64)?;
    }
    Ok(())
}

/// Re-queues the saved pending signals of the calling thread, oldest first: its private ones (`tid` is
/// its own, as seen inside its pid namespace) and, for the leader (`shared`), the process-wide ones. The
/// kernel takes any `si_code` only when a thread queues to itself (a kill()/tgkill() code or a kernel
/// one aimed at another thread is EPERM), so each thread queues its own and the saved siginfo goes back
/// unchanged.
fn queue_signals(siginfos: &[QueuedSigArg], shared: bool) -> Result<(), Failure> {
    if siginfos.is_empty() {
        return Ok(());
    }
    let (pid, tid) = (sys::getpid() as u64, sys::gettid() as u64);
    for q in siginfos {
        let info = q.info.as_ptr() as u64;
        let ret = if q.shared != 0 {
            if !shared {
                continue;
            }
            sys::rt_sigqueueinfo(pid, q.signo as u64, info)
        } else if q.tid as u64 == tid {
            sys::rt_tgsigqueueinfo(pid, tid, q.signo as u64, info)
        } else {
            continue;
        };
        check(Step::QueueSignal, ret, q.signo as u64)?;
    }
    Ok(())
}

/// Stops in a SIGTRAP for the tracing parent, then enters `rt_sigreturn` with `rsp` at the frame's
/// `ucontext` (the kernel reads the frame at `rsp - 8`).
fn sigreturn(uc: u64) -> ! {
    // SAFETY: `uc` is the prepared frame inside the area; rt_sigreturn replaces every register, so no
    // Rust state survives this block.
    unsafe {
        asm!(
            "int3",
            "mov rsp, {uc}",
            "mov eax, 15",
            "syscall",
            "ud2",
            uc = in(reg) uc,
            options(noreturn)
        )
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    sys::exit_group(EXIT_BASE + Step::BadArgs as i32)
}
