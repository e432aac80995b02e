//! dormant-agent-glue: what kata-agent links to checkpoint and restore its containers through dormant.
//!
//! What it does:
//! - a typed API over what the agent holds for a container ([`Container`]: id, init pid, OCI spec,
//!   bundle, rootfs, cgroups; [`Stdio`] at restore): [`checkpoint`], [`restore`], [`features`];
//! - the container's cgroup freezer, v1 and v2 ([`freezer`]): frozen before the seize, thawed on every
//!   way out, a paused container kept paused and restorable paused;
//! - the mount policy read from the OCI spec ([`policy`]): shared-directory binds, `/etc/hosts`,
//!   `/etc/resolv.conf`, `/etc/hostname` and `/dev/shm` external under stable keys, the rootfs given as
//!   the root, sources per key taken from the new sandbox's spec at restore; no mount flags;
//! - the work in a helper process re-executed from the caller's binary ([`helper`], entry point
//!   [`run_if_helper`]), so the calling process (multi-threaded tokio kata-agent) keeps its namespaces,
//!   credentials, cwd, signal handlers and threads; the restored init becomes the caller's child;
//! - content-identity file checks (size, mtime, build-id or crc32) recorded in the image, so a checkpoint
//!   restores in a new VM whose rootfs has other device and inode numbers;
//! - the ttrpc service `dormant.agent.v1.ContainerCheckpoint` ([`service`], generated into [`proto`] by
//!   ttrpc-codegen for ttrpc 0.9 async), registered like kata-agent's own services.
//!
//! What it does NOT do: create containers or their sandbox side (the agent does, through
//! [`service::ContainerHost`]), pre-dumps (reserved, answered UNIMPLEMENTED), terminals as stdio (a
//! container whose stdio is a pty the agent holds is refused by the dump), processes exec'd into a
//! container beside its init (refused by name). It never prints or exits, except as the helper process.

pub mod checkpoint;
pub mod container;
pub mod error;
pub mod freezer;
pub mod helper;
mod helper_process;
pub mod policy;
pub mod proto;
pub mod restore;
pub mod service;

pub use checkpoint::checkpoint;
pub use container::{
    CheckpointOptions, CheckpointReport, Container, KataPaths, RestoreRequest, RestoredContainer,
    Stdio,
};
pub use error::{FailureKind, GlueError, Operation};
pub use helper::{FeatureProbe, HELPER_ARG};
pub use helper_process::run_if_helper;
pub use restore::restore;
pub use service::{create_service, CheckpointService, ContainerHost, RestoreTarget};

/// `dormant check`'s kernel probes, run in a helper process (they fork).
pub fn features() -> Result<Vec<FeatureProbe>, GlueError> {
    let id = "(none)";
    match helper::run(
        id,
        Operation::Features,
        &helper::Request::Features,
        [None, None, None],
    )? {
        helper::Answer::Features(f) => Ok(f),
        helper::Answer::Failed(f) => Err(GlueError::Failed {
            id: id.into(),
            op: Operation::Features,
            kind: f.kind,
            message: f.message,
        }),
        other => Err(GlueError::Failed {
            id: id.into(),
            op: Operation::Features,
            kind: FailureKind::Internal,
            message: format!("unexpected answer {other:?}"),
        }),
    }
}
