//! The per-dump collector of open file descriptions: every fd of every task is looked at once, and fds
//! that share a description (kcmp `KCMP_FILE`) share one record, so restore can open it once and let every
//! task inherit it.

use std::collections::{HashMap, HashSet};

use dormant_image::records::{
    names, DescId, DescKind, EpollTarget, Fd, FdFile, FileDesc, FileLock, LockKind, Pid,
};
use dormant_image::ImageWriter;

use super::{anon, fifo, inet, inotify, locks, pidfd, pipe, pty, sys, unix, FileTable};
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
    /// Pipes whose buffered bytes are already carried (by the first end met).
    pipes_with_data: HashSet<u64>,
    /// Pipe ends met: (pipe inode, write end) → (pid, fd, whether the other end was open somewhere).
    pipe_ends: HashMap<(u64, bool), (u32, i32, bool)>,
    /// Locks per task, written as `locks-<pid>`.
    locks: HashMap<u32, Vec<FileLock>>,
    /// Locks already recorded: description locks by description, POSIX ones by task and file.
    locks_seen: HashSet<(u32, String, FileLockKey)>,
    /// Unix socket peers, read once on the first unix socket.
    unix_peers: Option<HashMap<u64, u64>>,
    /// FIFOs whose buffered bytes are already carried.
    fifos_with_data: HashSet<fifo::FifoKey>,
    /// FIFO ends met, as `pipe_ends` (an O_RDWR open counts as both ends).
    fifo_ends: HashMap<(fifo::FifoKey, bool), (u32, i32, bool)>,
    /// Dump established TCP connections in repair mode instead of refusing them (`--tcp-established`).
    tcp_established: bool,
    /// Copies of the TCP sockets left in repair mode; see [`inet::RepairedSockets`].
    repaired: inet::RepairedSockets,
    /// Dump a pipe end whose other end only processes outside the dump hold as [`DescKind::External`]
    /// instead of refusing the dump (see [`FileCollector::external_pipes`]).
    external_pipes: bool,
    /// Every pid of the dump (processes and zombies): the processes a pidfd may refer to.
    tree_pids: HashSet<u32>,
}

/// What tells two listings of one lock apart: (kind, write, start, len).
type FileLockKey = (u8, bool, u64, u64);

/// The description kind named by a link target, for messages and dispatch.
fn kind_name(target: &str) -> &'static str {
    match target {
        t if t.starts_with("pipe:") => "pipe",
        t if t.starts_with("socket:") => "socket",
        "anon_inode:[eventfd]" => "eventfd",
        "anon_inode:[timerfd]" => "timerfd",
        "anon_inode:[signalfd]" => "signalfd",
        "anon_inode:[eventpoll]" => "epoll",
        "anon_inode:inotify" => "inotify",
        "anon_inode:[pidfd]" => "pidfd",
        t if t.starts_with("/memfd:") => "memfd",
        t if pty::is_master(t) => "pty master",
        t if pty::slave_index(t).is_some() => "pty slave",
        t if t.starts_with('/') && t.ends_with(" (deleted)") => "unlinked file",
        _ => "file",
    }
}

/// The inode in `pipe:[N]` / `socket:[N]`.
fn bracket_ino(target: &str) -> Option<u64> {
    target.split_once('[')?.1.strip_suffix(']')?.parse().ok()
}

impl FileCollector {
    pub fn new(shell_job: bool) -> Self {
        Self {
            shell_job,
            ..Self::default()
        }
    }

    /// Dump established TCP connections with `TCP_REPAIR` (they are refused otherwise).
    pub fn tcp_established(mut self, yes: bool) -> Self {
        self.tcp_established = yes;
        self
    }

    /// The sockets this dump put in repair mode: the caller keeps them until the target is dead (then
    /// [`inet::RepairedSockets::close_silently`]) or drops them to switch repair mode off.
    pub fn take_repaired(&mut self) -> inet::RepairedSockets {
        std::mem::take(&mut self.repaired)
    }

    /// Lets pipes whose other end is held only outside the dump be dumped as external (`pipe:[INODE]`,
    /// handed in again at restore with `--inherit-fd`): always for a container (its stdio comes from the
    /// agent), on request (`--external-pipes`) otherwise.
    pub fn external_pipes(&mut self, yes: bool) {
        self.external_pipes = yes;
    }

