//! Open file descriptions that are not reopened by path (`file-descs`): pipes, sockets, eventfd, epoll,
//! timerfd, signalfd, memfd, inotify, pidfd. One entry per description, shared by every fd (of every task) that shared it
//! at dump time; fds point at them with [`super::FdFile::Desc`].
//!
//! Entries are ordered so that every description an entry refers to (an epoll's targets) comes first.

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use super::{FdFile, RecordKind};
use crate::Record;

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

impl Record for FileDesc {
    const KIND: RecordKind = RecordKind::FileDescs;
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
        /// is met, and both ends share the entry of that pair.
        ino: u64,
        peer: u64,
        sock_type: i32,
        /// Queued messages in order (one chunk for a stream socket).
        queued: Vec<Vec<u8>>,
    },
    /// An inet socket that is not connected: unbound, bound, or listening.
    Inet(InetSocket),
    /// A listening unix socket with no connection waiting to be accepted. `name` is `sun_path` as bound: a
    /// path, or a leading NUL byte and an abstract name.
    UnixListen { name: Vec<u8>, sock_type: i32 },
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
    /// carried once per FIFO, on the entry with `data: Some`.
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
    /// namespace (as [`super::PsTreeEntry::pid`]). The restored task reopens it with `pidfd_open` once the
    /// target exists; `O_NONBLOCK` (`PIDFD_NONBLOCK`) comes from [`FileDesc::flags`].
    Pidfd { pid: u32 },
}

/// What a pseudo-terminal pair carries: the slave's termios, the window size, the master's packet mode
/// and the slave's lock.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtyState {
    pub iflag: u32,
    pub oflag: u32,
    pub cflag: u32,
    pub lflag: u32,
    pub line: u8,
    /// `c_cc`, 32 bytes on this architecture.
    pub cc: Vec<u8>,
    pub ispeed: u32,
    pub ospeed: u32,
    /// `struct winsize`: rows, columns, x and y pixels.
    pub winsize: [u16; 4],
    pub packet: bool,
    pub locked: bool,
}

/// One watch of an inotify instance.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InotifyWatch {
    /// The watch descriptor the task knows the watch by.
    pub wd: i32,
    /// The event mask as the kernel keeps it (`IN_*` events plus `IN_ONESHOT`, `IN_EXCL_UNLINK`, ...).
    pub mask: u32,
    /// The watched inode's path at dump time (resolved from its file handle).
    pub path: String,
    /// The inode and device (`st_dev`) it had, for messages and checks.
    pub ino: u64,
    pub dev: u64,
    /// The path named a symlink itself (watched with `IN_DONT_FOLLOW`).
    pub symlink: bool,
}

/// One datagram waiting in a unix datagram socket's receive queue.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixDatagram {
    /// The sender's name as `recvfrom` reports it; empty when the sender was unnamed.
    pub from: Vec<u8>,
    pub data: Vec<u8>,
}

/// One epoll registration: the description behind the registered fd, the fd number the task used, the
/// events and the user data.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollTarget {
    pub file: FdFile,
    pub fd: i32,
    pub events: u32,
    pub data: u64,
}

/// A TCP or UDP socket, IPv4 or IPv6, not connected.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InetSocket {
    /// `AF_INET` or `AF_INET6`.
    pub family: i32,
    /// `SOCK_STREAM` or `SOCK_DGRAM`.
    pub sock_type: i32,
    pub protocol: i32,
    /// Local address (16 bytes; IPv4 in the first 4) and port; `None` when unbound.
    pub bound: Option<([u8; 16], u16)>,
    /// Listen backlog when listening.
    pub listen_backlog: Option<u32>,
    pub reuseaddr: bool,
    pub reuseport: bool,
    pub keepalive: bool,
    pub nodelay: bool,
    pub v6only: bool,
}

/// The state of an established TCP connection read in repair mode: sequence numbers, queued bytes,
/// the options negotiated in the handshake and the windows.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpConnection {
    /// `AF_INET` or `AF_INET6`.
    pub family: i32,
    /// Local and peer address (16 bytes; IPv4 in the first 4) and port.
    pub local: ([u8; 16], u16),
    pub peer: ([u8; 16], u16),
    /// `TCP_QUEUE_SEQ` of the send queue: the sequence number after the last byte written (`write_seq`).
    pub send_seq: u32,
    /// `TCP_QUEUE_SEQ` of the receive queue: the next sequence number expected (`rcv_nxt`).
    pub recv_seq: u32,
    /// Bytes written but not acknowledged by the peer (sent or not yet sent), in order; they end at
    /// `send_seq`.
    pub send_queue: Vec<u8>,
    /// Bytes received and acknowledged but not read by the task; they end at `recv_seq`.
    pub recv_queue: Vec<u8>,
    /// `TCP_MAXSEG`.
    pub mss: u32,
    /// `tcpi_options` of `TCP_INFO` (`TCPI_OPT_TIMESTAMPS` 1, `_SACK` 2, `_WSCALE` 4).
    pub options: u8,
    pub snd_wscale: u8,
    pub rcv_wscale: u8,
    /// `TCP_TIMESTAMP`: the connection's timestamp clock at dump, so the peer's PAWS check still passes.
    pub timestamp: u32,
    /// `TCP_REPAIR_WINDOW`.
    pub window: TcpWindow,
    pub reuseaddr: bool,
    pub reuseport: bool,
    pub keepalive: bool,
    pub nodelay: bool,
    pub v6only: bool,
    /// `SO_SNDBUF` / `SO_RCVBUF` as read (the kernel's doubled values). Restore sets them (which stops
    /// the kernel's buffer autotuning for this socket), raised while the queues are refilled if needed.
    pub sndbuf: u32,
    pub rcvbuf: u32,
}

/// `struct tcp_repair_window`.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TcpWindow {
    pub snd_wl1: u32,
    pub snd_wnd: u32,
    pub max_window: u32,
    pub rcv_wnd: u32,
    pub rcv_wup: u32,
}

/// One file lock a task held (`locks-<pid>`, one entry per lock): flock and OFD locks belong to the open
/// file description, POSIX record locks to the process.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLock {
    /// An fd of the task on the locked file's description.
    pub fd: i32,
    pub kind: LockKind,
    pub write: bool,
    pub start: u64,
    /// Length in bytes; 0 = to the end of the file (and beyond).
    pub len: u64,
}

impl Record for FileLock {
    const KIND: RecordKind = RecordKind::FileLocks;
}

/// Which lock API took a [`FileLock`].
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockKind {
    Flock,
    Posix,
    Ofd,
}
