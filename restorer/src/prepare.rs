//! Turning a checked [`TaskImage`] into a [`Launch`]: opening every file the task and the blob need,
//! creating shared-memory objects, numbering helper fds above the task's fds, and building the blob input.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use dormant_image::records::{
    page_flags, FdFile, FileId, PosixTimer, ShmemId, SigInfo, VmaBacking,
};
use dormant_restorer_proto::{
    ExtentArg, ITimerVal, KSigAction, PrctlMmMap, QueuedSigArg, RseqArg, TimerArg, VmaArg, VmaKind,
    NSIG, SIGINFO_SIZE,
};
use nix::fcntl::{fcntl, FcntlArg};

use crate::area::{self, BlobInput, ThreadInput};
use crate::blob::Blob;
use crate::error::RestoreError;
use crate::image::{TaskImage, VdsoPlacement};
use crate::launch::{FdMove, Launch, RlimitSet};
use crate::procself;

/// rseq signature glibc registers with on x86-64.
const GLIBC_RSEQ_SIG: u32 = 0x5305_3053;

/// Helper fds, all numbered at or above `base`.
struct Helpers {
    base: RawFd,
    owned: Vec<OwnedFd>,
}

impl Helpers {
    /// Moves `fd` to the lowest free number >= base; returns the new number (owned by `self`).
    fn lift(&mut self, fd: impl AsFd, what: &str) -> Result<RawFd, RestoreError> {
        let new = fcntl(fd.as_fd(), FcntlArg::F_DUPFD_CLOEXEC(self.base)).map_err(|e| {
            RestoreError::sys(format!("moving the fd of {what} above {}", self.base), e)
        })?;
        // SAFETY: F_DUPFD_CLOEXEC returned a fresh fd that nothing else owns.
        let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(new) };
        self.owned.push(owned);
        Ok(new)
    }
}

fn open_file(path: &str, flags: i32, what: &'static str) -> Result<std::fs::File, RestoreError> {
    let access = flags & libc::O_ACCMODE;
    let extra =
        flags & !(libc::O_ACCMODE | libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_CLOEXEC);
    OpenOptions::new()
        .read(access == libc::O_RDONLY || access == libc::O_RDWR)
        .write(access == libc::O_WRONLY || access == libc::O_RDWR)
        .custom_flags(extra | libc::O_NOCTTY)
        .open(path)
        .map_err(|source| RestoreError::File {
            what,
            path: path.to_owned(),
            source,
        })
}

/// The restorer's own rseq registration (inherited by the child through fork), from glibc's exports.
fn inherited_rseq() -> RseqArg {
    unsafe extern "C" {
        static __rseq_offset: isize;
        static __rseq_size: u32;
    }
    // SAFETY: glibc (>= 2.35) defines both as constants after startup; reading them has no side effects.
    let (offset, size) = unsafe { (__rseq_offset, __rseq_size) };
    if size == 0 {
        return RseqArg::default();
    }
    let tp: u64;
    // SAFETY: on x86-64 glibc, fs:0 holds the thread pointer (the TCB's self pointer).
    unsafe {
        std::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly, preserves_flags))
    };
    RseqArg {
        addr: tp.wrapping_add_signed(offset as i64),
        len: size,
        sig: GLIBC_RSEQ_SIG,
    }
}

