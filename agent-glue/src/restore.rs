//! Restoring a container: [`restore`] in the agent, [`in_helper`] in the helper process.
//!
//! In the helper, before anything changes: the image's external mount keys are mapped to the new sandbox's
//! sources through the mount policy of the new spec (a key the spec lacks is refused by name), and the
//! image's init fds 0-2 that were the agent's stdio (external pipes) are mapped to the stdio the agent
//! handed in. The restorer then moves the helper into the container's cgroups and namespaces and forks
//! the tree with `CLONE_PARENT`, so the init is the agent's child. Asked for a paused restore, the helper
//! leaves the freezer cgroup and freezes it while every task is still stopped, right before the tree is
//! let go: it never runs a single instruction before the runtime resumes it.

use std::io::{Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

use dormant_image::records::{names, DescKind, Fd, FdFile, FileDesc};
use dormant_image::ImageReader;
use dormant_mounts::{MountImage, MountTree};
use dormant_restorer::ns::CgroupTarget;
use dormant_restorer::{InheritFd, ReleaseHook, Restore, RestoreError, RootParent};

use crate::container::{RestoreRequest, RestoredContainer};
use crate::error::{FailureKind, GlueError, Operation};
use crate::freezer::{CgroupFreezer, FreezerKind};
use crate::helper::{self, Answer, Failure, Request, RestoreWire, STDIO_FD};
use crate::policy::MountPolicy;

/// Restores the container described by `req`. Blocking (the work runs in a helper process); call it from
/// a blocking thread of an async agent. On success the init is a child of the calling process; on failure
/// no restored process is left (a process killed on the way is collected by the restorer as its tracer,
/// then reaped by the caller's reaper as an unknown child).
pub fn restore(req: RestoreRequest) -> Result<RestoredContainer, GlueError> {
    let id = req.id.clone();
    if !req.image_dir.is_dir() {
        return Err(GlueError::Io {
            id,
            what: "the checkpoint",
            path: req.image_dir,
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let stdio = req.stdio.into_array();
    let wire = RestoreWire {
        id: id.clone(),
        image_dir: req.image_dir,
        spec: req.spec,
        rootfs: req.rootfs,
        cgroups: req.cgroups,
        stdio: [0, 1, 2].map(|n| stdio[n].is_some()),
        paused: req.paused,
        tcp_established: req.tcp_established,
        paths: req.paths,
    };
    let init_pid = match helper::run(&id, Operation::Restore, &Request::Restore(wire), stdio)? {
        Answer::Restored { init_pid } => init_pid,
        Answer::Failed(f) => {
            return Err(GlueError::Failed {
                id,
                op: Operation::Restore,
                kind: f.kind,
                message: f.message,
            })
        }
        other => {
            return Err(GlueError::Failed {
                id,
                op: Operation::Restore,
                kind: FailureKind::Internal,
                message: format!("unexpected answer {other:?}"),
            })
        }
    };
    let pidfd = pidfd_open(init_pid).map_err(|source| GlueError::Io {
        id: id.clone(),
        what: "pidfd_open of the restored init",
        path: PathBuf::from(format!("/proc/{init_pid}")),
        source,
    })?;
    let ppid = std::fs::read_to_string(format!("/proc/{init_pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
        });
    if ppid != Some(std::process::id()) {
        log::warn!(
            "container {id}: the restored init {init_pid} has parent {ppid:?}, not this process"
        );
    }
    Ok(RestoredContainer {
        id,
        init_pid,
        pidfd,
        paused: req.paused,
    })
}

/// `pidfd_open(2)`.
fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) })
}

fn restore_failure(e: RestoreError) -> Failure {
    use RestoreError::*;
    let kind = match &e {
        BadImage { .. } | Image { .. } | InheritFd(_) => FailureKind::InvalidArgument,
        Unsupported(_) | PidTaken { .. } | FileChanged { .. } | XsaveFeatures { .. } => {
            FailureKind::FailedPrecondition
        }
        _ => FailureKind::Internal,
    };
    Failure::new(FailureKind::or_out_of_space(&e, kind), e)
}

/// Inherited fds mapping the image init's fds 0-2 that were external (the agent's stdio pipes) to the
/// stdio handed in at `STDIO_FD + n`.
fn stdio_specs(id: &str, img: &ImageReader, given: &[bool; 3]) -> Result<Vec<InheritFd>, Failure> {
    let bad = |what: String| {
        Failure::new(
            FailureKind::InvalidArgument,
            format!("container {id}: {what}"),
        )
    };
    let root = img.inventory().root_pid;
    let fds: Vec<Fd> = img
        .read_records(&names::fds(root))
        .map_err(|e| bad(format!("the image's fds of its init {}: {e}", root.0)))?;
    let descs: Vec<FileDesc> = if img.has_file(names::FILE_DESCS) {
        img.read_records(names::FILE_DESCS)
            .map_err(|e| bad(format!("the image's file descriptions: {e}")))?
    } else {
        Vec::new()
    };
    let mut specs = Vec::new();
    for (n, &handed_in) in given.iter().enumerate() {
        let fd = fds.iter().find(|f| f.fd == n as i32);
        let key = fd.and_then(|f| match f.file {
            FdFile::Desc(d) => descs
                .iter()
                .find(|x| x.id == d)
                .and_then(|x| match &x.kind {
                    DescKind::External { key } => Some(key.clone()),
                    _ => None,
                }),
            _ => None,
        });
        match (key, handed_in) {
            (Some(key), true) => specs.push(InheritFd {
                fd: STDIO_FD + n as i32,
                key,
            }),
            (Some(key), false) => {
                return Err(bad(format!(
                    "its init's fd {n} was the agent's ({key}); the restore needs a new one handed in"
                )))
            }
            (None, true) => log::warn!(
                "container {id}: its init's fd {n} was not the agent's stdio ({:?}); the one handed in \
                 is not used",
                fd.map(|f| &f.file)
            ),
            (None, false) => {}
        }
    }
    Ok(specs)
}

