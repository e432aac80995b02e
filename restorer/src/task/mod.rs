//! One restored task, kind of state by kind of state: turning a checked [`TaskImage`] into a [`Launch`]
//! (before any fork: opening every file the task and the blob need, creating shared-memory objects,
//! numbering helper fds above the task's fds, building the blob input), and the steps the forked child
//! runs for each kind before it enters the blob (`apply` of [`fds`], [`fs`], [`attrs`], [`rlimits`]).
//!
//! What the blob restores (mm, pages, signals, timers, threads and their registers, credentials) is only
//! prepared here; the blob's side is `restorer/blob`. Credentials come last there, after everything that
//! needs the restorer's privileges, including the resource limits the child sets for itself (raising a
//! limit of another uid's task from outside would need CAP_SYS_RESOURCE).

mod attrs;
mod creds;
mod fds;
mod fs;
mod helpers;
mod mm;
mod pages;
mod regs;
mod rlimits;
mod seccomp;
mod signals;
mod threads;
mod timers;

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::Path;

use dormant_image::records::FileId;
use dormant_restorer_proto::Step;

use crate::area::{self, Area, BlobInput};
use crate::blob::Blob;
use crate::error::RestoreError;
use crate::image::{TaskImage, VdsoPlacement};
use crate::launch::Launch;
use crate::procself;

pub use attrs::ProcessCtl;
pub(crate) use attrs::{apply as apply_attrs, own_slice};
pub use creds::{verify as verify_creds, ThreadCreds};
pub(crate) use fds::apply as apply_fds;
pub(crate) use fs::apply as apply_fs;
pub use fs::RemovedCwd;
pub(crate) use rlimits::apply as apply_rlimits;
pub use seccomp::ThreadSeccompInput;

/// Options that change how fds are rebuilt.
#[derive(Debug, Clone, Copy)]
pub struct FdPolicy {
    pub shell_job: bool,
}

/// What the tasks of one tree share while they are prepared.
#[derive(Debug)]
pub struct TreeShared {
    /// Blob areas laid out so far (all are mapped in this process at once before the first fork).
    pub areas: Vec<(u64, u64)>,
    /// Shared-memory objects and recreated deleted files so far, by id: created once, mapped by every
    /// task that had them.
    pub mm: mm::MmShared,
    /// Regular files reopened so far, by id: one open file description per id for the whole tree, so fds
    /// of several processes that shared one (opened before a fork) share its offset again.
    pub reg: BTreeMap<FileId, OwnedFd>,
    /// How the tree's recorded pids and tids read inside its own pid namespace.
    pub ids: crate::ns::pid::InnerIds,
    /// Tasks and threads in a nested pid namespace keep only their pids inside it; the kernel chooses
    /// their host pids (`RestoreBuilder::fresh_host_pids`).
    pub fresh_host_pids: bool,
    /// The restorer's own credentials: what every restored thread inherits.
    pub runner: dormant_restorable::Runner,
    /// The restorer's fair-scheduler slice (see [`attrs::sched_args`]).
    pub own_slice: u64,
}

