//! Why a probe found a feature missing.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::unistd::Pid;

/// The reason one probe could not confirm its feature. It ends up, rendered, in
/// [`Status::Missing`](super::Status::Missing); the variants keep the context (which call, which pid,
/// which file) so that the reason printed by `dormant check` points at the kernel piece that said no.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// A system call, ioctl or ptrace request failed.
    #[error("{call} failed: {errno}")]
    Syscall {
        call: &'static str,
        #[source]
        errno: Errno,
    },
    /// A request aimed at a probe child failed.
    #[error("{call} on pid {pid} failed: {errno}")]
    OnPid {
        call: &'static str,
        pid: Pid,
        #[source]
        errno: Errno,
    },
    /// A file (mostly under /proc or /sys) could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file (mostly under /proc or /sys) could not be written or created.
    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    /// A directory (a probe cgroup) could not be created.
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An operation through std (sockets, files opened by std) failed.
    #[error("{what} failed: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// The kernel accepted the request but its answer is not what the feature promises.
    #[error("{0}")]
    Unexpected(String),
    /// The probe ran in a forked child, and the child reported that the feature did not work.
    #[error("{0}")]
    InChild(String),
    /// The forked probe child did not report back.
    #[error("probe child {pid} {how}")]
    Child { pid: Pid, how: String },
    /// The feature only exists on another architecture.
    #[error("not available on this architecture")]
    Arch,
}

impl ProbeError {
    pub(crate) fn sys(call: &'static str, errno: Errno) -> Self {
        ProbeError::Syscall { call, errno }
    }

    pub(crate) fn on_pid(call: &'static str, pid: Pid, errno: Errno) -> Self {
        ProbeError::OnPid { call, pid, errno }
    }

    pub(crate) fn read(path: impl Into<PathBuf>, source: io::Error) -> Self {
        ProbeError::Read {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn write(
        path: impl Into<PathBuf>,
        value: impl Into<String>,
        source: io::Error,
    ) -> Self {
        ProbeError::Write {
            path: path.into(),
            value: value.into(),
            source,
        }
    }

    pub(crate) fn io(what: &'static str, source: io::Error) -> Self {
        ProbeError::Io { what, source }
    }

    pub(crate) fn unexpected(what: impl Into<String>) -> Self {
        ProbeError::Unexpected(what.into())
    }
}
