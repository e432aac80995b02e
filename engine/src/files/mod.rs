//! Open files: the fd table of a task, and the table of files (by path) that fds, mappings and the
//! executable refer to.
//!
//! By path: regular files, directories, `/dev/null`, `/dev/zero`, `/dev/urandom`, and with `shell_job` a
//! terminal on fds 0-2. By state ([`FileCollector`]): pipes and FIFOs with their bytes, connected unix
//! socket pairs and named unix connections (accepted ones and their clients) with queued messages, bound or
//! connected unix datagram sockets with their queues, unix listeners, unconnected TCP/UDP sockets (bound,
//! listening), established TCP connections with `--tcp-established` (repair mode, [`RepairedSockets`]),
//! eventfd, timerfd, signalfd, epoll, memfd, unlinked files, inotify (watches by path, same wd numbers;
//! refused with unread events), pidfds of processes of the dumped tree; flock, OFD and POSIX record locks. Anything
//! else (established connections without the flag, netlink sockets, deleted files, ...) fails the dump
//! with an error naming the process, the fd and its type.

mod anon;
mod collector;
mod fifo;
mod inet;
mod inotify;
mod locks;
mod pidfd;
mod pipe;
mod pty;
mod sys;
mod tcp;
mod unix;

pub use collector::FileCollector;
pub use tcp::RepairedSockets;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use dormant_image::records::{
    ContentDigest, Fd, FdFile, FileCheck, FileDigest, FileId, FileIdentity, FileStat, RegFile,
};

use crate::error::{DumpError, Result};
use crate::proc;

/// Character devices reopened by path.
const PATH_DEVICES: [&str; 4] = ["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"];
/// Suffix the kernel appends to the path of an unlinked file.
const DELETED: &str = " (deleted)";

/// Every file a dump refers to by path, with its id. One per dump, shared by all tasks.
#[derive(Debug, Default)]
pub struct FileTable {
    files: Vec<RegFile>,
    /// Files behind mappings and executables are shared by identity (dev, ino); fds each get their own
    /// entry (one per open file description: without kcmp, dup'ed fds cannot be told apart from two opens).
    by_inode: HashMap<(u64, u64), FileId>,
    /// Where each of those can be read as the task sees it (`/proc/PID/exe`, `/proc/PID/map_files/..`),
    /// for their content digests ([`FileTable::identity`]).
    sources: Vec<(FileId, u32, String)>,
}

impl FileTable {
    pub fn new() -> Self {
        Self::default()
    }

    fn next_id(&self) -> FileId {
        FileId(self.files.len() as u32)
    }

    /// The entry for a mapped file or an executable: one per (dev, ino). `source` is the name under
    /// `/proc/PID/` through which task `pid` reaches it (`exe`, `map_files/START-END`).
    pub fn by_identity(&mut self, path: &str, stat: FileStat, pid: u32, source: &str) -> FileId {
        if let Some(id) = self.by_inode.get(&(stat.dev, stat.ino)) {
            return *id;
        }
        let id = self.next_id();
        self.sources.push((id, pid, source.to_string()));
        self.files.push(RegFile {
            id,
            path: path.to_string(),
            flags: libc::O_RDONLY as u32,
            pos: 0,
            stat,
        });
        self.by_inode.insert((stat.dev, stat.ino), id);
        id
    }

    /// A new entry for an open file description.
    pub fn open_file(&mut self, path: &str, flags: u32, pos: u64, stat: FileStat) -> FileId {
        let id = self.next_id();
        self.files.push(RegFile {
            id,
            path: path.to_string(),
            flags,
            pos,
            stat,
        });
        id
    }

    pub fn entries(&self) -> &[RegFile] {
        &self.files
    }

    /// The `file-identity` record for `check`: with [`FileCheck::Content`], the digest of every file behind
    /// a mapping or an executable, read through the task's own view of it (so a container's files are read
    /// from its root, whatever the dumper's namespace shows at that path).
    pub fn identity(&self, check: FileCheck) -> Result<FileIdentity> {
        let mut digests = Vec::new();
        if check == FileCheck::Content {
            for (id, pid, source) in &self.sources {
                let path = proc::path(*pid, source);
                let read_err = |source| DumpError::ProcRead {
                    pid: *pid,
                    path: path.clone(),
                    source,
                };
                let mut f = std::fs::File::open(&path).map_err(read_err)?;
                let digest = ContentDigest::of(&mut f).map_err(read_err)?;
                log::debug!(
                    "pid {pid}: {} ({}): {digest}",
                    self.files[id.0 as usize].path,
                    path.display()
                );
                digests.push(FileDigest { id: *id, digest });
            }
        }
        Ok(FileIdentity { check, digests })
    }
}

