//! Rebuilding the open file descriptions of `file-descs` (pipes, FIFOs, unix socket pairs, listeners, named
//! connections and datagram sockets, inet sockets, eventfd, timerfd, signalfd, epoll, memfd, unlinked
//! files, inotify, pidfds). Every description is opened ONCE in the restoring process before any
//! task is forked, so every task that shared it inherits the same description through fork; each task then
//! moves it to its fd number ([`crate::launch::FdMove`]) and runs its [`ChildAction`]s (epoll
//! registrations, which are keyed by the fd number the task uses).
//!
//! Files of `/proc` are not opened here at all: the task opens them itself once the whole tree exists
//! ([`procfs`]). A pidfd is the other exception: its process does not exist before the fork, so a stand-in is opened here and
//! the task replaces it with `pidfd_open` ([`ChildAction::PidfdOpen`]) after it forked its own subtree;
//! the target must be the task itself, an ancestor or a descendant (they exist by then), which the restore
//! checks first. Tasks that shared one pidfd description each get their own (a pidfd holds no state but
//! its status flags).

mod action;
mod epoll;
mod error;
mod eventfd;
mod external;
mod fifo;
pub(crate) mod ghost;
mod inet;
mod inode;
mod inotify;
mod locks;
mod memfd;
mod open;
mod owner;
mod pidfd;
mod pipe;
pub(crate) mod procfs;
mod pty;
mod raw;
pub(crate) mod reg;
mod signalfd;
mod tcp;
mod timerfd;
pub(crate) mod tty;
mod udp_queue;
mod unix;

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use dormant_image::records::{
    DescId, DescKind, Fd, FileDesc, InodeAttrs, InotifyCarriedWatch, UdpQueue,
};
use dormant_image::PageStoreReader;

pub use action::{run_child_action, ChildAction};
pub use error::FileRestoreError;
pub use external::{InheritSpecError, Inherited};
pub use locks::{lock_description, verify as verify_locks, LockTaker};
pub use procfs::ProcOpen;

/// The descriptions of an image, open in this process.
#[derive(Debug, Default)]
pub struct OpenedFiles {
    fds: BTreeMap<DescId, OwnedFd>,
    descs: BTreeMap<DescId, FileDesc>,
}

/// Refuses an image holding an established TCP connection unless the restore rebuilds them
/// (`--tcp-established`).
pub fn refuse_established(
    descs: &[FileDesc],
    tcp_established: bool,
) -> Result<(), FileRestoreError> {
    if tcp_established {
        return Ok(());
    }
    match descs.iter().find_map(|d| match &d.kind {
        DescKind::TcpEstablished(c) => Some((d, c)),
        _ => None,
    }) {
        Some((d, c)) => Err(FileRestoreError::Bad {
            id: d.id.0,
            kind: error::kind_name(&d.kind),
            reason: format!(
                "the image holds the established TCP connection {}; restore it with --tcp-established",
                tcp::shown(c)
            ),
        }),
        None => Ok(()),
    }
}

/// Opens every description of `descs` (in image order: referenced ones come first). Established TCP
/// connections are rebuilt only with `tcp_established` (an image holding one is refused otherwise).
pub fn open_all(
    descs: &[FileDesc],
    tcp_established: bool,
) -> Result<OpenedFiles, FileRestoreError> {
    let none = BTreeMap::new();
    open_all_inheriting(
        descs,
        (&[], &none),
        &[],
        &[],
        tcp_established,
        &Inherited::default(),
    )
}