/// Creates shared-memory object `id` of `size` bytes filled from its page store, as an fd.
fn create_shmem(dir: &Path, task: &TaskImage, id: ShmemId) -> Result<OwnedFd, RestoreError> {
    let (obj, store) = task.shmem.get(&id).ok_or_else(|| RestoreError::BadImage {
        dir: dir.to_owned(),
        reason: format!("shared object {} is not in the image", id.0),
    })?;
    let size = usize::try_from(obj.size)
        .ok()
        .filter(|s| *s > 0 && *s % 4096 == 0)
        .ok_or_else(|| RestoreError::BadImage {
            dir: dir.to_owned(),
            reason: format!("shared object {} has size {}", id.0, obj.size),
        })?;
    // SAFETY: a new shared anonymous mapping owned by this function until the munmap below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(RestoreError::sys(
            format!("creating shared object {} of {size} bytes", id.0),
            nix::Error::last(),
        ));
    }
    let result = (|| {
        // SAFETY: `p` is a fresh writable mapping of `size` bytes, used only through this slice here.
        let mem = unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), size) };
        for e in store.extents() {
            let range = usize::try_from(e.vaddr)
                .ok()
                .and_then(|s| Some(s..s.checked_add(e.len as usize)?));
            let dst = range
                .and_then(|r| mem.get_mut(r))
                .ok_or_else(|| RestoreError::BadImage {
                    dir: dir.to_owned(),
                    reason: format!(
                        "shared object {}: pages at {:#x} lie past its size",
                        id.0, e.vaddr
                    ),
                })?;
            store
                .read_extent(e, dst)
                .map_err(|source| RestoreError::Image {
                    dir: dir.to_owned(),
                    source,
                })?;
        }
        let start = p as u64;
        let path = format!("/proc/self/map_files/{start:x}-{:x}", start + size as u64);
        let f = open_file(&path, libc::O_RDWR, "opening shared memory through")?;
        Ok(OwnedFd::from(f))
    })();
    // SAFETY: unmaps the mapping created above; the object lives on through the fd.
    unsafe { libc::munmap(p, size) };
    result
}

/// Options that change how fds are rebuilt.
#[derive(Debug, Clone, Copy)]
pub struct FdPolicy {
    pub shell_job: bool,
}

/// What the tasks of one tree share while they are prepared.
#[derive(Debug, Default)]
pub struct TreeShared {
    /// Blob areas laid out so far (all are mapped in this process at once before the first fork).
    pub areas: Vec<(u64, u64)>,
    /// Shared-memory objects created so far, by id: created once, mapped by every task that had them.
    pub shmem: BTreeMap<ShmemId, OwnedFd>,
    /// Regular files reopened so far, by id: one open file description per id for the whole tree, so fds
    /// of several processes that shared one (opened before a fork) share its offset again.
    pub reg: BTreeMap<FileId, OwnedFd>,
    /// How the tree's recorded pids and tids read inside its own pid namespace.
    pub ids: crate::pidns::InnerIds,
    /// Tasks and threads in a nested pid namespace keep only their pids inside it; the kernel chooses
    /// their host pids (`RestoreBuilder::fresh_host_pids`).
    pub fresh_host_pids: bool,
}

