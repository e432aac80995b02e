//! The remote-syscall primitive and target memory access.
//!
//! The invariant (docs/design-notes.md, "Parasite"): from the first change made to a thread until the last
//! thing is put back, the thread is at every instant in a state from which, should the tracer disappear,
//! it returns by itself to exactly its prior registers, xstate and signal mask, leaving nothing behind
//! (no mapping, no descriptor, no pending signal). How a session keeps it:
//! 1. Before anything else changes, a *rescue frame* (an x86-64 `rt_sigframe` holding the thread's own
//!    registers, blocked mask and full xstate) is written on the thread's own stack, below the red zone
//!    and a small scratch area. Memory below the red zone is what the kernel itself uses to deliver a
//!    signal, so this disturbs nothing the program can rely on.
//! 2. The code at the syscall site (see `site`) ends in `rt_sigreturn` through that frame, on every path.
//!    Entering it, the thread has `rax = rt_sigreturn`; the real syscall number is swapped in only at the
//!    syscall-entry stop. A tracer that dies before that lets the thread return at once; one that dies
//!    later lets it finish the one syscall and return.
//! 3. Registers are loaded before the all-blocked mask, and the mask is put back before the registers,
//!    so no instant has the thread's own rip with our mask.
//! 4. The exact registers (including a syscall the thread was stopped in, whose restart state
//!    `rt_sigreturn` cannot carry) are put back only in a get_signal stop (PTRACE_INTERRUPT from the last
//!    syscall-exit stop), where the kernel applies the restart rule when the thread goes on, as if we had
//!    never been there. A tracer that dies before that lets the thread run into `rt_sigreturn`, which
//!    continues it as after a signal handler (a restart-block syscall such as nanosleep then returns
//!    EINTR).
//!
//! A stop signal that arrives while our code runs is held back and sent again at the end.

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::path::PathBuf;

use libc::user_regs_struct;
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use dormant_sys::nr;
use dormant_sys::regs::{UserRegs, EFLAGS_DF, EFLAGS_TF};
use dormant_sys::sigframe::{self, AltStack, Fpstate};

use crate::error::ParasiteError;
use crate::ids::Tid;
use crate::ptrace::{self, SigMask, SyscallStop};
use crate::site::{self, find_syscall_site, CODE, SITE_LEN};

/// The x86-64 ABI's red zone: the 128 bytes below rsp a leaf function may use without moving rsp.
const RED_ZONE: u64 = 128;
/// Scratch bytes for syscall outputs, between the red zone and the rescue frame.
pub const SCRATCH_LEN: usize = 256;
/// Every blockable signal blocked while our code runs.
const ALL_BLOCKED: SigMask = SigMask(u64::MAX);
/// Most stops one wait may pass over (held-back stop signals, stray interrupts) before giving up.
const MAX_STRAY_STOPS: usize = 64;

/// Where a thread in a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum At {
    /// A get_signal stop (the one it was seized in, or an interrupt stop): registers may be put back.
    SignalStop,
    /// A syscall-entry stop of injected code.
    SyscallEntry,
    /// A syscall-exit stop of injected code.
    SyscallExit,
    /// Running injected code (the blob) on its own.
    Running,
}

/// What a session saved and changed.
#[derive(Debug)]
struct Session {
    regs: user_regs_struct,
    mask: SigMask,
    xstate: Vec<u8>,
    /// rsp for `rt_sigreturn`: the rescue frame + 8.
    frame_sp: u64,
    scratch: u64,
    scratch_len: usize,
    /// The site's bytes before we wrote the code, if we wrote it.
    original_code: Option<[u8; SITE_LEN]>,
    /// Where the rescue frame's fpstate went in the site's padding (the stack was short), and the bytes
    /// that were there.
    fpstate_slot: Option<(u64, Vec<u8>)>,
    mask_changed: bool,
    at: At,
    /// Stop signals that arrived while our code ran; sent again at the end.
    held: Vec<Signal>,
}

