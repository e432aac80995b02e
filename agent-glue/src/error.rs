//! agent-glue's error type. Every variant names the container; failures inside the helper process come
//! back as their kind and dormant's message ([`GlueError::Failed`]), since the engine's and restorer's
//! error values do not cross the process boundary.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What kind of failure, for the ttrpc status code it maps to ([`GlueError::code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// The request cannot be carried out as given (a restore missing a mount key, a bad directory).
    InvalidArgument,
    /// No such container, checkpoint or file.
    NotFound,
    /// The container or this guest cannot be checkpointed or restored as asked (refused before anything
    /// changed).
    FailedPrecondition,
    /// The filesystem of the checkpoint directory is full (nothing was left changed).
    ResourceExhausted,
    /// A checkpoint or restore failed on the way (nothing was left changed).
    Internal,
}

impl FailureKind {
    /// `ResourceExhausted` when an error in `e`'s source chain is ENOSPC or EDQUOT, else `otherwise`.
    pub fn or_out_of_space(e: &(dyn std::error::Error + 'static), otherwise: FailureKind) -> Self {
        let mut at = Some(e);
        while let Some(err) = at {
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                if matches!(io.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) {
                    return FailureKind::ResourceExhausted;
                }
            }
            at = err.source();
        }
        otherwise
    }
}

/// The operation a helper process ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    Checkpoint,
    Restore,
    Features,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::Checkpoint => "checkpoint",
            Operation::Restore => "restore",
            Operation::Features => "feature probe",
        })
    }
}

/// Why a container operation failed. A failed checkpoint leaves the container running (or paused, if it
/// was); a failed restore leaves no process behind.
#[derive(Debug, thiserror::Error)]
pub enum GlueError {
    #[error("container {id}: not known to the agent")]
    UnknownContainer { id: String },
    #[error("container {id}: {reason}")]
    InvalidRequest { id: String, reason: String },
    #[error(
        "container {id}: the checkpoint needs the external mount {key} (container path {destination}), \
         which the new sandbox's OCI spec does not provide"
    )]
    MissingMountKey {
        id: String,
        key: String,
        destination: String,
    },
    #[error("container {id}: cgroup freezer {}: {what}: {source}", dir.display())]
    Freezer {
        id: String,
        dir: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("container {id}: {what} {}: {source}", path.display())]
    Io {
        id: String,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("container {id}: the {op} helper process: {what}: {source}")]
    Helper {
        id: String,
        op: Operation,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("container {id}: the {op} helper process ended without an answer ({status})")]
    HelperDied {
        id: String,
        op: Operation,
        status: String,
    },
    /// A failure inside the helper process: the engine's, restorer's or this crate's message.
    #[error("container {id}: {op} failed: {message}")]
    Failed {
        id: String,
        op: Operation,
        kind: FailureKind,
        message: String,
    },
}

impl GlueError {
    /// The kind of failure, for callers that map it to a status.
    pub fn kind(&self) -> FailureKind {
        match self {
            GlueError::UnknownContainer { .. } => FailureKind::NotFound,
            GlueError::InvalidRequest { .. } | GlueError::MissingMountKey { .. } => {
                FailureKind::InvalidArgument
            }
            GlueError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                FailureKind::NotFound
            }
            GlueError::Failed { kind, .. } => *kind,
            GlueError::Freezer { .. }
            | GlueError::Io { .. }
            | GlueError::Helper { .. }
            | GlueError::HelperDied { .. } => FailureKind::Internal,
        }
    }

    /// The ttrpc status code this failure is reported with.
    pub fn code(&self) -> ttrpc::Code {
        match self.kind() {
            FailureKind::InvalidArgument => ttrpc::Code::INVALID_ARGUMENT,
            FailureKind::NotFound => ttrpc::Code::NOT_FOUND,
            FailureKind::FailedPrecondition => ttrpc::Code::FAILED_PRECONDITION,
            FailureKind::ResourceExhausted => ttrpc::Code::RESOURCE_EXHAUSTED,
            FailureKind::Internal => ttrpc::Code::INTERNAL,
        }
    }

    /// The error as a ttrpc status (code and this message).
    pub fn to_status(&self) -> ttrpc::Error {
        ttrpc::Error::RpcStatus(ttrpc::get_status(self.code(), self.to_string()))
    }
}

pub type Result<T, E = GlueError> = std::result::Result<T, E>;