/// Builds the launch for `task`. Its blob area avoids the areas already in `tree_shared`, and is added to
/// them.
pub fn prepare(
    dir: &Path,
    blob: &Blob,
    task: &TaskImage,
    vdso: Option<VdsoPlacement>,
    policy: FdPolicy,
    tree_shared: &mut TreeShared,
    opened: &crate::files::OpenedFiles,
) -> Result<crate::launch::Launch, RestoreError> {
    let pid = task.pid.0;
    let max_target_fd = task.fds.iter().map(|f| f.fd).max().unwrap_or(-1);
    let mut helpers = Helpers {
        base: (max_target_fd + 1).max(3),
        owned: Vec::new(),
    };

    // The task's own fds.
    let mut fd_moves = Vec::new();
    let mut keep = Vec::new();
    // Fds that shared one description at dump time share the one reopened here (and, through
    // `tree_shared.reg`, with the other tasks of the tree).
    let mut reg_fds: BTreeMap<FileId, RawFd> = BTreeMap::new();
    for fd in &task.fds {
        let from = match &fd.file {
            FdFile::Reg(id) if reg_fds.contains_key(id) => reg_fds[id],
            FdFile::Desc(id) => {
                let f = opened.get(*id).ok_or_else(|| RestoreError::BadImage {
                    dir: dir.to_owned(),
                    reason: format!(
                        "fd {} refers to file description {} which is not in {}",
                        fd.fd,
                        id.0,
                        dormant_image::records::names::FILE_DESCS
                    ),
                })?;
                helpers.lift(f, &format!("file description {}", id.0))?
            }
            FdFile::Reg(id) => {
                let f = task.file(dir, *id, &format!("fd {}", fd.fd))?;
                let file = match tree_shared.reg.entry(*id) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(e) => {
                        let file = open_file(&f.path, f.flags as i32, "cannot reopen")?;
                        if f.pos != 0 {
                            nix::unistd::lseek(
                                file.as_fd(),
                                f.pos as i64,
                                nix::unistd::Whence::SeekSet,
                            )
                            .map_err(|e| {
                                RestoreError::sys(format!("seeking {} to {}", f.path, f.pos), e)
                            })?;
                        }
                        e.insert(OwnedFd::from(file))
                    }
                };
                let lifted = helpers.lift(&*file, &f.path)?;
                reg_fds.insert(*id, lifted);
                lifted
            }
            FdFile::InheritedTty => {
                if !policy.shell_job {
                    return Err(RestoreError::ShellJobRequired { pid, fd: fd.fd });
                }
                let ours = fd.fd.clamp(0, 2);
                // SAFETY: fds 0-2 of this process stay open for its lifetime; borrowed only for the dup.
                let tty = unsafe { std::os::fd::BorrowedFd::borrow_raw(ours) };
                helpers.lift(tty, "the terminal")?
            }
        };
        fd_moves.push(FdMove {
            from,
            to: fd.fd,
            cloexec: fd.cloexec,
        });
        keep.push(fd.fd);
    }

    // Locks: a description's own on our copy now, POSIX ones by the child.
    let mut child_actions = opened.child_actions_for(&task.fds);
    for l in &task.locks {
        let m = fd_moves
            .iter()
            .find(|m| m.to == l.fd)
            .ok_or_else(|| RestoreError::BadImage {
                dir: dir.to_owned(),
                reason: format!("lock on fd {} which the task does not have", l.fd),
            })?;
        if let Some(a) = crate::files::lock_description(m.from, l).map_err(|e| {
            RestoreError::sys(format!("taking the {:?} lock of fd {}", l.kind, l.fd), e)
        })? {
            child_actions.push(a);
        }
    }

    // Files behind mappings, shared-memory objects, the exe and the page store: kept for the blob.
    let mut blob_fds: Vec<RawFd> = Vec::new();
    let mut file_fds: BTreeMap<(FileId, bool), RawFd> = BTreeMap::new();
    let mut shmem_fds: BTreeMap<ShmemId, RawFd> = BTreeMap::new();
    let mut vmas = Vec::new();
    for v in &task.mm.vmas {
        let shared = v.map_flags & libc::MAP_SHARED as u32 != 0;
        let (kind, fd) = match &v.backing {
            VmaBacking::Anon if v.map_flags & libc::MAP_GROWSDOWN as u32 != 0 => {
                (VmaKind::AnonGrowsDown, -1)
            }
            VmaBacking::Anon => (VmaKind::Anon, -1),
            VmaBacking::File(id) => {
                let writable = shared && v.prot & libc::PROT_WRITE as u32 != 0;
                let fd = match file_fds.get(&(*id, writable)) {
                    Some(fd) => *fd,
                    None => {
                        let f = task.file(dir, *id, &format!("mapping {:#x}", v.start))?;
                        let flags = if writable {
                            libc::O_RDWR
                        } else {
                            libc::O_RDONLY
                        };
                        let file = open_file(&f.path, flags, "cannot open mapped file")?;
                        let fd = helpers.lift(&file, &f.path)?;
                        file_fds.insert((*id, writable), fd);
                        blob_fds.push(fd);
                        fd
                    }
                };
                (
                    if shared {
                        VmaKind::Shared
                    } else {
                        VmaKind::FilePrivate
                    },
                    fd,
                )
            }
            VmaBacking::Shmem(id) => {
                let fd = match shmem_fds.get(id) {
                    Some(fd) => *fd,
                    None => {
                        // One object per id for the whole tree: processes that shared it at dump time
                        // map the same object again.
                        let obj = match tree_shared.shmem.entry(*id) {
                            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                            std::collections::btree_map::Entry::Vacant(e) => {
                                e.insert(create_shmem(dir, task, *id)?)
                            }
                        };
                        let fd = helpers.lift(&*obj, &format!("shared object {}", id.0))?;
                        shmem_fds.insert(*id, fd);
                        blob_fds.push(fd);
                        fd
                    }
                };
                (VmaKind::Shared, fd)
            }
            VmaBacking::SysvShm { shmid } => {
                let obj = crate::sysv_map::segment_fd(*shmid, v.prot)?;
                let fd = helpers.lift(&obj, &format!("SysV segment {shmid}"))?;
                blob_fds.push(fd);
                (VmaKind::Shared, fd)
            }
            VmaBacking::Vdso | VmaBacking::Vvar | VmaBacking::Vsyscall => continue,
        };
        if !v.madvise.is_empty() {
            log::debug!(
                "pid {pid}: mapping {:#x}: madvise {:?} not re-applied",
                v.start,
                v.madvise
            );
        }
        vmas.push(VmaArg {
            start: v.start,
            end: v.end,
            pgoff: if fd >= 0 { v.pgoff } else { 0 },
            prot: v.prot,
            kind: kind as u32,
            fd,
            fill: 0,
            extra_flags: v.map_flags & dormant_restorer_proto::PASSED_MAP_FLAGS,
            madvise: v
                .madvise
                .iter()
                .filter(|a| **a < 32)
                .fold(0, |m, a| m | 1 << a),
        });
    }

    // Page extents: each must lie in mappings the blob can write into.
    let mut extents = Vec::new();
    let mut pages_fd = -1;
    if let Some(store) = &task.pages {
        for e in store
            .extents()
            .iter()
            .filter(|e| e.flags & page_flags::VDSO == 0)
        {
            let end = e.vend().unwrap_or(u64::MAX);
            let mut covered = e.vaddr;
            for v in vmas.iter_mut().filter(|v| v.start < end && e.vaddr < v.end) {
                if v.kind == VmaKind::Shared as u32 || v.start > covered {
                    break;
                }
                v.fill = 1;
                covered = covered.max(v.end);
            }
            if covered < end {
                return Err(RestoreError::BadImage {
                    dir: dir.to_owned(),
                    reason: format!(
                        "pid {pid}: pages {:#x}-{end:#x} are not inside private mappings",
                        e.vaddr
                    ),
                });
            }
            extents.push(ExtentArg {
                vaddr: e.vaddr,
                len: e.len,
                file_offset: e.file_offset,
            });
        }
        if !extents.is_empty() {
            pages_fd = helpers.lift(store.data_file(), "the page store")?;
            blob_fds.push(pages_fd);
        }
    }

    // The executable, unless it is already ours (PR_SET_MM_MAP refuses to replace an exe still mapped).
    let exe = task.file(dir, task.mm.exe, "the executable")?;
    let exe_file = open_file(&exe.path, libc::O_RDONLY, "cannot open the executable")?;
    let own_exe = std::fs::metadata("/proc/self/exe").ok();
    let same = own_exe.is_some_and(|m| m.dev() == exe.stat.dev && m.ino() == exe.stat.ino);
    let exe_fd = if same {
        log::debug!(
            "pid {pid}: executable {} is the restorer's own; /proc/pid/exe already right",
            exe.path
        );
        u32::MAX
    } else {
        let fd = helpers.lift(&exe_file, &exe.path)?;
        blob_fds.push(fd);
        fd as u32
    };

    let l = &task.mm.layout;
    let mm_map = PrctlMmMap {
        start_code: l.start_code,
        end_code: l.end_code,
        start_data: l.start_data,
        end_data: l.end_data,
        start_brk: l.start_brk,
        brk: l.brk,
        start_stack: l.start_stack,
        arg_start: l.arg_start,
        arg_end: l.arg_end,
        env_start: l.env_start,
        env_end: l.env_end,
        auxv: 0,
        auxv_size: 0,
        exe_fd,
    };

    let core = &task.core;
    let sigactions = match &core.sigactions {
        Some(acts) if acts.len() == NSIG => {
            let mut out = Box::new([KSigAction::default(); NSIG]);
            for (o, a) in out.iter_mut().zip(acts) {
                *o = KSigAction {
                    handler: a.handler,
                    flags: a.flags,
                    restorer: a.restorer,
                    mask: a.mask,
                };
            }
            Some(out)
        }
        Some(acts) => {
            return Err(RestoreError::BadImage {
                dir: dir.to_owned(),
                reason: format!("pid {pid}: {} signal actions instead of {NSIG}", acts.len()),
            })
        }
        None => {
            log::warn!(
                "pid {pid}: the image has no signal actions; every action is reset to its default"
            );
            None
        }
    };
    let itimers = core.itimers.map(|ts| {
        ts.map(|t| ITimerVal {
            interval_sec: (t.interval_us / 1_000_000) as i64,
            interval_usec: (t.interval_us % 1_000_000) as i64,
            value_sec: (t.value_us / 1_000_000) as i64,
            value_usec: (t.value_us % 1_000_000) as i64,
        })
    });
    // The blob queues and creates these inside the tree's pid namespace: thread ids as seen there.
    let inner_tid = |tid: u32| {
        tree_shared
            .ids
            .inner(tid)
            .ok_or_else(|| RestoreError::BadImage {
                dir: dir.to_owned(),
                reason: format!(
                    "pid {pid}: thread {tid} has no tid recorded inside its pid namespace"
                ),
            })
    };
    let mut siginfos = queued_signals(dir, pid, &core.shared_pending, true, 0)?;
    for t in task.threads() {
        if !t.pending.is_empty() {
            siginfos.extend(queued_signals(
                dir,
                pid,
                &t.pending,
                false,
                inner_tid(t.tid.0)?,
            )?);
        }
    }
    let mut timers = posix_timers(pid, &core.posix_timers)?;
    for t in &mut timers {
        if t.notify_tid != 0 {
            t.notify_tid = inner_tid(t.notify_tid as u32)? as i32;
        }
    }
    let rlimits = core
        .rlimits
        .iter()
        .filter_map(|r| {
            let current = nix::sys::resource::getrlimit(resource_of(r.resource)?).ok()?;
            let (mut soft, mut hard) = (r.soft, r.hard);
            if hard > current.1 {
                log::warn!(
                    "pid {pid}: rlimit {} hard {} exceeds ours ({}); raising it needs CAP_SYS_RESOURCE, keeping {}",
                    r.resource,
                    hard,
                    current.1,
                    current.1
                );
                hard = current.1;
                soft = soft.min(hard);
            }
            Some(RlimitSet { resource: r.resource, soft, hard })
        })
        .collect();

    // A chrooted task: its root is a path in the dumper's view, like its cwd and its files.
    let root = if core.root.is_empty() || core.root == "/" {
        None
    } else {
        Some(
            std::ffi::CString::new(core.root.as_str()).map_err(|_| RestoreError::BadImage {
                dir: dir.to_owned(),
                reason: format!("pid {pid}: root directory {:?} contains NUL", core.root),
            })?,
        )
    };
    let cwd = if core.cwd.is_empty() {
        None
    } else {
        Some(
            std::ffi::CString::new(core.cwd.as_str()).map_err(|_| RestoreError::BadImage {
                dir: dir.to_owned(),
                reason: format!("pid {pid}: working directory {:?} contains NUL", core.cwd),
            })?,
        )
    };

    let threads: Vec<ThreadInput> = task
        .threads()
        .map(|t| ThreadInput {
            tid: match t.ns_tids.as_slice() {
                [outer, _] if *outer == t.tid && tree_shared.fresh_host_pids => 0,
                _ => t.tid.0,
            },
            regs: t.regs,
            xstate: t.xstate.clone(),
            sigmask: t.sigmask,
            altstack: t.sigaltstack,
            clear_child_tid: t.clear_child_tid,
            rseq: t.rseq.map(|r| RseqArg {
                addr: r.addr,
                len: r.len,
                sig: r.signature,
            }),
            robust_list: t.robust_list,
            comm: t.comm.clone(),
            // Two levels only in a nested pid namespace (container or namespace init); whether that
            // restore is possible is decided for the whole tree.
            ns_tid: match t.ns_tids.as_slice() {
                [outer, inner] if *outer == t.tid => inner.0,
                _ => 0,
            },
        })
        .collect();
    let t = &task.thread;

    let (report_read, report_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| RestoreError::sys("pipe2", e))?;
    let report_fd = helpers.lift(&report_write, "the report pipe")?;
    drop(report_write);
    let report_write = helpers
        .owned
        .pop()
        .ok_or_else(|| RestoreError::Blob("report pipe fd lost".into()))?;

    let input = BlobInput {
        vmas,
        extents,
        close_fds: blob_fds.clone(),
        pages_fd,
        report_fd,
        inherited_rseq: inherited_rseq(),
        vdso_map_addr: vdso.map(|v| v.map_addr),
        mm: Some((mm_map, task.mm.auxv.clone())),
        sigactions,
        itimers,
        timers,
        siginfos,
        threads,
    };

    // Place the area in a hole free in both layouts.
    let size = area::size(blob, &input);
    let mut occupied: Vec<(u64, u64)> =
        procself::maps()?.iter().map(|m| (m.start, m.end)).collect();
    occupied.extend(task.mm.vmas.iter().map(|v| (v.start, v.end)));
    occupied.extend_from_slice(&tree_shared.areas);
    let base = area::find_hole(size, &occupied).ok_or(RestoreError::NoHole { pid, size })?;
    let area = area::build(blob, &input, base)?;
    tree_shared.areas.push((area.base, area.end()));

    keep.extend(blob_fds);
    keep.push(report_fd);
    keep.sort_unstable();
    keep.dedup();
    Ok(Launch {
        pid: Some(pid),
        ns_pid: None,
        area,
        fd_moves,
        child_actions,
        keep_fds: keep,
        helper_fds: helpers.owned,
        report_write,
        report_read,
        umask: Some(core.umask),
        rlimits,
        cwd,
        root,
        prctl: crate::launch::ProcessCtl {
            child_subreaper: core.child_subreaper,
            dumpable: core.dumpable,
            securebits: core.creds.securebits,
            pdeathsig: core.pdeathsig,
        },
        expected_rip: t.regs.rip,
        other_threads: input
            .threads
            .iter()
            .zip(task.threads())
            .skip(1)
            .map(|(input, o)| crate::launch::OtherThread {
                tid: input.tid,
                ns_tid: input.ns_tid,
                rip: o.regs.rip,
            })
            .collect(),
        stopped: core.stopped,
        session: crate::launch::SessionPlan::for_ids(pid, task.tree.pgid.0, task.tree.sid.0),
        comm: std::ffi::CString::new(core.comm.as_str()).ok(),
        personality: Some(core.personality),
    })
}

