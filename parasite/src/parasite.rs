//! The injected parasite: the blob in an area of the target, answering requests over a socket, and the
//! cure.
//!
//! How it gets in and out, and why a dumper that dies at any moment leaves the target as it was (the
//! invariant of `remote`, kept across the whole session):
//! 1. The leader's session writes the rescue frame on its stack and the code at the site (`remote`).
//! 2. Bootstrap: the site's BOOT entry runs one `mmap` of an anonymous area. At its exit stop the dumper
//!    writes the relocated blob and the boot block into the area, the boot block's magic last. The site
//!    code jumps into the blob only if the magic is there; else it unmaps the area and `rt_sigreturn`s.
//! 3. The blob makes a socketpair; at that syscall's exit stop the dumper takes one end (pidfd_getfd),
//!    then lets the blob run on its own: it closes that end on its side and waits for requests. From
//!    here the dumper's end is the only one: its close, or the dumper's death, is the blob's EOF.
//! 4. On EOF the blob closes every descriptor it made, takes back a SIGPIPE its writes queued (SIGPIPE
//!    stays blocked meanwhile, as every signal but SIGKILL and SIGSTOP), and jumps to the site's
//!    `munmap` of the area, then `rt_sigreturn` through the rescue frame.
//! 5. Cure: the dumper interrupts the blob, closes its end, follows the blob's syscalls to that `munmap`'s
//!    exit stop, and puts back the exact registers, xstate and mask in a get_signal stop (so a syscall
//!    the thread was seized in restarts exactly, which `rt_sigreturn` cannot do for restart-block
//!    syscalls).
//!
//! Other threads never run blob code: their per-thread queries are single injected syscalls, each in
//! its own session with its own rescue frame.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd, RawFd};

use dormant_parasite_proto::{
    self as proto, BootArgs, PipeInfo, Reply, Snapshot, ThreadState, BOOT_MAGIC, BOOT_PAGE,
    BOOT_SIGPIPE_PENDING, PROTO_VERSION,
};
use dormant_sys::signal::{sig_bit, KernelItimerval, SIGPIPE};
use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use crate::blob;
use crate::channel::{payload_as, Channel};
use crate::error::ParasiteError;
use crate::ids::Tid;
use crate::pod::as_bytes;
use crate::ptrace::{self, SyscallStop};
use crate::query::{self, AltStack, ITimerVal, ITimers, TaskSnapshot, TimeVal};
use crate::remote::{At, RemoteTask};
use crate::site;

/// The blob's message buffer (requests and replies, half each).
const BUF_LEN: u64 = 2 * proto::MAX_MESSAGE as u64;
/// The blob's own stack.
const STACK_LEN: u64 = 64 * 1024;
/// Most syscalls the blob makes from EOF to its `munmap` (closing up to MAX_FDS descriptors and a few
/// more); a cure that sees more gives up.
const MAX_CURE_SYSCALLS: usize = proto::MAX_FDS + 16;

/// Where things are in the area, as offsets from its base.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub(crate) buf: u64,
    pub(crate) stack_top: u64,
    pub(crate) boot: u64,
    pub(crate) len: u64,
}

impl Layout {
    fn new(blob_span: u64) -> Layout {
        let buf = blob_span;
        let stack_top = buf + BUF_LEN + STACK_LEN;
        Layout {
            buf,
            stack_top,
            boot: stack_top,
            len: stack_top + BOOT_PAGE,
        }
    }
}

/// A pipe whose write end lives in the target and whose read end the dumper holds.
#[derive(Debug)]
pub(crate) struct PagePipe {
    pub(crate) target_write_fd: i32,
    pub(crate) read: OwnedFd,
    pub(crate) capacity: u64,
}

/// The parasite injected into one process.
///
/// The caller seizes and stops every thread it names (and keeps all ptrace calls on the seizing
/// thread); [`Parasite::cure`] must be called before detaching. Dropping an uncured parasite cures
/// best effort and logs failures.
#[derive(Debug)]
pub struct Parasite {
    leader: Tid,
    /// The leader's session: its rescue frame, mask and the site code.
    remote: RemoteTask,
    pidfd: OwnedFd,
    channel: Option<Channel>,
    base: u64,
    layout: Layout,
    /// Injection handles of the other threads; their sessions end after each use.
    others: BTreeMap<Tid, RemoteTask>,
    pub(crate) pipes: Vec<PagePipe>,
    /// Descriptors the blob holds in the target (its socket, the pipes' write ends), closed by the blob
    /// itself; by injected syscalls only if it cannot finish.
    target_fds: Vec<i32>,
    cured: bool,
}

