//! Open files: each process's fd table (`fds-<pid>`) and the open file descriptions fds refer to: files
//! reopened by path (`reg-files`, [`reg`]) and descriptions that are not (`file-descs`: pipes, sockets,
//! eventfd, epoll, timerfd, signalfd, memfd, inotify, pidfd, ptys, ghost files, external ones). One entry
//! per description, shared by every fd (of every task) that shared it at dump time; fds point at them with
//! [`FdFile::Desc`]. Entries of `file-descs` are ordered so that every description an entry refers to (an
//! epoll's targets) comes first. Each kind whose state has a type of its own has its file here.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use super::file_names::{FILE_DESCS, REG_FILES};
use super::ids::{FileId, Pid};
use crate::error::Problems;

pub mod epoll;
pub mod ghost;
pub mod inet;
pub mod inode;
pub mod inotify;
pub mod locks;
pub mod pidfd;
pub mod procfs;
pub mod pty;
pub mod reg;
pub mod tcp;
pub mod unix;
/// Schema 1 of `file-descs`, public for the schema lock test (which traces its enum whole).
#[doc(hidden)]
pub mod v1;
/// Schema 2 of `file-descs`, public for the schema lock test.
#[doc(hidden)]
pub mod v2;
/// Schema 3 of `file-descs`, public for the schema lock test.
#[doc(hidden)]
pub mod v3;

pub use epoll::EpollTarget;
pub use ghost::{DeletedContent, DeletedFile};
pub use inet::{InetSocket, UdpDatagram, UdpQueue};
pub use inode::{FileTime, InodeAttrs, StoredContent};
pub use inotify::{InotifyCarriedWatch, InotifyWatch};
pub use locks::{FileLock, LockKind, LockLineError};
pub use procfs::ProcFile;
pub use pty::PtyState;
pub use reg::{FileStat, RegFile};
pub use tcp::{TcpConnection, TcpWindow};
pub use unix::{UnixDatagram, UnixPending};

/// One task's fd table (`fds-<pid>`, one entry per fd, ascending).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fd {
    pub fd: i32,
    pub cloexec: bool,
    pub file: FdFile,
}

/// What an fd refers to.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FdFile {
    /// A regular file, directory or device reopened by path.
    Reg(FileId),
    /// The controlling terminal of a shell job: restore uses the terminal dormant itself was started on.
    InheritedTty,
    /// A description in `file-descs` (pipe, socket, eventfd, ...).
    Desc(DescId),
}

/// An entry of `file-descs`.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DescId(pub u32);

/// One open file description.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDesc {
    pub id: DescId,
    /// `O_*` status flags from fdinfo (without `O_CLOEXEC`); `O_NONBLOCK` and `O_ASYNC` are re-applied with
    /// `F_SETFL`.
    pub flags: u32,
    pub kind: DescKind,
    /// Who gets SIGIO/SIGURG for this description (`F_SETOWN_EX`), and which signal (`F_SETSIG`).
    pub owner: Option<FileOwner>,
}

/// `struct f_owner_ex` plus the `F_SETSIG` signal (0 = SIGIO).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOwner {
    /// `F_OWNER_TID`, `F_OWNER_PID` or `F_OWNER_PGRP`.
    pub kind: i32,
    pub pid: u32,
    pub signal: i32,
}