fn resource_of(r: u32) -> Option<nix::sys::resource::Resource> {
    use nix::sys::resource::Resource::*;
    Some(match r {
        0 => RLIMIT_CPU,
        1 => RLIMIT_FSIZE,
        2 => RLIMIT_DATA,
        3 => RLIMIT_STACK,
        4 => RLIMIT_CORE,
        5 => RLIMIT_RSS,
        6 => RLIMIT_NPROC,
        7 => RLIMIT_NOFILE,
        8 => RLIMIT_MEMLOCK,
        9 => RLIMIT_AS,
        10 => RLIMIT_LOCKS,
        11 => RLIMIT_SIGPENDING,
        12 => RLIMIT_MSGQUEUE,
        13 => RLIMIT_NICE,
        14 => RLIMIT_RTPRIO,
        15 => RLIMIT_RTTIME,
        _ => return None,
    })
}

/// One saved queue of pending signals as the blob re-queues them (the process-wide one when `shared`).
fn queued_signals(
    dir: &Path,
    pid: u32,
    queue: &[SigInfo],
    shared: bool,
    tid: u32,
) -> Result<Vec<QueuedSigArg>, RestoreError> {
    let one = |si: &SigInfo, is_shared: bool| -> Result<QueuedSigArg, RestoreError> {
        let info: [u8; SIGINFO_SIZE] =
            si.0.as_slice()
                .try_into()
                .map_err(|_| RestoreError::BadImage {
                    dir: dir.to_owned(),
                    reason: format!(
                        "pid {pid}: a pending siginfo of {} bytes instead of {SIGINFO_SIZE}",
                        si.0.len()
                    ),
                })?;
        let signo = i32::from_le_bytes([info[0], info[1], info[2], info[3]]);
        if !(1..=NSIG as i32).contains(&signo) {
            return Err(RestoreError::BadImage {
                dir: dir.to_owned(),
                reason: format!("pid {pid}: pending signal number {signo}"),
            });
        }
        // The blob keeps SIGTRAP unblocked for its final int3 (see the blob's `block_signals`): a queued one
        // would be delivered to the tracer in the middle of the restore instead of to the task.
        if signo == libc::SIGTRAP {
            return Err(RestoreError::Unsupported(format!(
                "pid {pid}: a pending SIGTRAP cannot be re-queued (the restore itself traps)"
            )));
        }
        Ok(QueuedSigArg {
            shared: is_shared as u32,
            signo,
            tid: tid as i32,
            _pad: 0,
            info,
        })
    };
    queue.iter().map(|si| one(si, shared)).collect()
}

