//! The injected parasite: the blob in a memfd area shared by dumper and target, run one command at a
//! time in a chosen thread, and the cure.
//!
//! Why one command per resume (and not a daemon loop in the target): between commands the dumper
//! holds the task in a stop at the entry of the blob's final `rt_sigreturn`, whose frame holds the
//! task's own registers, mask and xstate. If the dumper dies there, ptrace detaches the task, the
//! `rt_sigreturn` runs, and the task continues its own code. A daemon loop would leave it spinning or
//! blocked in parasite code instead. The price is one ptrace round trip per command (tens of
//! microseconds); commands are batched (a whole snapshot, several pipes of pages) to keep them few.
//!
//! Stages and what a dumper crash leaves behind (checked by the crash tests):
//! 1. Setting up the area with single injected syscalls ([`RemoteTask`]): the site is ELF padding the
//!    task never executes; a crash may leave a memfd fd open and/or the area mapped (dead memory, never
//!    executed), nothing else.
//! 2. Commands: the task runs blob code that always ends in `rt_sigreturn` to its own state.
//! 3. Cure: each parked thread executes its `rt_sigreturn` (checked: registers and mask as saved), the
//!    pipes and the area are removed with injected syscalls, then the exact saved registers (including
//!    the in-syscall restart state that `rt_sigreturn` cannot carry), mask and xstate are put back.
//!    Exception: a thread seized in a syscall that restarts through its restart block (nanosleep,
//!    clock_nanosleep, poll with a timeout...: -ERESTART_RESTARTBLOCK) skips its `rt_sigreturn`,
//!    because `rt_sigreturn` resets the restart block and the syscall would then return EINTR. If the
//!    dumper dies while such a thread is parked, that is what happens: the syscall returns EINTR, as
//!    after a signal handler, which the program has to handle anyway.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{mpsc, Mutex};

use dormant_parasite_proto as proto;
use dormant_sys::nr;
use dormant_sys::regs::{UserRegs, EFLAGS_DF, EFLAGS_TF};
use dormant_sys::sigframe::{self, AltStack as FrameAltStack};
use libc::user_regs_struct;
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use proto::{Control, Iov, PipeJob, Snapshot, ThreadState};

use crate::area::{pidfd_getfd, pidfd_open, LocalArea};
use crate::blob::{self, PAGE};
use crate::error::ParasiteError;
use crate::ids::Tid;
use crate::ptrace::{self, SigMask, SyscallStop};
use crate::query::{AltStack, ITimerVal, ITimers, TaskSnapshot, TimeVal};
use crate::remote::RemoteTask;

const CTL_LEN: u64 = PAGE;
/// Room for a snapshot or for vmsplice jobs and their iovecs.
const DATA_LEN: u64 = 64 * 1024;
const STACK_LEN: u64 = 64 * 1024;
/// Most iovecs one vmsplice call accepts (UIO_MAXIOV).
const IOV_MAX: usize = 1024;

/// Where things are, as offsets from the area base.
#[derive(Debug, Clone, Copy)]
struct Layout {
    ctl: u64,
    data: u64,
    stack_top: u64,
    frames: u64,
    frame_slot: u64,
    len: u64,
}