/// What a description is, with the state restore needs to rebuild it.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DescKind {
    /// One end of a pipe or FIFO-less pipe (`pipe:[inode]`). Both ends of one pipe share `pipe`; the
    /// buffered bytes are carried once, on the entry with `data: Some`.
    PipeEnd {
        pipe: u64,
        write: bool,
        /// `F_GETPIPE_SZ`.
        size: u32,
        data: Option<Vec<u8>>,
    },
    /// `eventfd` with its counter.
    EventFd { count: u64, semaphore: bool },
    /// `timerfd` with its clock, the time to the next expiry (0 = disarmed) and the expirations that
    /// happened but were not read yet (`ticks`, put back with `TFD_IOC_SET_TICKS`).
    TimerFd {
        clock: i32,
        interval_ns: u64,
        value_ns: u64,
        ticks: u64,
    },
    /// `signalfd` with its mask.
    SignalFd { mask: u64 },
    /// `epoll` instance; the registrations are re-added in the task (see [`EpollTarget`]).
    Epoll { targets: Vec<EpollTarget> },
    /// `memfd_create` file with its content.
    Memfd {
        name: String,
        data: Vec<u8>,
        pos: u64,
        seals: u32,
    },
    /// One end of a unix socket pair (`socketpair`, or two sockets connected to each other). `queued` is
    /// what this end's receive queue held (peeked, not consumed): restore sends it from the peer.
    UnixPair {
        /// Inode of this socket and of its peer (from sock_diag); the pair is created when the lower inode
        /// is met, and both ends share the entry of that pair. A peer closed before the dump is
        /// [`unix::CLOSED_PEER`]` | ino` (schema 2).
        ino: u64,
        peer: u64,
        sock_type: i32,
        /// Queued messages in order (one chunk for a stream socket).
        queued: Vec<Vec<u8>>,
        /// This end's shutdown state ([`unix::RCV_SHUTDOWN`], [`unix::SEND_SHUTDOWN`] bits); `None` when the
        /// image did not record it (schema 1).
        shutdown: Option<u8>,
    },
    /// An inet socket other than an established TCP connection: unbound, bound, listening, or a
    /// connected UDP socket (schema 3).
    Inet(InetSocket),
    /// A listening unix socket. `name` is `sun_path` as bound: a path, or a leading NUL byte and an
    /// abstract name.
    UnixListen {
        name: Vec<u8>,
        sock_type: i32,
        /// The path was unlinked after the bind: restore binds and unlinks it again (see
        /// [`DescKind::UnixConn::unlinked`]).
        unlinked: Option<bool>,
        /// The `listen` backlog (schema 3); `None` when the image did not record it: restore uses the
        /// system maximum.
        backlog: Option<u32>,
        /// The connections waiting to be accepted, in the order `accept` returns them (schema 3).
        pending: Vec<UnixPending>,
    },
    /// A regular file unlinked while open ("ghost"), carried with its content: `path` is where it lived
    /// (restore creates an unnamed file in that directory), `mode` its permission bits.
    Ghost {
        path: String,
        mode: u32,
        data: Vec<u8>,
        pos: u64,
    },
    /// One open of a FIFO (named pipe), reopened by `path` with the access mode of [`FileDesc::flags`].
    /// `dev`/`ino` identify the FIFO at dump time (all ends of one FIFO share them); the buffered bytes are
    /// carried once per FIFO, on the entry with `data: Some`. A FIFO unlinked while open keeps the
    /// kernel's ` (deleted)` at the end of `path`: restore makes one new FIFO for all such ends (its owner,
    /// mode and times in `inode-attrs`, on one of them) and unlinks it again.
    Fifo {
        path: String,
        dev: u64,
        ino: u64,
        /// `F_GETPIPE_SZ`.
        size: u32,
        data: Option<Vec<u8>>,
    },
    /// One end of a connected unix stream or seqpacket socket of which at least one side has a name: an
    /// accepted connection (its name is the listener's) and its client. Restore connects a new socket to a
    /// listener of that name (the restored one, or a temporary one) and accepts, so both names read back.
    UnixConn {
        ino: u64,
        peer: u64,
        sock_type: i32,
        /// This socket's name (`sun_path` bytes as in [`DescKind::UnixListen`]); empty when unnamed.
        name: Vec<u8>,
        /// The peer's name; empty when unnamed.
        peer_name: Vec<u8>,
        /// What this end's receive queue held (restore sends it from the peer).
        queued: Vec<Vec<u8>>,
        /// As [`DescKind::UnixPair::shutdown`].
        shutdown: Option<u8>,
        /// `name` is a path and no socket file was at that path at dump time (it was unlinked): restore
        /// removes the file its bind creates once every socket exists. `None` when the image did not record
        /// it (schema 1).
        unlinked: Option<bool>,
    },
    /// A unix datagram socket that is bound, or connected to a bound one (a mutually connected unnamed
    /// pair is a [`DescKind::UnixPair`]). Restore binds it, re-sends its queue, then connects it.
    UnixDgram {
        ino: u64,
        /// Bound name; empty when unnamed.
        name: Vec<u8>,
        /// The socket it is connected to (inode and name), if any.
        peer: Option<u64>,
        peer_name: Vec<u8>,
        queued: Vec<UnixDatagram>,
        /// As [`DescKind::UnixPair::shutdown`].
        shutdown: Option<u8>,
        /// As [`DescKind::UnixConn::unlinked`].
        unlinked: Option<bool>,
    },
    /// An established TCP connection (IPv4 or IPv6), dumped with `TCP_REPAIR` under `--tcp-established`
    /// and rebuilt in repair mode (no handshake: the peer keeps its socket and never sees a reconnect).
    TcpEstablished(TcpConnection),
    /// A description whose other side lives outside the dumped tree and is not carried (CRIU's external
    /// files): today one end of a pipe whose other end only processes outside the dump held (`key` is
    /// `pipe:[INODE]`), such as the stdio pipes kata-agent hands a container. Restore uses the descriptor
    /// the caller hands over for the key (`--inherit-fd fd[N]:KEY`) and fails without one.
    External { key: String },
    /// One end of a pseudo-terminal pair whose two ends are both held in the dumped tree: the master
    /// (`/dev/ptmx`) or the slave (`/dev/pts/INDEX`). Restore opens a new pair (its index may differ)
    /// from the master's record, opened first, and gives its slave to the slave's description; only the
    /// master can tell packet mode and lock, so a slave's `state` has them false.
    Pty {
        master: bool,
        index: u32,
        state: PtyState,
    },
    /// An inotify instance with its watches, each re-added by path so it gets the same watch descriptor
    /// (the kernel hands wds out cyclically upward; restore burns placeholders up to each wanted number).
    /// Dumped only with an empty event queue.
    Inotify { watches: Vec<InotifyWatch> },
    /// A pidfd (`pidfd_open`) of a process of the dumped tree, named by its pid in the dumper's pid
    /// namespace (as [`crate::records::PsTreeEntry::pid`]). The restored task reopens it with `pidfd_open` once the
    /// target exists; `O_NONBLOCK` (`PIDFD_NONBLOCK`) comes from [`FileDesc::flags`].
    Pidfd { pid: u32 },
    /// A unix socket that is neither connected nor listening: unbound, or bound to `name` (schema 2).
    UnixUnconnected {
        sock_type: i32,
        /// Bound name; empty when unbound.
        name: Vec<u8>,
        /// As [`DescKind::UnixConn::unlinked`].
        unlinked: bool,
        /// As [`DescKind::UnixPair::shutdown`].
        shutdown: u8,
    },
    /// An open file or directory of a proc mount (schema 4): reopened by the restored task itself once
    /// every task and thread of the tree exists, so `/proc/PID/...` names the restored process.
    Proc(ProcFile),
}

