//! The per-dump collector of open file descriptions: every fd of every task is looked at once, classified
//! ([`super::classify`]) and handed to its kind's module; fds that share a description (kcmp `KCMP_FILE`)
//! share one record, so restore can open it once and let every task inherit it.

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;

use dormant_image::records::{
    names, DeletedFile, DescId, DescKind, Fd, FdFile, FileDesc, FileId, FileLock, InodeAttrs,
    InotifyCarriedWatch, LockKind, Pid, StoredContent, UdpQueue,
};
use dormant_image::ImageWriter;

use super::classify::{self, Classified};
use super::error::FdError;
use super::fifo::Fifos;
use super::kind::FdKind;
use super::pipe::Pipes;
use super::sys::{self, TaskFds};
use super::table::FileTable;
use super::tcp::RepairedSockets;
use super::{
    epoll, eventfd, external, ghost, inet, inode, inotify, locks, memfd, pidfd, procfs, pty,
    signalfd, timerfd, unix,
};
use crate::error::{DumpError, Result};
use crate::proc;

/// An fd already dumped: its description is reused by later fds that kcmp says are the same.
#[derive(Debug)]
struct Seen {
    pid: u32,
    fd: i32,
    target: String,
    file: FdFile,
}

/// Collects the fds of every task of one dump; see the module docs.
#[derive(Debug, Default)]
pub struct FileCollector {
    shell_job: bool,
    descs: Vec<FileDesc>,
    seen: Vec<Seen>,
    pipes: Pipes,
    fifos: Fifos,
    /// Locks per task, written as `locks-<pid>`.
    locks: HashMap<u32, Vec<FileLock>>,
    /// Locks already recorded: description locks by description, POSIX ones by task and file.
    locks_seen: HashSet<(u32, String, FileLockKey)>,
    /// Unix socket peers, read once on the first unix socket.
    unix_peers: Option<unix::DiagMap>,
    /// Unix datagram sockets connected by path to a socket whose path was unlinked
    /// ([`unix::peer_path_gone`]).
    unix_peer_path_gone: HashSet<u64>,
    /// Dump established TCP connections in repair mode instead of refusing them (`--tcp-established`).
    tcp_established: bool,
    /// Copies of the TCP sockets left in repair mode; see [`RepairedSockets`].
    repaired: RepairedSockets,
    /// Dump a pipe end whose other end only processes outside the dump hold as [`DescKind::External`]
    /// instead of refusing the dump (see [`FileCollector::external_pipes`]).
    external_pipes: bool,
    /// Every pid of the dump (processes and zombies): the processes a pidfd may refer to.
    tree_pids: HashSet<u32>,
    /// What a proc file may be about ([`procfs`]).
    proc_targets: procfs::ProcTargets,
    /// The proc file descriptions, with the process that holds them (one process each: every restored
    /// task opens its own).
    proc_descs: HashMap<DescId, u32>,
    /// Owner, mode and times of the inodes whose content is carried (unlinked files, memfds).
    inode_attrs: Vec<InodeAttrs>,
    /// The first fd met on each carried inode (dev, ino); see [`inode::Carried`].
    carried: inode::Carried,
    /// inotify watches no path names, by instance (with the pid and fd it was met on), matched with the
    /// carried inodes once every fd is dumped.
    inotify_pending: Vec<(DescId, u32, i32, inotify::Unresolved)>,
    /// The datagrams waiting in UDP sockets, by description (`udp-queues`).
    udp_queues: Vec<UdpQueue>,
    /// The content of each memfd and unlinked-file description not stored yet (see
    /// [`FileCollector::store_contents`]), and those stored (`desc-contents`).
    contents: Vec<(DescId, memfd::Content)>,
    stored: Vec<StoredContent>,
    /// Every regular file with the mount (`mnt_id`) it was opened on, for nested mount namespaces.
    reg_mounts: Vec<(FileId, u64)>,
}

/// What tells two listings of one lock apart: (kind, write, start, len).
type FileLockKey = (u8, bool, u64, u64);