/// [`FileStat`] from file metadata.
pub fn file_stat(md: &std::fs::Metadata) -> FileStat {
    FileStat {
        dev: md.dev(),
        ino: md.ino(),
        mode: md.mode(),
        size: md.size(),
        mtime_ns: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
        rdev: md.rdev(),
    }
}

/// Stats a `/proc/<pid>/...` magic link (following it to the file the task sees).
pub fn stat_proc_link(pid: u32, name: &str, what: impl Fn() -> String) -> Result<FileStat> {
    let path = proc::path(pid, name);
    std::fs::metadata(&path)
        .map(|md| file_stat(&md))
        .map_err(|source| DumpError::Stat {
            pid,
            what: what(),
            path,
            source,
        })
}

/// Refuses a path the kernel marked as deleted.
pub fn check_not_deleted(pid: u32, what: impl Fn() -> String, path: &str) -> Result<()> {
    if path.ends_with(DELETED) {
        return Err(DumpError::DeletedFile {
            pid,
            what: what(),
            path: path.to_string(),
        });
    }
    Ok(())
}

/// Describes an unsupported fd target for the error message.
fn kind_of(target: &str, mode: Option<u32>) -> &'static str {
    if target.starts_with("socket:") {
        "socket"
    } else if target.starts_with("pipe:") {
        "pipe"
    } else if target.starts_with("anon_inode:") {
        "anonymous inode"
    } else {
        match mode.map(|m| m & libc::S_IFMT) {
            Some(libc::S_IFCHR) => "character device",
            Some(libc::S_IFBLK) => "block device",
            Some(libc::S_IFIFO) => "fifo",
            Some(libc::S_IFSOCK) => "socket",
            _ => "unknown file type",
        }
    }
}

/// The pseudo file system an open fd lives on (`procfs`, `sysfs`), if it does.
fn pseudo_fs(pid: u32, fd: i32) -> Option<&'static str> {
    const PROC_SUPER_MAGIC: i64 = 0x9fa0;
    const SYSFS_MAGIC: i64 = 0x6265_6572;
    let path = format!("/proc/{pid}/fd/{fd}");
    let st = nix::sys::statfs::statfs(path.as_str()).ok()?;
    match st.filesystem_type().0 as i64 {
        PROC_SUPER_MAGIC => Some("procfs file"),
        SYSFS_MAGIC => Some("sysfs file"),
        _ => None,
    }
}

/// Whether a character device is a terminal (pty slaves, virtual consoles, serial lines, /dev/tty).
fn is_tty_device(rdev: u64) -> bool {
    let major = libc::major(rdev);
    // 136-143: unix98 pty slaves; 4: vt and serial; 5: /dev/tty, console.
    (136..=143).contains(&major) || major == 4 || major == 5
}

/// The fds of a task, ascending.
pub fn list_fds(pid: u32) -> Result<Vec<i32>> {
    proc::numbered_entries(pid, "fd")
}

