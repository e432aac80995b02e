//! dormant-restorer: rebuilds a process from a dormant image.
//!
//! What it does: reads and checks an image (format, arch, xsave features, vDSO, files, pids, page crcs),
//! forks the process tree top-down with the original pids (clone3 `set_tid`; each restored task forks its
//! own children after taking its session and group, see [`tree`]; short-lived helper processes stand in for
//! session and group leaders that are gone), recreates zombies, rebuilds fds, umask
//! and rlimits in each child, then hands over to the no_std restorer blob (built from `blob/` by
//! `build.rs`) which swaps in the saved address space, vDSO, mm layout, signal actions, rseq, interval timers
//! and POSIX timers (with their saved ids, `PR_TIMER_CREATE_RESTORE_IDS`), creates the other threads with
//! their tids, re-queues pending signals and `rt_sigreturn`s every thread into its saved registers. The
//! caller traces the whole tree until those sigreturns, removes each blob with one injected munmap and lets
//! the processes run.
//!
//! Open file descriptions other than path-reopened files (pipes, FIFOs, sockets, eventfd, epoll, memfd,
//! inotify, ...) are rebuilt by [`files`], once each, before the fork; regular files are reopened once per
//! tree (`TreeShared` in `task`), so descriptions shared across a fork stay shared. pidfds are the
//! exception: each holder reopens its own with `pidfd_open` after the fork, once its target exists.
//!
//! A container image (one with a mount tree) is restored inside its namespaces: [`container`] moves the
//! restoring process into them ([`ns`] for uts/ipc/net/cgroup/user, then a rebuilt mount namespace and a
//! new pid namespace, one level deep) before the tree is forked, which changes the calling process's own
//! namespaces. A tree whose root is the init of its own pid namespace without being a container is forked
//! into a new pid namespace with its inner pids too (`ns::pid`).
//!
//! Established TCP connections are rebuilt in repair mode with [`RestoreBuilder::tcp_established`].
//!
//! What it does NOT do (yet): deeper nested pid namespaces, COW sharing between processes, credentials
//! inside a restored user namespace, TCP connections in states other than established. It never prints or exits; it logs
//! through `log`. [`Restore::run`] forks from the calling process, which must be single-threaded.

pub mod area;
pub mod blob;
pub mod container;
mod cpu;
mod error;
pub mod external;
pub mod files;
mod image;
pub mod launch;
mod nested_mounts;
pub mod ns;
mod procself;
pub mod refusal;
mod restore;
pub mod sigframe;
mod sysv_map;
mod task;
pub mod tree;

pub use error::RestoreError;
pub use external::{External, InheritFd};
pub use launch::RootParent;
pub use restore::{ExitStatus, ReleaseFn, ReleaseHook, Restore, RestoreBuilder, Restored};
