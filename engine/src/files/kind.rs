//! The kinds of open file a dump handles, classified once per fd (from the link target, `stat` of the
//! fd, and for sockets the domain), each with its module in this directory.

use std::fmt;

/// Identity of a FIFO: (dev, ino).
pub type FifoKey = (u64, u64);

/// What an fd is, and what its dump needs to know from the classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdKind {
    /// A regular file or directory, reopened by path ([`super::reg`]).
    Reg,
    /// A character device reopened by path: `/dev/null`, `/dev/zero`, `/dev/[u]random`, and under
    /// `--shell-job` `/dev/tty` ([`super::dev`]).
    Dev,
    /// The shell job's terminal on fds 0-2, inherited from the restorer ([`super::tty`]).
    Tty,
    /// A regular file unlinked while open, carried with its content ([`super::ghost`]).
    Ghost,
    /// One end of pipe `ino` ([`super::pipe`]).
    Pipe {
        ino: u64,
    },
    /// A FIFO opened by path ([`super::fifo`]).
    Fifo {
        key: FifoKey,
    },
    /// A unix socket, inode `ino` ([`super::unix`]).
    Unix {
        ino: u64,
    },
    /// A TCP or UDP socket of `family` ([`super::inet`], [`super::tcp`]).
    Inet {
        family: i32,
    },
    EventFd,
    TimerFd,
    SignalFd,
    Epoll,
    Memfd,
    Inotify,
    Pidfd,
    /// A file or directory of a proc mount ([`super::procfs`]).
    Proc,
    PtyMaster,
    /// The slave `/dev/pts/<index>`.
    PtySlave {
        index: u32,
    },
}

impl FdKind {
    /// The name used in messages.
    pub fn name(&self) -> &'static str {
        match self {
            FdKind::Reg => "file",
            FdKind::Dev => "device",
            FdKind::Tty => "terminal",
            FdKind::Ghost => "unlinked file",
            FdKind::Pipe { .. } => "pipe",
            FdKind::Fifo { .. } => "fifo",
            FdKind::Unix { .. } | FdKind::Inet { .. } => "socket",
            FdKind::EventFd => "eventfd",
            FdKind::TimerFd => "timerfd",
            FdKind::SignalFd => "signalfd",
            FdKind::Epoll => "epoll",
            FdKind::Memfd => "memfd",
            FdKind::Inotify => "inotify",
            FdKind::Pidfd => "pidfd",
            FdKind::Proc => "proc file",
            FdKind::PtyMaster => "pty master",
            FdKind::PtySlave { .. } => "pty slave",
        }
    }

    /// Whether the fd is reopened by path and needs no copy of it (no state beyond flags and offset).
    pub fn by_path(&self) -> bool {
        matches!(self, FdKind::Reg | FdKind::Dev | FdKind::Tty)
    }
}

impl fmt::Display for FdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
