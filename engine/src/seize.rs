//! Seizing a task with ptrace and letting it go again.
//!
//! The kernel binds a tracee to the thread that seized it, so every method here must be called on the thread
//! that called [`SeizedTask::seize`]; [`SeizedTask`] is deliberately `!Send`.

use std::marker::PhantomData;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::{self, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid as NixPid;

use crate::error::{DumpError, Result};
use crate::proc;

/// How often a restarted wait for the interrupt stop may see a signal stop before giving up.
const MAX_SIGNAL_STOPS: usize = 64;
/// How many scans of `/proc/<pid>/task` may still find new threads before seizing gives up.
const MAX_THREAD_SCANS: usize = 32;

/// The identity of a process across pid reuse: its pid and its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessIdentity {
    pub pid: u32,
    pub start_time: u64,
}

impl ProcessIdentity {
    /// Reads the identity of the process that has `pid` now.
    pub fn current(pid: u32) -> Result<Self> {
        let stat = read_stat(pid)?;
        Ok(Self {
            pid,
            start_time: stat.start_time,
        })
    }

    /// Whether the process is still there (not reaped, pid not reused). A zombie still counts as there.
    pub fn still_there(&self) -> bool {
        matches!(Self::current(self.pid), Ok(now) if now == *self)
    }
}

/// Reads and parses `/proc/<pid>/stat`; a missing process becomes [`DumpError::NoSuchProcess`].
pub fn read_stat(pid: u32) -> Result<proc::stat::ProcStat> {
    let text = match proc::read_string(pid, "stat") {
        Ok(t) => t,
        Err(DumpError::ProcRead { source, .. }) if proc::is_gone(&source) => {
            return Err(DumpError::NoSuchProcess { pid })
        }
        Err(e) => return Err(e),
    };
    proc::stat::parse(&text).map_err(|reason| DumpError::ProcParse {
        pid,
        file: "stat",
        reason,
    })
}

/// A task held in a ptrace stop by this thread. Dropping it detaches (the task continues as before).
#[derive(Debug)]
pub struct SeizedTask {
    identity: ProcessIdentity,
    /// Every other thread of the process, seized and stopped too (ascending tids).
    threads: Vec<u32>,
    /// The task was in a job-control stop; it stays stopped after detach.
    stopped: bool,
    /// The signal of that stop, as its group-stop trap (`PTRACE_EVENT_STOP`) reported it.
    stop_signal: Option<i32>,
    released: bool,
    /// Ptrace requests are bound to the seizing thread.
    _not_send: PhantomData<*const ()>,
}

fn ptrace_err(pid: u32, op: &'static str) -> impl FnOnce(Errno) -> DumpError {
    move |source| DumpError::Ptrace { pid, op, source }
}

/// A tracee's wait status, with signal numbers as the kernel reports them: nix's `WaitStatus` has no
/// room for realtime signals (it fails with EINVAL), and a task that gets one while it is seized must
/// get it back, not lose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TraceeStop {
    /// A ptrace event stop (`PTRACE_EVENT_*` in the high byte).
    Event { sig: i32, event: i32 },
    /// A signal-delivery stop.
    Signal(i32),
    /// A syscall stop (PTRACE_O_TRACESYSGOOD).
    Syscall,
    /// Exited or killed.
    Gone,
}

/// waitpid(`pid`, __WALL), decoded as [`TraceeStop`].
fn wait_stop(pid: u32) -> std::result::Result<TraceeStop, Errno> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: waitpid writes one int to `status`, which lives on this stack.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::__WALL) };
        if r >= 0 {
            break;
        }
        match Errno::last() {
            Errno::EINTR => continue,
            e => return Err(e),
        }
    }
    if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
        return Ok(TraceeStop::Gone);
    }
    let sig = libc::WSTOPSIG(status);
    let event = status >> 16;
    Ok(if sig == libc::SIGTRAP | 0x80 {
        TraceeStop::Syscall
    } else if event != 0 {
        TraceeStop::Event { sig, event }
    } else {
        TraceeStop::Signal(sig)
    })
}

/// PTRACE_CONT delivering signal number `sig` (any, realtime ones included).
fn cont_with_signal(pid: u32, sig: i32) -> std::result::Result<(), Errno> {
    // SAFETY: PTRACE_CONT takes the signal number as `data`; no memory is passed.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_CONT,
            pid as libc::pid_t,
            std::ptr::null_mut::<libc::c_void>(),
            sig as usize as *mut libc::c_void,
        )
    };
    Errno::result(r).map(drop)
}

