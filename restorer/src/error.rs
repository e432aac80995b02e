//! Errors of the restorer; every variant says which pid, file or step, and why.

use std::io;
use std::path::PathBuf;

use dormant_image::ImageError;
use dormant_parasite::ParasiteError;

/// Everything that can refuse or fail a restore.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// `run()` forks from the calling process, which must not have other threads.
    #[error("restore must run in a single-threaded process; this one has {threads} threads")]
    NotSingleThreaded { threads: u32 },

    /// The caller's step right before the restored tree runs failed (the tree is killed).
    #[error("pid {pid}: the caller's step before the restored tree runs failed: {source}")]
    BeforeRelease {
        pid: u32,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// Reading or checking the image failed.
    #[error("image {dir}: {source}")]
    Image { dir: PathBuf, source: ImageError },

    /// The image is well-formed but says something this restorer cannot or will not do.
    #[error("image {dir}: {reason}")]
    BadImage { dir: PathBuf, reason: String },

    /// Planning or recreating the tree's namespaces failed.
    #[error("namespaces: {0}")]
    Namespace(#[from] crate::ns::NsRestoreError),

    /// Rebuilding an open file description failed.
    #[error("files: {0}")]
    Files(#[from] crate::files::FileRestoreError),

    /// An `--inherit-fd` spec is malformed or names a descriptor that is not open.
    #[error("{0}")]
    InheritFd(#[from] crate::files::InheritSpecError),

    /// State of the image this restorer refuses (see [`crate::refusal`]).
    #[error("unsupported: {0}")]
    Unsupported(#[from] crate::refusal::Unsupported),

    /// The image needs CPU state components this CPU (or kernel) does not enable.
    #[error(
        "the image's xsave features {image:#x} are not a subset of this CPU's XCR0 {cpu:#x} (missing {missing:#x})"
    )]
    XsaveFeatures { image: u64, cpu: u64, missing: u64 },

    /// A thread's saved XSAVE area does not fit this kernel's signal frame format.
    #[error("thread {tid}: saved XSAVE area of {len} bytes is unusable here: {reason}")]
    Xstate {
        tid: u32,
        len: usize,
        reason: String,
    },

    /// The running vDSO is not the one the image was dumped with.
    #[error("vDSO of the running kernel differs from the image's; vDSO redirection is not implemented ({detail})")]
    VdsoMismatch { detail: String },

    /// A file behind a mapping or an fd is not the one that was dumped.
    #[error("file {path} changed since the dump: {what}")]
    FileChanged { path: String, what: String },

    /// The pid to restore is in use.
    #[error("pid {pid} is already taken{}", owner.as_ref().map(|c| format!(" (by {c})")).unwrap_or_default())]
    PidTaken { pid: u32, owner: Option<String> },

    /// The image was dumped as a shell job (its fds refer to the dumping terminal).
    #[error("pid {pid} fd {fd} was the dumping terminal; restore with --shell-job")]
    ShellJobRequired { pid: u32, fd: i32 },

    /// Opening or preparing a file the restored task needs failed.
    #[error("{what} {path}: {source}")]
    File {
        what: &'static str,
        path: String,
        source: io::Error,
    },

    /// The blob ELF cannot be loaded.
    #[error("restorer blob: {0}")]
    Blob(String),

    /// No address range is free in both dormant's and the target's layout for the blob area.
    #[error(
        "no hole of {size:#x} bytes free in both this process's and pid {pid}'s address space"
    )]
    NoHole { pid: u32, size: u64 },

    /// A system call of the restorer itself failed.
    #[error("{what}: {source}")]
    Sys { what: String, source: nix::Error },

    /// Reading one of this process's own /proc files failed.
    #[error("reading {path}: {source}")]
    Proc { path: PathBuf, source: io::Error },

    /// The restored task reported a failed step.
    #[error("pid {pid}: restore failed at step {step} ({what}): {errno} (detail {detail:#x})")]
    StepFailed {
        pid: u32,
        step: u32,
        what: &'static str,
        errno: nix::Error,
        detail: u64,
    },

    /// The restored task died or stopped where it should not have.
    #[error(
        "pid {pid} thread {tid}: its credentials after the restore differ from the image's ({what}: \
         {found}, the image says {want}); the restored tree is killed"
    )]
    CredsMismatch {
        pid: u32,
        tid: u32,
        what: &'static str,
        found: String,
        want: String,
    },
    #[error(
        "pid {pid} thread {tid}: its {what} after the restore is {found}, the image says {want}; the \
         restored tree is killed"
    )]
    AttrMismatch {
        pid: u32,
        tid: u32,
        what: &'static str,
        found: String,
        want: String,
    },
    #[error(
        "pid {pid} fd {fd}: lock(s) {missing:?} of the image are not held after the restore (fdinfo shows \
         {found:?}); the restored tree is killed"
    )]
    LockLost {
        pid: u32,
        fd: i32,
        missing: Vec<String>,
        found: Vec<String>,
    },
    #[error("pid {pid}: {what}")]
    ChildLost { pid: u32, what: String },

    /// A ptrace request on the restored task failed.
    #[error("ptrace {op} on pid {pid}: {source}")]
    Ptrace {
        pid: u32,
        op: &'static str,
        source: nix::Error,
    },

    /// Putting a restored task back in its job-control stop failed.
    #[error("pid {pid}: putting it back in its job-control stop: {what}")]
    JobStop { pid: u32, what: String },

    /// Removing the blob area from the restored task failed.
    #[error("pid {pid}: removing the restorer area: {source}")]
    Cleanup { pid: u32, source: ParasiteError },
    /// A proc file could not be reopened in its restored task.
    #[error("pid {pid} fd {fd}: reopening the proc file {path}: {what}")]
    ProcFile {
        pid: u32,
        fd: i32,
        path: String,
        what: String,
    },

    /// Writing the pidfile failed (the process was restored and keeps running).
    #[error("writing pidfile {path}: {source}")]
    Pidfile { path: PathBuf, source: io::Error },
}

impl RestoreError {
    pub(crate) fn sys(what: impl Into<String>, source: nix::Error) -> Self {
        RestoreError::Sys {
            what: what.into(),
            source,
        }
    }
}
