//! Checkpointing a container: [`checkpoint`] in the agent, [`in_helper`] in the helper process.
//!
//! In the helper: the container's cgroup is frozen (unless the runtime paused it), every process of the
//! cgroup must belong to the init's tree (an exec'd process the agent started beside the init would be
//! lost), the mount policy names the external mounts, and the engine dumps the tree from the agent's
//! mount namespace with content-identity file checks (so the image restores in a new VM), seizing the
//! frozen tree and thawing it once seized. A failure leaves the container as it was: running, or paused.

use std::collections::BTreeSet;
use std::os::unix::fs::DirBuilderExt;

use dormant_engine::{Dump, DumpError, Pid};
use dormant_image::records::FileCheck;
use dormant_mounts::MountTree;

use crate::container::{CheckpointOptions, CheckpointReport, Container, KataPaths};
use crate::error::{FailureKind, GlueError, Operation};
use crate::freezer::{CgroupFreezer, ThawGuard};
use crate::helper::{self, Answer, Failure, Request};
use crate::policy::MountPolicy;

/// Checkpoints `container` into `options.image_dir(..)`. Blocking (the work runs in a helper process);
/// call it from a blocking thread of an async agent. On failure the container runs on as before (or stays
/// paused).
pub fn checkpoint(
    container: &Container,
    options: &CheckpointOptions,
    paths: &KataPaths,
) -> Result<CheckpointReport, GlueError> {
    let id = &container.id;
    // What to put back should the helper die midway (the helper itself puts it back on every error).
    let freezer = CgroupFreezer::find(&container.cgroups).map_err(|source| GlueError::Io {
        id: id.clone(),
        what: "opening the freezer of",
        path: container.cgroups.first().cloned().unwrap_or_default(),
        source,
    })?;
    let was_paused = match &freezer {
        Some(f) => f.is_frozen().map_err(|source| GlueError::Freezer {
            id: id.clone(),
            dir: f.dir().to_owned(),
            what: "reading its state",
            source,
        })?,
        None => false,
    };
    let request = Request::Checkpoint {
        container: container.clone(),
        options: options.clone(),
        paths: paths.clone(),
    };
    let answer = helper::run(id, Operation::Checkpoint, &request, [None, None, None]);
    if let (Err(GlueError::HelperDied { .. }), Some(f)) = (&answer, &freezer) {
        let back = if was_paused { f.freeze() } else { f.thaw() };
        if let Err(e) = back {
            log::error!("container {id}: putting the freezer back after the helper died: {e}");
        }
    }
    match answer? {
        Answer::Checkpointed(report) => Ok(report),
        Answer::Failed(f) => Err(GlueError::Failed {
            id: id.clone(),
            op: Operation::Checkpoint,
            kind: f.kind,
            message: f.message,
        }),
        other => Err(GlueError::Failed {
            id: id.clone(),
            op: Operation::Checkpoint,
            kind: FailureKind::Internal,
            message: format!("unexpected answer {other:?}"),
        }),
    }
}

/// How a dump failure is reported.
fn dump_failure(e: DumpError) -> Failure {
    use DumpError::*;
    let kind = match &e {
        NoSuchProcess { .. } | Zombie { .. } => FailureKind::NotFound,
        UnsupportedFd { .. }
        | UnsupportedVma { .. }
        | DeletedFile { .. }
        | ControllingTerminal { .. }
        | Mounts { .. }
        | WrongRoot { .. }
        | Unrestorable(_)
        | ForChildren { .. }
        | MissingCapability { .. }
        | SeizeDenied { .. }
        | PendingSignal { .. } => FailureKind::FailedPrecondition,
        _ => FailureKind::Internal,
    };
    Failure::new(FailureKind::or_out_of_space(&e, kind), e)
}

/// The pids of the tree of `root` (followed through `/proc/PID/task/TID/children`; the tree is frozen).
fn tree_pids(root: u32) -> BTreeSet<u32> {
    let mut seen = BTreeSet::from([root]);
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for c in children.split_whitespace().filter_map(|w| w.parse().ok()) {
                if seen.insert(c) {
                    todo.push(c);
                }
            }
        }
    }
    seen
}

/// The checkpoint itself, in the helper process (in the agent's namespaces).
pub(crate) fn in_helper(
    c: &Container,
    options: &CheckpointOptions,
    paths: &KataPaths,
) -> Result<CheckpointReport, Failure> {
    let id = &c.id;
    let image_dir = options.image_dir(id, paths);
    if let Some(parent) = image_dir.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|source| GlueError::Io {
                id: id.clone(),
                what: "creating the checkpoint directory",
                path: parent.to_owned(),
                source,
            })?;
    }
    let agent_mounts = MountTree::read(None)
        .map_err(|e| Failure::new(FailureKind::Internal, format!("the agent's mounts: {e}")))?;
    let policy = MountPolicy::from_spec(&c.spec, &c.rootfs, &paths.shared);
    let externals = policy.dump_externals(&agent_mounts);
    log::info!("container {id}: external mounts {externals:?}");

    let freezer_err = |dir: &std::path::Path, what| {
        let dir = dir.to_owned();
        move |source| GlueError::Freezer {
            id: id.clone(),
            dir,
            what,
            source,
        }
    };
    let freezer = CgroupFreezer::find(&c.cgroups).map_err(|source| GlueError::Io {
        id: id.clone(),
        what: "opening the freezer of",
        path: c.cgroups.first().cloned().unwrap_or_default(),
        source,
    })?;
    let mut dump = Dump::builder(Pid(c.init_pid))
        .images_dir(&image_dir)
        .leave_running(options.leave_running)
        .tcp_established(options.tcp_established)
        .externals(externals)
        .root(Some(c.rootfs.clone()))
        .file_check(FileCheck::Content);
    let mut was_paused = false;
    match freezer {
        Some(f) => {
            let dir = f.dir().to_owned();
            let guard = ThawGuard::freeze(f).map_err(freezer_err(&dir, "freezing"))?;
            was_paused = guard.was_paused();
            let procs = guard
                .freezer()
                .procs()
                .map_err(freezer_err(&dir, "listing cgroup.procs"))?;
            let tree = tree_pids(c.init_pid);
            let outside: Vec<u32> = procs.into_iter().filter(|p| !tree.contains(p)).collect();
            if !outside.is_empty() {
                // Dropping the guard thaws (or keeps paused) the container.
                return Err(Failure::new(
                    FailureKind::FailedPrecondition,
                    format!(
                        "container {id}: processes {outside:?} of its cgroup {} are not in the tree of its \
                         init {} (processes the agent started beside it, such as exec'd ones, would be lost)",
                        dir.display(),
                        c.init_pid
                    ),
                ));
            }
            log::info!(
                "container {id}: cgroup {} frozen ({:?}; paused before: {was_paused})",
                dir.display(),
                guard.freezer().kind()
            );
            dump = dump.freezer(Box::new(guard));
        }
        None => log::warn!(
            "container {id}: none of its cgroups {:?} has a freezer; it is seized without one",
            c.cgroups
        ),
    }
    let stats = dump.build().and_then(Dump::run).map_err(dump_failure)?;
    log::info!(
        "container {id}: checkpointed into {} ({} bytes of pages, frozen {:?})",
        stats.image_dir.display(),
        stats.bytes_written,
        stats.frozen
    );
    Ok(CheckpointReport {
        image_dir: stats.image_dir,
        frozen: stats.frozen,
        total: stats.total,
        bytes_written: stats.bytes_written,
        was_paused,
        left_running: options.leave_running,
    })
}