/// What one fd's dump needs besides its kind and the dumper's copy of it.
struct FdContext<'a> {
    pid: u32,
    fd: i32,
    target: &'a str,
    /// Open flags without `O_CLOEXEC`, and the file position.
    flags: u32,
    pos: u64,
    info_text: &'a str,
    mnt_id: u64,
    /// The task's fds dumped so far (what an epoll may watch).
    task_fds: &'a [Fd],
}

impl FileCollector {
    pub fn new(shell_job: bool) -> Self {
        Self {
            shell_job,
            ..Self::default()
        }
    }

    /// Every regular file opened for an fd, with the mount (`mnt_id`) it was opened on.
    pub fn reg_mounts(&self) -> &[(FileId, u64)] {
        &self.reg_mounts
    }

    /// Dump established TCP connections with `TCP_REPAIR` (they are refused otherwise).
    pub fn tcp_established(mut self, yes: bool) -> Self {
        self.tcp_established = yes;
        self
    }

    /// The sockets this dump put in repair mode: the caller keeps them until the target is dead (then
    /// [`RepairedSockets::close_silently`]) or drops them to switch repair mode off.
    pub fn take_repaired(&mut self) -> RepairedSockets {
        std::mem::take(&mut self.repaired)
    }

    /// Lets pipes whose other end is held only outside the dump be dumped as external (`pipe:[INODE]`,
    /// handed in again at restore with `--inherit-fd`): always for a container (its stdio comes from the
    /// agent), on request ([`crate::External::Pipes`]) otherwise.
    pub fn external_pipes(&mut self, yes: bool) {
        self.external_pipes = yes;
    }

    /// The pids of the dumped tree (processes and zombies), which pidfds may refer to; set before the
    /// first [`FileCollector::dump_task`].
    pub fn tree_pids(&mut self, pids: impl IntoIterator<Item = u32>) {
        self.tree_pids = pids.into_iter().collect();
    }

    /// What proc files may be about: every live task and thread (tid to pid) and the zombies; `refused`
    /// says why none can be carried in this dump, if so.
    pub fn proc_targets(
        &mut self,
        tasks: impl IntoIterator<Item = (u32, u32)>,
        zombies: impl IntoIterator<Item = u32>,
        refused: Option<&'static str>,
    ) {
        self.proc_targets = procfs::ProcTargets {
            tasks: tasks.into_iter().collect(),
            zombies: zombies.into_iter().collect(),
            refused,
        };
    }