    /// The pids of the dumped tree (processes and zombies), which pidfds may refer to; set before the
    /// first [`FileCollector::dump_task`].
    pub fn tree_pids(&mut self, pids: impl IntoIterator<Item = u32>) {
        self.tree_pids = pids.into_iter().collect();
    }

    /// The fd table of `pid` (ascending). Files reachable by path go into `table`; the rest into this
    /// collector's descriptions.
    pub fn dump_task(&mut self, pid: u32, table: &mut FileTable) -> Result<Vec<Fd>> {
        let task = sys::TaskFds::open(pid).map_err(|source| DumpError::ProcRead {
            pid,
            path: format!("pidfd of {pid}").into(),
            source,
        })?;
        let mut out = Vec::new();
        let mut epolls = Vec::new();
        for fd in super::list_fds(pid)? {
            let target = proc::read_link(pid, &format!("fd/{fd}"))?;
            if kind_name(&target) == "epoll" {
                epolls.push((fd, target));
                continue;
            }
            out.push(self.dump_one(&task, fd, target, table, &[])?);
        }
        for (fd, target) in epolls {
            let so_far = out.clone();
            out.push(self.dump_one(&task, fd, target, table, &so_far)?);
        }
        out.sort_by_key(|f| f.fd);
        Ok(out)
    }

    fn dump_one(
        &mut self,
        task: &sys::TaskFds,
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
        let held = locks::parse(fd, &info_text).map_err(|reason| DumpError::FileDesc {
            pid,
            fd,
            kind: "file lock",
            reason,
        })?;
        if let Some(file) = self.shared_with_earlier(pid, fd, &target) {
            self.add_locks(pid, &target, &file, held);
            return Ok(Fd { fd, cloexec, file });
        }
        let kind = kind_name(&target);
        // A FIFO is reopened by path but carries pipe state: a description of its own.
        let fifo = match kind {
            "file" | "unlinked file" => fifo::identify(pid, fd),
            _ => None,
        };
        let kind = if fifo.is_some() { "fifo" } else { kind };
        // The shell-job terminal is inherited at restore, not rebuilt.
        let kind = if kind == "pty slave" && self.shell_job && (0..=2).contains(&fd) {
            "file"
        } else {
            kind
        };
        let fail = |reason: String| DumpError::FileDesc {
            pid,
            fd,
            kind,
            reason,
        };
        if kind == "file" {
            let got = super::dump_fd(pid, fd, self.shell_job, table)?;
            self.add_locks(pid, &target, &got.file, held);
            self.remember(pid, fd, target, got.file.clone());
            return Ok(got);
        }
        let dup = task
            .get(fd)
            .map_err(|e| fail(format!("pidfd_getfd: {e}")))?;
        let desc = match kind {
            "pipe" => {
                let ino = bracket_ino(&target).ok_or_else(|| fail(format!("link {target}")))?;
                let write = flags & libc::O_ACCMODE as u32 == libc::O_WRONLY as u32;
                let peer = pipe::peer_open(&dup, write).map_err(fail)?;
                self.pipe_ends.insert((ino, write), (pid, fd, peer));
                let first = self.pipes_with_data.insert(ino);
                pipe::dump(pid, fd, ino, flags, &dup, first).map_err(fail)?
            }
            "fifo" => {
                let key = fifo.ok_or_else(|| fail("not a FIFO any more".into()))?;
                if target.ends_with(" (deleted)") {
                    return Err(fail(format!(
                        "{target}: an unlinked FIFO cannot be reopened by path"
                    )));
                }
                let access = flags & libc::O_ACCMODE as u32;
                if access == libc::O_RDWR as u32 {
                    self.fifo_ends.insert((key, false), (pid, fd, false));
                    self.fifo_ends.insert((key, true), (pid, fd, false));
                } else {
                    let write = access == libc::O_WRONLY as u32;
                    let peer = pipe::peer_open(&dup, write).map_err(fail)?;
                    self.fifo_ends
                        .entry((key, write))
                        .or_insert((pid, fd, peer));
                }
                let first = self.fifos_with_data.insert(key);
                fifo::dump(pid, fd, &target, key, &dup, first).map_err(fail)?
            }
            "eventfd" => anon::eventfd(&info_text).map_err(fail)?,
            "signalfd" => anon::signalfd(&info_text).map_err(fail)?,
            "timerfd" => anon::timerfd(&info_text, &dup).map_err(fail)?,
            "memfd" => anon::memfd(&target, info.pos, &dup).map_err(fail)?,
            "pty master" => pty::dump(&dup, true, &target).map_err(fail)?,
            "pty slave" => pty::dump(&dup, false, &target).map_err(fail)?,
            "inotify" => inotify::dump(&info_text, &dup).map_err(fail)?,
            "pidfd" => pidfd::dump(&info_text, flags, &self.tree_pids).map_err(fail)?,
            "unlinked file" => anon::ghost(&target, info.pos, &dup).map_err(fail)?,
            "epoll" => {
                let mut targets = Vec::new();
                for (tfd, events, data) in anon::epoll_lines(&info_text).map_err(fail)? {
                    let file = task_fds
                        .iter()
                        .find(|f| f.fd == tfd)
                        .map(|f| f.file.clone())
                        .ok_or_else(|| {
                            fail(format!(
                                "watches fd {tfd}, which is closed or another epoll (not supported)"
                            ))
                        })?;
                    targets.push(EpollTarget {
                        file,
                        fd: tfd,
                        events,
                        data,
                    });
                }
                DescKind::Epoll { targets }
            }
            "socket" => {
                let family = sys::sockopt_int(&dup, libc::SOL_SOCKET, libc::SO_DOMAIN)
                    .map_err(|e| fail(format!("SO_DOMAIN: {e}")))?;
                match family {
                    libc::AF_UNIX => {
                        let ino =
                            bracket_ino(&target).ok_or_else(|| fail(format!("link {target}")))?;
                        if self.unix_peers.is_none() {
                            self.unix_peers = Some(unix::peers().map_err(fail)?);
                        }
                        let peers = self
                            .unix_peers
                            .as_ref()
                            .ok_or_else(|| fail("no peers".into()))?;
                        unix::dump(ino, peers, &dup).map_err(fail)?
                    }
                    libc::AF_INET | libc::AF_INET6 => {
                        inet::dump(&dup, family, self.tcp_established, &mut self.repaired)
                            .map_err(fail)?
                    }
                    other => {
                        return Err(DumpError::UnsupportedFd {
                            pid,
                            fd,
                            target,
                            kind: family_name(other),
                        })
                    }
                }
            }
            _ => {
                return Err(DumpError::UnsupportedFd {
                    pid,
                    fd,
                    target: target.clone(),
                    kind: super::kind_of(&target, None),
                })
            }
        };
        let owner = sys::owner(&dup).map_err(|e| fail(format!("F_GETOWN_EX: {e}")))?;
        let id = DescId(self.descs.len() as u32);
        self.descs.push(FileDesc {
            id,
            flags,
            kind: desc,
            owner,
        });
        let file = FdFile::Desc(id);
        self.add_locks(pid, &target, &file, held);
        self.remember(pid, fd, target, file.clone());
        Ok(Fd { fd, cloexec, file })
    }

