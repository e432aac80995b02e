//! Dump orchestration: seize → collect everything → write the image → commit → kill or resume.
//!
//! Until the image is committed, any failure drops the image writer (its temporary directory goes away) and
//! detaches the target, which continues exactly as before: nothing injected stays, no signal is lost.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dormant_image::records::{
    names, Creds, Fd, FileCheck, ITimer, Mm, MmLayout, Pid, PosixTimer, PsTreeEntry, ShmemObject,
    SigAction, SigAltStack, TaskCore, ThreadCore, Tid, VmaBacking, FILE_IDENTITY,
};
use dormant_image::ImageWriter;

use crate::error::{DumpError, Result};
use crate::files::{self, FileTable};
use crate::mem::{self, CollectedVma};
use crate::pagemap::PageWalker;
use crate::proc;
use crate::regs;
use crate::seize::{self, ProcessIdentity, SeizedTask};
use crate::threads;
use crate::tree::SeizedTree;

/// How long to wait for a killed target's pid to become free.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// The stages of a dump, in order. Used for per-phase timings, for errors saying when a target vanished,
/// and by tests to inject failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DumpStage {
    /// The target is seized and stopped.
    Seize,
    /// Registers, XSAVE area, signal mask, pending signals, rseq read with ptrace.
    Registers,
    /// In-process state asked from the task (sigactions, itimers, brk, ...).
    Remote,
    /// `/proc` state: creds, limits, mm layout, auxv, exe.
    ProcState,
    /// File descriptors.
    Files,
    /// Mappings and page data.
    Memory,
    /// Record files written.
    Records,
    /// Image committed (an injected failure here fires just before the commit).
    Commit,
}

impl DumpStage {
    /// Every stage, in order.
    pub const ALL: [DumpStage; 8] = [
        DumpStage::Seize,
        DumpStage::Registers,
        DumpStage::Remote,
        DumpStage::ProcState,
        DumpStage::Files,
        DumpStage::Memory,
        DumpStage::Records,
        DumpStage::Commit,
    ];
}

/// What a dump did and how long it took.
#[derive(Debug, Clone, Default)]
pub struct DumpStats {
    /// From the moment the target stopped until it was killed or let go.
    pub frozen: Duration,
    /// The whole `run()`.
    pub total: Duration,
    /// Private and shared page data written, in pages of [`crate::PAGE_SIZE`] and in bytes.
    pub pages_written: u64,
    pub bytes_written: u64,
    /// Duration of each completed stage, in order.
    pub phases: Vec<(DumpStage, Duration)>,
    /// Killing (and waiting for the pid to be freed) or detaching the target after the commit.
    pub release: Duration,
    /// Where the image was committed.
    pub image_dir: PathBuf,
}

type StageHook = Box<dyn FnMut(DumpStage, Pid)>;

/// Points of a dump where a caller acts (CRIU's notify scripts are sent from them), in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpEvent {
    /// Every task of the tree is stopped and nothing is collected yet (CRIU's network-lock point).
    Frozen { root: Pid },
    /// The image is committed; the tree is still stopped and is killed or resumed next (post-dump). A
    /// hook failing here resumes the tree, whatever `leave_running` says, and fails the dump.
    Committed { root: Pid },
}

/// A caller's hook for [`DumpEvent`]s; an error stops the dump ([`DumpError::Hook`]).
pub type EventHook =
    Box<dyn FnMut(DumpEvent) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>>;

/// A configured dump of one process. See [`Dump::builder`].
pub struct Dump {
    pid: Pid,
    images_dir: PathBuf,
    leave_running: bool,
    shell_job: bool,
    tcp_established: bool,
    page_copy: mem::PageCopy,
    fail_at: Option<DumpStage>,
    stage_hook: Option<StageHook>,
    container: crate::container::ContainerOptions,
    external_pipes: bool,
    file_check: FileCheck,
    freezer: Option<Box<dyn crate::tree::Freezer>>,
    event_hook: Option<EventHook>,
    wait_reaped: bool,
}