/// A seized and stopped thread we can run syscalls in.
///
/// The caller must have PTRACE_SEIZEd `tid` with [`crate::seize_options`], stopped it (PTRACE_INTERRUPT,
/// stop observed) and must make every call from the thread that seized it. The first syscall opens a
/// *session* (see the module docs); [`RemoteTask::finish`] (or drop) ends it, leaving the thread in a
/// get_signal stop (a PTRACE_EVENT_STOP) with its registers, xstate, mask and the site bytes as they were.
#[derive(Debug)]
pub struct RemoteTask {
    tid: Tid,
    mem: File,
    site: u64,
    /// Whether sessions write a rescue frame (see [`RemoteTask::with_site_unguarded`]).
    guarded: bool,
    session: Option<Session>,
}

impl RemoteTask {
    /// Prepare injection into `tid`, choosing a syscall site with [`find_syscall_site`]. Changes nothing.
    pub fn new(tid: Tid) -> Result<Self, ParasiteError> {
        let site = find_syscall_site(tid)?;
        Self::with_site(tid, site)
    }

    /// Prepare injection into `tid` using `site` ([`site::SITE_LEN`] bytes the task never executes,
    /// writable through /proc/PID/mem) as the syscall site.
    pub fn with_site(tid: Tid, site: u64) -> Result<Self, ParasiteError> {
        let path = PathBuf::from(format!("/proc/{tid}/mem"));
        let mem = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| ParasiteError::Proc { path, source })?;
        Ok(RemoteTask {
            tid,
            mem,
            site,
            guarded: true,
            session: None,
        })
    }

    /// As [`with_site`](Self::with_site), but sessions write no rescue frame and need no stack room: a
    /// tracer that dies mid-session leaves the thread broken. Only for tasks that must not outlive their
    /// tracer anyway (the restorer's, before it lets them go).
    pub fn with_site_unguarded(tid: Tid, site: u64) -> Result<Self, ParasiteError> {
        let mut task = Self::with_site(tid, site)?;
        task.guarded = false;
        Ok(task)
    }

    /// The thread this handle injects into.
    pub fn tid(&self) -> Tid {
        self.tid
    }

    /// The address where the injected code goes.
    pub fn site(&self) -> u64 {
        self.site
    }

    /// Run syscall `nr` with `args` (rdi, rsi, rdx, r10, r8, r9) inside the task; the raw result
    /// (negative errno on failure, as the kernel returns it). Opens a session if none is open.
    ///
    /// Known limits (kernel behaviour, not fixable from here): PTRACE_SETSIGMASK clears
    /// TIF_RESTORE_SIGMASK, so a task stopped inside ppoll/pselect6/epoll_pwait/rt_sigsuspend keeps the
    /// syscall's temporary mask; running any code ends an rseq critical section the task was stopped in,
    /// so read rseq state before the first injection. With seccomp filters suspended (see
    /// [`crate::seize_options`]) a tracer that dies between swapping in the syscall number and resuming
    /// leaves that one syscall to the filter.
    pub fn syscall(&mut self, nr: i64, args: [u64; 6]) -> Result<i64, ParasiteError> {
        self.call(site::CALL, nr, args, |_| {})
    }

    /// Run one syscall entering the site code at `entry`, with `extra` applied to the registers last.
    /// Leaves the thread at the syscall's exit stop.
    pub(crate) fn call(
        &mut self,
        entry: u64,
        nr: i64,
        args: [u64; 6],
        extra: impl FnOnce(&mut user_regs_struct),
    ) -> Result<i64, ParasiteError> {
        let tid = self.tid;
        let entry = self.site + entry;
        let s = self.begin()?;
        if s.at == At::Running || s.at == At::SyscallEntry {
            return Err(ParasiteError::Protocol {
                tid,
                what: format!("injected syscall {nr} while the thread is {:?}", s.at),
            });
        }
        let mut regs = s.regs;
        regs.rip = entry;
        regs.rsp = s.frame_sp;
        regs.rax = nr::RT_SIGRETURN;
        regs.rdi = args[0];
        regs.rsi = args[1];
        regs.rdx = args[2];
        regs.r10 = args[3];
        regs.r8 = args[4];
        regs.r9 = args[5];
        // Not in a syscall: no restart processing on the way to the site.
        regs.orig_rax = u64::MAX;
        regs.eflags &= !(EFLAGS_TF | EFLAGS_DF);
        extra(&mut regs);
        // Registers first: from here the thread would return through the frame, whatever the mask.
        ptrace::setregs(tid, regs)?;
        if !s.mask_changed {
            ptrace::set_sigmask(tid, ALL_BLOCKED)?;
            s.mask_changed = true;
        }
        hook!(SitePatched);
        #[cfg(feature = "test-hooks")]
        crate::test_hooks::stall_point();
        ptrace::resume_to_syscall(tid)?;
        match self.wait_syscall()? {
            SyscallStop::Entry { nr: got, rip } if got == nr::RT_SIGRETURN && rip == entry + 2 => {}
            other => return Err(self.unexpected(nr, format!("{other:?} instead of our entry"))),
        }
        let mut now = ptrace::getregs(tid)?;
        now.orig_rax = nr as u64;
        ptrace::setregs(tid, now)?;
        hook!(SyscallEntered);
        ptrace::resume_to_syscall(tid)?;
        match self.wait_syscall()? {
            SyscallStop::Exit => {}
            other => return Err(self.unexpected(nr, format!("{other:?} instead of the exit"))),
        }
        Ok(ptrace::getregs(tid)?.rax as i64)
    }

    /// Opens the session if none is open: saves registers, mask and xstate, writes the rescue frame and
    /// the site code.
    fn begin(&mut self) -> Result<&mut Session, ParasiteError> {
        if self.session.is_none() {
            let tid = self.tid;
            let regs = ptrace::getregs(tid)?;
            let mask = ptrace::get_sigmask(tid)?;
            let xstate = ptrace::get_xstate(tid)?;
            let rescue = if self.guarded {
                self.write_rescue_frame(&regs, mask, &xstate)?
            } else {
                Rescue {
                    frame_sp: regs.rsp,
                    scratch: 0,
                    fpstate_slot: None,
                }
            };
            let mut original = [0u8; SITE_LEN];
            self.read_mem(self.site, &mut original)?;
            let original_code = if original[..CODE.len()] == CODE {
                None // already there (another session of this process wrote it)
            } else {
                self.write_mem(self.site, &CODE)?;
                Some(original)
            };
            let scratch_len = if self.guarded { SCRATCH_LEN } else { 0 };
            self.session = Some(Session {
                regs,
                mask,
                xstate,
                frame_sp: rescue.frame_sp,
                scratch: rescue.scratch,
                scratch_len,
                original_code,
                fpstate_slot: rescue.fpstate_slot,
                mask_changed: false,
                at: At::SignalStop,
                held: Vec::new(),
            });
        }
        self.session
            .as_mut()
            .ok_or_else(|| ParasiteError::Blob("no session".into()))
    }

    /// Writes the rescue frame below the red zone and a scratch area of the thread's stack. When the stack
    /// has room for the frame but not for its fpstate (a main thread at the deepest point of its stack),
    /// the leader's fpstate goes into the site's padding, past the code.
    fn write_rescue_frame(
        &self,
        regs: &user_regs_struct,
        mask: SigMask,
        xstate: &[u8],
    ) -> Result<Rescue, ParasiteError> {
        let tid = self.tid;
        let leader = refuse_shadow_stack(tid)? == tid.0;
        let top = regs.rsp.wrapping_sub(RED_ZONE);
        let scratch = (top - SCRATCH_LEN as u64) & !15;
        let full = scratch.wrapping_sub(sigframe::frame_len(xstate.len()) as u64) & !63;
        let short = scratch.wrapping_sub(sigframe::FRAME_SIZE as u64) & !63;
        let maps = site::read_maps(tid)?;
        let no_room = |have: u64| ParasiteError::NoStackRoom {
            tid,
            rsp: regs.rsp,
            have,
            need: top.wrapping_sub(full),
        };
        let vma = maps
            .iter()
            .find(|m| m.start < top && top <= m.end)
            .filter(|m| m.read && m.write && !m.shared)
            .ok_or_else(|| no_room(0))?;
        let have = top.saturating_sub(vma.start);
        // rt_sigreturn does no restart processing: the frame holds the registers as the thread would
        // continue from its stop with no signal to handle.
        let resume = UserRegs::from(*regs).resumable();
        let fpstate_len = xstate.len() as u64 + 4;
        let slot = self.site + SITE_LEN as u64;
        let (frame, fp, fpstate_slot) = if full >= vma.start && full < top {
            (full, Fpstate::Inline(xstate), None)
        } else if short >= vma.start
            && short < top
            && leader
            && site::padding_after(&maps, self.site) >= SITE_LEN as u64 + fpstate_len
        {
            let mut original = vec![0u8; fpstate_len as usize];
            self.read_mem(slot, &mut original)?;
            let mut fpstate = vec![0u8; fpstate_len as usize];
            sigframe::write_fpstate(&mut fpstate, xstate)
                .map_err(|e| ParasiteError::Blob(format!("tid {tid}: rescue fpstate: {e}")))?;
            self.write_mem(slot, &fpstate)?;
            log::debug!("tid {tid}: {have} bytes of stack: rescue fpstate in the site's padding");
            (short, Fpstate::At(slot), Some((slot, original)))
        } else {
            return Err(no_room(have));
        };
        let mut bytes = vec![0u8; sigframe::frame_len(xstate.len())];
        let len = sigframe::build_with(&mut bytes, frame, &resume, fp, mask.0, AltStack::Keep)
            .map_err(|e| ParasiteError::Blob(format!("tid {tid}: rescue frame: {e}")))?;
        self.write_mem(frame, &bytes[..len])?;
        Ok(Rescue {
            frame_sp: frame + 8,
            scratch,
            fpstate_slot,
        })
    }

    /// Ends the session: brings the thread to a get_signal stop, puts back its mask, xstate and
    /// registers (in that order) and the site bytes, and sends again any stop signal held back. Nothing
    /// to do without a session.
    pub fn finish(&mut self) -> Result<(), ParasiteError> {
        let Some(s) = self.session.as_ref() else {
            return Ok(());
        };
        let tid = self.tid;
        match s.at {
            At::Running => {
                // Abandons whatever the injected code was doing (its caller cleans up after it).
                nix::sys::ptrace::interrupt(tid.pid()).map_err(|source| ParasiteError::Ptrace {
                    tid,
                    op: "INTERRUPT",
                    source,
                })?;
                self.wait_interrupt_stop()?;
                self.set_at(At::SignalStop);
            }
            At::SyscallEntry => {
                // Skip the syscall: with orig_rax = -1 the kernel runs none and goes to its exit stop.
                let mut now = ptrace::getregs(tid)?;
                now.orig_rax = u64::MAX;
                ptrace::setregs(tid, now)?;
                ptrace::resume_to_syscall(tid)?;
                match self.wait_syscall()? {
                    SyscallStop::Exit => self.set_at(At::SyscallExit),
                    other => {
                        return Err(self.unexpected(-1, format!("{other:?} skipping a syscall")))
                    }
                }
                self.interrupt_at_exit()?;
            }
            At::SyscallExit => self.interrupt_at_exit()?,
            At::SignalStop => {}
        }
        self.restore()
    }

    /// From a syscall-exit stop to a get_signal stop: PTRACE_INTERRUPT makes the thread trap on its way
    /// back to user space, before it runs anything.
    pub(crate) fn interrupt_at_exit(&mut self) -> Result<(), ParasiteError> {
        let tid = self.tid;
        nix::sys::ptrace::interrupt(tid.pid()).map_err(|source| ParasiteError::Ptrace {
            tid,
            op: "INTERRUPT",
            source,
        })?;
        hook!(Interrupted);
        ptrace::cont(tid)?;
        self.wait_interrupt_stop()?;
        self.set_at(At::SignalStop);
        Ok(())
    }

    /// In a get_signal stop: mask, xstate, registers, then the site bytes and held-back stop signals.
    fn restore(&mut self) -> Result<(), ParasiteError> {
        let tid = self.tid;
        let Some(s) = self.session.take() else {
            return Ok(());
        };
        let mut failures = Vec::new();
        // The mask first: from any earlier instant the thread still returns through the frame.
        if s.mask_changed {
            if let Err(e) = ptrace::set_sigmask(tid, s.mask) {
                failures.push(format!("signal mask: {e}"));
            }
        }
        hook!(MaskRestored);
        if let Err(e) = ptrace::set_xstate(tid, &s.xstate) {
            failures.push(format!("xstate: {e}"));
        }
        if let Err(e) = ptrace::setregs(tid, s.regs) {
            failures.push(format!("registers: {e}"));
        }
        if let Some(code) = s.original_code {
            if let Err(e) = self.write_mem(self.site, &code) {
                failures.push(format!("code at site {:#x}: {e}", self.site));
            }
        }
        if let Some((slot, bytes)) = &s.fpstate_slot {
            if let Err(e) = self.write_mem(*slot, bytes) {
                failures.push(format!("padding at {slot:#x}: {e}"));
            }
        }
        for sig in &s.held {
            // Queued again: the thread takes it when it next runs, as it would have.
            if let Err(e) = nix::sys::signal::kill(tid.pid(), *sig) {
                failures.push(format!("sending back {sig}: {e}"));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            log::error!("tid {tid}: ending an injection session failed: {failures:?}");
            Err(ParasiteError::RestoreFailed {
                tid,
                failures: failures.join("; "),
            })
        }
    }

    pub(crate) fn set_at(&mut self, at: At) {
        if let Some(s) = self.session.as_mut() {
            s.at = at;
        }
    }

    /// The rsp the site's `rt_sigreturn` needs (the rescue frame + 8); 0 without a session.
    pub(crate) fn frame_sp(&self) -> u64 {
        self.session.as_ref().map_or(0, |s| s.frame_sp)
    }

    /// Follows the thread to its next syscall stop, holding back stop signals; records where it is.
    pub(crate) fn wait_syscall(&mut self) -> Result<SyscallStop, ParasiteError> {
        let tid = self.tid;
        for _ in 0..MAX_STRAY_STOPS {
            match self.wait_once()? {
                WaitStatus::PtraceSyscall(_) => {
                    let stop = ptrace::syscall_stop(tid)?;
                    match stop {
                        SyscallStop::Entry { .. } => self.set_at(At::SyscallEntry),
                        SyscallStop::Exit => self.set_at(At::SyscallExit),
                        SyscallStop::None => self.set_at(At::SignalStop),
                    }
                    return Ok(stop);
                }
                WaitStatus::Stopped(_, sig) if is_stop_signal(sig) => {
                    self.hold(sig);
                    ptrace::resume_to_syscall(tid)?;
                }
                WaitStatus::PtraceEvent(_, sig, libc::PTRACE_EVENT_STOP) => {
                    // A group stop (or a stray interrupt): go on, and stop the process again at the end.
                    if is_stop_signal(sig) {
                        self.hold(sig);
                    }
                    ptrace::resume_to_syscall(tid)?;
                }
                other => {
                    // A signal-delivery stop for a fault or signal in our code: a get_signal stop.
                    self.set_at(At::SignalStop);
                    return Err(ParasiteError::UnexpectedStop {
                        tid,
                        what: format!("{other:?} while running injected code"),
                    });
                }
            }
        }
        Err(self.unexpected(
            -1,
            "too many stop signals while running injected code".into(),
        ))
    }

    /// Waits for the PTRACE_EVENT_STOP a PTRACE_INTERRUPT asked for, holding back stop signals.
    pub(crate) fn wait_interrupt_stop(&mut self) -> Result<(), ParasiteError> {
        let tid = self.tid;
        for _ in 0..MAX_STRAY_STOPS {
            match self.wait_once()? {
                WaitStatus::PtraceEvent(_, sig, libc::PTRACE_EVENT_STOP) => {
                    if is_stop_signal(sig) {
                        self.hold(sig);
                    }
                    return Ok(());
                }
                WaitStatus::Stopped(_, sig) if is_stop_signal(sig) => {
                    self.hold(sig);
                    ptrace::cont(tid)?;
                }
                WaitStatus::PtraceSyscall(_) => ptrace::cont(tid)?,
                other => {
                    self.set_at(At::SignalStop);
                    return Err(ParasiteError::UnexpectedStop {
                        tid,
                        what: format!("{other:?} instead of the interrupt stop"),
                    });
                }
            }
        }
        Err(self.unexpected(-1, "no interrupt stop".into()))
    }

    fn wait_once(&mut self) -> Result<WaitStatus, ParasiteError> {
        let tid = self.tid;
        loop {
            match waitpid(tid.pid(), Some(WaitPidFlag::__WALL)) {
                Ok(WaitStatus::Exited(_, code)) => {
                    self.session = None;
                    return Err(ParasiteError::TaskDied {
                        tid,
                        what: format!("exited with status {code}"),
                    });
                }
                Ok(WaitStatus::Signaled(_, sig, _)) => {
                    self.session = None;
                    return Err(ParasiteError::TaskDied {
                        tid,
                        what: format!("killed by {sig}"),
                    });
                }
                Ok(WaitStatus::Continued(_) | WaitStatus::StillAlive) => continue,
                Ok(status) => return Ok(status),
                Err(Errno::EINTR) => continue,
                Err(source) => return Err(ParasiteError::Wait { tid, source }),
            }
        }
    }

    pub(crate) fn hold(&mut self, sig: Signal) {
        log::debug!(
            "tid {}: holding back {sig} until the injection ends",
            self.tid
        );
        if let Some(s) = self.session.as_mut() {
            if !s.held.contains(&sig) {
                s.held.push(sig);
            }
        }
    }

    fn unexpected(&self, nr: i64, what: String) -> ParasiteError {
        ParasiteError::UnexpectedStop {
            tid: self.tid,
            what: format!("injected syscall {nr}: {what}"),
        }
    }

    /// Read target memory at `addr` through /proc/<tid>/mem (works on PROT_NONE and read-only pages).
    pub fn read_mem(&self, addr: u64, buf: &mut [u8]) -> Result<(), ParasiteError> {
        let mut done = 0;
        while done < buf.len() {
            let at = self.offset(addr, done, "read")?;
            match nix::sys::uio::pread(self.mem.as_fd(), &mut buf[done..], at) {
                Ok(0) => return Err(self.short("read", addr, buf.len(), done)),
                Ok(n) => done += n,
                Err(Errno::EINTR) => {}
                Err(source) => return Err(self.mem_err("read", addr, buf.len(), source)),
            }
        }
        Ok(())
    }

    /// Write target memory at `addr` through /proc/<tid>/mem (works on PROT_NONE and read-only pages;
    /// private file pages get copied on write, as with a debugger breakpoint).
    pub fn write_mem(&self, addr: u64, buf: &[u8]) -> Result<(), ParasiteError> {
        let mut done = 0;
        while done < buf.len() {
            let at = self.offset(addr, done, "write")?;
            match nix::sys::uio::pwrite(self.mem.as_fd(), &buf[done..], at) {
                Ok(0) => return Err(self.short("write", addr, buf.len(), done)),
                Ok(n) => done += n,
                Err(Errno::EINTR) => {}
                Err(source) => return Err(self.mem_err("write", addr, buf.len(), source)),
            }
        }
        Ok(())
    }

    /// The session's scratch area on the thread's stack (at most [`SCRATCH_LEN`] bytes), for syscall
    /// outputs; opens a session if none is open. Nothing to unmap: it is dead stack below the red zone.
    pub fn scratch(&mut self, len: usize) -> Result<RemoteScratch<'_>, ParasiteError> {
        let tid = self.tid;
        let s = self.begin()?;
        if len > s.scratch_len {
            return Err(ParasiteError::ShortMem {
                tid,
                op: "scratch on the stack",
                addr: s.scratch,
                len,
                done: s.scratch_len,
            });
        }
        let addr = s.scratch;
        Ok(RemoteScratch {
            task: self,
            addr,
            len,
        })
    }

    /// `munmap(addr, len)` in the target (e.g. to drop the restorer's blob from a restored task).
    pub fn munmap(&mut self, addr: u64, len: u64) -> Result<(), ParasiteError> {
        let ret = self.syscall(libc::SYS_munmap, [addr, len, 0, 0, 0, 0])?;
        self.check_ret("munmap", ret).map(drop)
    }

    /// Turn a raw syscall return into `Ok(value)` or [`ParasiteError::RemoteSyscall`].
    pub(crate) fn check_ret(&self, call: &'static str, ret: i64) -> Result<i64, ParasiteError> {
        if (-4095..0).contains(&ret) {
            Err(ParasiteError::RemoteSyscall {
                tid: self.tid,
                call,
                errno: Errno::from_raw(-ret as i32),
            })
        } else {
            Ok(ret)
        }
    }

    fn offset(&self, addr: u64, done: usize, op: &'static str) -> Result<i64, ParasiteError> {
        addr.checked_add(done as u64)
            .and_then(|a| i64::try_from(a).ok())
            .ok_or_else(|| self.mem_err(op, addr, done, Errno::EOVERFLOW))
    }

    fn short(&self, op: &'static str, addr: u64, len: usize, done: usize) -> ParasiteError {
        ParasiteError::ShortMem {
            tid: self.tid,
            op,
            addr,
            len,
            done,
        }
    }

    fn mem_err(&self, op: &'static str, addr: u64, len: usize, source: Errno) -> ParasiteError {
        ParasiteError::Mem {
            tid: self.tid,
            op,
            addr,
            len,
            source,
        }
    }
}