    /// Records `held` once: a description's locks once per description, POSIX locks once per task and file.
    fn add_locks(&mut self, pid: u32, target: &str, file: &FdFile, held: Vec<FileLock>) {
        for l in held {
            let key = (l.kind as u8, l.write, l.start, l.len);
            let owner = match l.kind {
                LockKind::Posix => (pid, target.to_string(), key),
                LockKind::Flock | LockKind::Ofd => (0, format!("{file:?}"), key),
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

    /// The descriptions collected so far.
    pub fn descs(&self) -> &[FileDesc] {
        &self.descs
    }

    /// Checks what only the whole dump can tell (every unix socket's peer is in it) and writes
    /// `file-descs`. `pid` names the root task in errors.
    pub fn finish(&mut self, pid: u32, writer: &mut ImageWriter) -> Result<()> {
        let inos: HashSet<u64> = self
            .descs
            .iter()
            .filter_map(|d| match d.kind {
                DescKind::UnixPair { ino, .. }
                | DescKind::UnixConn { ino, .. }
                | DescKind::UnixDgram { ino, .. } => Some(ino),
                _ => None,
            })
            .collect();
        for d in &self.descs {
            let (ino, peer, peer_name) = match &d.kind {
                DescKind::UnixPair { ino, peer, .. } => (*ino, *peer, &[][..]),
                DescKind::UnixConn {
                    ino,
                    peer,
                    peer_name,
                    ..
                } => (*ino, *peer, peer_name.as_slice()),
                _ => continue,
            };
            if !inos.contains(&peer) {
                let s = self.seen.iter().find(|s| s.file == FdFile::Desc(d.id));
                return Err(DumpError::FileDesc {
                    pid: s.map_or(pid, |s| s.pid),
                    fd: s.map_or(-1, |s| s.fd),
                    kind: "socket",
                    reason: format!(
                        "unix socket {ino} is connected to socket {peer}{}, {}",
                        unix::shown_name(peer_name),
                        unix::holders_text(peer)
                    ),
                });
            }
        }
        // A pipe whose other end is open but held by no dumped task would be cut off by a restore, unless
        // the end is dumped as external (containers, `--external-pipes`): the caller hands a new one in at
        // restore (`--inherit-fd`).
        let mut external = Vec::new();
        for (&(ino, write), &(pid, fd, peer_open)) in &self.pipe_ends {
            if peer_open && !self.pipe_ends.contains_key(&(ino, !write)) {
                if self.external_pipes {
                    log::info!(
                        "pid {pid} fd {fd}: the {} end of pipe:[{ino}] is held outside the dump: dumped \
                         as external (restore with --inherit-fd fd[N]:pipe:[{ino}])",
                        if write { "read" } else { "write" }
                    );
                    external.push((ino, write));
                    continue;
                }
                return Err(DumpError::FileDesc {
                    pid,
                    fd,
                    kind: "pipe",
                    reason: format!(
                        "the {} end of pipe:[{ino}] is held by a process outside the dump (dump it as \
                         external with --external-pipes and restore with --inherit-fd fd[N]:pipe:[{ino}])",
                        if write { "read" } else { "write" }
                    ),
                });
            }
        }
        for d in &mut self.descs {
            if let DescKind::PipeEnd { pipe, write, .. } = d.kind {
                if external.contains(&(pipe, write)) {
                    d.kind = DescKind::External {
                        key: format!("pipe:[{pipe}]"),
                    };
                }
            }
        }
        // A pty slave is rebuilt with its master: one whose master is not in the dump (the terminal the
        // dump was started from, say) cannot be.
        let masters: HashSet<u32> = self
            .descs
            .iter()
            .filter_map(|d| match d.kind {
                DescKind::Pty {
                    master: true,
                    index,
                    ..
                } => Some(index),
                _ => None,
            })
            .collect();
        for d in &self.descs {
            if let DescKind::Pty {
                master: false,
                index,
                ..
            } = d.kind
            {
                if !masters.contains(&index) {
                    let s = self.seen.iter().find(|s| s.file == FdFile::Desc(d.id));
                    return Err(DumpError::FileDesc {
                        pid: s.map_or(pid, |s| s.pid),
                        fd: s.map_or(-1, |s| s.fd),
                        kind: "pty slave",
                        reason: format!(
                            "/dev/pts/{index}: its master is held by no process of the dump (the \
                             terminal the tree runs in is inherited with --shell-job, on fds 0-2 only)"
                        ),
                    });
                }
            }
        }
        // Likewise a FIFO: an end kept open outside would also keep the buffered bytes, which restore
        // would then write a second time.
        for (&(key, write), &(pid, fd, peer_open)) in &self.fifo_ends {
            if peer_open && !self.fifo_ends.contains_key(&(key, !write)) {
                return Err(DumpError::FileDesc {
                    pid,
                    fd,
                    kind: "fifo",
                    reason: format!(
                        "the {} end of this FIFO (inode {}) is held by a process outside the dump",
                        if write { "read" } else { "write" },
                        key.1
                    ),
                });
            }
        }
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
        writer
            .write_records(names::FILE_DESCS, &self.descs)
            .map_err(|source| DumpError::Image {
                pid,
                what: names::FILE_DESCS.into(),
                source,
            })
    }
}

fn family_name(family: i32) -> &'static str {
    match family {
        libc::AF_NETLINK => "netlink socket",
        libc::AF_PACKET => "packet socket",
        libc::AF_VSOCK => "vsock socket",
        _ => "socket of an unsupported family",
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

    #[test]
    fn names() {
        assert_eq!(bracket_ino("pipe:[77]"), Some(77));
        assert_eq!(bracket_ino("socket:[5]"), Some(5));
        assert_eq!(kind_name("anon_inode:[eventpoll]"), "epoll");
        assert_eq!(kind_name("/memfd:x (deleted)"), "memfd");
        assert_eq!(kind_name("anon_inode:inotify"), "inotify");
        assert_eq!(kind_name("anon_inode:[pidfd]"), "pidfd");
        assert_eq!(kind_name("/etc/passwd"), "file");
    }
}
