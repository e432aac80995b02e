//! Errors of namespace restore; each names the namespace, object or path, the step, and why.

use std::io;
use std::path::PathBuf;

use dormant_image::records::NsId;
use dormant_image::ImageError;
use nix::errno::Errno;

/// Why namespaces could not be planned from an image or recreated.
#[derive(Debug, thiserror::Error)]
pub enum NsRestoreError {
    #[error("image {}: {}: {}", .dir.display(), .file, .source)]
    Image {
        dir: PathBuf,
        file: String,
        #[source]
        source: ImageError,
    },
    #[error("image {}: {}", .dir.display(), .reason)]
    BadImage { dir: PathBuf, reason: String },
    #[error("{0}")]
    Unsupported(#[from] crate::refusal::Unsupported),
    #[error("{}: {}", .step, .source)]
    Syscall {
        step: &'static str,
        #[source]
        source: Errno,
    },
    #[error("{} {}: {}", .what, .path.display(), .source)]
    File {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("ipc namespace {}: {}: {} failed: {}", .ns, .object, .op, .source)]
    Ipc {
        ns: NsId,
        object: String,
        op: &'static str,
        #[source]
        source: Errno,
    },
    /// The id a System V object had is in use in the namespace restore recreates it in.
    #[error("ipc namespace {}: cannot recreate {} with its id {}: {}", .ns, .object, .id, .reason)]
    IpcIdTaken {
        ns: NsId,
        object: &'static str,
        id: i32,
        reason: String,
    },
    #[error("ipc namespace {}: {}: {}", .ns, .object, .reason)]
    IpcContent {
        ns: NsId,
        object: String,
        reason: String,
    },
    #[error("page store {}: {}", .store, .source)]
    ShmContent {
        store: String,
        #[source]
        source: ImageError,
    },
    #[error("cgroup {}: {}", .path.display(), .reason)]
    Cgroup { path: PathBuf, reason: String },
    #[error("user namespace {}: {}", .ns, .reason)]
    UserNs { ns: NsId, reason: String },
}

pub type Result<T, E = NsRestoreError> = std::result::Result<T, E>;