impl Drop for RemoteTask {
    fn drop(&mut self) {
        if self.session.is_some() {
            if let Err(e) = self.finish() {
                log::error!("tid {}: ending an injection session on drop: {e}", self.tid);
            }
        }
    }
}

pub(crate) fn is_stop_signal(sig: Signal) -> bool {
    matches!(
        sig,
        Signal::SIGSTOP | Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU
    )
}

/// Where a session's rescue frame went.
struct Rescue {
    frame_sp: u64,
    scratch: u64,
    fpstate_slot: Option<(u64, Vec<u8>)>,
}

/// Refuse a thread with a shadow stack enabled: `rt_sigreturn` from a frame the kernel did not build
/// would find no token on it and fault. Returns the thread's Tgid.
fn refuse_shadow_stack(tid: Tid) -> Result<i32, ParasiteError> {
    let path = PathBuf::from(format!("/proc/{tid}/status"));
    let status = std::fs::read_to_string(&path).map_err(|source| ParasiteError::Proc {
        path: path.clone(),
        source,
    })?;
    let shstk = status
        .lines()
        .find_map(|l| l.strip_prefix("x86_Thread_features:"))
        .is_some_and(|f| f.split_whitespace().any(|w| w == "shstk"));
    if shstk {
        return Err(ParasiteError::ShadowStack { tid });
    }
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or(ParasiteError::ProcParse {
            path,
            line: "<no Tgid line>".into(),
        })
}

