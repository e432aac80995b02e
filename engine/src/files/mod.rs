//! Open files: the fd table of a task, and the table of files (by path) that fds, mappings and the
//! executable refer to.
//!
//! Every fd is classified once ([`FdKind`], [`classify`]) and dumped by its kind's module. By path: regular
//! files and directories ([`reg`]), `/dev/null`, `/dev/zero`, `/dev/[u]random` ([`dev`]), and with
//! `shell_job` a terminal on fds 0-2 ([`tty`]). By state ([`FileCollector`]): pipes and FIFOs with their
//! bytes, connected unix socket pairs and named unix connections (accepted ones and their clients) with
//! queued messages, bound or connected unix datagram sockets with their queues, unix listeners,
//! unconnected TCP/UDP sockets (bound, listening), established TCP connections with `--tcp-established`
//! (repair mode, [`RepairedSockets`]), eventfd, timerfd, signalfd, epoll, memfd, unlinked files, inotify
//! (watches by path, same wd numbers; refused with unread events), pidfds of processes of the dumped tree,
//! open files of `/proc` ([`procfs`]);
//! flock, OFD and POSIX record locks. Anything else (established connections without the flag, netlink
//! sockets, ...) fails the dump with an error naming the process, the fd and its type ([`FdError`]).

pub mod classify;
mod collector;
pub mod dev;
mod epoll;
pub mod error;
mod eventfd;
mod external;
mod fifo;
mod ghost;
mod inet;
mod inode;
mod inotify;
pub mod kind;
mod locks;
mod memfd;
mod pidfd;
mod pipe;
pub mod procfs;
mod pty;
pub mod reg;
mod signalfd;
mod sys;
pub mod table;
mod tcp;
mod timerfd;
pub mod tty;
mod unix;

pub use collector::FileCollector;
pub use error::FdError;
pub use kind::FdKind;
pub use table::{file_stat, same_file, stat_proc_link, FileTable};
pub use tcp::RepairedSockets;
