//! A ttrpc client of dormant's `ContainerCheckpoint` service (the `ttrpc` crate's async client on a small
//! tokio runtime), for the tests that drive the stand-in agent (`ctr_agent` in serve mode) as the Kata
//! shim would drive kata-agent.

use std::path::Path;

use dormant_agent_glue::proto::checkpoint as pb;
use dormant_agent_glue::proto::checkpoint_ttrpc::ContainerCheckpointClient;

/// How long one call may take (a checkpoint of a small container takes well under a second; the machine
/// is shared).
const CALL_TIMEOUT_NS: i64 = 300 * 1_000_000_000;

/// A connected client.
pub struct KataClient {
    rt: tokio::runtime::Runtime,
    client: ContainerCheckpointClient,
}

impl std::fmt::Debug for KataClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KataClient")
    }
}

fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(CALL_TIMEOUT_NS)
}

impl KataClient {
    /// Connects to the service on the unix socket `socket`.
    pub fn connect(socket: &Path) -> ttrpc::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ttrpc::Error::Others(format!("tokio runtime: {e}")))?;
        let addr = format!("unix://{}", socket.display());
        let client = rt.block_on(ttrpc::r#async::Client::connect(&addr))?;
        Ok(KataClient {
            rt,
            client: ContainerCheckpointClient::new(client),
        })
    }

    pub fn checkpoint(
        &self,
        req: pb::CheckpointContainerRequest,
    ) -> ttrpc::Result<pb::CheckpointContainerResponse> {
        self.rt
            .block_on(self.client.checkpoint_container(ctx(), &req))
    }

    pub fn restore(
        &self,
        req: pb::RestoreContainerRequest,
    ) -> ttrpc::Result<pb::RestoreContainerResponse> {
        self.rt.block_on(self.client.restore_container(ctx(), &req))
    }

    pub fn features(&self) -> ttrpc::Result<pb::CheckpointFeaturesResponse> {
        self.rt.block_on(
            self.client
                .checkpoint_features(ctx(), &pb::CheckpointFeaturesRequest::default()),
        )
    }

    pub fn pre_dump(
        &self,
        req: pb::PreDumpContainerRequest,
    ) -> ttrpc::Result<pb::PreDumpContainerResponse> {
        self.rt
            .block_on(self.client.pre_dump_container(ctx(), &req))
    }
}

/// The code and message of a ttrpc status error (`None` for other errors).
pub fn status_of(e: &ttrpc::Error) -> Option<(ttrpc::Code, String)> {
    match e {
        ttrpc::Error::RpcStatus(s) => Some((s.code(), s.message().to_string())),
        _ => None,
    }
}