/// Scratch memory on the thread's stack (see [`RemoteTask::scratch`]); borrows the task so the
/// syscalls that fill it go through the same handle.
#[derive(Debug)]
pub struct RemoteScratch<'a> {
    task: &'a mut RemoteTask,
    addr: u64,
    len: usize,
}

impl RemoteScratch<'_> {
    /// Target address of the area.
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// Length of the area in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the area has no byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The task the area lives in, for injecting syscalls that use it.
    pub fn task(&mut self) -> &mut RemoteTask {
        self.task
    }

    /// Read `buf.len()` bytes at `offset` into the area.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), ParasiteError> {
        self.task.read_mem(self.bounded(offset, buf.len())?, buf)
    }

    /// Write `buf` at `offset` into the area.
    pub fn write(&self, offset: usize, buf: &[u8]) -> Result<(), ParasiteError> {
        self.task.write_mem(self.bounded(offset, buf.len())?, buf)
    }

    /// Done with the area (nothing to undo: it is dead stack; kept so callers say when they are done).
    pub fn close(self) -> Result<(), ParasiteError> {
        Ok(())
    }

    fn bounded(&self, offset: usize, len: usize) -> Result<u64, ParasiteError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(self.addr + offset as u64),
            _ => Err(ParasiteError::ShortMem {
                tid: self.task.tid,
                op: "scratch bounds check",
                addr: self.addr + offset as u64,
                len,
                done: 0,
            }),
        }
    }
}
