//! One process of the seized tree: its state collected kind by kind (one module per kind, named as in the
//! image format and the restorer) and its own records and page store written. Tree-wide state (files by
//! path, open file descriptions, shared memory) is threaded through [`TreeState`].
//!
//! The order of the steps is the dump's contract with the target: registers of every thread are read
//! before anything is injected (rseq and restart state), in-process state is asked before the mappings
//! are read (the scratch mapping is gone again by then), and nothing is written until everything of the
//! task was collected.

pub mod attrs;
pub mod creds;
pub mod fs;
pub mod mm;
pub mod pages;
pub mod regs;
pub mod remote;
pub mod rlimits;
pub mod seccomp;
pub mod signals;
pub mod threads;
pub mod timers;

use dormant_image::records::{
    names, Creds, Fd, Mm, Pid, ProcessAttrs, PsTreeEntry, Rlimit, ShmemObject, SigInfo, TaskCore,
    TaskSeccomp, ThreadCore, Tid,
};
use dormant_image::ImageWriter;

use crate::error::{DumpError, Result};
use crate::files::{FileCollector, FileTable};
use crate::proc::stat::ProcStat;
use crate::proc::status::ProcStatus;
use crate::progress::Progress;
use crate::seize::{self, SeizedTask};
use crate::stage::DumpStage;
use crate::tree;

/// What the tasks of one dump share, and where their records go.
#[derive(Debug)]
pub struct TreeState<'a> {
    pub writer: &'a mut ImageWriter,
    /// Files by path (fds, mappings, executables).
    pub table: &'a mut FileTable,
    /// Open file descriptions, shared between tasks.
    pub files: &'a mut FileCollector,
    /// Shared-memory objects stored by the tasks dumped before.
    pub known_shmem: &'a [ShmemObject],
    pub page_copy: pages::PageCopy,
    /// Whether the parent of each job-control-stopped task had already collected its stop, by the
    /// child's pid: filled when the parent is dumped (parents come first), read by the child's dump.
    pub waited_stops: &'a mut std::collections::BTreeMap<u32, bool>,
}

/// What one task's dump produced for the tree-wide records.
#[derive(Debug)]
pub struct DumpedTask {
    pub pstree: PsTreeEntry,
    /// Shared-memory objects this task stored first.
    pub shmem: Vec<ShmemObject>,
    /// Bytes of page data written.
    pub bytes: u64,
}

/// Collects one seized process (`ppid`: its parent in the tree; `stopped_children`: its children in the
/// tree that are in a job-control stop) and writes its records and page store.
pub fn dump(
    task: &SeizedTask,
    ppid: Option<u32>,
    stopped_children: &[u32],
    tree_state: &mut TreeState<'_>,
    progress: &mut Progress,
) -> Result<DumpedTask> {
    let pid = task.pid();
    let tids = task.tids();

    // Registers of every thread: before anything is injected (rseq state, restart state).
    let mem_file = pages::copy::open_mem(pid)?;
    let thread_regs = threads::read_all_regs(pid, &tids, &mem_file)?;
    let shared_pending = signals::peek_pending(pid, true)?;
    progress.done(DumpStage::Registers)?;

    // In-process state, before the mappings are read (the scratch mapping is gone again by then).
    let remote = remote::query_process(pid)?;
    let children = stopped_children
        .iter()
        .map(|&c| Ok((c, attrs::inner_pid(c)?)))
        .collect::<Result<Vec<_>>>()?;
    tree_state
        .waited_stops
        .extend(remote::stop_reports(pid, &children)?);
    let mut thread_remote = vec![remote::leader_thread(&remote)];
    for t in thread_regs.iter().skip(1) {
        thread_remote.push(remote::query_thread(pid, t.tid)?);
    }
    progress.done(DumpStage::Remote)?;

    let state = ProcState::read(pid, &tids, tree_state.table)?;
    let pdeathsigs: Vec<u32> = thread_remote.iter().map(|t| t.pdeathsig).collect();
    let extra = ExtraRecords {
        seccomp: seccomp::read(pid, &tids)?,
        attrs: attrs::process_attrs(pid, &tids, &pdeathsigs)?,
    };
    progress.done(DumpStage::ProcState)?;

    let fds = tree_state.files.dump_task(pid, tree_state.table)?;
    progress.done(DumpStage::Files)?;

    let vmas = mm::collect_vmas(pid, tree_state.table)?;
    let (shmem, bytes) = pages::dump(
        pid,
        &mem_file,
        &vmas,
        tree_state.writer,
        tree_state.known_shmem,
        tree_state.page_copy,
    )?;
    progress.done(DumpStage::Memory)?;

    let mm = Mm {
        layout: mm::layout(&state.stat, Some(remote.snap.brk), &vmas),
        auxv: state.auxv.clone(),
        exe: state.exe,
        vmas: vmas.iter().map(|v| v.vma.clone()).collect(),
        attrs: Some(remote.mm_attrs),
    };
    let parent_waited = tree_state.waited_stops.get(&pid).copied();
    let mut core = state.core(task, &remote, shared_pending);
    core.job_stop = attrs::job_stop(task, parent_waited);
    let threads: Vec<ThreadCore> = thread_regs
        .into_iter()
        .zip(thread_remote)
        .zip(state.thread_comms)
        .zip(state.thread_ns_tids)
        .zip(state.thread_creds)
        .map(|((((r, rem), c), ns), cr)| threads::core(r, rem, c, ns, &cr))
        .collect();
    let pstree = PsTreeEntry {
        pid: Pid(pid),
        ppid: ppid.map(Pid),
        pgid: Pid(state.stat.pgrp),
        sid: Pid(state.stat.session),
        threads: tids.into_iter().map(Tid).collect(),
        ns_pids: state.status.ns_pids.iter().copied().map(Pid).collect(),
    };
    write_records(pid, tree_state.writer, &core, &threads, &mm, &fds, &extra)?;
    log::debug!("pid {pid}: records written ({} vmas)", mm.vmas.len());
    Ok(DumpedTask {
        pstree,
        shmem,
        bytes,
    })
}

