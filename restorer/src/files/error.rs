//! Why a file description could not be rebuilt, and the short names of the kinds for messages.

use dormant_image::records::DescKind;
use nix::errno::Errno;

/// Why a description could not be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum FileRestoreError {
    #[error("file description {id} ({kind}): {what}: {source}")]
    Sys {
        id: u32,
        kind: &'static str,
        what: String,
        #[source]
        source: nix::Error,
    },
    #[error("file description {id} ({kind}): {reason}")]
    Bad {
        id: u32,
        kind: &'static str,
        reason: String,
    },
}

/// Short name of a kind, for errors.
pub fn kind_name(k: &DescKind) -> &'static str {
    match k {
        DescKind::PipeEnd { .. } => "pipe",
        DescKind::EventFd { .. } => "eventfd",
        DescKind::TimerFd { .. } => "timerfd",
        DescKind::SignalFd { .. } => "signalfd",
        DescKind::Epoll { .. } => "epoll",
        DescKind::Memfd { .. } => "memfd",
        DescKind::UnixPair { .. } => "unix socket",
        DescKind::Inet(_) => "inet socket",
        DescKind::UnixListen { .. } => "unix listener",
        DescKind::Ghost { .. } => "unlinked file",
        DescKind::Fifo { .. } => "fifo",
        DescKind::UnixConn { .. } => "unix connection",
        DescKind::UnixDgram { .. } => "unix datagram socket",
        DescKind::UnixUnconnected { .. } => "unconnected unix socket",
        DescKind::TcpEstablished(_) => "TCP connection",
        DescKind::External { .. } => "external",
        DescKind::Pty { master: true, .. } => "pty master",
        DescKind::Pty { master: false, .. } => "pty slave",
        DescKind::Inotify { .. } => "inotify",
        DescKind::Pidfd { .. } => "pidfd",
        DescKind::Proc(_) => "proc file",
    }
}

/// Why one kind's open failed, before the dispatcher names the description ([`OpenFailure::at`]).
#[derive(Debug)]
pub(super) enum OpenFailure {
    /// A system call failed while doing `what`.
    Sys { what: String, source: Errno },
    /// The image asks for something that cannot be rebuilt.
    Bad(String),
    /// Already a complete error (external descriptions name their key).
    Done(FileRestoreError),
}

impl OpenFailure {
    /// A failed system call: `what` was being done.
    pub(super) fn sys(what: impl Into<String>) -> impl FnOnce(Errno) -> OpenFailure {
        let what = what.into();
        move |source| OpenFailure::Sys { what, source }
    }

    /// The error of description `id` of kind `kind`.
    pub(super) fn at(self, id: u32, kind: &'static str) -> FileRestoreError {
        match self {
            OpenFailure::Sys { what, source } => FileRestoreError::Sys {
                id,
                kind,
                what,
                source,
            },
            OpenFailure::Bad(reason) => FileRestoreError::Bad { id, kind, reason },
            OpenFailure::Done(e) => e,
        }
    }
}

impl From<(String, Errno)> for OpenFailure {
    fn from((what, source): (String, Errno)) -> Self {
        OpenFailure::Sys { what, source }
    }
}

impl From<(&'static str, Errno)> for OpenFailure {
    fn from((what, source): (&'static str, Errno)) -> Self {
        OpenFailure::Sys {
            what: what.to_string(),
            source,
        }
    }
}

impl From<FileRestoreError> for OpenFailure {
    fn from(e: FileRestoreError) -> Self {
        OpenFailure::Done(e)
    }
}