/// Reads one fd: what it points to, its flags and position; registers a file in `table`.
pub fn dump_fd(pid: u32, fd: i32, shell_job: bool, table: &mut FileTable) -> Result<Fd> {
    let target = proc::read_link(pid, &format!("fd/{fd}"))?;
    let info_text = proc::read_string(pid, &format!("fdinfo/{fd}"))?;
    let info = proc::fdinfo::parse(&info_text).map_err(|reason| DumpError::ProcParse {
        pid,
        file: "fdinfo",
        reason: format!("fd {fd}: {reason}"),
    })?;
    let cloexec = info.flags & libc::O_CLOEXEC as u32 != 0;
    let flags = info.flags & !(libc::O_CLOEXEC as u32);
    let unsupported = |mode: Option<u32>| DumpError::UnsupportedFd {
        pid,
        fd,
        target: target.clone(),
        kind: kind_of(&target, mode),
    };
    if !target.starts_with('/') {
        // socket:[..], pipe:[..], anon_inode:..., or a file outside our mount namespace's view.
        return Err(unsupported(None));
    }
    check_not_deleted(pid, || format!("fd {fd}"), &target)?;
    let stat = stat_proc_link(pid, &format!("fd/{fd}"), || format!("fd {fd}"))?;
    let file = match stat.mode & libc::S_IFMT {
        libc::S_IFREG | libc::S_IFDIR => {
            // A file of /proc or /sys describes some process or device at dump time; reopening its path
            // later names something else (or nothing). Refuse it rather than write an image that lies.
            if let Some(fs) = pseudo_fs(pid, fd) {
                return Err(DumpError::UnsupportedFd {
                    pid,
                    fd,
                    target: target.clone(),
                    kind: fs,
                });
            }
            FdFile::Reg(table.open_file(&target, flags, info.pos, stat))
        }
        libc::S_IFCHR if PATH_DEVICES.contains(&target.as_str()) => {
            FdFile::Reg(table.open_file(&target, flags, info.pos, stat))
        }
        libc::S_IFCHR if shell_job && (0..=2).contains(&fd) && is_tty_device(stat.rdev) => {
            FdFile::InheritedTty
        }
        // `/dev/tty` names the session's controlling terminal. A shell job is restored into the
        // restorer's session, whose terminal is the one the job had: reopened by path in the restorer.
        libc::S_IFCHR if shell_job && stat.rdev == libc::makedev(5, 0) => {
            FdFile::Reg(table.open_file(&target, flags, info.pos, stat))
        }
        mode => return Err(unsupported(Some(mode))),
    };
    Ok(Fd { fd, cloexec, file })
}

/// The executable, as a file-table entry.
pub fn dump_exe(pid: u32, table: &mut FileTable) -> Result<FileId> {
    let path = proc::read_link(pid, "exe")?;
    check_not_deleted(pid, || "executable".to_string(), &path)?;
    let stat = stat_proc_link(pid, "exe", || "executable".to_string())?;
    Ok(table.by_identity(&path, stat, pid, "exe"))
}

/// Whether `path` names something in the dumper's own view that looks like `stat` (used by tests and checks).
pub fn same_file(path: &Path, stat: &FileStat) -> bool {
    std::fs::metadata(path)
        .map(|md| md.dev() == stat.dev && md.ino() == stat.ino)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(kind_of("pipe:[7788]", None), "pipe");
        assert_eq!(kind_of("socket:[1]", None), "socket");
        assert_eq!(kind_of("anon_inode:[eventfd]", None), "anonymous inode");
        assert_eq!(
            kind_of("/dev/sda", Some(libc::S_IFBLK | 0o600)),
            "block device"
        );
    }

    #[test]
    fn identity_dedup() {
        let mut t = FileTable::new();
        let st = FileStat {
            dev: 1,
            ino: 2,
            ..Default::default()
        };
        let a = t.by_identity("/a", st, 1, "exe");
        let b = t.by_identity("/a", st, 2, "exe");
        let c = t.open_file("/a", 0, 5, st);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(t.entries().len(), 2);
        assert_eq!(t.entries()[c.0 as usize].pos, 5);
    }

    #[test]
    fn own_fds() {
        let f = tempfile::tempfile().unwrap();
        use std::os::fd::AsRawFd;
        let fd = f.as_raw_fd();
        let mut t = FileTable::new();
        // tempfile() is unlinked: refused as deleted.
        let e = dump_fd(std::process::id(), fd, false, &mut t).unwrap_err();
        assert!(matches!(e, DumpError::DeletedFile { .. }), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello").unwrap();
        let f = std::fs::File::open(&p).unwrap();
        let got = dump_fd(std::process::id(), f.as_raw_fd(), false, &mut t).unwrap();
        assert!(got.cloexec, "std opens with O_CLOEXEC");
        let FdFile::Reg(id) = got.file else {
            panic!("{got:?}")
        };
        let e = &t.entries()[id.0 as usize];
        assert_eq!(e.path, p.to_str().unwrap());
        assert_eq!(e.stat.size, 5);
        assert!(same_file(&p, &e.stat));
    }
}
