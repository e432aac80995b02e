//! Errors of the RPC server. Each one becomes a failed answer (`success: false`, `cr_errno` from
//! [`RpcError::errno`], `cr_errmsg` its text) and an `Error` line in the request's log file, which is
//! where runc's users read it (runc quotes the log's `Error` lines when a request fails).

use std::path::PathBuf;

use dormant_engine::DumpError;
use dormant_restorer::RestoreError;
use nix::errno::Errno;

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("fd {fd} is not the client's socket: {what}")]
    BadSocket { fd: i32, what: String },

    #[error("socket {op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: Errno,
    },

    #[error("protocol: {0}")]
    Protocol(String),

    /// An option dormant does not implement, or a value it cannot honour.
    #[error("option {option}: {reason}")]
    Refused {
        option: &'static str,
        reason: String,
    },

    /// A request type dormant does not serve.
    #[error("{0}")]
    Unsupported(String),

    #[error("{what} (client fd {fd} of pid {pid}): {source}")]
    PeerFd {
        pid: u32,
        fd: i32,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("{what} {}: {source}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the client's {script:?} callback failed")]
    NotifyFailed { script: String },

    #[error("cgroup {}: {what}", path.display())]
    Cgroup { path: PathBuf, what: String },

    #[error(transparent)]
    Dump(#[from] dormant_engine::DumpError),

    #[error(transparent)]
    Restore(#[from] dormant_restorer::RestoreError),
}

/// The first system error in `e`'s chain of causes.
fn chain_errno(e: &(dyn std::error::Error + 'static)) -> Option<Errno> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(n) = c.downcast_ref::<Errno>() {
            return Some(*n);
        }
        if let Some(n) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.raw_os_error())
        {
            return Some(Errno::from_raw(n));
        }
        cur = c.source();
    }
    None
}

impl RpcError {
    /// The errno a client gets in `cr_errno`: the system error behind the failure when there is one.
    pub fn errno(&self) -> i32 {
        let e = match self {
            RpcError::Io { source, .. } => *source,
            RpcError::PeerFd { source, .. } | RpcError::File { source, .. } => {
                Errno::from_raw(source.raw_os_error().unwrap_or(libc::EIO))
            }
            RpcError::Refused { .. } | RpcError::Unsupported(_) => Errno::EOPNOTSUPP,
            RpcError::BadSocket { .. } | RpcError::Protocol(_) => Errno::EPROTO,
            RpcError::NotifyFailed { .. } => Errno::ECANCELED,
            RpcError::Cgroup { .. } => Errno::EIO,
            RpcError::Dump(d) => chain_errno(d).unwrap_or(match d {
                DumpError::NoSuchProcess { .. }
                | DumpError::ProcessGone { .. }
                | DumpError::PidReused { .. } => Errno::ESRCH,
                DumpError::Hook { .. } => Errno::ECANCELED,
                DumpError::UnsupportedFd { .. }
                | DumpError::UnsupportedVma { .. }
                | DumpError::FileDesc { .. }
                | DumpError::DeletedFile { .. }
                | DumpError::ControllingTerminal { .. }
                | DumpError::PendingSignal { .. }
                | DumpError::Mounts { .. } => Errno::EOPNOTSUPP,
                _ => Errno::EIO,
            }),
            RpcError::Restore(r) => chain_errno(r).unwrap_or(match r {
                RestoreError::Unsupported(_) | RestoreError::ShellJobRequired { .. } => {
                    Errno::EOPNOTSUPP
                }
                RestoreError::PidTaken { .. } => Errno::EEXIST,
                RestoreError::BeforeRelease { .. } => Errno::ECANCELED,
                _ => Errno::EIO,
            }),
        };
        e as i32
    }

    /// The message for `cr_errmsg` and the log: this error and every cause below it.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(self);
        while let Some(e) = cur {
            let s = e.to_string();
            if !text.contains(&s) {
                text.push_str(": ");
                text.push_str(&s);
            }
            cur = e.source();
        }
        text
    }
}
