//! The remote-syscall primitive and target memory access.

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::path::PathBuf;

use libc::user_regs_struct;
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use crate::error::ParasiteError;
use crate::ids::Tid;
use crate::ptrace::{self, SigMask};
use crate::site::{find_syscall_site, SITE_LEN};

/// `syscall` then six `int3`: the int3 right after the syscall traps us back; the extra ones only pad.
const SITE_CODE: [u8; SITE_LEN] = [0x0f, 0x05, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc];
/// rip reported at our trap: after `syscall` (2 bytes) and the first `int3` (1 byte).
const TRAP_RIP_OFFSET: u64 = 3;
/// si_code of the SIGTRAP an int3 raises (SI_KERNEL).
const SI_KERNEL: i32 = 0x80;
use dormant_sys::regs::{EFLAGS_DF, EFLAGS_TF};

/// A seized and stopped thread we can run syscalls in.
///
/// The caller must have PTRACE_SEIZEd `tid`, stopped it (PTRACE_INTERRUPT, stop observed) and must
/// make every call from the thread that seized it. The task stays stopped between and after calls;
/// each [`RemoteTask::syscall`] leaves registers, signal mask and the syscall-site bytes as it found
/// them (note: the stop the task is in afterwards is a SIGTRAP signal-delivery-stop; resuming or
/// detaching it with signal 0 discards that SIGTRAP).
#[derive(Debug)]
pub struct RemoteTask {
    tid: Tid,
    mem: File,
    site: u64,
}

impl RemoteTask {
    /// Prepare injection into `tid`, choosing a syscall site with [`find_syscall_site`].
    pub fn new(tid: Tid) -> Result<Self, ParasiteError> {
        let site = find_syscall_site(tid)?;
        Self::with_site(tid, site)
    }