/// Builds the launch for `task`, one kind of state after the other. Its blob area avoids the areas
/// already in `tree_shared`, and is added to them. A task that `shares` its parent's fd table gets no fds
/// (its parent's table has them, the same as its image's, and its helper fds are numbered above them
/// too); one that shares the fs struct no cwd, root or umask.
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    dir: &Path,
    blob: &Blob,
    task: &TaskImage,
    vdso: Option<VdsoPlacement>,
    policy: FdPolicy,
    tree_shared: &mut TreeShared,
    opened: &crate::files::OpenedFiles,
    shares: crate::launch::Shares,
) -> Result<Launch, RestoreError> {
    let pid = task.pid.0;
    let mut helpers = helpers::HelperFds::above(task.fds, opened.watched_fd_max(task.fds));
    let fds = if shares.files {
        fds::TaskFds::default()
    } else {
        fds::prepare(
            dir,
            task,
            policy.shell_job,
            &mut tree_shared.reg,
            opened,
            &mut helpers,
        )?
    };
    let mut mm = mm::prepare(dir, task, &mut tree_shared.mm, opened, &mut helpers)?;
    let pages = pages::prepare(dir, task, &mut mm.vmas, &mut helpers)?;
    let signals = signals::prepare(dir, task, &tree_shared.ids)?;
    let timers = timers::prepare(dir, task, &tree_shared.ids)?;
    let fs = if shares.fs {
        fs::TaskFs::default()
    } else {
        fs::prepare(dir, task)?
    };
    let attrs = attrs::prepare(task);
    let creds = creds::prepare(task, &tree_shared.runner.creds);
    let thread_creds = creds
        .iter()
        .map(|c| c.as_ref().map(|c| c.want.clone()))
        .collect();
    let nr_threads = 1 + task.other_threads.len();
    let sched = attrs::sched_args(task.attrs, nr_threads, tree_shared.own_slice);
    let seccomp = seccomp::prepare(task.seccomp, nr_threads);
    let finish = Finish {
        oom_score_adj: task.attrs.map(|a| a.oom_score_adj),
        attrs: match task.attrs {
            Some(a) => a.threads.iter().cloned().map(Some).collect(),
            None => vec![None; nr_threads],
        },
        seccomp: seccomp.clone(),
        own_slice: tree_shared.own_slice,
        suspend_seccomp: seccomp::any(task.seccomp),
        locks: task.locks.to_vec(),
    };
    let threads = threads::prepare(task, tree_shared.fresh_host_pids, creds, sched, seccomp);
    let (expected_rip, other_threads) = regs::expected_rips(task, &threads);
    let report = helpers.report_pipe()?;
    let input = BlobInput {
        vmas: mm.vmas,
        extents: pages.extents,
        close_fds: helpers.blob_fds().to_vec(),
        locks: fds.posix_locks.clone(),
        pages_fd: pages.fd,
        report_fd: report.fd,
        inherited_rseq: threads::inherited_rseq(),
        vdso_map_addr: vdso.map(|v| v.map_addr),
        mm: Some((mm.map, mm.auxv)),
        sigactions: signals.actions,
        itimers: timers.itimers,
        timers: timers.posix,
        siginfos: signals.queued,
        threads,
        mm_attrs: task.mm.attrs,
    };
    let area = place_area(blob, task, &input, &mut tree_shared.areas)?;
    let mut keep: Vec<i32> = fds.moves.iter().map(|m| m.to).collect();
    keep.extend_from_slice(helpers.blob_fds());
    keep.push(report.fd);
    keep.sort_unstable();
    keep.dedup();
    Ok(Launch {
        pid: Some(pid),
        ns_pid: None,
        area,
        shares,
        fd_moves: fds.moves,
        child_actions: fds.actions,
        proc_files: fds.proc_files,
        keep_fds: keep,
        helper_fds: helpers.into_owned(),
        report_write: report.write,
        report_read: report.read,
        umask: fs.umask,
        rlimits: rlimits::prepare(task),
        cwd: fs.cwd,
        root: fs.root,
        removed_cwd: fs.removed_cwd,
        prctl: attrs.prctl,
        expected_rip,
        other_threads,
        thread_creds,
        job_stop: attrs.job_stop,
        sigchld_pending: attrs.sigchld_pending,
        session: crate::launch::SessionPlan::for_ids(pid, task.tree.pgid.0, task.tree.sid.0),
        comm: attrs.comm,
        personality: attrs.personality,
        finish,
        mnt_ns: None,
    })
}