    /// The fd table of `pid` (ascending). Files reachable by path go into `table`; the rest into this
    /// collector's descriptions. Epolls come last, once the fds they watch have their records.
    pub fn dump_task(&mut self, pid: u32, table: &mut FileTable) -> Result<Vec<Fd>> {
        let task = TaskFds::open(pid).map_err(|source| DumpError::ProcRead {
            pid,
            path: format!("pidfd of {pid}").into(),
            source,
        })?;
        let mut out = Vec::new();
        let mut epolls = Vec::new();
        for fd in proc::numbered_entries(pid, "fd")? {
            let target = proc::read_link(pid, &format!("fd/{fd}"))?;
            if target == "anon_inode:[eventpoll]" {
                epolls.push((fd, target));
                continue;
            }
            out.push(self.dump_one(&task, fd, target, table, &[])?);
        }
        // An epoll may watch another epoll: one whose watch is not found among the fds dumped so far
        // waits for the next round, until a round dumps none (then its error stands).
        let mut pending = epolls;
        while !pending.is_empty() {
            let before = pending.len();
            let mut waiting = Vec::new();
            let mut last_err = None;
            for (fd, target) in pending {
                let so_far = out.clone();
                match self.dump_one(&task, fd, target.clone(), table, &so_far) {
                    Ok(f) => out.push(f),
                    Err(
                        e @ DumpError::FileDesc {
                            source: FdError::EpollTarget { .. },
                            ..
                        },
                    ) => {
                        waiting.push((fd, target));
                        last_err = Some(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            if let Some(e) = last_err.filter(|_| waiting.len() == before) {
                return Err(e);
            }
            pending = waiting;
        }
        out.sort_by_key(|f| f.fd);
        Ok(out)
    }

    fn dump_one(
        &mut self,
        task: &TaskFds,
        fd: i32,
        target: String,
        table: &mut FileTable,
        task_fds: &[Fd],
    ) -> Result<Fd> {
        let pid = task.pid();
        let info_text = proc::read_string(pid, &format!("fdinfo/{fd}"))?;
        let info = proc::fdinfo::parse(&info_text).map_err(|reason| DumpError::ProcParse {
            pid,
            file: "fdinfo",
            reason: format!("fd {fd}: {reason}"),
        })?;
        let cloexec = info.flags & libc::O_CLOEXEC as u32 != 0;
        let flags = info.flags & !(libc::O_CLOEXEC as u32);
        let held = locks::parse(fd, &info_text).map_err(|source| DumpError::FileLock {
            pid,
            fd,
            source,
        })?;
        if let Some(file) = self.shared_with_earlier(pid, fd, &target) {
            self.check_proc_holder(pid, fd, &target, &file, &held)?;
            self.add_locks(pid, &target, &file, held);
            return Ok(Fd { fd, cloexec, file });
        }
        let Classified { kind, stat, dup } = classify::classify(task, fd, &target, self.shell_job)?;
        let file = match (kind, stat, dup) {
            (FdKind::Tty, _, _) => FdFile::InheritedTty,
            (FdKind::Reg | FdKind::Dev, Some(stat), _) => {
                let id = table.open_file(&target, flags, info.pos, stat);
                self.reg_mounts.push((id, info.mnt_id));
                FdFile::Reg(id)
            }
            (_, _, Some(dup)) => {
                let cx = FdContext {
                    pid,
                    fd,
                    target: &target,
                    flags,
                    pos: info.pos,
                    info_text: &info_text,
                    mnt_id: info.mnt_id,
                    task_fds,
                };
                let fail = |source| DumpError::FileDesc {
                    pid,
                    fd,
                    kind,
                    source,
                };
                let id = DescId(self.descs.len() as u32);
                // Before the content is read, which may move the access time.
                let attrs = match kind {
                    FdKind::Ghost | FdKind::Memfd => {
                        Some(self.carried.add(pid, fd, id, &dup).map_err(fail)?)
                    }
                    FdKind::Fifo { key } => self
                        .fifos
                        .unlinked_attrs(key, &target, id, &dup)
                        .map_err(fail)?,
                    _ => None,
                };
                let desc = self.dump_desc(&cx, kind, &dup).map_err(fail)?;
                let owner = sys::owner(&dup).map_err(|e| fail(FdError::sys("F_GETOWN_EX")(e)))?;
                if kind == FdKind::Proc && owner.is_some() {
                    return Err(fail(FdError::ProcFile {
                        path: target.clone(),
                        why: "an owner (F_SETOWN) on a proc file is not carried".into(),
                    }));
                }
                self.inode_attrs.extend(attrs);
                if kind == FdKind::Proc {
                    self.proc_descs.insert(id, pid);
                }
                self.descs.push(FileDesc {
                    id,
                    flags,
                    kind: desc,
                    owner,
                });
                FdFile::Desc(id)
            }
            (kind, _, None) => {
                return Err(DumpError::FileDesc {
                    pid,
                    fd,
                    kind,
                    source: FdError::Parse("classified without a copy of the fd".into()),
                })
            }
        };
        self.check_proc_holder(pid, fd, &target, &file, &held)?;
        self.add_locks(pid, &target, &file, held);
        self.remember(pid, fd, target, file.clone());
        Ok(Fd { fd, cloexec, file })
    }

    /// The description of one fd of a kind that carries state (`dup`: the dumper's copy of it).
    fn dump_desc(
        &mut self,
        cx: &FdContext<'_>,
        kind: FdKind,
        dup: &OwnedFd,
    ) -> Result<DescKind, FdError> {
        let (pid, fd) = (cx.pid, cx.fd);
        match kind {
            FdKind::Pipe { ino } => self.pipes.dump(pid, fd, ino, cx.flags, dup),
            FdKind::Fifo { key } => self.fifos.dump(pid, fd, cx.target, key, cx.flags, dup),
            FdKind::EventFd => eventfd::dump(cx.info_text),
            FdKind::SignalFd => signalfd::dump(cx.info_text),
            FdKind::TimerFd => timerfd::dump(cx.info_text, dup),
            FdKind::Memfd | FdKind::Ghost => {
                let (desc, content) = if kind == FdKind::Memfd {
                    memfd::dump(cx.target, cx.pos, dup)?
                } else {
                    ghost::dump(cx.target, cx.pos, dup)?
                };
                self.contents
                    .push((DescId(self.descs.len() as u32), content));
                Ok(desc)
            }
            FdKind::PtyMaster => pty::dump(dup, true, cx.target),
            FdKind::PtySlave { .. } => pty::dump(dup, false, cx.target),
            FdKind::Inotify => {
                let (desc, unresolved) = inotify::dump(cx.info_text, dup)?;
                let id = DescId(self.descs.len() as u32);
                self.inotify_pending
                    .extend(unresolved.into_iter().map(|u| (id, pid, fd, u)));
                Ok(desc)
            }
            FdKind::Pidfd => pidfd::dump(cx.info_text, cx.flags, &self.tree_pids),
            FdKind::Epoll => {
                let desc = epoll::dump(pid, fd, cx.info_text, cx.task_fds)?;
                self.refuse_proc_watch(&desc)?;
                Ok(desc)
            }
            FdKind::Proc => {
                if cx.flags & libc::O_ASYNC as u32 != 0 {
                    return Err(FdError::ProcFile {
                        path: cx.target.to_string(),
                        why: "O_ASYNC on a proc file is not carried".into(),
                    });
                }
                let f = procfs::ProcFd {
                    pid,
                    fd,
                    target: cx.target,
                    pos: cx.pos,
                    mnt_id: cx.mnt_id,
                };
                procfs::dump(&f, &self.proc_targets)
            }
            FdKind::Unix { ino } => {
                if self.unix_peers.is_none() {
                    self.unix_peers = Some(unix::peers()?);
                }
                let peers = self.unix_peers.get_or_insert_with(HashMap::new);
                let kind = unix::dump(pid, ino, peers, dup)?;
                if unix::peer_path_gone(pid, &kind, peers)? {
                    self.unix_peer_path_gone.insert(ino);
                }
                Ok(kind)
            }
            FdKind::Inet { family } => {
                let mut queued = Vec::new();
                let kind = inet::dump(
                    dup,
                    family,
                    self.tcp_established,
                    &mut self.repaired,
                    &mut queued,
                )?;
                if !queued.is_empty() {
                    // The description about to be pushed (see `add`).
                    let socket = DescId(self.descs.len() as u32);
                    self.udp_queues.push(UdpQueue {
                        socket,
                        datagrams: queued,
                    });
                }
                Ok(kind)
            }
            FdKind::Reg | FdKind::Dev | FdKind::Tty => Err(FdError::Parse(
                "a file reopened by path has no description".into(),
            )),
        }
    }

    /// Refuses a proc file description held by a second process (each restored task opens its own, which
    /// would split the shared offset) or carrying locks (the restorer takes locks before the proc file
    /// exists).
    fn check_proc_holder(
        &self,
        pid: u32,
        fd: i32,
        target: &str,
        file: &FdFile,
        held: &[FileLock],
    ) -> Result<()> {
        let FdFile::Desc(id) = file else {
            return Ok(());
        };
        let Some(&holder) = self.proc_descs.get(id) else {
            return Ok(());
        };
        let why = if holder != pid {
            format!(
                "the same open file description is held by pid {holder} too (restore opens one per \
                 process, which would split their shared offset)"
            )
        } else if !held.is_empty() {
            "a lock on a proc file is not carried".to_string()
        } else {
            return Ok(());
        };
        Err(DumpError::FileDesc {
            pid,
            fd,
            kind: FdKind::Proc,
            source: FdError::ProcFile {
                path: target.to_string(),
                why,
            },
        })
    }

    /// Refuses an epoll watching a proc file: the task reopens proc files only after its epoll
    /// registrations are made.
    fn refuse_proc_watch(&self, desc: &DescKind) -> Result<(), FdError> {
        let DescKind::Epoll { targets } = desc else {
            return Ok(());
        };
        for t in targets {
            if matches!(t.file, FdFile::Desc(id) if self.proc_descs.contains_key(&id)) {
                return Err(FdError::EpollTarget {
                    tfd: t.fd,
                    why: "it is a proc file, which the restored task reopens only after its epoll \
                          registrations"
                        .into(),
                });
            }
        }
        Ok(())
    }

    /// Records `held` once: a description's locks once per description, POSIX locks once per task and file.
    fn add_locks(&mut self, pid: u32, target: &str, file: &FdFile, held: Vec<FileLock>) {
        for l in held {
            let key = (l.kind as u8, l.write, l.start, l.len);
            let owner = match l.kind {
                LockKind::Posix => (pid, target.to_string(), key),
                LockKind::Flock | LockKind::Ofd | LockKind::Lease => (0, format!("{file:?}"), key),
            };
            if self.locks_seen.insert(owner) {
                self.locks.entry(pid).or_default().push(l);
            }
        }
    }

    fn remember(&mut self, pid: u32, fd: i32, target: String, file: FdFile) {
        self.seen.push(Seen {
            pid,
            fd,
            target,
            file,
        });
    }

    /// The record of an earlier fd that is the same open file description, if any.
    fn shared_with_earlier(&self, pid: u32, fd: i32, target: &str) -> Option<FdFile> {
        for s in self.seen.iter().filter(|s| s.target == target) {
            match sys::same_description(pid, fd, s.pid, s.fd) {
                Ok(true) => return Some(s.file.clone()),
                Ok(false) => {}
                Err(e) => {
                    log::warn!("kcmp of pid {pid} fd {fd} with pid {} fd {}: {e}; treating them as distinct", s.pid, s.fd);
                }
            }
        }
        None
    }

    /// The `deleted-files` entries of `table` (see [`ghost::deleted`]): each deleted mapped file or
    /// executable with its content (stored by `writer`), or the unlinked-file description of this dump
    /// that carries its inode.
    pub fn deleted_files(
        &self,
        table: &FileTable,
        writer: &mut ImageWriter,
    ) -> Result<Vec<DeletedFile>> {
        ghost::deleted(table, &self.carried, writer)
    }

    /// The descriptions collected so far.
    pub fn descs(&self) -> &[FileDesc] {
        &self.descs
    }

    /// The error for description `id`, naming the first fd met on it (`root` when none is known).
    fn desc_error(&self, root: u32, id: DescId, kind: FdKind, source: FdError) -> DumpError {
        let s = self.seen.iter().find(|s| s.file == FdFile::Desc(id));
        DumpError::FileDesc {
            pid: s.map_or(root, |s| s.pid),
            fd: s.map_or(-1, |s| s.fd),
            kind,
            source,
        }
    }

    /// Checks what only the whole dump can tell (every unix socket's peer, pipe end and pty master is in
    /// it), records external pipe ends, and writes `file-descs` and the locks. `pid` names the root task
    /// in errors.
    pub fn finish(&mut self, pid: u32, writer: &mut ImageWriter) -> Result<()> {
        unix::check_peers(&self.descs, &self.unix_peer_path_gone)
            .map_err(|(id, source)| self.desc_error(pid, id, FdKind::Unix { ino: 0 }, source))?;
        // A pipe whose other end is open but held by no dumped task would be cut off by a restore, unless
        // the end is dumped as external (containers, `External::Pipes`): the caller hands a new one in at
        // restore (`--inherit-fd`).
        let external = self
            .pipes
            .outside(self.external_pipes)
            .map_err(|(pid, fd, source)| DumpError::FileDesc {
                pid,
                fd,
                kind: FdKind::Pipe { ino: 0 },
                source,
            })?;
        external::mark_pipes(&mut self.descs, &external);
        pty::check_masters(&self.descs).map_err(|(id, source)| {
            self.desc_error(pid, id, FdKind::PtySlave { index: 0 }, source)
        })?;
        self.fifos
            .check_outside()
            .map_err(|(pid, fd, source)| DumpError::FileDesc {
                pid,
                fd,
                kind: FdKind::Fifo { key: (0, 0) },
                source,
            })?;
        let carried_watches = self.inotify_carried()?;
        self.write(pid, writer)?;
        let image_err = |what: &'static str| {
            move |source| DumpError::Image {
                pid,
                what: what.into(),
                source,
            }
        };
        if !carried_watches.is_empty() {
            writer
                .write_records(names::INOTIFY_CARRIED, &carried_watches)
                .map_err(image_err(names::INOTIFY_CARRIED))?;
        }
        if !self.udp_queues.is_empty() {
            writer
                .write_records(names::UDP_QUEUES, &self.udp_queues)
                .map_err(image_err(names::UDP_QUEUES))?;
        }
        self.store_contents(pid, writer)?;
        if !self.stored.is_empty() {
            writer
                .write_records(names::DESC_CONTENTS, &self.stored)
                .map_err(image_err(names::DESC_CONTENTS))?;
        }
        Ok(())
    }

    /// Stores the content of each memfd and unlinked file met since the last call in its description's
    /// page store (holes and zero pages not stored; the tree is stopped, so no write lands meanwhile).
    /// Called after each task, so the dumper holds the files of one task's fds at most.
    pub fn store_contents(&mut self, pid: u32, writer: &mut ImageWriter) -> Result<()> {
        for (id, c) in std::mem::take(&mut self.contents) {
            let name = names::desc_pages(id);
            let image_err = |source| DumpError::Image {
                pid,
                what: format!("content of description {}", id.0),
                source,
            };
            let store = writer.page_store(&name).map_err(image_err)?;
            let what = format!("content of description {}", id.0);
            store
                .store_file(&c.file, c.size, 0, &what)
                .map_err(image_err)?;
            writer.finish_page_store(store).map_err(image_err)?;
            self.stored.push(StoredContent {
                desc: id,
                size: c.size,
            });
        }
        Ok(())
    }

    /// The inotify watches no path names, each on the description that carries its inode; refused when
    /// the dump carries no such inode.
    fn inotify_carried(&self) -> Result<Vec<InotifyCarriedWatch>> {
        self.inotify_pending
            .iter()
            .map(|(inotify, pid, fd, u)| {
                let file =
                    self.carried
                        .desc_of(u.dev, u.ino)
                        .ok_or_else(|| DumpError::FileDesc {
                            pid: *pid,
                            fd: *fd,
                            kind: FdKind::Inotify,
                            source: u.refusal(),
                        })?;
                Ok(InotifyCarriedWatch {
                    inotify: *inotify,
                    wd: u.wd,
                    mask: u.mask,
                    file,
                })
            })
            .collect()
    }

    /// Writes the locks of every task and the descriptions.
    fn write(&self, pid: u32, writer: &mut ImageWriter) -> Result<()> {
        for (task, locks) in &self.locks {
            let name = names::locks(Pid(*task));
            writer
                .write_records(&name, locks)
                .map_err(|source| DumpError::Image {
                    pid: *task,
                    what: name.clone(),
                    source,
                })?;
        }
        if self.descs.is_empty() {
            return Ok(());
        }
        if !self.inode_attrs.is_empty() {
            writer
                .write_records(names::INODE_ATTRS, &self.inode_attrs)
                .map_err(|source| DumpError::Image {
                    pid,
                    what: names::INODE_ATTRS.into(),
                    source,
                })?;
        }
        writer
            .write_records(names::FILE_DESCS, &self.descs)
            .map_err(|source| DumpError::Image {
                pid,
                what: names::FILE_DESCS.into(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// Dumps fds of this very process: dup'ed fds share a record, a pipe's bytes and a socket's queue are
    /// copied and still there afterwards.
    #[test]
    fn own_pipe_and_socketpair() {
        let me = std::process::id();
        let task = sys::TaskFds::open(me).unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        nix::unistd::write(&w, b"abc").unwrap();
        let r2 = nix::unistd::dup(&r).unwrap();
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        use std::io::{Read, Write};
        (&a).write_all(b"queued").unwrap();
        let mut c = FileCollector::new(false);
        let mut table = FileTable::new();
        let mut dump = |fd: i32| {
            let target = proc::read_link(me, &format!("fd/{fd}")).unwrap();
            c.dump_one(&task, fd, target, &mut table, &[]).unwrap()
        };
        let fr = dump(r.as_raw_fd());
        let fw = dump(w.as_raw_fd());
        let fr2 = dump(r2.as_raw_fd());
        let fa = dump(a.as_raw_fd());
        let fb = dump(b.as_raw_fd());
        assert_eq!(fr.file, fr2.file, "dup'ed fds share one description");
        assert_ne!(fr.file, fw.file, "the two ends are two descriptions");
        assert_ne!(fa.file, fb.file);
        let kinds: Vec<&DescKind> = c.descs().iter().map(|d| &d.kind).collect();
        assert_eq!(kinds.len(), 4);
        assert!(
            matches!(kinds[0], DescKind::PipeEnd { write: false, data: Some(d), .. } if d == b"abc"),
            "{kinds:?}"
        );
        assert!(matches!(
            kinds[1],
            DescKind::PipeEnd {
                write: true,
                data: None,
                ..
            }
        ));
        let DescKind::UnixPair {
            queued: qa,
            peer: pa,
            ..
        } = kinds[2]
        else {
            panic!("{kinds:?}")
        };
        let DescKind::UnixPair {
            queued: qb,
            ino: ib,
            ..
        } = kinds[3]
        else {
            panic!("{kinds:?}")
        };
        assert!(qa.is_empty());
        assert_eq!(qb.concat(), b"queued");
        assert_eq!(pa, ib);
        // Nothing was consumed.
        let mut buf = [0u8; 3];
        nix::unistd::read(&r, &mut buf).unwrap();
        assert_eq!(&buf, b"abc");
        let mut buf = [0u8; 6];
        (&b).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"queued");
    }

    /// A file is recorded by path with its flags and offset; an unlinked one as a ghost with its content.
    #[test]
    fn own_files() {
        let me = std::process::id();
        let task = sys::TaskFds::open(me).unwrap();
        let mut c = FileCollector::new(false);
        let mut table = FileTable::new();
        let mut dump = |fd: i32| {
            let target = proc::read_link(me, &format!("fd/{fd}")).unwrap();
            c.dump_one(&task, fd, target, &mut table, &[]).unwrap()
        };
        let unlinked = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut &unlinked, b"ghost").unwrap();
        let ghost = dump(unlinked.as_raw_fd());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello").unwrap();
        let f = std::fs::File::open(&p).unwrap();
        let got = dump(f.as_raw_fd());
        assert!(got.cloexec, "std opens with O_CLOEXEC");
        let FdFile::Reg(id) = got.file else {
            panic!("{got:?}")
        };
        let e = &table.entries()[id.0 as usize];
        assert_eq!(e.path, p.to_str().unwrap());
        assert_eq!(e.stat.size, 5);
        assert!(super::super::table::same_file(&p, &e.stat));
        let FdFile::Desc(g) = ghost.file else {
            panic!("{ghost:?}")
        };
        assert!(
            matches!(&c.descs()[g.0 as usize].kind, DescKind::Ghost { data, .. } if data.is_empty()),
            "{:?}",
            c.descs()
        );
        let (id, content) = &c.contents[0];
        assert_eq!((*id, content.size), (g, 5));
        let mut got = String::new();
        std::io::Read::read_to_string(&mut &content.file, &mut got).unwrap();
        assert_eq!(got, "ghost");
    }
}
