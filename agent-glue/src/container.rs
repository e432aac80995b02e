//! The typed API over what kata-agent already holds for a container (rustjail keeps the id, the init
//! pid, the OCI runtime spec, the bundle and rootfs paths, the cgroup directories and the stdio), and what
//! a checkpoint or a restore gives back.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

/// Where kata-agent keeps things in a guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KataPaths {
    /// The shared directory the host sees through virtio-fs (or 9p): container rootfs and the files the
    /// agent binds into containers live below it. Binds from below it are external mounts.
    pub shared: PathBuf,
    /// Where checkpoints go by default (`<checkpoints>/<container id>/<name>`), inside `shared` so the
    /// host sees them.
    pub checkpoints: PathBuf,
}

impl Default for KataPaths {
    fn default() -> Self {
        KataPaths {
            shared: PathBuf::from("/run/kata-containers/shared"),
            checkpoints: PathBuf::from("/run/kata-containers/shared/containers/checkpoints"),
        }
    }
}

/// A running container as kata-agent knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    /// Its init process, as the agent sees it (the agent's pid namespace).
    pub init_pid: u32,
    /// The OCI runtime spec the agent created it from, with the sources as they are in this sandbox.
    pub spec: Spec,
    pub bundle: PathBuf,
    /// The root filesystem directory in the agent's mount namespace.
    pub rootfs: PathBuf,
    /// Its cgroup directories (one per hierarchy, absolute paths where the hierarchies are mounted in the
    /// agent's namespace). The one with `freezer.state` (v1) or `cgroup.freeze` (v2) freezes it.
    pub cgroups: Vec<PathBuf>,
}

/// How to checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointOptions {
    /// The image directory; `None`: `<KataPaths::checkpoints>/<id>/<name>`.
    pub dir: Option<PathBuf>,
    /// The checkpoint's name under the default directory; `None`: `checkpoint`.
    pub name: Option<String>,
    /// Let the container run on (or stay paused) instead of killing it.
    pub leave_running: bool,
    /// Checkpoint established TCP connections (TCP_REPAIR) instead of refusing them.
    pub tcp_established: bool,
}

impl CheckpointOptions {
    /// The image directory these options name for container `id`.
    pub fn image_dir(&self, id: &str, paths: &KataPaths) -> PathBuf {
        match &self.dir {
            Some(d) => d.clone(),
            None => paths
                .checkpoints
                .join(id)
                .join(self.name.as_deref().unwrap_or("checkpoint")),
        }
    }
}

/// What a checkpoint did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointReport {
    pub image_dir: PathBuf,
    /// From the moment the container was frozen until it ran again (or was killed).
    pub frozen: Duration,
    pub total: Duration,
    pub bytes_written: u64,
    /// The container was paused before; it is paused again afterwards.
    pub was_paused: bool,
    pub left_running: bool,
}

/// The stdio the agent created for the restored container (pipes or a terminal, as for a new container):
/// the container's ends. The restored init's fds 0-2 that were the agent's stdio at checkpoint become
/// these.
#[derive(Debug, Default)]
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

impl Stdio {
    pub(crate) fn into_array(self) -> [Option<OwnedFd>; 3] {
        [self.stdin, self.stdout, self.stderr]
    }
}

/// A restore: the image, and the new sandbox's side of the container (built by the agent as for
/// CreateContainer: rootfs, shared files, cgroup, stdio).
#[derive(Debug)]
pub struct RestoreRequest {
    /// The restored container's id in this sandbox.
    pub id: String,
    pub image_dir: PathBuf,
    /// The container's spec in this sandbox: its mount sources are where the checkpoint's external
    /// mounts are bound from (by key, see [`crate::policy`]).
    pub spec: Spec,
    /// The root filesystem directory in the agent's mount namespace.
    pub rootfs: PathBuf,
    /// The cgroup directories the restored container joins (created by the agent).
    pub cgroups: Vec<PathBuf>,
    pub stdio: Stdio,
    /// Restore it paused: its cgroup is frozen before it runs.
    pub paused: bool,
    pub tcp_established: bool,
    /// The sandbox's shared directory (the mount policy's notion of a host file).
    pub paths: KataPaths,
}

/// A restored container: its init is a child of the calling process, which waits for it as for a
/// container it started.
#[derive(Debug)]
pub struct RestoredContainer {
    pub id: String,
    /// The init's pid in the agent's pid namespace (the checkpointed one).
    pub init_pid: u32,
    /// A pidfd of the init (pollable for its exit).
    pub pidfd: OwnedFd,
    pub paused: bool,
}