/// [`open_all`], external descriptions taken from `inherited` (`--inherit-fd`). `inotify_carried`: the
/// watches on carried inodes, added through the restored descriptions (inotify instances are opened
/// last, once those exist). `udp_queues`: the datagrams waiting in UDP sockets, sent to them again.
/// The carried inodes' owner, mode and times, and the contents stored in page stores, come as a pair.
pub fn open_all_inheriting(
    descs: &[FileDesc],
    (inode_attrs, contents): (&[InodeAttrs], &BTreeMap<DescId, (u64, PageStoreReader)>),
    inotify_carried: &[InotifyCarriedWatch],
    udp_queues: &[UdpQueue],
    tcp_established: bool,
    inherited: &Inherited,
) -> Result<OpenedFiles, FileRestoreError> {
    refuse_established(descs, tcp_established)?;
    let mut state = open::State::new(inherited.clone());
    let mut opened = OpenedFiles::default();
    // Listeners first: connections accepted from one are rebuilt through it, and an accepted TCP
    // connection rebinds the listener's port (allowed in repair mode while the listener exists; the
    // listener's own bind would conflict with the connection the other way round).
    // Pty masters first too: each opens its pair, and the slave's description takes the slave.
    // inotify instances after every other description: a watch on a carried inode is added through its
    // restored description. The clients of connections waiting in a listener's queue last of all (see
    // unix.rs).
    state.unix.plan(descs);
    let pending = |d: &&FileDesc| state.unix.is_pending_client(d);
    let rank = |d: &&FileDesc| match &d.kind {
        DescKind::UnixListen { .. } => 0,
        DescKind::Inet(s) if s.listen_backlog.is_some() => 0,
        DescKind::Pty { master: true, .. } => 0,
        DescKind::Inotify { .. } => 2,
        _ => 1,
    };
    let mut ordered: Vec<&FileDesc> = descs.iter().collect();
    ordered.sort_by_key(|d| if pending(d) { 3 } else { rank(d) });
    for d in ordered {
        // Opened by their tasks once the whole tree exists (see procfs.rs).
        if procfs::of(d).is_some() {
            opened.descs.insert(d.id, d.clone());
            continue;
        }
        let attrs = inode_attrs.iter().find(|a| a.desc == d.id);
        if let DescKind::Inotify { .. } = d.kind {
            state.inotify_carried = inotify_carried
                .iter()
                .filter(|w| w.inotify == d.id)
                .map(|w| {
                    let fd = opened
                        .fds
                        .get(&w.file)
                        .ok_or_else(|| FileRestoreError::Bad {
                            id: d.id.0,
                            kind: "inotify",
                            reason: format!(
                                "wd {} watches description {}, which is not open",
                                w.wd, w.file.0
                            ),
                        })?;
                    Ok((w.wd, w.mask, fd.as_raw_fd()))
                })
                .collect::<Result<_, FileRestoreError>>()?;
        }
        state.udp_queue = udp_queues
            .iter()
            .find(|q| q.socket == d.id)
            .map_or_else(Vec::new, |q| q.datagrams.clone());
        let fd = open::open_one(d, attrs, contents.get(&d.id), &mut state)?;
        opened.fds.insert(d.id, fd);
        opened.descs.insert(d.id, d.clone());
    }
    unix::fill_queues(&state.unix, descs, &opened.fds)?;
    unix::finish(&mut state.unix, descs, &opened.fds)?;
    // Established TCP connections leave repair mode last, when every end in the image exists.
    for d in descs {
        let (DescKind::TcpEstablished(c), Some(fd)) = (&d.kind, opened.fds.get(&d.id)) else {
            continue;
        };
        tcp::finish(fd, c).map_err(|(what, source)| FileRestoreError::Sys {
            id: d.id.0,
            kind: error::kind_name(&d.kind),
            what: format!("{}: {what}", tcp::shown(c)),
            source,
        })?;
    }
    for d in descs {
        if let Some(fd) = opened.fds.get(&d.id) {
            open::set_status_flags(d, fd)?;
        }
    }
    Ok(opened)
}

impl OpenedFiles {
    /// The open description `id`, if the image has it.
    pub fn get(&self, id: DescId) -> Option<BorrowedFd<'_>> {
        self.fds.get(&id).map(|f| f.as_fd())
    }

    /// Description `id` when it is a proc file, which its task opens itself at the end ([`procfs`]).
    pub fn proc_file(&self, id: DescId) -> Option<(&FileDesc, &dormant_image::records::ProcFile)> {
        let d = self.descs.get(&id)?;
        procfs::of(d).map(|f| (d, f))
    }

    /// The child-side actions of a task with fd table `fds` (`fd` numbers are the task's own): pidfds
    /// first, then epoll registrations.
    pub fn child_actions_for(&self, fds: &[Fd]) -> Vec<ChildAction> {
        action::for_fds(&self.descs, fds)
    }

    /// The highest fd number an epoll of the task with fd table `fds` watches (-1 when none): the child
    /// puts a file there for a moment when the task had closed the number.
    pub fn watched_fd_max(&self, fds: &[Fd]) -> i32 {
        fds.iter()
            .filter_map(|f| match f.file {
                dormant_image::records::FdFile::Desc(id) => self.descs.get(&id),
                _ => None,
            })
            .filter_map(|d| match &d.kind {
                DescKind::Epoll { targets } => targets.iter().map(|t| t.fd).max(),
                _ => None,
            })
            .max()
            .unwrap_or(-1)
    }

    /// Sets each description's owner and signal (`F_SETOWN_EX`, `F_SETSIG`) on the restorer's own copy, once
    /// every task and thread of the tree exists and before any runs: an owner may be a thread, which only
    /// the blob creates, and the ids recorded are the dumper's, which read the same in the restorer's pid
    /// namespace (a nested tree's own ids would not). Both are properties of the description, so the
    /// tasks' fds see them. The owner's credentials (which decide whom SIGIO may signal) become the
    /// restorer's.
    pub fn set_owners(&self) -> Result<(), FileRestoreError> {
        self.set_owners_mapped(&|pid| pid)
    }

    /// [`Self::set_owners`], with each recorded owner pid translated by `host` (a tree whose host pids
    /// the kernel chose).
    pub fn set_owners_mapped(&self, host: &dyn Fn(u32) -> u32) -> Result<(), FileRestoreError> {
        for (id, d) in &self.descs {
            if let Some(fd) = self.fds.get(id) {
                owner::set(d, fd, host)?;
            }
        }
        Ok(())
    }
}
