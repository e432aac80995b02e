//! Dump orchestration: seize → collect every task ([`crate::task`]) → write the tree-wide records → commit →
//! kill or resume.
//!
//! Until the image is committed, any failure drops the image writer (its temporary directory goes away) and
//! detaches the target, which continues exactly as before: nothing injected stays, no signal is lost.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dormant_image::records::{names, FileCheck, Pid, ShmemObject, FILE_IDENTITY};
use dormant_image::ImageWriter;

use crate::container::ContainerOptions;
use crate::error::{DumpError, Result};
use crate::external::External;
use crate::files::{self, FileCollector, FileTable};
use crate::progress::{Progress, StageHook};
use crate::seize::{self, ProcessIdentity};
use crate::stage::DumpStage;
use crate::task::pages::walk::PAGE_SIZE;
use crate::task::{self, pages::PageCopy, TreeState};
use crate::tree::SeizedTree;

/// How long to wait for a killed target's pid to become free.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

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

/// What a dump did and how long it took.
#[derive(Debug, Clone, Default)]
pub struct DumpStats {
    /// From the moment the target stopped until it was killed or let go.
    pub frozen: Duration,
    /// The whole `run()`.
    pub total: Duration,
    /// Private and shared page data written, in pages of [`PAGE_SIZE`] and in bytes.
    pub pages_written: u64,
    pub bytes_written: u64,
    /// Duration of each completed stage, in order.
    pub phases: Vec<(DumpStage, Duration)>,
    /// Killing (and waiting for the pid to be freed) or detaching the target after the commit.
    pub release: Duration,
    /// Where the image was committed.
    pub image_dir: PathBuf,
}

/// A configured dump of one process tree. See [`Dump::builder`].
pub struct Dump {
    pid: Pid,
    images_dir: PathBuf,
    leave_running: bool,
    shell_job: bool,
    tcp_established: bool,
    page_copy: PageCopy,
    externals: Vec<External>,
    root: Option<PathBuf>,
    file_check: FileCheck,
    freezer: Option<Box<dyn crate::tree::Freezer>>,
    event_hook: Option<EventHook>,
    wait_reaped: bool,
    fail_at: Option<DumpStage>,
    stage_hook: Option<StageHook>,
    skip_restore_check: bool,
}

impl std::fmt::Debug for Dump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dump")
            .field("pid", &self.pid)
            .field("images_dir", &self.images_dir)
            .field("leave_running", &self.leave_running)
            .field("shell_job", &self.shell_job)
            .field("tcp_established", &self.tcp_established)
            .field("page_copy", &self.page_copy)
            .field("externals", &self.externals)
            .field("root", &self.root)
            .field("file_check", &self.file_check)
            .field("freezer", &self.freezer.is_some())
            .field("fail_at", &self.fail_at)
            .field("skip_restore_check", &self.skip_restore_check)
            .finish_non_exhaustive()
    }
}

/// Options of a [`Dump`].
#[derive(Debug)]
pub struct DumpBuilder {
    inner: Dump,
}

impl Dump {
    /// Starts configuring a dump of process `pid` and its descendants.
    pub fn builder(pid: Pid) -> DumpBuilder {
        DumpBuilder {
            inner: Dump {
                pid,
                images_dir: PathBuf::new(),
                leave_running: false,
                shell_job: false,
                tcp_established: false,
                page_copy: PageCopy::default(),
                externals: Vec::new(),
                root: None,
                file_check: FileCheck::DevIno,
                freezer: None,
                event_hook: None,
                wait_reaped: true,
                fail_at: None,
                stage_hook: None,
                skip_restore_check: false,
            },
        }
    }
}