impl Parasite {
    /// Inject into the process whose thread-group leader is `leader`; `others` are further threads of
    /// it that commands may be sent to. All must be seized and stopped.
    pub fn inject(leader: Tid, others: &[Tid]) -> Result<Parasite, ParasiteError> {
        blob::cpu_supported()?;
        let blob = blob::embedded()?;
        let layout = Layout::new(blob.span());
        let pidfd =
            dormant_sys::host::pidfd_open(leader.0, 0).map_err(|source| ParasiteError::Local {
                what: format!("pidfd_open({leader})"),
                source,
            })?;
        let sigpipe_before = private_pending(leader)? & sig_bit(SIGPIPE) != 0;
        let mut others_map = BTreeMap::new();
        for &tid in others {
            others_map.insert(tid, RemoteTask::new(tid)?);
        }
        let mut remote = RemoteTask::new(leader)?;
        let entry = blob.entry_offset();
        let rwx = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        let ret = remote.call(
            site::BOOT,
            libc::SYS_mmap,
            [0, layout.len, rwx, flags, u64::MAX, 0],
            |r| {
                r.r13 = BOOT_MAGIC;
                r.r14 = entry;
            },
        )?;
        let base = match remote.check_ret("mmap of the parasite area", ret) {
            Ok(base) => base as u64,
            Err(e) => {
                // The thread goes on into the site's rt_sigreturn path; put it back exactly instead.
                let _ = remote.finish();
                return Err(e);
            }
        };
        hook!(AreaMapped);
        let mut p = Parasite {
            leader,
            remote,
            pidfd,
            channel: None,
            base,
            layout,
            others: others_map,
            pipes: Vec::new(),
            target_fds: Vec::new(),
            cured: false,
        };
        // From here on, errors cure (the blob or the site code unmaps the area) through Drop.
        p.load(&blob, sigpipe_before)?;
        hook!(BlobLoaded);
        p.connect()?;
        log::debug!(
            "tid {leader}: parasite at {base:#x}+{:#x} ({} relocations)",
            layout.len,
            blob.relocation_count()
        );
        Ok(p)
    }

    /// Writes the relocated blob and the boot block into the area, the magic last.
    fn load(
        &mut self,
        blob: &dormant_sys::blob::BlobImage,
        sigpipe_before: bool,
    ) -> Result<(), ParasiteError> {
        let (base, l) = (self.base, self.layout);
        let mut image = vec![0u8; blob.span() as usize];
        blob.load_into(&mut image, base)
            .map_err(|e| ParasiteError::Blob(e.to_string()))?;
        self.remote.write_mem(base, &image)?;
        let boot = BootArgs {
            magic: 0,
            version: PROTO_VERSION,
            flags: if sigpipe_before {
                BOOT_SIGPIPE_PENDING
            } else {
                0
            },
            frame_sp: self.remote.frame_sp(),
            munmap_syscall: self.remote.site() + site::MUNMAP_SYSCALL,
            stack_top: base + l.stack_top,
            buf: base + l.buf,
            buf_len: BUF_LEN,
            sock: [-1, -1],
        };
        self.remote.write_mem(base + l.boot, as_bytes(&boot))?;
        self.remote
            .write_mem(base + l.boot, &BOOT_MAGIC.to_le_bytes())
    }