impl std::fmt::Debug for Dump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dump")
            .field("pid", &self.pid)
            .field("images_dir", &self.images_dir)
            .field("leave_running", &self.leave_running)
            .field("shell_job", &self.shell_job)
            .field("tcp_established", &self.tcp_established)
            .field("fail_at", &self.fail_at)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Dump`].
pub struct DumpBuilder {
    pid: Pid,
    images_dir: Option<PathBuf>,
    leave_running: bool,
    shell_job: bool,
    tcp_established: bool,
    page_copy: mem::PageCopy,
    fail_at: Option<DumpStage>,
    stage_hook: Option<StageHook>,
    container: crate::container::ContainerOptions,
    external_pipes: bool,
    file_check: FileCheck,
    freezer: Option<Box<dyn crate::tree::Freezer>>,
    event_hook: Option<EventHook>,
    wait_reaped: bool,
}

impl std::fmt::Debug for DumpBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DumpBuilder")
            .field("pid", &self.pid)
            .field("images_dir", &self.images_dir)
            .finish_non_exhaustive()
    }
}

impl Dump {
    /// Starts configuring a dump of process `pid`.
    pub fn builder(pid: Pid) -> DumpBuilder {
        DumpBuilder {
            pid,
            images_dir: None,
            leave_running: false,
            shell_job: false,
            tcp_established: false,
            page_copy: mem::PageCopy::default(),
            fail_at: None,
            stage_hook: None,
            container: Default::default(),
            external_pipes: false,
            file_check: FileCheck::DevIno,
            freezer: None,
            event_hook: None,
            wait_reaped: true,
        }
    }
}

impl DumpBuilder {
    /// Where the image appears (must not exist, be empty, or hold an image, which is replaced).
    pub fn images_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.images_dir = Some(dir.into());
        self
    }

    /// Let the process continue after the dump instead of killing it.
    pub fn leave_running(mut self, yes: bool) -> Self {
        self.leave_running = yes;
        self
    }

    /// Accept a terminal on fds 0-2 (the restored process gets the restorer's terminal).
    pub fn shell_job(mut self, yes: bool) -> Self {
        self.shell_job = yes;
        self
    }

    /// Dump established TCP connections with `TCP_REPAIR` (CRIU's `--tcp-established`) instead of
    /// refusing them. When the dump kills the target, its connections are closed in repair mode (the peer
    /// is told nothing) so that a restore can take them over.
    pub fn tcp_established(mut self, yes: bool) -> Self {
        self.tcp_established = yes;
        self
    }

    /// How page data is copied out of the target (method and threads); the default is the fastest here.
    pub fn page_copy(mut self, copy: mem::PageCopy) -> Self {
        self.page_copy = copy;
        self
    }

    /// `--external-pipes`: a pipe end whose other end only processes outside the dump hold is dumped as
    /// external (`pipe:[INODE]`, handed in at restore with `--inherit-fd`) instead of refusing the dump.
    /// A container dump always does this (the agent holds the other ends of its stdio pipes).
    pub fn external_pipes(mut self, yes: bool) -> Self {
        self.external_pipes = yes;
        self
    }

    /// `--external mnt[MOUNTPOINT]:KEY` specs for a container's mounts (see [`crate::container`]).
    pub fn externals(mut self, specs: Vec<String>) -> Self {
        self.container.externals = specs;
        self
    }

    /// `--root DIR`: the container's root filesystem as a directory of the dumper's mount namespace (CRIU's
    /// meaning). The dump fails, naming both, unless it is the root of the tree's mount namespace (same
    /// device and inode as `/proc/PID/root`); it is recorded as the default `--root` of the restore.
    pub fn root(mut self, dir: Option<PathBuf>) -> Self {
        self.container.root = dir;
        self
    }

    /// Never inject the parasite blob for page data (`--no-parasite`), whatever [`Self::page_copy`]
    /// says: pages go through process_vm_readv. The single remote syscalls for in-process state are
    /// still used.
    pub fn no_parasite(mut self, yes: bool) -> Self {
        if yes && self.page_copy.method == mem::CopyMethod::Parasite {
            self.page_copy.method = mem::CopyMethod::VmReadv;
        }
        self
    }

    /// How restore must recognise the files behind mappings and executables (recorded in the image):
    /// by device and inode (the default), or by content (size, mtime, build-id or crc32) for a restore in
    /// another VM whose root filesystem is the same image on other devices.
    pub fn file_check(mut self, check: FileCheck) -> Self {
        self.file_check = check;
        self
    }

    /// The tree is held still by a cgroup freezer (kata-agent's containers): it is seized in two passes
    /// around [`crate::tree::Freezer::seized`], and [`crate::tree::Freezer::before_detach`] runs before
    /// the tree is let go (see [`crate::tree::SeizedTree::seize_frozen`]).
    pub fn freezer(mut self, freezer: Box<dyn crate::tree::Freezer>) -> Self {
        self.freezer = Some(freezer);
        self
    }

    /// Called at each [`DumpEvent`] on the dumping thread.
    pub fn on_event(mut self, hook: EventHook) -> Self {
        self.event_hook = Some(hook);
        self
    }

    /// After the kill, wait until the killed pids are free (reaped by their parents), so that a restore
    /// right after can take them (the default). Without it the dump returns once they are dead, as CRIU
    /// does; a container runtime reaps its own processes.
    pub fn wait_reaped(mut self, yes: bool) -> Self {
        self.wait_reaped = yes;
        self
    }

    /// Test hook: fail the dump right after `stage` completes (for `Commit`: just before committing).
    #[doc(hidden)]
    pub fn fail_at(mut self, stage: DumpStage) -> Self {
        self.fail_at = Some(stage);
        self
    }

    /// Test hook: called on the dumping thread after each stage completes.
    #[doc(hidden)]
    pub fn on_stage(mut self, hook: impl FnMut(DumpStage, Pid) + 'static) -> Self {
        self.stage_hook = Some(Box::new(hook));
        self
    }

    pub fn build(self) -> Result<Dump> {
        let images_dir = self.images_dir.ok_or(DumpError::Config {
            pid: self.pid.0,
            reason: "no images directory given",
        })?;
        if self.pid.0 == 0 || self.pid.0 == std::process::id() {
            return Err(DumpError::Config {
                pid: self.pid.0,
                reason: "cannot dump pid 0 or the dumping process itself",
            });
        }
        Ok(Dump {
            pid: self.pid,
            images_dir,
            leave_running: self.leave_running,
            shell_job: self.shell_job,
            tcp_established: self.tcp_established,
            page_copy: self.page_copy,
            fail_at: self.fail_at,
            stage_hook: self.stage_hook,
            container: self.container,
            external_pipes: self.external_pipes,
            file_check: self.file_check,
            freezer: self.freezer,
            event_hook: self.event_hook,
            wait_reaped: self.wait_reaped,
        })
    }
}

/// Per-run progress: the stage being worked on and the timings so far.
struct Progress {
    pid: u32,
    current: DumpStage,
    started: Instant,
    phases: Vec<(DumpStage, Duration)>,
    fail_at: Option<DumpStage>,
    hook: Option<StageHook>,
    events: Option<EventHook>,
}

impl Progress {
    /// Runs the caller's hook for `event`.
    fn event(&mut self, event: DumpEvent) -> Result<()> {
        let Some(hook) = self.events.as_mut() else {
            return Ok(());
        };
        hook(event).map_err(|source| DumpError::Hook {
            pid: self.pid,
            event: match event {
                DumpEvent::Frozen { .. } => "after freezing the tree",
                DumpEvent::Committed { .. } => "after committing the image",
            },
            source,
        })
    }

    /// Marks `stage` complete: records its time, runs the hook, fires an injected failure.
    fn done(&mut self, stage: DumpStage) -> Result<()> {
        self.record(stage);
        self.fail_point(stage)
    }

    fn record(&mut self, stage: DumpStage) {
        let now = Instant::now();
        self.phases.push((stage, now - self.started));
        self.started = now;
    }

    /// Runs the hook and fires an injected failure for `stage`.
    fn fail_point(&mut self, stage: DumpStage) -> Result<()> {
        if let Some(hook) = self.hook.as_mut() {
            hook(stage, Pid(self.pid));
        }
        if self.fail_at == Some(stage) {
            return Err(DumpError::InjectedFailure {
                pid: self.pid,
                stage,
            });
        }
        self.current = next_stage(stage);
        Ok(())
    }
}

fn next_stage(s: DumpStage) -> DumpStage {
    let i = DumpStage::ALL.iter().position(|x| *x == s).unwrap_or(0);
    DumpStage::ALL[(i + 1).min(DumpStage::ALL.len() - 1)]
}

/// Whether a seized process has died (zombie, reaped, or pid reused).
fn is_dead(identity: &ProcessIdentity) -> bool {
    match seize::read_stat(identity.pid) {
        Ok(st) => st.start_time != identity.start_time || st.state == 'Z' || st.state == 'X',
        Err(_) => true,
    }
}

/// Everything collected from a task before records are written.
struct Collected {
    core: TaskCore,
    /// Every thread, the leader first.
    threads: Vec<ThreadCore>,
    pstree: PsTreeEntry,
    mm: Mm,
    fds: Vec<Fd>,
    vmas: Vec<CollectedVma>,
}

impl Dump {
    /// Runs the dump. On success the image is committed and the target killed (its pid free) or, with
    /// `leave_running`, resumed. On failure the target is resumed untouched and no image is left.
    pub fn run(mut self) -> Result<DumpStats> {
        let t0 = Instant::now();
        let pid = self.pid.0;
        let mut progress = Progress {
            pid,
            current: DumpStage::Seize,
            started: t0,
            phases: Vec::new(),
            fail_at: self.fail_at,
            hook: self.stage_hook.take(),
            events: self.event_hook.take(),
        };
        // The writer first: an unusable image directory fails before the target is touched.
        let writer = ImageWriter::create(&self.images_dir).map_err(|source| DumpError::Image {
            pid,
            what: format!("create {}", self.images_dir.display()),
            source,
        })?;
        let tree = match self.freezer.as_deref_mut() {
            Some(f) => SeizedTree::seize_frozen(pid, f)?,
            None => SeizedTree::seize(pid)?,
        };
        let frozen_at = Instant::now();
        let identity = tree.root().identity();
        let dumped = self
            .dump_seized(&tree, writer, &mut progress)
            .and_then(|done| {
                progress.event(DumpEvent::Committed { root: Pid(pid) })?;
                Ok(done)
            });
        match dumped {
            Ok((image_dir, pages, bytes, repaired)) => {
                let release = Instant::now();
                // Frozen time ends when the task runs again or is killed; waiting for its pid to be
                // freed (its parent's reaping) is release time, not frozen time.
                let frozen = if self.leave_running {
                    // Connections leave repair mode before the tree runs again.
                    drop(repaired);
                    self.refreeze(pid);
                    // A job-control-stopped task re-enters its stop on detach (the kernel re-arms it).
                    tree.detach()?;
                    frozen_at.elapsed()
                } else {
                    let frozen = frozen_at.elapsed();
                    // The dumper's copies keep the sockets (in repair mode) open through the kill; closing
                    // them afterwards drops the connections without a word to the peers. If the kill
                    // fails, dropping them switches repair mode off.
                    tree.kill(KILL_TIMEOUT, self.wait_reaped)?;
                    repaired.close_silently();
                    frozen
                };
                Ok(DumpStats {
                    frozen,
                    release: release.elapsed(),
                    total: t0.elapsed(),
                    pages_written: pages,
                    bytes_written: bytes,
                    phases: progress.phases,
                    image_dir,
                })
            }
            Err(err) => {
                let stage = progress.current;
                // Dropping the task detaches it; the writer was dropped inside dump_seized.
                self.refreeze(pid);
                let detached = tree.detach();
                if is_dead(&identity) {
                    log::warn!("pid {pid}: died during the dump ({stage:?}): {err}");
                    return Err(DumpError::ProcessGone { pid, stage });
                }
                if let Err(e) = detached {
                    log::error!("pid {pid}: cannot detach after a failed dump: {e}");
                }
                Err(err)
            }
        }
    }

    /// Before a frozen tree is let go: the freezer takes it back if it was paused.
    fn refreeze(&mut self, pid: u32) {
        if let Some(f) = self.freezer.as_deref_mut() {
            if let Err(e) = f.before_detach() {
                log::warn!("pid {pid}: freezing the tree again before letting it go: {e}");
            }
        }
    }

    /// Collects and writes everything; returns the committed image path, pages and bytes written, and the
    /// TCP sockets left in repair mode (on error they are dropped here, which switches repair off).
    fn dump_seized(
        &self,
        tree: &SeizedTree,
        mut writer: ImageWriter,
        progress: &mut Progress,
    ) -> Result<(PathBuf, u64, u64, files::RepairedSockets)> {
        let root = tree.root().pid();
        progress.done(DumpStage::Seize)?;
        progress.event(DumpEvent::Frozen { root: Pid(root) })?;
        // A container's mount tree and namespaces first: an unrestorable mount refuses the dump early.
        let pids: Vec<Pid> = tree.tasks.iter().map(|t| Pid(t.task.pid())).collect();
        let container = crate::container::dump_container(&pids, &self.container, &mut writer)?;
        let mut table = FileTable::new();
        // One for the whole tree: fds shared between processes share one record.
        let mut file_descs =
            files::FileCollector::new(self.shell_job).tcp_established(self.tcp_established);
        file_descs.external_pipes(container.is_some() || self.external_pipes);
        file_descs.tree_pids(
            tree.tasks
                .iter()
                .map(|t| t.task.pid())
                .chain(tree.zombies.iter().map(|z| z.pid.0)),
        );
        let mut entries = Vec::with_capacity(tree.tasks.len());
        let mut shmem: Vec<ShmemObject> = Vec::new();
        let mut bytes = 0;
        for t in &tree.tasks {
            let (entry, objects, task_bytes) = self.dump_task(
                &t.task,
                t.ppid,
                &mut writer,
                &mut table,
                &mut file_descs,
                &shmem,
                progress,
            )?;
            entries.push(entry);
            shmem.extend(objects);
            bytes += task_bytes;
        }
        let err = |file: &str| {
            let what = file.to_string();
            move |source| DumpError::Image {
                pid: root,
                what,
                source,
            }
        };
        file_descs.finish(root, &mut writer)?;
        writer
            .write_records(names::PSTREE, &entries)
            .map_err(err(names::PSTREE))?;
        writer
            .write_records(names::REG_FILES, table.entries())
            .map_err(err(names::REG_FILES))?;
        writer
            .write_records(FILE_IDENTITY, &[table.identity(self.file_check)?])
            .map_err(err(FILE_IDENTITY))?;
        writer
            .write_records(names::SHMEM, &shmem)
            .map_err(err(names::SHMEM))?;
        if !tree.zombies.is_empty() {
            writer
                .write_records(names::ZOMBIES, &tree.zombies)
                .map_err(err(names::ZOMBIES))?;
        }
        progress.done(DumpStage::Records)?;

        // --- Commit (an injected failure fires just before it).
        progress.fail_point(DumpStage::Commit)?;
        let info = crate::inventory::info(Pid(root))?;
        let dir = writer.commit(info).map_err(err("commit"))?;
        progress.record(DumpStage::Commit);
        Ok((
            dir,
            bytes / crate::PAGE_SIZE,
            bytes,
            file_descs.take_repaired(),
        ))
    }

    /// Collects one seized process and writes its own records and page store; returns its tree entry,
    /// the shared-memory objects it introduced (those in `known` are not dumped again) and the bytes of
    /// page data written.
    // The tree-wide state (files by path, file descriptions, shared memory) is threaded through explicitly.
    #[allow(clippy::too_many_arguments)]
    fn dump_task(
        &self,
        task: &SeizedTask,
        ppid: Option<u32>,
        writer: &mut ImageWriter,
        table: &mut FileTable,
        file_descs: &mut files::FileCollector,
        known: &[ShmemObject],
        progress: &mut Progress,
    ) -> Result<(PsTreeEntry, Vec<ShmemObject>, u64)> {
        let pid = task.pid();

        // --- Registers of every thread: before anything is injected (rseq state, restart state).
        let mem_file = mem::open_mem(pid)?;
        let mut thread_regs = Vec::new();
        for tid in task.tids() {
            thread_regs.push(threads::read_regs(pid, tid, &mem_file)?);
        }
        let shared_pending = regs::peek_pending(pid, true)?;
        progress.done(DumpStage::Registers)?;

        // --- In-process state, before the VMA snapshot (the scratch mapping is gone again by then).
        let remote = remote_state(pid)?;
        let mut thread_remote = vec![threads::ThreadRemote {
            sigaltstack: remote.sigaltstack,
            clear_child_tid: remote.clear_child_tid,
        }];
        for t in thread_regs.iter().skip(1) {
            thread_remote.push(threads::remote(pid, t.tid)?);
        }
        progress.done(DumpStage::Remote)?;

        // --- /proc state.
        let stat = seize::read_stat(pid)?;
        // A session led inside the tree loses its controlling terminal at restore (the leader calls setsid
        // there): refuse rather than restore a session whose /dev/tty is gone. A shell job's session is
        // led from outside and takes the restorer's terminal (--shell-job).
        if stat.session == pid && stat.tty_nr != 0 {
            let dev = u64::from(stat.tty_nr);
            return Err(DumpError::ControllingTerminal {
                pid,
                major: libc::major(dev),
                minor: libc::minor(dev),
            });
        }
        let status_text = proc::read_string(pid, "status")?;
        let status = proc::status::parse(&status_text).map_err(|reason| DumpError::ProcParse {
            pid,
            file: "status",
            reason,
        })?;
        let comm = proc::read_string(pid, "comm")?
            .trim_end_matches('\n')
            .to_string();
        let personality = proc::parse_personality(&proc::read_string(pid, "personality")?).ok_or(
            DumpError::ProcParse {
                pid,
                file: "personality",
                reason: "not a hex number".into(),
            },
        )?;
        let rlimits =
            proc::limits::parse(&proc::read_string(pid, "limits")?).map_err(|reason| {
                DumpError::ProcParse {
                    pid,
                    file: "limits",
                    reason,
                }
            })?;
        let auxv = proc::parse_auxv(&proc::read_bytes(pid, "auxv")?);
        let exe = files::dump_exe(pid, table)?;
        let cwd = proc::read_link(pid, "cwd")?;
        let root = proc::read_link(pid, "root")?;
        let mut thread_comms = vec![comm.clone()];
        let mut thread_ns_tids = vec![status.ns_pids.clone()];
        for t in thread_regs.iter().skip(1) {
            thread_ns_tids.push(threads::check_creds(pid, t.tid, &status.creds)?);
            thread_comms.push(threads::comm(pid, t.tid)?);
        }
        progress.done(DumpStage::ProcState)?;

        // --- Files.
        let fds = file_descs.dump_task(pid, table)?;
        progress.done(DumpStage::Files)?;

        // --- Memory.
        let vmas = mem::collect_vmas(pid, table)?;
        let walker = PageWalker::open(pid).map_err(|source| DumpError::ProcRead {
            pid,
            path: proc::path(pid, "pagemap"),
            source,
        })?;
        let chunks = mem::plan_private_pages(pid, &vmas, &walker)?;
        let store_name = names::task_pages(Pid(pid));
        let image_err = |what: String| move |source| DumpError::Image { pid, what, source };
        let store = writer
            .page_store(&store_name)
            .map_err(image_err(format!("page store {store_name}")))?;
        let pool = mem::copy_pool(self.page_copy.threads)?;
        let private_bytes = if self.page_copy.method == mem::CopyMethod::Parasite {
            let fallback = (&mem_file, &pool);
            let threads = self.page_copy.threads;
            crate::parasite_pages::copy_chunks(pid, &vmas, &chunks, &store, threads, fallback)?
        } else {
            let method = self.page_copy.method;
            mem::copy_chunks(pid, &mem_file, &chunks, &store, &pool, method)?
        };
        writer
            .finish_page_store(store)
            .map_err(image_err(format!("page store {store_name}")))?;
        // An object shared with a process dumped before is stored once (its first dumper owns it).
        let new_shmem: Vec<CollectedVma> = vmas
            .iter()
            .filter(|v| match v.vma.backing {
                VmaBacking::Shmem(id) => !known.iter().any(|o| o.id == id),
                _ => true,
            })
            .cloned()
            .collect();
        let (shmem, shmem_bytes) = mem::dump_shmem(pid, &new_shmem, writer)?;
        progress.done(DumpStage::Memory)?;

        // --- Records.
        let brk = remote
            .brk
            .unwrap_or_else(|| heap_end(&vmas, stat.start_brk));
        let layout = MmLayout {
            start_code: stat.start_code,
            end_code: stat.end_code,
            start_data: stat.start_data,
            end_data: stat.end_data,
            start_brk: stat.start_brk,
            brk,
            start_stack: stat.start_stack,
            arg_start: stat.arg_start,
            arg_end: stat.arg_end,
            env_start: stat.env_start,
            env_end: stat.env_end,
        };
        let creds = Creds {
            securebits: remote.securebits,
            ..status.creds.clone()
        };
        let collected = Collected {
            core: TaskCore {
                pid: Pid(pid),
                comm: comm.clone(),
                personality,
                umask: status.umask,
                rlimits,
                sigactions: remote.sigactions.clone(),
                itimers: remote.itimers,
                creds,
                dumpable: remote.dumpable,
                pdeathsig: remote.pdeathsig,
                child_subreaper: remote.child_subreaper,
                shared_pending: shared_pending.clone(),
                stopped: task.was_stopped(),
                cwd,
                root,
                posix_timers: remote.posix_timers.clone(),
            },
            threads: thread_regs
                .into_iter()
                .zip(thread_remote)
                .zip(thread_comms)
                .zip(thread_ns_tids)
                .map(|(((r, rem), c), ns)| threads::core(r, rem, c, ns))
                .collect(),
            pstree: PsTreeEntry {
                pid: Pid(pid),
                ppid: ppid.map(Pid),
                pgid: Pid(stat.pgrp),
                sid: Pid(stat.session),
                threads: task.tids().into_iter().map(Tid).collect(),
                ns_pids: status.ns_pids.iter().copied().map(Pid).collect(),
            },
            mm: Mm {
                layout,
                auxv,
                exe,
                vmas: vmas.iter().map(|v| v.vma.clone()).collect(),
            },
            fds,
            vmas,
        };
        write_records(pid, writer, &collected)?;
        Ok((collected.pstree, shmem, private_bytes + shmem_bytes))
    }
}

/// Writes the records of one process (tree-wide files are written by the caller).
fn write_records(pid: u32, writer: &mut ImageWriter, c: &Collected) -> Result<()> {
    let err = |file: String| {
        move |source| DumpError::Image {
            pid,
            what: file,
            source,
        }
    };
    let p = Pid(pid);
    writer
        .write_records(&names::core(p), std::slice::from_ref(&c.core))
        .map_err(err(names::core(p)))?;
    for t in &c.threads {
        writer
            .write_records(&names::thread(t.tid), std::slice::from_ref(t))
            .map_err(err(names::thread(t.tid)))?;
    }
    writer
        .write_records(&names::mm(p), std::slice::from_ref(&c.mm))
        .map_err(err(names::mm(p)))?;
    writer
        .write_records(&names::fds(p), &c.fds)
        .map_err(err(names::fds(p)))?;
    log::debug!("pid {pid}: records written ({} vmas)", c.vmas.len());
    Ok(())
}

/// The program break when the task could not be asked: the end of `[heap]`, else where it starts.
fn heap_end(vmas: &[CollectedVma], start_brk: u64) -> u64 {
    vmas.iter()
        .find(|v| v.vma.name == "[heap]")
        .map(|v| v.vma.end)
        .unwrap_or(start_brk)
}

/// State only the task itself can tell, asked with injected syscalls.
#[derive(Debug, Default)]
struct RemoteState {
    sigactions: Option<Vec<SigAction>>,
    itimers: Option<[ITimer; 3]>,
    brk: Option<u64>,
    sigaltstack: Option<SigAltStack>,
    clear_child_tid: Option<u64>,
    dumpable: Option<u32>,
    pdeathsig: Option<u32>,
    child_subreaper: Option<bool>,
    securebits: Option<u32>,
    posix_timers: Vec<PosixTimer>,
}

fn remote_state(pid: u32) -> Result<RemoteState> {
    use dormant_parasite::{query, RemoteTask, Tid as RTid};
    let perr = |what: &'static str| {
        move |e: dormant_parasite::ParasiteError| DumpError::Parasite {
            pid,
            what,
            reason: e.to_string(),
        }
    };
    let mut task = RemoteTask::new(RTid(pid as i32)).map_err(perr("prepare injection"))?;
    let snap = query::snapshot(&mut task).map_err(perr("task snapshot"))?;
    let timer_text = proc::read_string(pid, "timers")?;
    let entries = crate::timers::parse(&timer_text).map_err(|reason| DumpError::ProcParse {
        pid,
        file: "timers",
        reason,
    })?;
    let states = if entries.is_empty() {
        Vec::new()
    } else {
        let ids: Vec<i32> = entries.iter().map(|e| e.id).collect();
        let mut scratch = task.scratch(4096).map_err(perr("timer scratch"))?;
        let states = query::posix_timers(&mut scratch, &ids).map_err(perr("posix timers"))?;
        scratch.close().map_err(perr("timer scratch"))?;
        states
    };
    let posix_timers = entries
        .iter()
        .zip(&states)
        .map(|(e, s)| PosixTimer {
            id: e.id,
            clock: e.clock,
            notify: e.notify,
            signo: e.signo,
            value: e.value,
            notify_tid: e.notify_tid,
            interval_ns: s.interval_ns,
            value_ns: s.value_ns,
            overrun: s.overrun,
        })
        .collect();
    let us = |t: query::TimeVal| (t.sec.max(0) as u64) * 1_000_000 + t.usec.max(0) as u64;
    let it = |v: query::ITimerVal| ITimer {
        interval_us: us(v.interval),
        value_us: us(v.value),
    };
    Ok(RemoteState {
        sigactions: Some(
            snap.sigactions
                .iter()
                .map(|a| SigAction {
                    handler: a.handler,
                    flags: a.flags,
                    restorer: a.restorer,
                    mask: a.mask,
                })
                .collect(),
        ),
        itimers: Some([
            it(snap.itimers.real),
            it(snap.itimers.virtual_),
            it(snap.itimers.prof),
        ]),
        brk: Some(snap.brk),
        sigaltstack: Some(SigAltStack {
            sp: snap.altstack.sp,
            flags: snap.altstack.flags as u32,
            size: snap.altstack.size,
        }),
        clear_child_tid: snap.tid_address,
        dumpable: Some(snap.dumpable as u32),
        pdeathsig: Some(snap.pdeathsig as u32),
        child_subreaper: Some(snap.child_subreaper),
        securebits: Some(snap.securebits),
        posix_timers,
    })
}