    /// Prepare injection into `tid` using `site` (an executable, 8-byte writable-through-ptrace
    /// address of the target) as the syscall site.
    pub fn with_site(tid: Tid, site: u64) -> Result<Self, ParasiteError> {
        let path = PathBuf::from(format!("/proc/{tid}/mem"));
        let mem = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| ParasiteError::Proc { path, source })?;
        refuse_pending_sigtrap(tid)?;
        Ok(RemoteTask { tid, mem, site })
    }

    /// The thread this handle injects into.
    pub fn tid(&self) -> Tid {
        self.tid
    }

    /// The address where `syscall; int3` is patched during an injection.
    pub fn site(&self) -> u64 {
        self.site
    }

    /// Run syscall `nr` with `args` (rdi, rsi, rdx, r10, r8, r9) inside the task; returns the raw
    /// result (negative errno on failure, as the kernel returns it).
    ///
    /// Registers, blocked mask and the site bytes are saved right before and restored on every path.
    /// If restoring fails the error is [`ParasiteError::RestoreFailed`] and the task must not be resumed.
    ///
    /// Known limits (kernel behaviour, not fixable from here): PTRACE_SETSIGMASK clears
    /// TIF_RESTORE_SIGMASK, so a task stopped inside ppoll/pselect6/epoll_pwait/rt_sigsuspend keeps
    /// the syscall's temporary mask; the int3 SIGTRAP resets a SIG_IGN disposition of SIGTRAP to
    /// SIG_DFL; running any code ends an rseq critical section the task was stopped in, so read rseq
    /// state before the first injection. If the syscall fails after partly succeeding (e.g. an
    /// unexpected stop after mmap ran) its effect is not undone.
    pub fn syscall(&mut self, nr: i64, args: [u64; 6]) -> Result<i64, ParasiteError> {
        let tid = self.tid;
        // Save everything first; nothing is modified until all three reads succeeded.
        let saved_regs = ptrace::getregs(tid)?;
        let saved_mask = ptrace::get_sigmask(tid)?;
        let mut saved_code = [0u8; SITE_LEN];
        self.read_mem(self.site, &mut saved_code)?;

        let outcome = self.run_injected(nr, args, &saved_regs);
        if let Err(ParasiteError::TaskDied { .. }) = outcome {
            return outcome; // nothing left to restore
        }
        let mut failures = Vec::new();
        // Registers first: from here on the task would resume in its own code, not at the site.
        if let Err(e) = ptrace::setregs(tid, saved_regs) {
            failures.push(format!("registers: {e}"));
        }
        if let Err(e) = ptrace::set_sigmask(tid, saved_mask) {
            failures.push(format!("signal mask: {e}"));
        }
        if let Err(e) = self.write_mem(self.site, &saved_code) {
            failures.push(format!("code at site {:#x}: {e}", self.site));
        }
        if failures.is_empty() {
            outcome
        } else {
            let outcome = match &outcome {
                Ok(ret) => format!("syscall returned {ret}"),
                Err(e) => e.to_string(),
            };
            log::error!("tid {tid}: restoring after injected syscall {nr} failed: {failures:?}");
            Err(ParasiteError::RestoreFailed {
                tid,
                nr,
                failures: failures.join("; "),
                outcome,
            })
        }
    }

    /// Patch the site, load the injected registers and mask, run to the trap and read rax.
    /// The caller restores state whatever this returns.
    fn run_injected(
        &mut self,
        nr: i64,
        args: [u64; 6],
        saved: &user_regs_struct,
    ) -> Result<i64, ParasiteError> {
        let tid = self.tid;
        self.write_mem(self.site, &SITE_CODE)?;
        #[cfg(feature = "test-hooks")]
        crate::test_hooks::stall_point();

        let mut regs = *saved;
        regs.rip = self.site;
        regs.rax = nr as u64;
        regs.rdi = args[0];
        regs.rsi = args[1];
        regs.rdx = args[2];
        regs.r10 = args[3];
        regs.r8 = args[4];
        regs.r9 = args[5];
        // orig_rax = -1: "not in a syscall", so no restart processing is applied to these registers
        // when the task leaves its current stop.
        regs.orig_rax = u64::MAX;
        regs.eflags &= !(EFLAGS_TF | EFLAGS_DF);
        ptrace::setregs(tid, regs)?;
        // SIGTRAP must stay deliverable: a forced SIGTRAP against a blocked one would reset its handler.
        ptrace::set_sigmask(tid, SigMask::all_except(Signal::SIGTRAP))?;
        ptrace::cont(tid)?;

        loop {
            let status = match waitpid(tid.pid(), Some(WaitPidFlag::__WALL)) {
                Ok(s) => s,
                Err(Errno::EINTR) => continue,
                Err(source) => return Err(ParasiteError::Wait { tid, source }),
            };
            return match status {
                WaitStatus::Stopped(_, Signal::SIGTRAP) => {
                    let now = ptrace::getregs(tid)?;
                    let code = ptrace::siginfo_code(tid)?;
                    if now.rip == self.site + TRAP_RIP_OFFSET && code == SI_KERNEL {
                        Ok(now.rax as i64)
                    } else {
                        Err(ParasiteError::UnexpectedStop {
                            tid,
                            nr,
                            what: format!(
                                "SIGTRAP (si_code {code:#x}) at rip {:#x}, expected our int3 at {:#x}",
                                now.rip,
                                self.site + TRAP_RIP_OFFSET
                            ),
                        })
                    }
                }
                WaitStatus::Stopped(_, sig) => Err(ParasiteError::UnexpectedStop {
                    tid,
                    nr,
                    what: format!("signal-delivery-stop for {sig} (signal intercepted)"),
                }),
                WaitStatus::PtraceEvent(_, sig, event) => Err(ParasiteError::UnexpectedStop {
                    tid,
                    nr,
                    what: format!("ptrace event {event} stop ({sig}); group-stop?"),
                }),
                WaitStatus::PtraceSyscall(_) => Err(ParasiteError::UnexpectedStop {
                    tid,
                    nr,
                    what: "syscall stop".into(),
                }),
                WaitStatus::Exited(_, code) => Err(ParasiteError::TaskDied {
                    tid,
                    nr,
                    what: format!("exited with status {code}"),
                }),
                WaitStatus::Signaled(_, sig, _) => Err(ParasiteError::TaskDied {
                    tid,
                    nr,
                    what: format!("killed by {sig}"),
                }),
                WaitStatus::Continued(_) | WaitStatus::StillAlive => continue,
            };
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

    /// Map `len` bytes of private anonymous read-write memory in the target; unmapped again by
    /// [`RemoteScratch::close`] or, best effort, on drop.
    pub fn scratch(&mut self, len: usize) -> Result<RemoteScratch<'_>, ParasiteError> {
        let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        let ret = self.syscall(libc::SYS_mmap, [0, len as u64, prot, flags, u64::MAX, 0])?;
        let addr = self.check_ret("mmap", ret)? as u64;
        Ok(RemoteScratch {
            task: self,
            addr,
            len,
            closed: false,
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

/// Refuse a task with SIGTRAP pending (thread-private or shared): our int3 trap would be ambiguous.
fn refuse_pending_sigtrap(tid: Tid) -> Result<(), ParasiteError> {
    let path = PathBuf::from(format!("/proc/{tid}/status"));
    let status = std::fs::read_to_string(&path).map_err(|source| ParasiteError::Proc {
        path: path.clone(),
        source,
    })?;
    let sigtrap_bit = 1u64 << (Signal::SIGTRAP as i32 - 1);
    for key in ["SigPnd:", "ShdPnd:"] {
        let line = status.lines().find(|l| l.starts_with(key)).ok_or_else(|| {
            ParasiteError::ProcParse {
                path: path.clone(),
                line: format!("<no {key} line>"),
            }
        })?;
        let mask = u64::from_str_radix(line[key.len()..].trim(), 16).map_err(|_| {
            ParasiteError::ProcParse {
                path: path.clone(),
                line: line.to_owned(),
            }
        })?;
        if mask & sigtrap_bit != 0 {
            return Err(ParasiteError::SigtrapPending { tid });
        }
    }
    Ok(())
}

/// Private anonymous memory mapped in the target by [`RemoteTask::scratch`]; borrows the task so
/// the syscalls that fill it go through the same handle.
#[derive(Debug)]
pub struct RemoteScratch<'a> {
    task: &'a mut RemoteTask,
    addr: u64,
    len: usize,
    closed: bool,
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

    /// Always false: a scratch area has at least one byte (kept for clippy's len/is_empty pairing).
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

    /// Unmap the area, reporting failure (drop only logs it).
    pub fn close(mut self) -> Result<(), ParasiteError> {
        self.closed = true;
        let (addr, len) = (self.addr, self.len as u64);
        self.task.munmap(addr, len)
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

impl Drop for RemoteScratch<'_> {
    fn drop(&mut self) {
        if !self.closed {
            let (addr, len) = (self.addr, self.len as u64);
            if let Err(e) = self.task.munmap(addr, len) {
                log::error!("scratch area {addr:#x}+{len:#x} left mapped: {e}");
            }
        }
    }
}