/// PTRACE_SEIZE of thread `tid` with the parasite's options for it (which suspend its seccomp
/// filters when it has any: an injected syscall must not be judged by them).
fn seize_one(tid: u32) -> std::result::Result<(), Errno> {
    let t = dormant_parasite::Tid(tid as i32);
    ptrace::seize(
        NixPid::from_raw(tid as i32),
        dormant_parasite::seize_options(t),
    )
}

fn is_stop_signal(sig: Signal) -> bool {
    matches!(
        sig,
        Signal::SIGSTOP | Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU
    )
}

impl SeizedTask {
    /// PTRACE_SEIZE + PTRACE_INTERRUPT, then waits for the interrupt (or group-stop) event. A signal that
    /// arrives first is re-injected and the wait repeated. Then every other thread is seized the same way,
    /// rescanning `/proc/<pid>/task` until a scan finds no new thread (a running thread may create more).
    /// Refuses zombies and a pid that was reused between reading its identity and seizing it.
    pub fn seize(pid: u32) -> Result<Self> {
        let before = read_stat(pid)?;
        if before.state == 'Z' || before.state == 'X' {
            return Err(DumpError::Zombie { pid });
        }
        let identity = ProcessIdentity {
            pid,
            start_time: before.start_time,
        };
        let npid = NixPid::from_raw(pid as i32);
        seize_one(pid).map_err(|e| match e {
            Errno::ESRCH => DumpError::NoSuchProcess { pid },
            Errno::EPERM => DumpError::SeizeDenied {
                pid,
                reason: crate::caps::seize_denied(pid),
            },
            e => DumpError::Ptrace {
                pid,
                op: "PTRACE_SEIZE",
                source: e,
            },
        })?;
        let mut task = SeizedTask {
            identity,
            threads: Vec::new(),
            stopped: before.state == 'T',
            stop_signal: None,
            released: false,
            _not_send: PhantomData,
        };
        if before.state == 'T' {
            // Already in a job-control stop: PTRACE_SEIZE itself re-traps it into a group-stop trap. An extra
            // PTRACE_INTERRUPT could arrive after that trap and stay pending, firing again the next time the
            // task is resumed (e.g. for an injected syscall); only interrupt if the trap does not come.
            if !task.poll_event_stop(pid, Duration::from_millis(200))? {
                ptrace::interrupt(npid).map_err(ptrace_err(pid, "PTRACE_INTERRUPT"))?;
                task.wait_for_event_stop(pid)?;
            }
        } else {
            ptrace::interrupt(npid).map_err(ptrace_err(pid, "PTRACE_INTERRUPT"))?;
            task.wait_for_event_stop(pid)?;
        }
        // The trap tells, not the state read before the seize: a task read as `T` may have been continued
        // since (its trap is then a plain SIGTRAP), and one read as running may have stopped meanwhile.
        task.stopped = task.stop_signal.is_some();
        task.seize_threads()?;
        task.consume_pending_sigstop()?;
        // Pid-reuse guard: the process we stopped must be the one whose identity we read.
        match ProcessIdentity::current(pid) {
            Ok(now) if now == identity => {}
            Ok(_) => return Err(DumpError::PidReused { pid }),
            Err(e) => return Err(e),
        }
        log::debug!(
            "pid {pid}: seized with {} other thread(s) (job-control stopped: {})",
            task.threads.len(),
            task.stopped
        );
        Ok(task)
    }

    /// The first half of [`SeizedTask::seize`] for a task a cgroup freezer holds: PTRACE_SEIZE and
    /// PTRACE_INTERRUPT of the leader and of every thread listed now (a frozen task creates none), without
    /// waiting for the stops, which a v1-frozen task reaches only once thawed. [`SeizedTask::await_stops`]
    /// is the second half. A task dropped before its stop cannot be detached (the kernel answers ESRCH):
    /// it stays traced until the dumping process exits.
    pub fn attach(pid: u32) -> Result<Self> {
        let before = read_stat(pid)?;
        if before.state == 'Z' || before.state == 'X' {
            return Err(DumpError::Zombie { pid });
        }
        let mut task = SeizedTask {
            identity: ProcessIdentity {
                pid,
                start_time: before.start_time,
            },
            threads: Vec::new(),
            stopped: before.state == 'T',
            stop_signal: None,
            released: false,
            _not_send: PhantomData,
        };
        let grab = |tid: u32| {
            let ntid = NixPid::from_raw(tid as i32);
            seize_one(tid)?;
            // A job-control-stopped task re-traps by itself (see `seize`).
            if before.state != 'T' {
                ptrace::interrupt(ntid)?;
            }
            Ok::<(), Errno>(())
        };
        grab(pid).map_err(|e| match e {
            Errno::ESRCH => DumpError::NoSuchProcess { pid },
            e => ptrace_err(pid, "PTRACE_SEIZE")(e),
        })?;
        for tid in proc::thread_ids(pid)? {
            if tid == pid {
                continue;
            }
            match grab(tid) {
                Ok(()) => task.threads.push(tid),
                // It exited between the scan and the seize.
                Err(Errno::ESRCH) => {}
                Err(e) => return Err(ptrace_err(tid, "PTRACE_SEIZE (thread)")(e)),
            }
        }
        Ok(task)
    }