/// What the tracer sets and checks from outside once every thread of a task is done, before the
/// release: the OOM score adjustment (set), every thread's attributes, seccomp state and the task's file
/// locks (checked).
#[derive(Debug, Clone, Default)]
pub struct Finish {
    pub oom_score_adj: Option<i32>,
    /// Per thread, the leader first; `None`: not recorded, not checked.
    pub attrs: Vec<Option<dormant_image::records::ThreadAttrs>>,
    pub seccomp: Vec<ThreadSeccompInput>,
    /// The restorer's fair-scheduler slice (see [`attrs::sched_args`]).
    pub own_slice: u64,
    /// Some thread runs under seccomp: the tracer must trace the tree with its seccomp suspended.
    pub suspend_seccomp: bool,
    /// The task's file locks, each checked to be held again through its fd.
    pub locks: Vec<dormant_image::records::FileLock>,
}

impl Finish {
    /// Sets and checks what is described above for the task `pid` whose threads are `tids` (the leader
    /// first, in the order of the image).
    pub fn apply_and_verify(&self, pid: u32, tids: &[u32]) -> Result<(), RestoreError> {
        if let Some(v) = self.oom_score_adj {
            attrs::set_oom_score_adj(pid, v)?;
        }
        for (i, &tid) in tids.iter().enumerate() {
            if let Some(Some(want)) = self.attrs.get(i) {
                attrs::verify(pid, tid, want, self.own_slice)?;
            }
            if let Some(want) = self.seccomp.get(i) {
                seccomp::verify(pid, tid, want)?;
            }
        }
        crate::files::verify_locks(pid, &self.locks)?;
        if let Some(want) = self.oom_score_adj {
            let path = format!("/proc/{pid}/oom_score_adj");
            let found = std::fs::read_to_string(&path).map_err(|source| RestoreError::Proc {
                path: path.into(),
                source,
            })?;
            if found.trim() != want.to_string() {
                return Err(RestoreError::AttrMismatch {
                    pid,
                    tid: pid,
                    what: "oom_score_adj",
                    found: found.trim().into(),
                    want: want.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// What of `task` this restorer refuses, checked before anything changes: a pending SIGTRAP, POSIX timers
/// on a kernel that cannot give their ids back.
pub fn refuse(task: &TaskImage) -> Result<(), RestoreError> {
    attrs::refuse(task)?;
    signals::refuse(task)?;
    timers::refuse(task)?;
    Ok(())
}

/// Lays the blob area out in a hole free in both this process's layout and the task's, away from the
/// areas of the tree's other tasks (all are mapped here at once before the first fork).
fn place_area(
    blob: &Blob,
    task: &TaskImage,
    input: &BlobInput,
    areas: &mut Vec<(u64, u64)>,
) -> Result<Area, RestoreError> {
    let size = area::size(blob, input);
    let mut occupied: Vec<(u64, u64)> =
        procself::maps()?.iter().map(|m| (m.start, m.end)).collect();
    occupied.extend(task.mm.vmas.iter().map(|v| (v.start, v.end)));
    occupied.extend_from_slice(areas);
    let base = area::find_hole(size, &occupied).ok_or(RestoreError::NoHole {
        pid: task.pid.0,
        size,
    })?;
    let area = area::build(blob, input, base)?;
    areas.push((area.base, area.end()));
    Ok(area)
}

/// Opens a file the task or the blob needs (see [`crate::files::reg::open`]).
fn open_file(path: &str, flags: i32, what: &'static str) -> Result<std::fs::File, RestoreError> {
    crate::files::reg::open(path, flags).map_err(|source| RestoreError::File {
        what,
        path: path.to_owned(),
        source,
    })
}

/// A step of the forked child that failed: which, the errno, and a detail (an fd, a resource, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildFailed {
    pub step: Step,
    pub errno: i32,
    pub detail: u64,
}

impl ChildFailed {
    pub fn new(step: Step, errno: i32, detail: u64) -> Self {
        ChildFailed {
            step,
            errno,
            detail,
        }
    }

    /// `step` failed with the calling thread's errno.
    pub fn errno(step: Step, detail: u64) -> Self {
        Self::new(step, nix::errno::Errno::last_raw(), detail)
    }
}