impl DumpBuilder {
    /// Where the image appears (must not exist, be empty, or hold an image, which is replaced).
    pub fn images_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.inner.images_dir = dir.into();
        self
    }

    /// Let the process continue after the dump instead of killing it.
    pub fn leave_running(mut self, yes: bool) -> Self {
        self.inner.leave_running = yes;
        self
    }

    /// Accept a terminal on fds 0-2 (the restored process gets the restorer's terminal).
    pub fn shell_job(mut self, yes: bool) -> Self {
        self.inner.shell_job = yes;
        self
    }

    /// Dump established TCP connections with `TCP_REPAIR` (CRIU's `--tcp-established`) instead of
    /// refusing them. When the dump kills the target, its connections are closed in repair mode (the peer
    /// is told nothing) so that a restore can take them over.
    pub fn tcp_established(mut self, yes: bool) -> Self {
        self.inner.tcp_established = yes;
        self
    }

    /// How page data is copied out of the target (method and threads); the default is the fastest here.
    pub fn page_copy(mut self, copy: PageCopy) -> Self {
        self.inner.page_copy = copy;
        self
    }

    /// What to record as external instead of refusing it (see [`External`]).
    pub fn externals(mut self, externals: impl IntoIterator<Item = External>) -> Self {
        self.inner.externals = externals.into_iter().collect();
        self
    }

    /// `--root DIR`: the container's root filesystem as a directory of the dumper's mount namespace (CRIU's
    /// meaning). The dump fails, naming both, unless it is the root of the tree's mount namespace (same
    /// device and inode as `/proc/PID/root`); it is recorded as the default `--root` of the restore.
    pub fn root(mut self, dir: Option<PathBuf>) -> Self {
        self.inner.root = dir;
        self
    }

    /// Never inject the parasite blob for page data (`--no-parasite`), whatever [`Self::page_copy`]
    /// says: pages go through process_vm_readv. The single remote syscalls for in-process state are
    /// still used.
    pub fn no_parasite(mut self, yes: bool) -> Self {
        if yes && self.inner.page_copy.method == task::pages::CopyMethod::Parasite {
            self.inner.page_copy.method = task::pages::CopyMethod::VmReadv;
        }
        self
    }

    /// How restore must recognise the files behind mappings and executables (recorded in the image):
    /// by device and inode (the default), or by content (size, mtime, build-id or crc32) for a restore in
    /// another VM whose root filesystem is the same image on other devices.
    pub fn file_check(mut self, check: FileCheck) -> Self {
        self.inner.file_check = check;
        self
    }

    /// The tree is held still by a cgroup freezer (kata-agent's containers): it is seized in two passes
    /// around [`crate::tree::Freezer::seized`], and [`crate::tree::Freezer::before_detach`] runs before
    /// the tree is let go (see [`crate::tree::SeizedTree::seize_frozen`]).
    pub fn freezer(mut self, freezer: Box<dyn crate::tree::Freezer>) -> Self {
        self.inner.freezer = Some(freezer);
        self
    }

    /// Called at each [`DumpEvent`] on the dumping thread.
    pub fn on_event(mut self, hook: EventHook) -> Self {
        self.inner.event_hook = Some(hook);
        self
    }

    /// After the kill, wait until the killed pids are free (reaped by their parents), so that a restore
    /// right after can take them (the default). Without it the dump returns once they are dead, as CRIU
    /// does; a container runtime reaps its own processes.
    pub fn wait_reaped(mut self, yes: bool) -> Self {
        self.inner.wait_reaped = yes;
        self
    }

    /// Test hook: fail the dump right after `stage` completes (for `Commit`: just before committing).
    #[doc(hidden)]
    pub fn fail_at(mut self, stage: DumpStage) -> Self {
        self.inner.fail_at = Some(stage);
        self
    }

    /// Test hook: called on the dumping thread after each stage completes.
    #[doc(hidden)]
    pub fn on_stage(mut self, hook: impl FnMut(DumpStage, Pid) + 'static) -> Self {
        self.inner.stage_hook = Some(Box::new(hook));
        self
    }

    /// Test hook: do not refuse what the restore could not rebuild, and write the image a dump without
    /// that check wrote, so a test can show the restore refuses it with the dump's own message.
    #[doc(hidden)]
    pub fn skip_restore_check(mut self) -> Self {
        self.inner.skip_restore_check = true;
        self
    }

    /// Finishes the options; fails when no images directory was given or the pid cannot be dumped.
    pub fn build(self) -> Result<Dump> {
        let pid = self.inner.pid.0;
        if self.inner.images_dir.as_os_str().is_empty() {
            return Err(DumpError::Config {
                pid,
                reason: "no images directory given",
            });
        }
        if pid == 0 || pid == std::process::id() {
            return Err(DumpError::Config {
                pid,
                reason: "cannot dump pid 0 or the dumping process itself",
            });
        }
        Ok(self.inner)
    }
}

/// Whether a seized process has died (zombie, reaped, or pid reused).
fn is_dead(identity: &ProcessIdentity) -> bool {
    match seize::read_stat(identity.pid) {
        Ok(st) => st.start_time != identity.start_time || st.state == 'Z' || st.state == 'X',
        Err(_) => true,
    }
}