    /// The second half of a frozen seize ([`SeizedTask::attach`]), once the task can run again: waits for
    /// the stop of the leader and of every attached thread, seizes threads that appeared since, and checks
    /// the pid was not reused, as [`SeizedTask::seize`] does.
    pub fn await_stops(&mut self) -> Result<()> {
        let pid = self.identity.pid;
        let tids = self.tids();
        for tid in tids {
            let waited = if self.stopped {
                match self.poll_event_stop(tid, Duration::from_millis(200)) {
                    Ok(true) => Ok(()),
                    Ok(false) => ptrace::interrupt(NixPid::from_raw(tid as i32))
                        .map_err(ptrace_err(tid, "PTRACE_INTERRUPT"))
                        .and_then(|()| self.wait_for_event_stop(tid)),
                    Err(e) => Err(e),
                }
            } else {
                self.wait_for_event_stop(tid)
            };
            match waited {
                Ok(()) => {}
                Err(DumpError::NoSuchProcess { .. }) if tid != pid => {
                    self.threads.retain(|t| *t != tid);
                }
                Err(e) => return Err(e),
            }
        }
        // As in `seize`: the traps tell whether the task is in a job-control stop.
        self.stopped = self.stop_signal.is_some();
        self.seize_threads()?;
        self.consume_pending_sigstop()?;
        match ProcessIdentity::current(pid) {
            Ok(now) if now == self.identity => Ok(()),
            Ok(_) => Err(DumpError::PidReused { pid }),
            Err(e) => Err(e),
        }
    }

    /// Seizes every thread not seized yet until a scan of `/proc/<pid>/task` shows nothing new. Only
    /// already-stopped threads are left once a scan is stable, so no thread can be created behind it.
    fn seize_threads(&mut self) -> Result<()> {
        let pid = self.identity.pid;
        for _ in 0..MAX_THREAD_SCANS {
            let mut new = 0;
            for tid in proc::thread_ids(pid)? {
                if tid == pid || self.threads.contains(&tid) {
                    continue;
                }
                let ntid = NixPid::from_raw(tid as i32);
                match seize_one(tid) {
                    Ok(()) => {}
                    // It exited between the scan and the seize.
                    Err(Errno::ESRCH) => continue,
                    Err(Errno::EPERM) => {
                        return Err(DumpError::SeizeDenied {
                            pid,
                            reason: format!("thread {tid}: {}", crate::caps::seize_denied(tid)),
                        })
                    }
                    Err(e) => return Err(ptrace_err(tid, "PTRACE_SEIZE (thread)")(e)),
                }
                self.threads.push(tid);
                new += 1;
                // As for the leader: a thread in a job-control stop re-traps by itself on PTRACE_SEIZE, and an
                // extra interrupt could stay pending and fire on a later resume.
                let waited = if self.stopped {
                    match self.poll_event_stop(tid, Duration::from_millis(200)) {
                        Ok(true) => Ok(()),
                        Ok(false) => ptrace::interrupt(ntid)
                            .map_err(ptrace_err(tid, "PTRACE_INTERRUPT (thread)"))
                            .and_then(|()| self.wait_for_event_stop(tid)),
                        Err(e) => Err(e),
                    }
                } else {
                    ptrace::interrupt(ntid)
                        .map_err(ptrace_err(tid, "PTRACE_INTERRUPT (thread)"))?;
                    self.wait_for_event_stop(tid)
                };
                match waited {
                    Ok(()) => {}
                    Err(DumpError::NoSuchProcess { .. }) => {
                        self.threads.retain(|t| *t != tid);
                    }
                    Err(e) => return Err(e),
                }
            }
            if new == 0 {
                self.threads.sort_unstable();
                return Ok(());
            }
        }
        Err(DumpError::UnexpectedStop {
            pid,
            status: format!("threads still appearing after {MAX_THREAD_SCANS} scans"),
        })
    }