/// What `/proc` tells about a process and its threads.
struct ProcState {
    stat: ProcStat,
    status: ProcStatus,
    comm: String,
    personality: u32,
    rlimits: Vec<Rlimit>,
    auxv: Vec<u64>,
    exe: dormant_image::records::FileId,
    fs: fs::FsContext,
    /// Every thread's name, `NSpid` levels and credentials (without securebits), the leader first.
    thread_comms: Vec<String>,
    thread_ns_tids: Vec<Vec<u32>>,
    thread_creds: Vec<Creds>,
}

impl ProcState {
    /// Reads the `/proc` state of `pid` (threads `tids`, the leader first); the executable joins `table`.
    fn read(pid: u32, tids: &[u32], table: &mut FileTable) -> Result<Self> {
        let stat = seize::read_stat(pid)?;
        tree::check_controlling_terminal(pid, &stat)?;
        let status_text = crate::proc::read_string(pid, "status")?;
        let status =
            crate::proc::status::parse(&status_text).map_err(|reason| DumpError::ProcParse {
                pid,
                file: "status",
                reason,
            })?;
        let comm = attrs::comm(pid, pid)?;
        let personality = attrs::personality(pid)?;
        let rlimits = rlimits::read(pid)?;
        let auxv = mm::read_auxv(pid)?;
        let exe = mm::dump_exe(pid, table)?;
        let fs = fs::read(pid, &status)?;
        let mut thread_comms = vec![comm.clone()];
        let mut thread_ns_tids = vec![status.ns_pids.clone()];
        let mut thread_creds = vec![status.creds.clone()];
        for &tid in tids.iter().skip(1) {
            let thread = threads::status(pid, tid)?;
            thread_creds.push(thread.creds);
            thread_ns_tids.push(thread.ns_pids);
            thread_comms.push(attrs::comm(pid, tid)?);
        }
        Ok(Self {
            stat,
            status,
            comm,
            personality,
            rlimits,
            auxv,
            exe,
            fs,
            thread_comms,
            thread_ns_tids,
            thread_creds,
        })
    }

    /// The process's core record.
    fn core(
        &self,
        task: &SeizedTask,
        remote: &remote::ProcessRemote,
        shared_pending: Vec<SigInfo>,
    ) -> TaskCore {
        let flags = attrs::prctl_flags(&remote.snap);
        let creds: Creds = creds::of_thread(&self.status.creds, remote.snap.securebits);
        TaskCore {
            pid: Pid(task.pid()),
            comm: self.comm.clone(),
            personality: self.personality,
            umask: self.fs.umask,
            rlimits: self.rlimits.clone(),
            sigactions: Some(signals::actions(&remote.snap)),
            itimers: Some(timers::itimers(&remote.snap.itimers)),
            creds,
            dumpable: flags.dumpable,
            pdeathsig: flags.pdeathsig,
            child_subreaper: flags.child_subreaper,
            shared_pending,
            stopped: task.was_stopped(),
            job_stop: None,
            cwd: self.fs.cwd.clone(),
            root: self.fs.root.clone(),
            posix_timers: remote.posix_timers.clone(),
            cwd_removed: self.fs.cwd_removed,
            root_removed: self.fs.root_removed,
        }
    }
}

/// The records of one process besides its core, threads, mm and fds.
struct ExtraRecords {
    /// `None`: no thread under seccomp (no file written).
    seccomp: Option<TaskSeccomp>,
    attrs: ProcessAttrs,
}

/// Writes the records of one process (tree-wide files are written by the caller).
fn write_records(
    pid: u32,
    writer: &mut ImageWriter,
    core: &TaskCore,
    threads: &[ThreadCore],
    mm: &Mm,
    fds: &[Fd],
    extra: &ExtraRecords,
) -> Result<()> {
    let err = |file: String| {
        move |source| DumpError::Image {
            pid,
            what: file,
            source,
        }
    };
    let p = Pid(pid);
    writer
        .write_records(&names::core(p), std::slice::from_ref(core))
        .map_err(err(names::core(p)))?;
    for t in threads {
        writer
            .write_records(&names::thread(t.tid), std::slice::from_ref(t))
            .map_err(err(names::thread(t.tid)))?;
    }
    writer
        .write_records(&names::mm(p), std::slice::from_ref(mm))
        .map_err(err(names::mm(p)))?;
    if let Some(s) = &extra.seccomp {
        writer
            .write_records(&names::seccomp(p), std::slice::from_ref(s))
            .map_err(err(names::seccomp(p)))?;
    }
    writer
        .write_records(&names::attrs(p), std::slice::from_ref(&extra.attrs))
        .map_err(err(names::attrs(p)))?;
    writer
        .write_records(&names::fds(p), fds)
        .map_err(err(names::fds(p)))
}