    /// Lets the thread into the blob up to its socketpair, takes the dumper's end, and lets it run.
    fn connect(&mut self) -> Result<(), ParasiteError> {
        let tid = self.leader;
        let (base, end) = (self.base, self.base + self.layout.len);
        let (nr, rip) = self.next_syscall_entry()?;
        if nr != libc::SYS_socketpair as u64 || !(base..end).contains(&rip) {
            return Err(ParasiteError::Protocol {
                tid,
                what: format!("first syscall of the blob is {nr} at {rip:#x}, not its socketpair"),
            });
        }
        ptrace::resume_to_syscall(tid)?;
        match self.remote.wait_syscall()? {
            SyscallStop::Exit => {}
            other => {
                return Err(ParasiteError::Protocol {
                    tid,
                    what: format!("{other:?} instead of the socketpair's exit"),
                })
            }
        }
        let ret = ptrace::getregs(tid)?.rax as i64;
        self.remote.check_ret("socketpair", ret)?;
        let mut raw = [0u8; 8];
        let sock_at = std::mem::offset_of!(BootArgs, sock) as u64;
        self.remote
            .read_mem(base + self.layout.boot + sock_at, &mut raw)?;
        let ours = i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let theirs = i32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
        self.target_fds.push(ours);
        let sock =
            dormant_sys::host::pidfd_getfd(self.pidfd.as_fd(), theirs).map_err(|source| {
                ParasiteError::Local {
                    what: format!("pidfd_getfd of the parasite socket (fd {theirs} of tid {tid})"),
                    source,
                }
            })?;
        self.channel = Some(Channel::new(sock));
        hook!(SocketTaken);
        // Let it close its copy of our end before it runs freely: from then on the socket's only other
        // reference is ours.
        let (nr, _) = self.next_syscall_entry()?;
        let regs = ptrace::getregs(tid)?;
        if nr != libc::SYS_close as u64 || regs.rdi != theirs as u64 {
            return Err(ParasiteError::Protocol {
                tid,
                what: format!("the blob made syscall {nr} instead of closing fd {theirs}"),
            });
        }
        ptrace::resume_to_syscall(tid)?;
        match self.remote.wait_syscall()? {
            SyscallStop::Exit => {}
            other => {
                return Err(ParasiteError::Protocol {
                    tid,
                    what: format!("{other:?} instead of the close's exit"),
                })
            }
        }
        ptrace::cont(tid)?;
        self.remote.set_at(At::Running);
        Ok(())
    }

    /// Resumes the leader to its next syscall-entry stop; (syscall number, rip).
    fn next_syscall_entry(&mut self) -> Result<(u64, u64), ParasiteError> {
        let tid = self.leader;
        loop {
            ptrace::resume_to_syscall(tid)?;
            if let SyscallStop::Entry { nr, rip } = self.remote.wait_syscall()? {
                return Ok((nr, rip));
            }
        }
    }

    pub(crate) fn leader(&self) -> Tid {
        self.leader
    }

    /// Target address and length of the injected area.
    pub fn area(&self) -> (u64, u64) {
        (self.base, self.layout.len)
    }

    /// One request to the blob and its reply; fails with the blob's errno as [`ParasiteError::Command`]
    /// when `command_name` is given and the reply is negative.
    pub(crate) fn request(
        &mut self,
        command: u32,
        args: [u64; 7],
        payload: &[u8],
    ) -> Result<(Reply, Vec<u8>), ParasiteError> {
        let tid = self.leader;
        let channel = self
            .channel
            .as_mut()
            .ok_or_else(|| ParasiteError::Protocol {
                tid,
                what: "command after the parasite stopped serving".into(),
            })?;
        channel.send(tid, command, args, payload)?;
        hook!(CommandRunning);
        let remote = &mut self.remote;
        channel.receive(tid, command, || watch_running(remote))
    }

    fn check_reply(&self, command: &'static str, r: &Reply) -> Result<(), ParasiteError> {
        if r.ret < 0 {
            return Err(ParasiteError::Command {
                tid: self.leader,
                command,
                step: r.failed_step,
                errno: Errno::from_raw(-r.ret as i32),
            });
        }
        Ok(())
    }

    /// Run raw syscall `nr` in thread `tid`; the raw result (-errno on failure). In the leader the blob
    /// runs it; in another thread, one injected syscall.
    pub fn syscall(&mut self, tid: Tid, nr: i64, args: [u64; 6]) -> Result<i64, ParasiteError> {
        if tid == self.leader {
            let mut a = [0u64; 7];
            a[0] = nr as u64;
            a[1..].copy_from_slice(&args);
            return Ok(self.request(proto::CMD_SYSCALL, a, &[])?.0.ret);
        }
        let task = self.other(tid)?;
        let ret = task.syscall(nr, args);
        let ended = task.finish();
        let ret = ret?;
        ended?;
        Ok(ret)
    }

    fn other(&mut self, tid: Tid) -> Result<&mut RemoteTask, ParasiteError> {
        self.others
            .get_mut(&tid)
            .ok_or_else(|| ParasiteError::Protocol {
                tid,
                what: "is not a thread this parasite was injected with".into(),
            })
    }