/// What [`Dump::dump_seized`] committed.
struct Committed {
    image_dir: PathBuf,
    bytes: u64,
    /// TCP sockets left in repair mode, see [`files::RepairedSockets`].
    repaired: files::RepairedSockets,
}

impl Dump {
    /// Runs the dump. On success the image is committed and the target killed (its pid free) or, with
    /// `leave_running`, resumed. On failure the target is resumed untouched and no image is left.
    pub fn run(mut self) -> Result<DumpStats> {
        let t0 = Instant::now();
        let pid = self.pid.0;
        let mut progress = Progress::new(pid, t0, self.fail_at, self.stage_hook.take());
        // The writer first: an unusable image directory fails before the target is touched.
        let writer = ImageWriter::create(&self.images_dir).map_err(|source| DumpError::Image {
            pid,
            what: format!("create {}", self.images_dir.display()),
            source,
        })?;
        // What dormant itself lacks fails the dump before the target is touched.
        crate::caps::check_dumper(pid)?;
        let tree = match self.freezer.as_deref_mut() {
            Some(f) => SeizedTree::seize_frozen(pid, f)?,
            None => SeizedTree::seize(pid)?,
        };
        let frozen_at = Instant::now();
        let identity = tree.root().identity();
        let dumped = match self.event(DumpEvent::Frozen { root: Pid(pid) }) {
            Ok(()) => self.dump_seized(&tree, writer, &mut progress),
            Err(e) => Err(e),
        };
        let dumped = dumped.and_then(|c| {
            self.event(DumpEvent::Committed { root: Pid(pid) })?;
            Ok(c)
        });
        let committed = match dumped {
            Ok(c) => c,
            Err(err) => {
                let stage = progress.current();
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
                return Err(err);
            }
        };
        let release = Instant::now();
        // Frozen time ends when the task runs again or is killed; waiting for its pid to be freed (its
        // parent's reaping) is release time, not frozen time.
        let frozen = if self.leave_running {
            // Connections leave repair mode before the tree runs again.
            drop(committed.repaired);
            self.refreeze(pid);
            // A job-control-stopped task re-enters its stop on detach (the kernel re-arms it).
            tree.detach()?;
            frozen_at.elapsed()
        } else {
            let frozen = frozen_at.elapsed();
            // The dumper's copies keep the sockets (in repair mode) open through the kill; closing them
            // afterwards drops the connections without a word to the peers. If the kill fails, dropping
            // them switches repair mode off.
            tree.kill(KILL_TIMEOUT, self.wait_reaped)?;
            committed.repaired.close_silently();
            frozen
        };
        Ok(DumpStats {
            frozen,
            release: release.elapsed(),
            total: t0.elapsed(),
            pages_written: committed.bytes / PAGE_SIZE,
            bytes_written: committed.bytes,
            phases: progress.into_phases(),
            image_dir: committed.image_dir,
        })
    }

    /// Runs the caller's hook for `event`.
    fn event(&mut self, event: DumpEvent) -> Result<()> {
        let Some(hook) = self.event_hook.as_mut() else {
            return Ok(());
        };
        hook(event).map_err(|source| DumpError::Hook {
            pid: self.pid.0,
            event: match event {
                DumpEvent::Frozen { .. } => "after freezing the tree",
                DumpEvent::Committed { .. } => "after committing the image",
            },
            source,
        })
    }

    /// Before a frozen tree is let go: the freezer takes it back if it was paused.
    fn refreeze(&mut self, pid: u32) {
        if let Some(f) = self.freezer.as_deref_mut() {
            if let Err(e) = f.before_detach() {
                log::warn!("pid {pid}: freezing the tree again before letting it go: {e}");
            }
        }
    }

    /// The fd collector for this dump's tree; `container`: the tree is a container.
    fn file_collector(&self, tree: &SeizedTree, container: bool) -> FileCollector {
        let mut files = FileCollector::new(self.shell_job).tcp_established(self.tcp_established);
        files.external_pipes(container || self.externals.contains(&External::Pipes));
        files.tree_pids(
            tree.tasks
                .iter()
                .map(|t| t.task.pid())
                .chain(tree.zombies.iter().map(|z| z.pid.0)),
        );
        files.proc_targets(
            tree.tasks.iter().flat_map(|t| {
                let pid = t.task.pid();
                t.task.tids().into_iter().map(move |tid| (tid, pid))
            }),
            tree.zombies.iter().map(|z| z.pid.0),
            container.then_some(
                "a proc file in a container dump is not supported (the container's proc mounts are \
                 replaced for the restored pid namespace only right before release)",
            ),
        );
        files
    }