impl Layout {
    fn new(blob_span: u64, xstate_len: usize, threads: usize) -> Layout {
        let ctl = blob_span;
        let data = ctl + CTL_LEN;
        let stack_top = data + DATA_LEN + STACK_LEN;
        let frame_slot = (sigframe::frame_len(xstate_len) as u64).div_ceil(PAGE) * PAGE;
        Layout {
            ctl,
            data,
            stack_top,
            frames: stack_top,
            frame_slot,
            len: stack_top + frame_slot * threads as u64,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Untouched since the seize: still in its own registers.
    Original,
    /// Stopped at the entry of the blob's `rt_sigreturn`.
    Parked,
}

#[derive(Debug)]
struct ThreadSlot {
    regs: user_regs_struct,
    mask: SigMask,
    xstate: Vec<u8>,
    /// What the frame returns to: `regs` with the restart processing applied.
    resume: user_regs_struct,
    frame_addr: u64,
    phase: Phase,
}

/// A pipe whose write end lives in the target and whose read end the dumper holds.
#[derive(Debug)]
struct PagePipe {
    target_write_fd: i32,
    read: OwnedFd,
    capacity: u64,
}

/// The parasite injected into one process.
///
/// The caller seizes and stops every thread it names (and keeps all ptrace calls on the seizing
/// thread); [`Parasite::cure`] must be called before detaching. Dropping an uncured parasite cures
/// best effort and logs failures.
#[derive(Debug)]
pub struct Parasite {
    leader: Tid,
    remote: RemoteTask,
    pidfd: OwnedFd,
    area: LocalArea,
    base: u64,
    layout: Layout,
    entry: u64,
    threads: BTreeMap<Tid, ThreadSlot>,
    pipes: Vec<PagePipe>,
    cured: bool,
}

impl Parasite {
    /// Inject into the process whose thread-group leader is `leader`; `others` are further threads of
    /// it that commands may be sent to. All must be seized and stopped.
    pub fn inject(leader: Tid, others: &[Tid]) -> Result<Parasite, ParasiteError> {
        crate::blob::cpu_supported()?;
        let blob = blob::embedded()?;
        let mut threads = BTreeMap::new();
        for &tid in std::iter::once(&leader).chain(others) {
            let regs = ptrace::getregs(tid)?;
            threads.insert(
                tid,
                ThreadSlot {
                    regs,
                    mask: ptrace::get_sigmask(tid)?,
                    xstate: ptrace::get_xstate(tid)?,
                    resume: UserRegs::from(regs).resumable().into(),
                    frame_addr: 0,
                    phase: Phase::Original,
                },
            );
        }
        let xstate_len = threads.values().map(|t| t.xstate.len()).max().unwrap_or(0);
        let layout = Layout::new(blob.span(), xstate_len, threads.len());
        let pidfd = pidfd_open(leader)?;
        let mut remote = RemoteTask::new(leader)?;
        let (base, memfd) = map_remote_area(&mut remote, &pidfd, layout.len)?;
        let area = match LocalArea::map(&memfd, layout.len as usize) {
            Ok(a) => a,
            Err(e) => {
                let _ = remote.munmap(base, layout.len);
                return Err(e);
            }
        };
        drop(memfd);
        let mut parasite = Parasite {
            leader,
            remote,
            pidfd,
            area,
            base,
            layout,
            entry: base + blob.entry_offset(),
            threads,
            pipes: Vec::new(),
            cured: false,
        };
        // From here on, errors cure (unmap) through Drop.
        blob.load_into(parasite.area.bytes_mut(), base)
            .map_err(|e| ParasiteError::Blob(e.to_string()))?;
        hook!(BlobLoaded);
        for (i, slot) in parasite.threads.values_mut().enumerate() {
            let off = layout.frames + layout.frame_slot * i as u64;
            slot.frame_addr = base + off;
            let out = &mut parasite.area.bytes_mut()[off as usize..];
            sigframe::build(
                out,
                base + off,
                &UserRegs::from(slot.resume),
                &slot.xstate,
                slot.mask.0,
                FrameAltStack::Keep,
            )
            .map_err(|e| ParasiteError::Blob(format!("tid {leader}: sigframe: {e}")))?;
        }
        log::debug!(
            "tid {leader}: parasite at {base:#x}+{:#x} ({} relocations, {} threads)",
            layout.len,
            blob.relocation_count(),
            parasite.threads.len()
        );
        Ok(parasite)
    }

    /// Target address and length of the injected area.
    pub fn area(&self) -> (u64, u64) {
        (self.base, self.layout.len)
    }

    /// Run raw syscall `nr` in thread `tid` through the blob; the raw result (-errno on failure).
    pub fn syscall(&mut self, tid: Tid, nr: i64, args: [u64; 6]) -> Result<i64, ParasiteError> {
        let mut a = [0u64; 7];
        a[0] = nr as u64;
        a[1..].copy_from_slice(&args);
        Ok(self.command(tid, proto::CMD_SYSCALL, a)?.ret)
    }

    /// Process-wide state and the leader's thread state, in one command.
    pub fn task_state(&mut self) -> Result<TaskSnapshot, ParasiteError> {
        let leader = self.leader;
        let c = self.command(leader, proto::CMD_SNAPSHOT, [0; 7])?;
        self.check_command(leader, "snapshot", &c)?;
        let s: Snapshot = self.area.read(self.layout.data as usize)?;
        let itimer = |t: &dormant_sys::signal::KernelItimerval| ITimerVal {
            interval: TimeVal {
                sec: t.interval_sec,
                usec: t.interval_usec,
            },
            value: TimeVal {
                sec: t.value_sec,
                usec: t.value_usec,
            },
        };
        Ok(TaskSnapshot {
            sigactions: s.sigactions,
            altstack: altstack(&s.thread),
            brk: s.brk,
            itimers: ITimers {
                real: itimer(&s.itimers[0]),
                virtual_: itimer(&s.itimers[1]),
                prof: itimer(&s.itimers[2]),
            },
            tid_address: (s.thread.tid_address_ok == 1).then_some(s.thread.tid_address),
            pdeathsig: s.pdeathsig,
            dumpable: s.dumpable,
            child_subreaper: s.child_subreaper != 0,
            securebits: s.securebits as u32,
        })
    }

    /// The per-thread state of `tid` (sigaltstack, clear_child_tid), run in that thread.
    pub fn thread_state(&mut self, tid: Tid) -> Result<ThreadInfo, ParasiteError> {
        let c = self.command(tid, proto::CMD_THREAD_STATE, [0; 7])?;
        self.check_command(tid, "thread state", &c)?;
        let t: ThreadState = self.area.read(self.layout.data as usize)?;
        if t.tid != tid.0 {
            return Err(ParasiteError::Protocol {
                tid,
                what: format!("thread-state command ran in tid {} instead", t.tid),
            });
        }
        Ok(ThreadInfo {
            altstack: altstack(&t),
            tid_address: (t.tid_address_ok == 1).then_some(t.tid_address),
        })
    }

    /// Create `count` pipes in the target (write ends stay there, read ends come to the dumper) sized
    /// to at most `size` bytes each (the kernel caps it at fs.pipe-max-size). Returns the capacity of
    /// the smallest.
    pub fn open_page_pipes(&mut self, count: usize, size: u64) -> Result<u64, ParasiteError> {
        let leader = self.leader;
        let data = self.base + self.layout.data;
        for _ in 0..count {
            let ret = self.syscall(
                leader,
                libc::SYS_pipe2,
                [data, libc::O_CLOEXEC as u64, 0, 0, 0, 0],
            )?;
            self.remote.check_ret("pipe2", ret)?;
            let [r, w]: [i32; 2] = self.area.read(self.layout.data as usize)?;
            let read = pidfd_getfd(&self.pidfd, r);
            let ret = self.syscall(leader, libc::SYS_close, [r as u64, 0, 0, 0, 0, 0])?;
            let read = match read {
                Ok(read) => read,
                Err(e) => {
                    let _ = self.syscall(leader, libc::SYS_close, [w as u64, 0, 0, 0, 0, 0]);
                    return Err(e);
                }
            };
            self.pipes.push(PagePipe {
                target_write_fd: w,
                read,
                capacity: 0,
            });
            self.remote.check_ret("close", ret)?;
            let pipe = self
                .pipes
                .last_mut()
                .ok_or(ParasiteError::Blob("no pipe".into()))?;
            let set = nix::fcntl::fcntl(
                pipe.read.as_fd(),
                nix::fcntl::FcntlArg::F_SETPIPE_SZ(size.min(i32::MAX as u64) as i32),
            );
            let got = match set {
                Ok(n) => n,
                // Above pipe-max-size without CAP_SYS_RESOURCE: keep what the pipe has.
                Err(Errno::EPERM) | Err(Errno::EINVAL) => {
                    nix::fcntl::fcntl(pipe.read.as_fd(), nix::fcntl::FcntlArg::F_GETPIPE_SZ)
                        .map_err(|source| ParasiteError::Local {
                            what: "F_GETPIPE_SZ".into(),
                            source,
                        })?
                }
                Err(source) => {
                    return Err(ParasiteError::Local {
                        what: format!("F_SETPIPE_SZ {size}"),
                        source,
                    })
                }
            };
            pipe.capacity = got as u64;
        }
        Ok(self.pipes.iter().map(|p| p.capacity).min().unwrap_or(0))
    }

    /// Move the pages of `extents` (vaddr, len, tag; page aligned, readable, present) through the page
    /// pipes and hand each piece to `sink(piece, fd)`, which must consume exactly `piece.len` bytes
    /// from `fd` (e.g. splice them into the page store). Extents are split at pipe capacity; the tag
    /// (e.g. page flags) goes with every piece, and so does the crc32 of its bytes, taken by the blob
    /// right before the vmsplice (so the sink never reads the data). Returns the bytes moved.
    ///
    /// Pipelined: `drain_threads` dumper threads (at least 1, at most one per pipe) drain pipes while
    /// this thread has the blob fill the free ones, one command for all of them. Each command costs a
    /// ptrace round trip and two syscall stops per vmsplice, so it waits until half the pipes are
    /// free: open at least two pipes per drain thread, so one half fills while the other drains.
    pub fn splice_pages<E, F>(
        &mut self,
        extents: &[(u64, u64, u32)],
        drain_threads: usize,
        sink: F,
    ) -> Result<u64, SpliceError<E>>
    where
        E: Send,
        F: Fn(PagePiece, BorrowedFd<'_>) -> Result<(), E> + Sync,
    {
        if self.pipes.is_empty() {
            return Err(SpliceError::Parasite(ParasiteError::Blob(
                "splice_pages before open_page_pipes".into(),
            )));
        }
        let step = self
            .pipes
            .iter()
            .map(|p| p.capacity)
            .min()
            .unwrap_or(PAGE)
            .max(PAGE);
        let mut pieces = extents.iter().flat_map(move |&(vaddr, len, tag)| {
            (0..len.div_ceil(step)).map(move |i| {
                let off = i * step;
                PagePiece {
                    vaddr: vaddr + off,
                    len: step.min(len - off),
                    tag,
                    crc32: 0,
                }
            })
        });
        // The pipes leave `self` while the drain threads borrow them (commands need `&mut self`).
        let pipes = std::mem::take(&mut self.pipes);
        let drain_threads = drain_threads.clamp(1, pipes.len());
        let refill_at = (pipes.len() / 2).max(1);
        let max_iovs = split_data(pipes.len(), 0).max_iovs;
        let (job_tx, job_rx) = mpsc::channel::<(usize, Vec<PagePiece>)>();
        let job_rx = Mutex::new(job_rx);
        let (done_tx, done_rx) = mpsc::channel::<Result<usize, SpliceError<E>>>();
        let result = std::thread::scope(|s| {
            let workers: Vec<_> = (0..drain_threads)
                .map(|_| {
                    let (job_rx, done_tx, pipes, sink) = (&job_rx, done_tx.clone(), &pipes, &sink);
                    s.spawn(move || drain_worker(job_rx, &done_tx, pipes, sink))
                })
                .collect();
            drop(done_tx);
            let mut free: Vec<usize> = (0..pipes.len()).collect();
            let mut busy = 0usize;
            let mut total = 0u64;
            let mut pending = pieces.next();
            let mut failure: Option<SpliceError<E>> = None;
            let on_done = |r: Result<usize, SpliceError<E>>,
                           free: &mut Vec<usize>,
                           failure: &mut Option<SpliceError<E>>| {
                match r {
                    Ok(i) => free.push(i),
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            };
            while pending.is_some() && failure.is_none() {
                while let Ok(r) = done_rx.try_recv() {
                    busy -= 1;
                    on_done(r, &mut free, &mut failure);
                }
                if failure.is_some() {
                    break;
                }
                if busy > 0 && free.len() < refill_at {
                    match done_rx.recv() {
                        Ok(r) => {
                            busy -= 1;
                            on_done(r, &mut free, &mut failure);
                        }
                        Err(_) => break, // every worker is gone; reported below
                    }
                    continue;
                }
                let mut rounds = fill_rounds(&free, &pipes, max_iovs, &mut pending, &mut pieces);
                match self.vmsplice_round(&pipes, &mut rounds) {
                    Ok(n) => total += n,
                    Err(e) => {
                        failure = Some(SpliceError::Parasite(e));
                        break;
                    }
                }
                for (i, round) in rounds {
                    free.retain(|&f| f != i);
                    busy += 1;
                    if job_tx.send((i, round)).is_err() {
                        busy -= 1;
                        failure.get_or_insert(SpliceError::Parasite(ParasiteError::Blob(
                            "every page drain thread has stopped".into(),
                        )));
                    }
                }
            }
            // No more work: let the drain threads finish what they hold, then stop.
            drop(job_tx);
            while busy > 0 {
                match done_rx.recv() {
                    Ok(r) => {
                        busy -= 1;
                        if let Err(e) = r {
                            failure.get_or_insert(e);
                        }
                    }
                    Err(_) => break,
                }
            }
            for w in workers {
                if w.join().is_err() {
                    failure.get_or_insert(SpliceError::Parasite(ParasiteError::Blob(
                        "page drain thread panicked".into(),
                    )));
                }
            }
            if busy > 0 {
                failure.get_or_insert(SpliceError::Parasite(ParasiteError::Blob(
                    "page drain threads stopped with pipes still full".into(),
                )));
            }
            match failure {
                Some(e) => Err(e),
                None => Ok(total),
            }
        });
        self.pipes = pipes;
        result
    }

    /// One command: the blob vmsplices each round's pieces into its pipe (`rounds`: pipe index and
    /// pieces) and stores their crcs, which are copied into the pieces. Returns the bytes moved.
    fn vmsplice_round(
        &mut self,
        pipes: &[PagePipe],
        rounds: &mut [(usize, Vec<PagePiece>)],
    ) -> Result<u64, ParasiteError> {
        let leader = self.leader;
        let iovs: usize = rounds.iter().map(|(_, r)| r.len()).sum();
        let split = split_data(rounds.len(), iovs);
        if iovs > split.max_iovs {
            return Err(ParasiteError::Blob(format!(
                "{iovs} iovecs do not fit the data region"
            )));
        }
        let mut iov_index = 0u32;
        let mut expected = 0;
        let data = self.layout.data as usize;
        for (j, (pipe, round)) in rounds.iter().enumerate() {
            let job = PipeJob {
                fd: pipes[*pipe].target_write_fd,
                iov_first: iov_index,
                iov_count: round.len() as u32,
                pad: 0,
                moved: 0,
            };
            self.area
                .write(data + j * std::mem::size_of::<PipeJob>(), &job)?;
            for piece in round {
                let at = data + split.iov_off + iov_index as usize * std::mem::size_of::<Iov>();
                self.area.write(
                    at,
                    &Iov {
                        base: piece.vaddr,
                        len: piece.len,
                    },
                )?;
                iov_index += 1;
                expected += piece.len;
            }
        }
        let c = self.command(
            leader,
            proto::CMD_VMSPLICE,
            [
                rounds.len() as u64,
                split.iov_off as u64,
                split.crc_off as u64,
                0,
                0,
                0,
                0,
            ],
        )?;
        self.check_command(leader, "vmsplice", &c)?;
        if c.ret as u64 != expected {
            return Err(ParasiteError::Protocol {
                tid: leader,
                what: format!("vmsplice moved {} of {expected} bytes", c.ret),
            });
        }
        let mut k = 0;
        for (_, round) in rounds.iter_mut() {
            for piece in round {
                piece.crc32 = self.area.read(data + split.crc_off + 4 * k)?;
                k += 1;
            }
        }
        Ok(expected)
    }

    /// Run one command in `tid` and park it at the blob's `rt_sigreturn`.
    fn command(
        &mut self,
        tid: Tid,
        command: u32,
        args: [u64; 7],
    ) -> Result<Control, ParasiteError> {
        let (frame_addr, phase, template) = {
            let slot = self
                .threads
                .get(&tid)
                .ok_or_else(|| ParasiteError::Protocol {
                    tid,
                    what: "is not a thread this parasite was injected with".into(),
                })?;
            (slot.frame_addr, slot.phase, slot.regs)
        };
        let ctl_off = self.layout.ctl as usize;
        let before: Control = self.area.read(ctl_off)?;
        let ctl = Control {
            magic: proto::CONTROL_MAGIC,
            version: proto::PROTO_VERSION,
            command,
            args,
            ret: 0,
            failed_step: 0,
            completed: before.completed,
            frame: frame_addr,
            data: self.base + self.layout.data,
            data_len: DATA_LEN,
        };
        self.area.write(ctl_off, &ctl)?;
        if phase == Phase::Original {
            // Nothing may interrupt parasite code; the frame restores the real mask.
            ptrace::set_sigmask(tid, SigMask(u64::MAX))?;
        }
        let mut regs = template;
        regs.rip = self.entry;
        regs.rsp = self.base + self.layout.stack_top;
        regs.rdi = self.base + self.layout.ctl;
        regs.rax = 0;
        // Not in a syscall: no restart processing, and at a parked syscall-entry stop this skips the
        // pending rt_sigreturn.
        regs.orig_rax = u64::MAX;
        regs.eflags &= !(EFLAGS_TF | EFLAGS_DF);
        ptrace::setregs(tid, regs)?;
        if let Some(slot) = self.threads.get_mut(&tid) {
            slot.phase = Phase::Parked; // from now on the frame is the way back, whatever happens
        }
        ptrace::resume_to_syscall(tid)?;
        hook!(CommandRunning);
        self.wait_parked(tid)?;
        let done: Control = self.area.read(ctl_off)?;
        if done.completed != before.completed.wrapping_add(1) {
            return Err(ParasiteError::Protocol {
                tid,
                what: "reached rt_sigreturn without completing the command".into(),
            });
        }
        Ok(done)
    }

    /// Follow syscall stops until `tid` enters the blob's `rt_sigreturn`.
    fn wait_parked(&mut self, tid: Tid) -> Result<(), ParasiteError> {
        let blob_end = self.base + self.layout.ctl;
        loop {
            match wait(tid)? {
                WaitStatus::PtraceSyscall(_) | WaitStatus::Stopped(_, Signal::SIGTRAP) => {
                    match ptrace::syscall_stop(tid)? {
                        SyscallStop::Entry { nr, rip }
                            if nr == nr::RT_SIGRETURN && (self.base..blob_end).contains(&rip) =>
                        {
                            return Ok(())
                        }
                        SyscallStop::Entry { .. } | SyscallStop::Exit => {
                            ptrace::resume_to_syscall(tid)?
                        }
                        SyscallStop::None => {
                            let regs = ptrace::getregs(tid)?;
                            return Err(ParasiteError::Protocol {
                                tid,
                                what: format!(
                                    "trapped at {:#x} (blob entry {:#x}, area {:#x}) inside the command",
                                    regs.rip, self.entry, self.base
                                ),
                            });
                        }
                    }
                }
                other => {
                    return Err(ParasiteError::Protocol {
                        tid,
                        what: format!("stopped with {other:?} while running a command"),
                    })
                }
            }
        }
    }

    fn check_command(
        &self,
        tid: Tid,
        command: &'static str,
        c: &Control,
    ) -> Result<(), ParasiteError> {
        if c.ret < 0 {
            return Err(ParasiteError::Command {
                tid,
                command,
                step: c.failed_step,
                errno: Errno::from_raw(-c.ret as i32),
            });
        }
        Ok(())
    }

    /// Remove the parasite: close the page pipes, let every parked thread `rt_sigreturn` to its own
    /// state (verified), unmap the area, and put back the exact registers, mask and xstate.
    pub fn cure(mut self) -> Result<(), ParasiteError> {
        self.cured = true;
        self.cure_inner()
    }

    fn cure_inner(&mut self) -> Result<(), ParasiteError> {
        let leader = self.leader;
        let mut first_err: Option<ParasiteError> = None;
        let mut note = |r: Result<(), ParasiteError>| {
            if let Err(e) = r {
                log::error!("cure: {e}");
                first_err.get_or_insert(e);
            }
        };
        let pipes = std::mem::take(&mut self.pipes);
        for p in &pipes {
            let r = self
                .syscall(
                    leader,
                    libc::SYS_close,
                    [p.target_write_fd as u64, 0, 0, 0, 0, 0],
                )
                .and_then(|ret| self.remote.check_ret("close", ret).map(drop));
            note(r);
        }
        drop(pipes);
        let tids: Vec<Tid> = self.threads.keys().copied().collect();
        for &tid in &tids {
            note(self.sigreturn(tid));
        }
        hook!(CureReturned);
        let (base, len) = (self.base, self.layout.len);
        note(self.remote.munmap(base, len));
        hook!(CureUnmapped);
        let site = self.remote.site();
        for &tid in &tids {
            note(self.restore_exact(tid, site));
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Let a parked thread execute its `rt_sigreturn`, and check it came back to the frame's state.
    fn sigreturn(&mut self, tid: Tid) -> Result<(), ParasiteError> {
        let Some(slot) = self.threads.get(&tid) else {
            return Ok(());
        };
        if slot.phase != Phase::Parked {
            return Ok(());
        }
        if UserRegs::from(slot.regs).needs_restart_block() {
            // rt_sigreturn resets the restart block (a restarted nanosleep would return EINTR), so
            // this thread's frame is only used if the dumper dies; restore_exact skips the pending
            // rt_sigreturn instead.
            return Ok(());
        }
        ptrace::resume_to_syscall(tid)?;
        match wait(tid)? {
            WaitStatus::PtraceSyscall(_) | WaitStatus::Stopped(_, Signal::SIGTRAP)
                if ptrace::syscall_stop(tid)? == SyscallStop::Exit => {}
            other => {
                return Err(ParasiteError::Protocol {
                    tid,
                    what: format!("rt_sigreturn ended in {other:?}, not its syscall exit"),
                })
            }
        }
        let now = ptrace::getregs(tid)?;
        let mask = ptrace::get_sigmask(tid)?;
        let want = &slot.resume;
        let same = [
            (now.rip, want.rip),
            (now.rsp, want.rsp),
            (now.rax, want.rax),
            (now.rbx, want.rbx),
            (now.rcx, want.rcx),
            (now.rdx, want.rdx),
            (now.rsi, want.rsi),
            (now.rdi, want.rdi),
            (now.rbp, want.rbp),
            (now.r8, want.r8),
            (now.r9, want.r9),
            (now.r10, want.r10),
            (now.r11, want.r11),
            (now.r12, want.r12),
            (now.r13, want.r13),
            (now.r14, want.r14),
            (now.r15, want.r15),
        ]
        .iter()
        .all(|(a, b)| a == b);
        if !same || mask != slot.mask {
            return Err(ParasiteError::Protocol {
                tid,
                what: format!(
                    "rt_sigreturn frame returned to rip {:#x} rsp {:#x} mask {:#x}, expected rip {:#x} rsp {:#x} mask {:#x}",
                    now.rip, now.rsp, mask.0, want.rip, want.rsp, slot.mask.0
                ),
            });
        }
        if let Some(slot) = self.threads.get_mut(&tid) {
            slot.phase = Phase::Original;
        }
        Ok(())
    }

    /// Put the exact saved state back. A thread that ran commands is first brought to a
    /// signal-delivery stop (one injected getpid) so that a syscall it was seized in still restarts
    /// when it resumes, as it would have without us.
    fn restore_exact(&mut self, tid: Tid, site: u64) -> Result<(), ParasiteError> {
        let Some(slot) = self.threads.get(&tid) else {
            return Ok(());
        };
        if tid != self.leader {
            RemoteTask::with_site(tid, site)?.syscall(libc::SYS_getpid, [0; 6])?;
        }
        ptrace::setregs(tid, slot.regs)?;
        ptrace::set_sigmask(tid, slot.mask)?;
        ptrace::set_xstate(tid, &slot.xstate)
    }
}

impl Drop for Parasite {
    fn drop(&mut self) {
        if !self.cured {
            self.cured = true;
            if let Err(e) = self.cure_inner() {
                log::error!("tid {}: curing a dropped parasite failed: {e}", self.leader);
            }
        }
    }
}

/// Per-thread state reported by [`Parasite::thread_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadInfo {
    pub altstack: AltStack,
    /// clear_child_tid; `None` when the kernel lacks PR_GET_TID_ADDRESS.
    pub tid_address: Option<u64>,
}

/// One piece of [`Parasite::splice_pages`]: `len` bytes at `vaddr` of the target, the caller's tag,
/// and the crc32 (IEEE, crc32fast's value) of the bytes, computed inside the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagePiece {
    pub vaddr: u64,
    pub len: u64,
    pub tag: u32,
    pub crc32: u32,
}

/// Fills each free pipe up to its capacity (a piece never exceeds the smallest one) with the pieces from
/// `pending` on, at most `max_iovs` in all; returns (pipe index, pieces) for each pipe that got any.
fn fill_rounds(
    free: &[usize],
    pipes: &[PagePipe],
    max_iovs: usize,
    pending: &mut Option<PagePiece>,
    pieces: &mut impl Iterator<Item = PagePiece>,
) -> Vec<(usize, Vec<PagePiece>)> {
    let mut rounds: Vec<(usize, Vec<PagePiece>)> = Vec::new();
    let mut iov_count = 0;
    'fill: for &i in free {
        let mut round = Vec::new();
        let mut used = 0;
        while let Some(piece) = *pending {
            if used + piece.len > pipes[i].capacity
                || round.len() == IOV_MAX
                || iov_count == max_iovs
            {
                rounds.push((i, round));
                continue 'fill;
            }
            round.push(piece);
            used += piece.len;
            iov_count += 1;
            *pending = pieces.next();
        }
        rounds.push((i, round));
        break;
    }
    rounds.retain(|(_, r)| !r.is_empty());
    rounds
}

/// Where the parts of a vmsplice command sit in the data region: jobs, then iovecs, then crcs.
struct DataSplit {
    iov_off: usize,
    crc_off: usize,
    /// Most iovecs (each with its crc) that fit after the jobs.
    max_iovs: usize,
}

fn split_data(jobs: usize, iovs: usize) -> DataSplit {
    let iov_off = (jobs * std::mem::size_of::<PipeJob>()).div_ceil(16) * 16;
    let per_iov = std::mem::size_of::<Iov>() + std::mem::size_of::<u32>();
    DataSplit {
        iov_off,
        crc_off: iov_off + iovs * std::mem::size_of::<Iov>(),
        max_iovs: (DATA_LEN as usize).saturating_sub(iov_off) / per_iov,
    }
}

/// A drain thread of [`Parasite::splice_pages`]: takes (pipe, pieces) jobs until the channel closes,
/// hands each piece to the sink and reports the pipe free again (or the failure, then stops).
fn drain_worker<E, F>(
    jobs: &Mutex<mpsc::Receiver<(usize, Vec<PagePiece>)>>,
    done: &mpsc::Sender<Result<usize, SpliceError<E>>>,
    pipes: &[PagePipe],
    sink: &F,
) where
    F: Fn(PagePiece, BorrowedFd<'_>) -> Result<(), E> + Sync,
{
    loop {
        // Nothing panics while the lock is held; a poisoned lock still guards a valid receiver.
        let job = jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .recv();
        let Ok((pipe, pieces)) = job else {
            return;
        };
        let fd = pipes[pipe].read.as_fd();
        let drained = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pieces.iter().try_for_each(|&p| sink(p, fd))
        }));
        let report = match drained {
            Ok(Ok(())) => Ok(pipe),
            Ok(Err(e)) => Err(SpliceError::Sink(e)),
            Err(_) => Err(SpliceError::Parasite(ParasiteError::Blob(
                "page sink panicked".into(),
            ))),
        };
        let failed = report.is_err();
        if done.send(report).is_err() || failed {
            return;
        }
    }
}

/// Failure of [`Parasite::splice_pages`]: the parasite side, or the caller's sink.
#[derive(Debug)]
pub enum SpliceError<E> {
    Parasite(ParasiteError),
    Sink(E),
}

impl<E: std::fmt::Display> std::fmt::Display for SpliceError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpliceError::Parasite(e) => write!(f, "{e}"),
            SpliceError::Sink(e) => write!(f, "page sink: {e}"),
        }
    }
}

