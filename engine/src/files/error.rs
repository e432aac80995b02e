//! Why one fd could not be dumped. [`crate::DumpError::FileDesc`] wraps it with the process, the fd number
//! and the fd's kind, so the variants here name only the resource and the reason.

use std::io;

/// The failure or refusal of one fd's dump.
#[derive(Debug, thiserror::Error)]
pub enum FdError {
    /// A syscall on the dumper's copy of the fd (or on a helper the dump made for it) failed.
    #[error("{op}: {source}")]
    Sys {
        op: String,
        #[source]
        source: io::Error,
    },
    /// The fd's fdinfo (or a UNIX_DIAG reply about it) says something the dumper does not understand.
    #[error("{0}")]
    Parse(String),
    #[error(
        "the same {what} (inode {ino}) is open through another description too (pid {pid} fd {fd}): \
         restore would create two separate files"
    )]
    CarriedInodeShared {
        what: &'static str,
        ino: u64,
        pid: u32,
        fd: i32,
    },
    #[error(
        "memfd {name:?} is backed by huge pages (MFD_HUGETLB), which restore does not recreate"
    )]
    HugetlbMemfd { name: String },
    #[error("{target} is not an unlinked regular file")]
    NotUnlinkedFile { target: String },
    #[error(
        "{target}: a FIFO still linked under a name ending in \" (deleted)\" cannot be told from an \
         unlinked one"
    )]
    UnlinkedFifo { target: String },
    /// The other end of a pipe or FIFO is open in a process outside the dump.
    #[error("the {end} end of {what} is held by a process outside the dump{hint}")]
    PeerOutside {
        end: &'static str,
        what: String,
        hint: String,
    },
    #[error("the watch of fd {tfd} cannot be restored: {why}")]
    EpollTarget { tfd: i32, why: String },
    #[error("{target} is not a /dev/pts/N path")]
    NotPtsPath { target: String },
    #[error(
        "pty {index}: {bytes} byte(s) queued for the {side} not read yet (they cannot be read without \
         taking them from the process)"
    )]
    PtyQueued {
        index: u32,
        bytes: i32,
        side: &'static str,
    },
    #[error(
        "/dev/pts/{index}: its master is held by no process of the dump (the terminal the tree runs in \
         is inherited with --shell-job, on fds 0-2 only)"
    )]
    PtyMasterOutside { index: u32 },
    #[error(
        "inotify fd with unread events ({bytes} bytes queued); events are not carried, so the dump is \
         refused rather than losing them"
    )]
    InotifyQueued { bytes: i32 },
    #[error(
        "inotify watch wd {wd} on inode {ino} (device {major}:{minor}) cannot be resolved to a path: {why}"
    )]
    InotifyWatch {
        wd: i32,
        ino: u64,
        major: u64,
        minor: u64,
        why: String,
    },
    #[error("pidfd of the single thread {pid} (PIDFD_THREAD) is not supported")]
    PidfdThread { pid: i64 },
    #[error(
        "pidfd of a process that has exited and been reaped (Pid: -1): it cannot be recreated"
    )]
    PidfdReaped,
    #[error("pidfd of a process outside the dumper's pid namespace")]
    PidfdInvisible,
    #[error("pidfd of pid {pid}, which is outside the dumped tree")]
    PidfdOutside { pid: i64 },
    /// An open file of `/proc` that cannot be reopened on the restored process.
    #[error("{path}: {why}")]
    ProcFile { path: String, why: String },
    /// A lock the dump cannot carry (a lease, a mandatory lock, an unknown mode).
    #[error("{0}")]
    Lock(String),
    /// State of a socket the dump cannot carry; the text says which.
    #[error("{0}")]
    Socket(String),
    #[error("unix socket {ino} is connected to socket {peer}{peer_name}, {holders}")]
    UnixPeerOutside {
        ino: u64,
        peer: u64,
        /// ` (name)` or empty.
        peer_name: String,
        /// Who holds the peer ("held by pid N outside the dump", "which no dumped process holds").
        holders: String,
    },
    #[error("{what} {local} -> {peer} is not supported (connections are not checkpointed)")]
    Connected {
        what: &'static str,
        local: String,
        peer: String,
    },
    #[error("{conn} is in TCP state {state} (only established connections are dumped)")]
    TcpState { conn: String, state: u8 },
    #[error("{conn}: {queue} queue holds {len} bytes but {got} could be peeked")]
    TcpQueue {
        conn: String,
        queue: &'static str,
        len: usize,
        got: usize,
    },
    #[error("tee copied {copied} of {queued} buffered bytes")]
    ShortTee { copied: isize, queued: usize },
}

impl FdError {
    /// `map_err` helper for a failed syscall `op`.
    pub fn sys(op: impl Into<String>) -> impl FnOnce(io::Error) -> FdError {
        let op = op.into();
        move |source| FdError::Sys { op, source }
    }

    /// `map_err` helper for a failed `nix` call `op`.
    pub fn errno(op: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> FdError {
        let op = op.into();
        move |e| FdError::Sys {
            op,
            source: io::Error::from(e),
        }
    }

    /// The last OS error of a failed libc call `op`.
    pub fn last_os(op: impl Into<String>) -> FdError {
        FdError::Sys {
            op: op.into(),
            source: io::Error::last_os_error(),
        }
    }
}