/// What the helper needs to freeze the container right before it runs: the freezer, and its own
/// cgroup in the freezer's hierarchy (it must leave the container's cgroup first), both opened before
/// the restore moves it into the container's namespaces.
struct PausedRestore {
    freezer: CgroupFreezer,
    own_procs: std::fs::File,
}

/// The helper's own cgroup directory in the hierarchy of `kind`.
fn own_cgroup(kind: FreezerKind) -> std::io::Result<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup")?;
    let line = text
        .lines()
        .filter_map(|l| {
            let mut p = l.splitn(3, ':');
            Some((p.next()?, p.next()?, p.next()?))
        })
        .find(|(h, ctrl, _)| match kind {
            FreezerKind::V2 => *h == "0" && ctrl.is_empty(),
            FreezerKind::V1 => ctrl.split(',').any(|c| c == "freezer"),
        })
        .ok_or_else(|| {
            std::io::Error::other(format!("no {kind:?} freezer line in /proc/self/cgroup"))
        })?;
    let mounts = dormant_restorer::ns::own_cgroup_mounts().map_err(std::io::Error::other)?;
    let m = mounts
        .iter()
        .find(|m| match kind {
            FreezerKind::V2 => m.v2,
            FreezerKind::V1 => m.controllers.iter().any(|c| c == "freezer"),
        })
        .ok_or_else(|| std::io::Error::other(format!("no {kind:?} freezer hierarchy mounted")))?;
    let rel = line.2.strip_prefix(m.root.as_str()).unwrap_or(line.2);
    Ok(m.mountpoint.join(rel.trim_start_matches('/')))
}

impl PausedRestore {
    fn open(id: &str, cgroups: &[PathBuf]) -> Result<Self, Failure> {
        let fail = |what: String| {
            Failure::new(
                FailureKind::InvalidArgument,
                format!("container {id}: {what}"),
            )
        };
        let freezer = CgroupFreezer::find(cgroups)
            .map_err(|e| fail(format!("opening the freezer among {cgroups:?}: {e}")))?
            .ok_or_else(|| {
                fail(format!(
                    "a paused restore needs a freezer cgroup; none among {cgroups:?}"
                ))
            })?;
        let own = own_cgroup(freezer.kind())
            .map_err(|e| fail(format!("the helper's own freezer cgroup: {e}")))?;
        let own_procs = std::fs::OpenOptions::new()
            .write(true)
            .open(own.join("cgroup.procs"))
            .map_err(|e| fail(format!("opening {}/cgroup.procs: {e}", own.display())))?;
        Ok(PausedRestore { freezer, own_procs })
    }

    /// Leaves the container's cgroup, then freezes it (the restored tasks are still stopped).
    fn freeze(&self) -> std::io::Result<()> {
        let mut f = &self.own_procs;
        f.seek(SeekFrom::Start(0))?;
        f.write_all(b"0")?;
        self.freezer.freeze()
    }
}

/// The restore itself, in the helper process; returns the init's pid.
pub(crate) fn in_helper(r: &RestoreWire, stdio: &[Option<OwnedFd>; 3]) -> Result<u32, Failure> {
    let id = &r.id;
    let img = ImageReader::open(&r.image_dir).map_err(|e| {
        Failure::new(
            FailureKind::InvalidArgument,
            format!("container {id}: checkpoint {}: {e}", r.image_dir.display()),
        )
    })?;
    let mounts = MountImage::read(&img)
        .map_err(|e| Failure::new(FailureKind::InvalidArgument, format!("container {id}: {e}")))?
        .ok_or_else(|| {
            Failure::new(
                FailureKind::InvalidArgument,
                format!(
                    "container {id}: {} is not a container checkpoint (it has no mount tree)",
                    r.image_dir.display()
                ),
            )
        })?;
    let agent_mounts = MountTree::read(None)
        .map_err(|e| Failure::new(FailureKind::Internal, format!("the agent's mounts: {e}")))?;
    let policy = MountPolicy::from_spec(&r.spec, &r.rootfs, &r.paths.shared);
    let externals = policy.restore_externals(id, &mounts, &agent_mounts)?;
    log::info!("container {id}: external mounts {externals:?}");
    let given = [0, 1, 2].map(|n| stdio[n].is_some());
    let inherit = stdio_specs(id, &img, &given)?;
    drop(img);

    let mut builder = Restore::builder(&r.image_dir)
        .detached(true)
        .tcp_established(r.tcp_established)
        .root_parent(RootParent::RestorersParent)
        .inherit_fds(inherit)
        .root(Some(r.rootfs.clone()))
        .externals(externals)
        .cgroup_root(if r.cgroups.is_empty() {
            CgroupTarget::Keep
        } else {
            CgroupTarget::Dirs(r.cgroups.clone())
        });
    if r.paused {
        let paused = PausedRestore::open(id, &r.cgroups)?;
        builder = builder.before_release(ReleaseHook(Arc::new(move |root| {
            paused.freeze()?;
            log::info!("pid {root}: restored paused");
            Ok(())
        })));
    }
    let restored = builder
        .build()
        .and_then(Restore::run)
        .map_err(restore_failure)?;
    log::info!(
        "container {id}: restored from {} as pid {}",
        r.image_dir.display(),
        restored.pid()
    );
    Ok(restored.pid())
}