fn altstack(t: &ThreadState) -> AltStack {
    AltStack {
        sp: t.altstack.sp,
        flags: t.altstack.flags,
        size: t.altstack.size,
    }
}

fn wait(tid: Tid) -> Result<WaitStatus, ParasiteError> {
    loop {
        match waitpid(tid.pid(), Some(WaitPidFlag::__WALL)) {
            Ok(s) => return Ok(s),
            Err(Errno::EINTR) => continue,
            Err(source) => return Err(ParasiteError::Wait { tid, source }),
        }
    }
}

/// Create the shared area in the target: memfd_create (name written into a scratch page), ftruncate,
/// mmap shared rwx, then take the memfd into the dumper and close it in the target.
fn map_remote_area(
    remote: &mut RemoteTask,
    pidfd: &OwnedFd,
    len: u64,
) -> Result<(u64, OwnedFd), ParasiteError> {
    let fd = {
        let mut scratch = remote.scratch(PAGE as usize)?;
        scratch.write(0, b"dormant-parasite\0")?;
        let addr = scratch.addr();
        let ret = scratch.task().syscall(
            libc::SYS_memfd_create,
            [addr, libc::MFD_CLOEXEC as u64, 0, 0, 0, 0],
        )?;
        let fd = scratch.task().check_ret("memfd_create", ret);
        scratch.close()?;
        fd? as i32
    };
    let close_remote = |remote: &mut RemoteTask| {
        if let Err(e) = remote.syscall(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0]) {
            log::error!("parasite memfd {fd} left open in tid {}: {e}", remote.tid());
        }
    };
    let setup = (|| {
        let ret = remote.syscall(libc::SYS_ftruncate, [fd as u64, len, 0, 0, 0, 0])?;
        remote.check_ret("ftruncate", ret)?;
        let prot = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64;
        let ret = remote.syscall(
            libc::SYS_mmap,
            [0, len, prot, libc::MAP_SHARED as u64, fd as u64, 0],
        )?;
        let base = remote.check_ret("mmap", ret)? as u64;
        hook!(AreaMapped);
        match pidfd_getfd(pidfd, fd) {
            Ok(local) => Ok((base, local)),
            Err(e) => {
                let _ = remote.munmap(base, len);
                Err(e)
            }
        }
    })();
    close_remote(remote);
    setup
}