/// `prctl` option (Linux 6.17) that makes `timer_create` take the id from `*timer_id`.
const PR_TIMER_CREATE_RESTORE_IDS: libc::c_int = 77;
const PR_TIMER_CREATE_RESTORE_IDS_GET: libc::c_ulong = 2;

/// The saved POSIX timers for the blob; refuses a task with timers on a kernel that cannot give them their
/// ids back (a different id would silently break the task's `timer_*` calls).
fn posix_timers(pid: u32, timers: &[PosixTimer]) -> Result<Vec<TimerArg>, RestoreError> {
    if timers.is_empty() {
        return Ok(Vec::new());
    }
    // SAFETY: the GET form of this prctl only reads a flag of the calling task.
    let probe = unsafe {
        libc::prctl(
            PR_TIMER_CREATE_RESTORE_IDS,
            PR_TIMER_CREATE_RESTORE_IDS_GET,
            0,
            0,
            0,
        )
    };
    if probe < 0 {
        return Err(RestoreError::Unsupported(format!(
            "pid {pid}: {} POSIX timer(s) but this kernel lacks PR_TIMER_CREATE_RESTORE_IDS (Linux 6.17+), \
             so their ids cannot be restored: {}",
            timers.len(),
            std::io::Error::last_os_error()
        )));
    }
    const NS: u64 = 1_000_000_000;
    Ok(timers
        .iter()
        .map(|t| TimerArg {
            id: t.id,
            clock: t.clock,
            notify: t.notify,
            signo: t.signo,
            notify_tid: t.notify_tid.map_or(0, |tid| tid.0 as i32),
            _pad: 0,
            value: t.value,
            interval_sec: (t.interval_ns / NS) as i64,
            interval_nsec: (t.interval_ns % NS) as i64,
            value_sec: (t.value_ns / NS) as i64,
            value_nsec: (t.value_ns % NS) as i64,
        })
        .collect())
}