    /// Every seized thread, the leader first.
    pub fn tids(&self) -> Vec<u32> {
        std::iter::once(self.identity.pid)
            .chain(self.threads.iter().copied())
            .collect()
    }

    /// Waits up to `timeout` for the first stop without blocking forever; `Ok(false)` if none came.
    fn poll_event_stop(&mut self, pid: u32, timeout: Duration) -> Result<bool> {
        let npid = NixPid::from_raw(pid as i32);
        let deadline = Instant::now() + timeout;
        loop {
            match waitid(
                Id::Pid(npid),
                WaitPidFlag::__WALL
                    | WaitPidFlag::WNOHANG
                    | WaitPidFlag::WSTOPPED
                    | WaitPidFlag::WNOWAIT,
            ) {
                Ok(WaitStatus::StillAlive) => {}
                // Something is there (EINVAL: a stop for a realtime signal, which nix cannot decode):
                // consume it through the normal path.
                Ok(_) | Err(Errno::EINVAL) => {
                    self.wait_for_event_stop(pid)?;
                    return Ok(true);
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(ptrace_err(pid, "wait for stop")(e)),
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// A SIGSTOP still queued would stop the task the next time it is resumed for injected code: let the
    /// kernel deliver it now (the task then sits in a group stop and is recorded as stopped).
    fn consume_pending_sigstop(&mut self) -> Result<()> {
        let pid = self.identity.pid;
        let npid = NixPid::from_raw(pid as i32);
        let bit = 1u64 << (libc::SIGSTOP - 1);
        for _ in 0..4 {
            let text = proc::read_string(pid, "status")?;
            let st = proc::status::parse(&text).map_err(|reason| DumpError::ProcParse {
                pid,
                file: "status",
                reason,
            })?;
            if (st.sig_pnd | st.shd_pnd) & bit == 0 {
                return Ok(());
            }
            log::debug!("pid {pid}: SIGSTOP pending while seizing; letting it take effect");
            ptrace::cont(npid, None).map_err(ptrace_err(pid, "PTRACE_CONT"))?;
            self.wait_for_event_stop(pid)?;
        }
        Err(DumpError::PendingSignal {
            pid,
            signal: libc::SIGSTOP,
            reason: "SIGSTOP stays pending",
        })
    }

    /// Waits for the interrupt (or group-stop) event of `pid`, the leader or one of its threads.
    fn wait_for_event_stop(&mut self, pid: u32) -> Result<()> {
        for _ in 0..MAX_SIGNAL_STOPS {
            match wait_stop(pid).map_err(ptrace_err(pid, "wait for stop"))? {
                TraceeStop::Event { sig, event } if event == libc::PTRACE_EVENT_STOP => {
                    if matches!(Signal::try_from(sig), Ok(s) if is_stop_signal(s)) {
                        // A group stop: the task was (or has just become) stopped by job control. The
                        // kernel reports the signal of the group stop (its JOBCTL_STOP_SIGMASK bits).
                        self.stopped = true;
                        self.stop_signal = Some(sig);
                    }
                    return Ok(());
                }
                TraceeStop::Signal(sig) => {
                    // A signal-delivery stop came first (realtime signals included): hand the signal back
                    // and wait for our interrupt.
                    log::debug!("pid {pid}: re-injecting signal {sig} while seizing");
                    cont_with_signal(pid, sig).map_err(ptrace_err(pid, "PTRACE_CONT"))?;
                }
                TraceeStop::Gone => {
                    if pid == self.identity.pid {
                        self.released = true;
                    }
                    return Err(DumpError::NoSuchProcess { pid });
                }
                other => {
                    return Err(DumpError::UnexpectedStop {
                        pid,
                        status: format!("{other:?}"),
                    })
                }
            }
        }
        Err(DumpError::UnexpectedStop {
            pid,
            status: format!("more than {MAX_SIGNAL_STOPS} signal stops"),
        })
    }

    pub fn pid(&self) -> u32 {
        self.identity.pid
    }

    pub fn identity(&self) -> ProcessIdentity {
        self.identity
    }

    /// Whether the task was in a job-control stop when seized.
    pub fn was_stopped(&self) -> bool {
        self.stopped
    }

    /// The signal of the job-control stop, when the task was in one and its trap said which.
    pub fn stop_signal(&self) -> Option<i32> {
        self.stop_signal.filter(|_| self.stopped)
    }

    /// Lets the task go. It continues exactly where it was (or stays job-control stopped).
    pub fn detach(mut self) -> Result<()> {
        self.released = true;
        self.detach_inner()
    }

    fn detach_inner(&self) -> Result<()> {
        for &tid in &self.threads {
            match ptrace::detach(NixPid::from_raw(tid as i32), None) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(e) => log::warn!("tid {tid}: PTRACE_DETACH: {e}"),
            }
        }
        let pid = self.identity.pid;
        let npid = NixPid::from_raw(pid as i32);
        match ptrace::detach(npid, None) {
            Ok(()) => {
                log::debug!("pid {pid}: detached");
                Ok(())
            }
            Err(Errno::ESRCH) => {
                // Gone (killed meanwhile) or not in a ptrace stop. Collect its exit so a non-child tracee's
                // real parent can reap it; never reap our own child (its waiter does that).
                self.release_dead();
                Err(DumpError::NoSuchProcess { pid })
            }
            Err(e) => Err(DumpError::Ptrace {
                pid,
                op: "PTRACE_DETACH",
                source: e,
            }),
        }
    }

    /// A traced task that died stays traced until its tracer waits for it; wait (without reaping our own
    /// child) so that its parent can reap it.
    fn release_dead(&self) {
        let pid = self.identity.pid;
        let npid = NixPid::from_raw(pid as i32);
        let own_child = read_stat(pid)
            .map(|s| s.ppid == std::process::id())
            .unwrap_or(false);
        let mut flags = WaitPidFlag::__WALL | WaitPidFlag::WNOHANG | WaitPidFlag::WEXITED;
        if own_child {
            flags |= WaitPidFlag::WNOWAIT;
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            match waitid(Id::Pid(npid), flags) {
                Ok(WaitStatus::StillAlive) => thread::sleep(Duration::from_millis(5)),
                Ok(_) | Err(_) => return,
            }
        }
    }

    /// Kills the task with SIGKILL while it is still stopped (so it runs no further instruction), then waits
    /// until its pid is free: the tracer collects the exit, the real parent reaps it. When the caller is the
    /// task's parent, reaping is the caller's job and this returns once the task is a zombie; so it does
    /// without `wait_reaped` (CRIU's behaviour: a runtime reaps its container's init itself).
    pub fn kill(mut self, timeout: Duration, wait_reaped: bool) -> Result<()> {
        self.released = true;
        let pid = self.identity.pid;
        let npid = NixPid::from_raw(pid as i32);
        let own_child = read_stat(pid)
            .map(|s| s.ppid == std::process::id())
            .unwrap_or(false);
        signal::kill(npid, Signal::SIGKILL).map_err(|source| DumpError::Kill { pid, source })?;
        let deadline = Instant::now() + timeout;
        // A traced thread stays a zombie until its tracer waits for it, and the leader's exit is only
        // reported once every other thread is gone: collect the threads first.
        for &tid in &self.threads {
            let ntid = NixPid::from_raw(tid as i32);
            while let Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) = waitid(
                Id::Pid(ntid),
                WaitPidFlag::__WALL | WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG,
            ) {
                if Instant::now() >= deadline {
                    return Err(DumpError::KillTimeout {
                        pid,
                        secs: timeout.as_secs(),
                    });
                }
                thread::sleep(Duration::from_millis(1));
            }
        }
        // Wait for the exit as its tracer.
        let mut flags = WaitPidFlag::__WALL | WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG;
        if own_child {
            flags |= WaitPidFlag::WNOWAIT;
        }
        loop {
            match waitid(Id::Pid(npid), flags) {
                Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..)) => break,
                Ok(_) => {}
                Err(Errno::EINTR) => {}
                Err(Errno::ECHILD) => break,
                Err(source) => return Err(DumpError::Kill { pid, source }),
            }
            if Instant::now() >= deadline {
                return Err(DumpError::KillTimeout {
                    pid,
                    secs: timeout.as_secs(),
                });
            }
            thread::sleep(Duration::from_millis(2));
        }
        if own_child || !wait_reaped {
            log::debug!("pid {pid}: killed; its parent reaps it");
            return Ok(());
        }
        while self.identity.still_there() {
            if Instant::now() >= deadline {
                return Err(DumpError::KillTimeout {
                    pid,
                    secs: timeout.as_secs(),
                });
            }
            thread::sleep(Duration::from_millis(2));
        }
        log::debug!("pid {pid}: killed and reaped");
        Ok(())
    }
}

impl Drop for SeizedTask {
    fn drop(&mut self) {
        if !self.released {
            if let Err(e) = self.detach_inner() {
                log::warn!("{e}");
            }
        }
    }
}