    /// Process-wide state and the leader's thread state, in one command.
    pub fn task_state(&mut self) -> Result<TaskSnapshot, ParasiteError> {
        let (r, payload) = self.request(proto::CMD_SNAPSHOT, [0; 7], &[])?;
        self.check_reply("snapshot", &r)?;
        let s: Snapshot = payload_as(&payload).ok_or_else(|| self.short_answer("snapshot"))?;
        let itimer = |t: &KernelItimerval| ITimerVal {
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

    /// The per-thread state of `tid` (sigaltstack, clear_child_tid), asked in that thread.
    pub fn thread_state(&mut self, tid: Tid) -> Result<ThreadInfo, ParasiteError> {
        if tid != self.leader {
            let task = self.other(tid)?;
            let asked = (|| {
                let mut scratch = task.scratch(query::SCRATCH_NEEDED)?;
                let altstack = query::sigaltstack(&mut scratch)?;
                let tid_address = query::tid_address(&mut scratch)?;
                Ok(ThreadInfo {
                    altstack,
                    tid_address,
                })
            })();
            let ended = task.finish();
            let info = asked?;
            ended?;
            return Ok(info);
        }
        let (r, payload) = self.request(proto::CMD_THREAD_STATE, [0; 7], &[])?;
        self.check_reply("thread state", &r)?;
        let t: ThreadState =
            payload_as(&payload).ok_or_else(|| self.short_answer("thread state"))?;
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
        let tid = self.leader;
        let (r, payload) =
            self.request(proto::CMD_PIPES, [count as u64, size, 0, 0, 0, 0, 0], &[])?;
        let made: Vec<PipeInfo> = payload
            .chunks_exact(std::mem::size_of::<PipeInfo>())
            .filter_map(payload_as)
            .collect();
        // Whatever happens next, the target keeps no read end (the blob closes them on request).
        let mut taken = Vec::new();
        let mut failure = self.check_reply("pipes", &r).err();
        for info in &made {
            match dormant_sys::host::pidfd_getfd(self.pidfd.as_fd(), info.read_fd) {
                Ok(read) => taken.push(PagePipe {
                    target_write_fd: info.write_fd,
                    read,
                    capacity: u64::from(info.capacity),
                }),
                Err(source) => {
                    failure.get_or_insert(ParasiteError::Local {
                        what: format!("pidfd_getfd of pipe fd {} of tid {tid}", info.read_fd),
                        source,
                    });
                }
            }
        }
        let read_ends: Vec<RawFd> = made.iter().map(|i| i.read_fd).collect();
        let (closed, _) = self.request(
            proto::CMD_CLOSE,
            [0; 7],
            crate::pod::slice_as_bytes(&read_ends),
        )?;
        self.check_reply("close", &closed)?;
        if let Some(e) = failure {
            return Err(e);
        }
        self.target_fds
            .extend(taken.iter().map(|p| p.target_write_fd));
        self.pipes.extend(taken);
        Ok(self.pipes.iter().map(|p| p.capacity).min().unwrap_or(0))
    }

    /// Remove the parasite: let the blob clean up and unmap itself, then put back the exact registers,
    /// mask and xstate of every thread.
    pub fn cure(mut self) -> Result<(), ParasiteError> {
        self.cured = true;
        self.cure_inner()
    }

    fn cure_inner(&mut self) -> Result<(), ParasiteError> {
        let tid = self.leader;
        self.pipes.clear();
        let unmapped = self.stop_blob();
        hook!(CureUnmapped);
        let ended = match &unmapped {
            Ok(()) => self.remote.finish(),
            Err(e) => {
                log::error!("tid {tid}: the parasite did not clean up after itself: {e}");
                self.salvage()
            }
        };
        let mut first = unmapped.err().or(ended.err());
        for (t, task) in self.others.iter_mut() {
            if let Err(e) = task.finish() {
                log::error!("tid {t}: {e}");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Brings the blob to the exit stop of its `munmap` at the site: interrupts it, closes the dumper's
    /// end of the socket (its EOF), and follows its syscalls there.
    fn stop_blob(&mut self) -> Result<(), ParasiteError> {
        let tid = self.leader;
        if self.remote_is_running() {
            nix::sys::ptrace::interrupt(tid.pid()).map_err(|source| ParasiteError::Ptrace {
                tid,
                op: "INTERRUPT",
                source,
            })?;
            self.remote.wait_interrupt_stop()?;
            self.remote.set_at(At::SignalStop);
        }
        self.channel = None;
        hook!(CureReturned);
        let munmap_at = self.remote.site() + site::MUNMAP_SYSCALL + 2;
        for _ in 0..MAX_CURE_SYSCALLS {
            let (nr, rip) = self.next_syscall_entry()?;
            if nr != libc::SYS_munmap as u64 || rip != munmap_at {
                continue;
            }
            ptrace::resume_to_syscall(tid)?;
            match self.remote.wait_syscall()? {
                SyscallStop::Exit => {}
                other => {
                    return Err(ParasiteError::Protocol {
                        tid,
                        what: format!("{other:?} instead of the area munmap's exit"),
                    })
                }
            }
            let ret = ptrace::getregs(tid)?.rax as i64;
            return self
                .remote
                .check_ret("munmap of the parasite area", ret)
                .map(drop);
        }
        Err(ParasiteError::Protocol {
            tid,
            what: format!("the blob made {MAX_CURE_SYSCALLS} syscalls without unmapping itself"),
        })
    }

    fn remote_is_running(&self) -> bool {
        self.channel.is_some()
    }

    /// The blob could not finish by itself (it faulted, or did not behave): put the leader's own state
    /// back, then remove the area and the descriptors known to be the blob's with injected syscalls.
    fn salvage(&mut self) -> Result<(), ParasiteError> {
        let tid = self.leader;
        self.remote.finish()?;
        let (base, len) = self.area();
        let mut undone = self
            .remote
            .syscall(libc::SYS_munmap, [base, len, 0, 0, 0, 0])
            .and_then(|ret| self.remote.check_ret("munmap of the parasite area", ret))
            .map(drop);
        for fd in std::mem::take(&mut self.target_fds) {
            let closed = self
                .remote
                .syscall(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0])
                .map(drop);
            if let Err(e) = closed {
                log::error!("tid {tid}: fd {fd} of the parasite left open: {e}");
                undone = undone.and(Err(e));
            }
        }
        let ended = self.remote.finish();
        undone.and(ended)
    }

    fn short_answer(&self, what: &str) -> ParasiteError {
        ParasiteError::Protocol {
            tid: self.leader,
            what: format!("short answer to the {what} command"),
        }
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

/// While waiting for the blob's answer: the leader must not have stopped or died. A stop signal is
/// held back (sent again at the end) and the blob let go on.
fn watch_running(remote: &mut RemoteTask) -> Result<(), ParasiteError> {
    let tid = remote.tid();
    let flags = WaitPidFlag::__WALL | WaitPidFlag::WNOHANG;
    match waitpid(tid.pid(), Some(flags)) {
        Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => Ok(()),
        Ok(WaitStatus::Stopped(_, sig)) if crate::remote::is_stop_signal(sig) => {
            remote.hold(sig);
            ptrace::cont(tid)
        }
        Ok(WaitStatus::PtraceEvent(_, sig, libc::PTRACE_EVENT_STOP)) => {
            if crate::remote::is_stop_signal(sig) {
                remote.hold(sig);
            }
            ptrace::cont(tid)
        }
        Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => Err(ParasiteError::TaskDied {
            tid,
            what: format!(
                "ended while the parasite ran ({:?})",
                waitpid(tid.pid(), Some(flags))
            ),
        }),
        Ok(other) => {
            remote.set_at(At::SignalStop);
            Err(ParasiteError::UnexpectedStop {
                tid,
                what: format!("{other:?} while the parasite ran"),
            })
        }
        Err(source) => Err(ParasiteError::Wait { tid, source }),
    }
}

/// The thread-private pending signals of `tid` (`SigPnd` of its status).
fn private_pending(tid: Tid) -> Result<u64, ParasiteError> {
    let path = std::path::PathBuf::from(format!("/proc/{tid}/status"));
    let text = std::fs::read_to_string(&path).map_err(|source| ParasiteError::Proc {
        path: path.clone(),
        source,
    })?;
    text.lines()
        .find_map(|l| l.strip_prefix("SigPnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or(ParasiteError::ProcParse {
            path,
            line: "<no SigPnd line>".into(),
        })
}

/// Per-thread state reported by [`Parasite::thread_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadInfo {
    pub altstack: AltStack,
    /// clear_child_tid; `None` when the kernel lacks PR_GET_TID_ADDRESS.
    pub tid_address: Option<u64>,
}

fn altstack(t: &ThreadState) -> AltStack {
    AltStack {
        sp: t.altstack.sp,
        flags: t.altstack.flags,
        size: t.altstack.size,
    }
}