/// Checks the files reopened by path: each id once.
pub(crate) fn check_reg_files(files: &[RegFile], p: &mut Problems) {
    let mut seen = BTreeSet::new();
    for f in files {
        if !seen.insert(f.id) {
            p.add(REG_FILES, format!("file {} is listed twice", f.id.0));
        }
    }
}

/// Checks the descriptions: each id once, and what each refers to (epoll targets, pidfd processes, the
/// live process or thread of a proc file: `live` holds pids and tids).
pub(crate) fn check_descs(
    descs: &[FileDesc],
    files: &BTreeSet<FileId>,
    processes: &BTreeSet<Pid>,
    live: &BTreeSet<Pid>,
    p: &mut Problems,
) {
    let mut earlier = BTreeSet::new();
    for d in descs {
        match &d.kind {
            DescKind::Epoll { targets } => epoll::check_epoll(d.id, targets, &earlier, files, p),
            DescKind::Pidfd { pid } => pidfd::check_pidfd(d.id, *pid, processes, p),
            DescKind::Proc(f) => procfs::check_proc(d.id, f, live, p),
            _ => {}
        }
        if !earlier.insert(d.id) {
            p.add(
                FILE_DESCS,
                format!("description {} is listed twice", d.id.0),
            );
        }
    }
}

/// Checks one fd table: fds ascending, each once, each referring to a file or description of the image.
pub(crate) fn check_fds(
    file: &str,
    fds: &[Fd],
    files: &BTreeMap<FileId, RegFile>,
    descs: &BTreeSet<DescId>,
    p: &mut Problems,
) {
    for pair in fds.windows(2) {
        if pair[0].fd >= pair[1].fd {
            p.add(
                file,
                format!(
                    "fds {} and {} are not in ascending order",
                    pair[0].fd, pair[1].fd
                ),
            );
        }
    }
    for fd in fds {
        if fd.fd < 0 {
            p.add(file, format!("fd {} is negative", fd.fd));
        }
        match fd.file {
            FdFile::Reg(id) if !files.contains_key(&id) => p.add(
                file,
                format!("fd {}: file {} is not in {REG_FILES}", fd.fd, id.0),
            ),
            FdFile::Desc(id) if !descs.contains(&id) => p.add(
                file,
                format!("fd {}: description {} is not in {FILE_DESCS}", fd.fd, id.0),
            ),
            _ => {}
        }
    }
}
