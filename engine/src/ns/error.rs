//! Errors of the namespace dumper; each names the task, the namespace or object, and the failing step.

use std::io;
use std::path::PathBuf;

use dormant_image::records::{NsId, Pid};
use nix::errno::Errno;

/// Why reading a task's namespaces failed. Reading never changes the target's state, so a failure leaves
/// it as it was.
#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error("pid {}: cannot read {}: {}", .pid.0, .path.display(), .source)]
    Proc {
        pid: Pid,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pid {}: cannot parse {}: {}", .pid.0, .path.display(), .reason)]
    Parse {
        pid: Pid,
        path: PathBuf,
        reason: String,
    },
    #[error("pid {}: cannot enter its {} namespace: {}", .pid.0, .kind, .source)]
    Enter {
        pid: Pid,
        kind: &'static str,
        #[source]
        source: Errno,
    },
    #[error("pid {}: the helper thread reading its {} namespace panicked", .pid.0, .kind)]
    HelperPanicked { pid: Pid, kind: &'static str },
    #[error("ipc namespace {}: {}: {} failed: {}", .ns.0, .object, .op, .source)]
    Ipc {
        ns: NsId,
        object: String,
        op: &'static str,
        #[source]
        source: Errno,
    },
    #[error("ipc namespace {}: {}: {}", .ns.0, .object, .reason)]
    IpcUnsupported {
        ns: NsId,
        object: String,
        reason: String,
    },
    #[error("ipc namespace {}: shared memory segment {}: reading its contents: {}", .ns.0, .shmid, .source)]
    ShmRead {
        ns: NsId,
        shmid: i32,
        #[source]
        source: io::Error,
    },
    #[error("net namespace of pid {}: {}: {}", .pid.0, .op, .source)]
    Net {
        pid: Pid,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("pid {}: {}", .pid.0, .reason)]
    Unsupported { pid: Pid, reason: String },
    #[error("writing {} to the image: {}", .what, .source)]
    Image {
        what: String,
        #[source]
        source: dormant_image::ImageError,
    },
}

pub type Result<T, E = NsError> = std::result::Result<T, E>;
