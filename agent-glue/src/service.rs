//! The ttrpc service (`dormant.agent.v1.ContainerCheckpoint`), in the form kata-agent registers beside
//! its agent and health services: [`create_service`] returns the `HashMap<String, Service>` that
//! `ttrpc::r#async::Server::register_service` takes.
//!
//! The agent's side is the [`ContainerHost`] trait: it knows its containers, builds a restored
//! container's sandbox side as for CreateContainer, and takes the restored container over. Each call runs
//! the blocking library functions on tokio's blocking pool; errors come back as ttrpc statuses with a code
//! ([`GlueError::code`]) and dormant's message.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use oci_spec::runtime::Spec;
use ttrpc::r#async::TtrpcContext;

use crate::container::{
    CheckpointOptions, CheckpointReport, Container, KataPaths, RestoreRequest, RestoredContainer,
    Stdio,
};
use crate::error::GlueError;
use crate::proto::checkpoint as pb;
use crate::proto::checkpoint_ttrpc;

/// What a restored container gets from the agent in this sandbox, built as for CreateContainer (rootfs
/// mounted, shared files and cgroups in place, fresh stdio) but without starting a process.
#[derive(Debug)]
pub struct RestoreTarget {
    /// Its spec here: the mount sources are this sandbox's.
    pub spec: Spec,
    /// Its root filesystem directory in the agent's mount namespace.
    pub rootfs: PathBuf,
    /// Its cgroup directories.
    pub cgroups: Vec<PathBuf>,
    /// The container's ends of its new stdio.
    pub stdio: Stdio,
}

/// The agent's side of the service.
#[async_trait]
pub trait ContainerHost: Send + Sync + 'static {
    /// The running container `id`.
    async fn container(&self, id: &str) -> Option<Container>;

    /// Prepares container `id` for a restore in this sandbox (`spec`: the one the request carried, if
    /// any).
    async fn prepare_restore(
        &self,
        id: &str,
        spec: Option<Spec>,
    ) -> Result<RestoreTarget, GlueError>;

    /// The restored container runs (or is paused); its init is the agent's child.
    async fn restored(&self, container: RestoredContainer);

    /// A checkpoint of `id` succeeded; unless `report.left_running`, the container is gone.
    async fn checkpointed(&self, id: &str, report: &CheckpointReport) {
        let _ = (id, report);
    }
}

/// The service over an agent's [`ContainerHost`].
#[derive(Debug)]
pub struct CheckpointService<H> {
    host: Arc<H>,
    paths: KataPaths,
}

impl<H: ContainerHost> CheckpointService<H> {
    pub fn new(host: Arc<H>, paths: KataPaths) -> Self {
        CheckpointService { host, paths }
    }
}

/// The registration map for `Server::register_service`, key `dormant.agent.v1.ContainerCheckpoint`.
pub fn create_service<H: ContainerHost>(
    host: Arc<H>,
    paths: KataPaths,
) -> HashMap<String, ttrpc::r#async::Service> {
    checkpoint_ttrpc::create_container_checkpoint(Arc::new(CheckpointService::new(host, paths)))
}

fn status(code: ttrpc::Code, message: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, message.into()))
}

/// Runs blocking library work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, GlueError> + Send + 'static,
) -> ttrpc::Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            log::error!("{e}");
            Err(e.to_status())
        }
        Err(e) => Err(status(ttrpc::Code::INTERNAL, format!("worker: {e}"))),
    }
}

fn path_or_none(s: &str) -> Option<PathBuf> {
    (!s.is_empty()).then(|| PathBuf::from(s))
}

#[async_trait]
impl<H: ContainerHost> checkpoint_ttrpc::ContainerCheckpoint for CheckpointService<H> {
    async fn checkpoint_container(
        &self,
        _ctx: &TtrpcContext,
        req: pb::CheckpointContainerRequest,
    ) -> ttrpc::Result<pb::CheckpointContainerResponse> {
        let id = req.container_id.clone();
        let Some(container) = self.host.container(&id).await else {
            return Err(GlueError::UnknownContainer { id }.to_status());
        };
        let options = CheckpointOptions {
            dir: path_or_none(&req.checkpoint_dir),
            name: (!req.name.is_empty()).then(|| req.name.clone()),
            leave_running: req.leave_running,
            tcp_established: req.tcp_established,
        };
        let paths = self.paths.clone();
        let report = blocking(move || crate::checkpoint(&container, &options, &paths)).await?;
        self.host.checkpointed(&id, &report).await;
        Ok(pb::CheckpointContainerResponse {
            checkpoint_dir: report.image_dir.to_string_lossy().into_owned(),
            frozen_us: report.frozen.as_micros() as u64,
            total_us: report.total.as_micros() as u64,
            bytes_written: report.bytes_written,
            was_paused: report.was_paused,
            left_running: report.left_running,
            ..Default::default()
        })
    }

    async fn restore_container(
        &self,
        _ctx: &TtrpcContext,
        req: pb::RestoreContainerRequest,
    ) -> ttrpc::Result<pb::RestoreContainerResponse> {
        let id = req.container_id.clone();
        if id.is_empty() || req.checkpoint_dir.is_empty() {
            return Err(GlueError::InvalidRequest {
                id,
                reason: "a restore needs a container id and a checkpoint directory".into(),
            }
            .to_status());
        }
        let spec = match req.oci_spec_json.as_str() {
            "" => None,
            json => Some(serde_json::from_str::<Spec>(json).map_err(|e| {
                GlueError::InvalidRequest {
                    id: id.clone(),
                    reason: format!("oci_spec_json: {e}"),
                }
                .to_status()
            })?),
        };
        let target = self
            .host
            .prepare_restore(&id, spec)
            .await
            .map_err(|e| e.to_status())?;
        let request = RestoreRequest {
            id,
            image_dir: PathBuf::from(&req.checkpoint_dir),
            spec: target.spec,
            rootfs: target.rootfs,
            cgroups: target.cgroups,
            stdio: target.stdio,
            paused: req.paused,
            tcp_established: req.tcp_established,
            paths: self.paths.clone(),
        };
        let restored = blocking(move || crate::restore(request)).await?;
        let (init_pid, paused) = (restored.init_pid, restored.paused);
        self.host.restored(restored).await;
        Ok(pb::RestoreContainerResponse {
            init_pid,
            paused,
            ..Default::default()
        })
    }

    async fn checkpoint_features(
        &self,
        _ctx: &TtrpcContext,
        _req: pb::CheckpointFeaturesRequest,
    ) -> ttrpc::Result<pb::CheckpointFeaturesResponse> {
        let probes = blocking(crate::features).await?;
        let ready = probes.iter().all(|p| p.available || !p.required);
        Ok(pb::CheckpointFeaturesResponse {
            features: probes
                .into_iter()
                .map(|p| pb::Feature {
                    name: p.name,
                    available: p.available,
                    required: p.required,
                    detail: p.detail,
                    needed_for: p.needed_for,
                    kernel_option: p.kernel_option,
                    ..Default::default()
                })
                .collect(),
            ready,
            ..Default::default()
        })
    }

    async fn pre_dump_container(
        &self,
        _ctx: &TtrpcContext,
        req: pb::PreDumpContainerRequest,
    ) -> ttrpc::Result<pb::PreDumpContainerResponse> {
        Err(status(
            ttrpc::Code::UNIMPLEMENTED,
            format!(
                "container {}: pre-dumps are reserved for a later version of dormant",
                req.container_id
            ),
        ))
    }
}