    /// Collects and writes everything and commits the image; on error the writer is dropped here (and
    /// with it the temporary directory), and so are the repaired sockets, which switches repair off.
    fn dump_seized(
        &self,
        tree: &SeizedTree,
        mut writer: ImageWriter,
        progress: &mut Progress,
    ) -> Result<Committed> {
        let root = tree.root().pid();
        // Before anything is injected: what the restore could not rebuild is refused now.
        let facts = crate::restorable::read_facts(tree)?;
        if !self.skip_restore_check {
            crate::restorable::check(&facts)?;
        }
        // Always checked: an image records only the sharing restore rebuilds.
        let shared_tables = crate::restorable::shared_tables(tree)?;
        progress.done(DumpStage::Seize)?;
        // A container's mount tree and namespaces first: an unrestorable mount refuses the dump early.
        let pids: Vec<Pid> = tree.tasks.iter().map(|t| Pid(t.task.pid())).collect();
        let opts = ContainerOptions {
            externals: self.externals.clone(),
            root: self.root.clone(),
        };
        let container = crate::container::dump_container(&pids, &opts, &mut writer)?;
        if container.is_none() {
            // Outside a container the namespaces are only recorded (they are the restorer's), so the
            // restore can check them as the dump did.
            crate::ns::dump_namespaces(&pids, &mut writer)?;
        }
        // Mount namespaces of tasks in a plain tree other than its root's (a container's are refused).
        let nested = if container.is_none() {
            crate::nested_mounts::dump(&pids)?
        } else {
            Vec::new()
        };
        crate::nested_mounts::refuse_shared_fd_table(&nested, &shared_tables)?;
        let mut table = FileTable::new();
        // One for the whole tree: fds shared between processes share one record.
        let mut file_descs = self.file_collector(tree, container.is_some());
        let mut entries = Vec::with_capacity(tree.tasks.len());
        let mut shmem: Vec<ShmemObject> = Vec::new();
        let mut bytes = 0;
        let mut waited_stops = std::collections::BTreeMap::new();
        for t in &tree.tasks {
            let mut state = TreeState {
                writer: &mut writer,
                table: &mut table,
                files: &mut file_descs,
                known_shmem: &shmem,
                page_copy: self.page_copy,
                waited_stops: &mut waited_stops,
            };
            let stopped_children: Vec<u32> = tree
                .tasks
                .iter()
                .filter(|c| c.ppid == Some(t.task.pid()) && c.task.was_stopped())
                .map(|c| c.task.pid())
                .collect();
            let dumped = task::dump(&t.task, t.ppid, &stopped_children, &mut state, progress)?;
            file_descs.store_contents(t.task.pid(), &mut writer)?;
            entries.push(dumped.pstree);
            shmem.extend(dumped.shmem);
            bytes += dumped.bytes;
        }
        let err = |file: &str| {
            let what = file.to_string();
            move |source| DumpError::Image {
                pid: root,
                what,
                source,
            }
        };
        crate::nested_mounts::finish(nested, file_descs.reg_mounts(), root, &mut writer)?;
        file_descs.finish(root, &mut writer)?;
        let deleted = file_descs.deleted_files(&table, &mut writer)?;
        if !deleted.is_empty() {
            writer
                .write_records(names::DELETED_FILES, &deleted)
                .map_err(err(names::DELETED_FILES))?;
        }
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
        if !shared_tables.is_empty() {
            writer
                .write_records(names::SHARED_TABLES, &shared_tables)
                .map_err(err(names::SHARED_TABLES))?;
        }
        progress.done(DumpStage::Records)?;

        // --- Commit (an injected failure fires just before it).
        progress.fail_point(DumpStage::Commit)?;
        let info = crate::inventory::info(Pid(root))?;
        let image_dir = writer.commit(info).map_err(err("commit"))?;
        progress.record(DumpStage::Commit);
        Ok(Committed {
            image_dir,
            bytes,
            repaired: file_descs.take_repaired(),
        })
    }
}
