//! The dumper's error type: every variant names the process and the resource it was working on.

use std::io;
use std::path::PathBuf;

use dormant_image::records::Pid;
use nix::errno::Errno;

use crate::files::error::FdError;
use crate::files::kind::FdKind;
use crate::stage::DumpStage;

/// Why a dump failed. Before the image is committed, every failure leaves the target running as before.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("pid {pid}: cannot read {path}: {source}")]
    ProcRead {
        pid: u32,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid}: cannot parse {file}: {reason}")]
    ProcParse {
        pid: u32,
        file: &'static str,
        reason: String,
    },
    #[error("pid {pid}: dormant lacks {capability}, which {purpose}")]
    MissingCapability {
        pid: u32,
        capability: &'static str,
        purpose: &'static str,
    },
    #[error("pid {pid}: PTRACE_SEIZE refused: {reason}")]
    SeizeDenied { pid: u32, reason: String },
    #[error("pid {pid}: {op} failed: {source}")]
    Ptrace {
        pid: u32,
        op: &'static str,
        #[source]
        source: Errno,
    },
    #[error("pid {pid}: unexpected wait status while seizing: {status}")]
    UnexpectedStop { pid: u32, status: String },
    #[error("pid {pid}: cgroup freezer: {what}: {source}")]
    Freezer {
        pid: u32,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid} does not exist")]
    NoSuchProcess { pid: u32 },
    #[error("pid {pid} is a zombie and cannot be dumped")]
    Zombie { pid: u32 },
    #[error("pid {pid} was reused by another process while it was being seized")]
    PidReused { pid: u32 },
    #[error("pid {pid} exited or was killed during the dump ({stage:?})")]
    ProcessGone { pid: u32, stage: DumpStage },
    #[error("pid {pid} has signal {signal} pending that the dump cannot preserve: {reason}")]
    PendingSignal {
        pid: u32,
        signal: i32,
        reason: &'static str,
    },
    #[error("pid {pid} mapping {start:#x}-{end:#x} {name:?}: {reason}")]
    UnsupportedVma {
        pid: u32,
        start: u64,
        end: u64,
        name: String,
        reason: String,
    },
    #[error("pid {pid} fd {fd}: {target} is not supported yet ({kind})")]
    UnsupportedFd {
        pid: u32,
        fd: i32,
        target: String,
        kind: &'static str,
    },
    /// An fd whose kind is supported but whose state cannot be dumped (or read).
    #[error("pid {pid} fd {fd} ({kind}): {source}")]
    FileDesc {
        pid: u32,
        fd: i32,
        kind: FdKind,
        #[source]
        source: FdError,
    },
    /// A lock held through an fd that the dump cannot carry (or read).
    #[error("pid {pid} fd {fd} (file lock): {source}")]
    FileLock {
        pid: u32,
        fd: i32,
        #[source]
        source: FdError,
    },
    /// A deleted file behind a mapping or the executable whose content cannot be carried.
    #[error("pid {pid} {what}: {path} is deleted and its content cannot be carried: {source}")]
    DeletedFile {
        pid: u32,
        what: String,
        path: String,
        #[source]
        source: Box<crate::files::FdError>,
    },
    #[error("pid {pid}: cannot stat {what} ({path}): {source}")]
    Stat {
        pid: u32,
        what: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid}: reading memory {addr:#x}+{len:#x}: {source}")]
    MemRead {
        pid: u32,
        addr: u64,
        len: u64,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid}: page walk of {start:#x}-{end:#x}: {source}")]
    PageWalk {
        pid: u32,
        start: u64,
        end: u64,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid}: shared memory object {ino}: {source}")]
    Shmem {
        pid: u32,
        ino: u64,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid}: image {what}: {source}")]
    Image {
        pid: u32,
        what: String,
        #[source]
        source: dormant_image::ImageError,
    },
    #[error("pid {pid}: remote query {what} failed: {reason}")]
    Parasite {
        pid: u32,
        what: &'static str,
        reason: String,
    },
    #[error("pid {pid}: failure injected at {stage:?}")]
    InjectedFailure { pid: u32, stage: DumpStage },
    #[error("pid {pid}: cannot kill after the dump: {source}")]
    Kill {
        pid: u32,
        #[source]
        source: Errno,
    },
    #[error("pid {pid} was killed but its pid was not freed within {secs} s (its parent does not reap it)")]
    KillTimeout { pid: u32, secs: u64 },
    #[error(
        "pid {pid} leads its session, whose controlling terminal is device {major}:{minor}: restoring a \
         session's controlling terminal is not supported (a shell job, whose session is led from outside the \
         tree, takes the restorer's terminal with --shell-job)"
    )]
    ControllingTerminal { pid: u32, major: u32, minor: u32 },
    #[error("dump of pid {pid} misconfigured: {reason}")]
    Config { pid: u32, reason: &'static str },
    #[error("pid {pid}: --root {}: not the root of the tree's mount namespace (/proc/{pid}/root): {reason}", given.display())]
    WrongRoot {
        pid: u32,
        given: PathBuf,
        reason: String,
    },
    #[error("building the page copy thread pool: {0}")]
    ThreadPool(String),
    #[error("pid {pid}: mount namespace: {source}")]
    Mounts {
        pid: u32,
        #[source]
        source: dormant_mounts::MountError,
    },
    /// State the restore could not rebuild; the restore refuses it with the same message.
    #[error("{0}")]
    Unrestorable(dormant_restorable::Refusal),
    #[error(
        "pid {pid} unshared a {kind} namespace for children it has not forked yet; such a namespace is not \
         carried (its next children would start in its own)"
    )]
    ForChildren { pid: u32, kind: &'static str },
    /// Threads that do not share their process's fd table or fs struct, or processes sharing one in a way
    /// the restore cannot clone again: restored, a change one makes would no longer (or would now) show
    /// in the other.
    #[error("pid {pid}: {what}; this sharing is not restored yet")]
    Sharing { pid: u32, what: String },
    #[error("namespaces: {0}")]
    Namespace(#[from] crate::ns::NsError),
    /// A caller's [`crate::dump::DumpEvent`] hook refused to go on.
    #[error("pid {pid}: {event}: {source}")]
    Hook {
        pid: u32,
        event: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("host: {what}: {source}")]
    Host {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

impl DumpError {
    /// The process a failure is about, when it names one.
    pub fn pid(&self) -> Option<Pid> {
        use DumpError::*;
        let pid = match self {
            ProcRead { pid, .. }
            | ProcParse { pid, .. }
            | Ptrace { pid, .. }
            | MissingCapability { pid, .. }
            | SeizeDenied { pid, .. }
            | UnexpectedStop { pid, .. }
            | Freezer { pid, .. }
            | NoSuchProcess { pid }
            | Zombie { pid }
            | PidReused { pid }
            | ProcessGone { pid, .. }
            | PendingSignal { pid, .. }
            | UnsupportedVma { pid, .. }
            | UnsupportedFd { pid, .. }
            | FileDesc { pid, .. }
            | FileLock { pid, .. }
            | DeletedFile { pid, .. }
            | Stat { pid, .. }
            | MemRead { pid, .. }
            | PageWalk { pid, .. }
            | Shmem { pid, .. }
            | Image { pid, .. }
            | Parasite { pid, .. }
            | InjectedFailure { pid, .. }
            | Kill { pid, .. }
            | KillTimeout { pid, .. }
            | Mounts { pid, .. }
            | WrongRoot { pid, .. }
            | Config { pid, .. }
            | ControllingTerminal { pid, .. }
            | ForChildren { pid, .. }
            | Sharing { pid, .. }
            | Hook { pid, .. } => *pid,
            Unrestorable(r) => r.pid(),
            ThreadPool(_) | Host { .. } | Namespace(_) => return None,
        };
        Some(Pid(pid))
    }
}

pub type Result<T, E = DumpError> = std::result::Result<T, E>;
