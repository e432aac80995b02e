//! Tells what an fd is ([`FdKind`]), once, from its link target, `stat` of the fd and, for sockets, the
//! socket's domain. Refuses what the dump cannot carry at all (a netlink socket, a block device, a file
//! of `/sys`...), naming the process, the fd and what it is.

use std::os::fd::OwnedFd;

use dormant_image::records::FileStat;

use super::error::FdError;
use super::fifo;
use super::kind::FdKind;
use super::pty;
use super::sys::{self, TaskFds};
use super::table::{stat_proc_link, DELETED};
use super::{dev, reg, tty};
use crate::error::{DumpError, Result};

/// An fd classified: its kind, the `stat` of a file reopened by path, and the dumper's copy of anything
/// else (taken with pidfd_getfd).
#[derive(Debug)]
pub struct Classified {
    pub kind: FdKind,
    pub stat: Option<FileStat>,
    pub dup: Option<OwnedFd>,
}

/// The inode in `pipe:[N]` / `socket:[N]`.
pub fn bracket_ino(target: &str) -> Option<u64> {
    target.split_once('[')?.1.strip_suffix(']')?.parse().ok()
}

/// Describes an unsupported fd target for the error message.
pub fn unsupported_kind(target: &str, mode: Option<u32>) -> &'static str {
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

fn family_name(family: i32) -> &'static str {
    match family {
        libc::AF_NETLINK => "netlink socket",
        libc::AF_PACKET => "packet socket",
        libc::AF_VSOCK => "vsock socket",
        _ => "socket of an unsupported family",
    }
}

/// The kind named by the link target alone, when it names one (`None`: a path, judged by its inode).
fn by_target(target: &str, fd: i32, shell_job: bool) -> Option<FdKind> {
    Some(match target {
        "anon_inode:[eventfd]" => FdKind::EventFd,
        "anon_inode:[timerfd]" => FdKind::TimerFd,
        "anon_inode:[signalfd]" => FdKind::SignalFd,
        "anon_inode:[eventpoll]" => FdKind::Epoll,
        "anon_inode:inotify" => FdKind::Inotify,
        "anon_inode:[pidfd]" => FdKind::Pidfd,
        t if t.starts_with("/memfd:") => FdKind::Memfd,
        t if pty::is_master(t) => FdKind::PtyMaster,
        // The shell-job terminal is inherited at restore, not rebuilt: judged as a path.
        t if pty::slave_index(t).is_some() && !(shell_job && (0..=2).contains(&fd)) => {
            FdKind::PtySlave {
                index: pty::slave_index(t)?,
            }
        }
        _ => return None,
    })
}

/// Classifies fd `fd` of the task behind `task`, whose link target is `target`.
pub fn classify(task: &TaskFds, fd: i32, target: &str, shell_job: bool) -> Result<Classified> {
    let pid = task.pid();
    let unsupported = |kind: &'static str| DumpError::UnsupportedFd {
        pid,
        fd,
        target: target.to_string(),
        kind,
    };
    let dup_of = |kind: FdKind| {
        task.get(fd).map_err(|e| DumpError::FileDesc {
            pid,
            fd,
            kind,
            source: FdError::sys("pidfd_getfd")(e),
        })
    };
    let desc = |kind: FdKind| -> Result<Classified> {
        Ok(Classified {
            kind,
            stat: None,
            dup: Some(dup_of(kind)?),
        })
    };
    let no_ino = |kind: FdKind| DumpError::FileDesc {
        pid,
        fd,
        kind,
        source: FdError::Parse(format!("link {target}")),
    };
    if target.starts_with("pipe:") {
        let ino = bracket_ino(target).ok_or_else(|| no_ino(FdKind::Pipe { ino: 0 }))?;
        return desc(FdKind::Pipe { ino });
    }
    if target.starts_with("socket:") {
        return socket(task, fd, target);
    }
    if let Some(kind) = by_target(target, fd, shell_job) {
        return desc(kind);
    }
    // Before the unlinked-file check: a file of a process that exited reads `... (deleted)` too.
    let magic = target
        .starts_with('/')
        .then(|| reg::fs_magic(pid, fd))
        .flatten();
    if magic == Some(reg::PROC_SUPER_MAGIC) {
        return desc(FdKind::Proc);
    }
    if target.starts_with('/') && target.ends_with(DELETED) {
        let kind = match fifo::identify(pid, fd) {
            Some(key) => FdKind::Fifo { key },
            None => FdKind::Ghost,
        };
        return desc(kind);
    }
    if !target.starts_with('/') {
        // anon_inode:..., nsfs, or a file outside our mount namespace's view.
        return Err(unsupported(unsupported_kind(target, None)));
    }
    if let Some(key) = fifo::identify(pid, fd) {
        return desc(FdKind::Fifo { key });
    }
    let stat = stat_proc_link(pid, &format!("fd/{fd}"), || format!("fd {fd}"))?;
    let kind = match stat.mode & libc::S_IFMT {
        libc::S_IFREG | libc::S_IFDIR if magic == Some(reg::SYSFS_MAGIC) => {
            return Err(unsupported("sysfs file"))
        }
        libc::S_IFREG | libc::S_IFDIR => FdKind::Reg,
        libc::S_IFCHR if dev::PATH_DEVICES.contains(&target) => FdKind::Dev,
        libc::S_IFCHR if tty::inherited(fd, stat.rdev, shell_job) => FdKind::Tty,
        libc::S_IFCHR if dev::reopened_by_path(target, stat.rdev, shell_job) => FdKind::Dev,
        mode => return Err(unsupported(unsupported_kind(target, Some(mode)))),
    };
    Ok(Classified {
        kind,
        stat: Some(stat),
        dup: None,
    })
}

/// A socket: its domain from the dumper's copy.
fn socket(task: &TaskFds, fd: i32, target: &str) -> Result<Classified> {
    let pid = task.pid();
    let fail = |source: FdError| DumpError::FileDesc {
        pid,
        fd,
        kind: FdKind::Unix { ino: 0 },
        source,
    };
    let dup = task
        .get(fd)
        .map_err(|e| fail(FdError::sys("pidfd_getfd")(e)))?;
    let family = sys::sockopt_int(&dup, libc::SOL_SOCKET, libc::SO_DOMAIN)
        .map_err(|e| fail(FdError::sys("SO_DOMAIN")(e)))?;
    let kind = match family {
        libc::AF_UNIX => FdKind::Unix {
            ino: bracket_ino(target)
                .ok_or_else(|| fail(FdError::Parse(format!("link {target}"))))?,
        },
        libc::AF_INET | libc::AF_INET6 => FdKind::Inet { family },
        other => {
            return Err(DumpError::UnsupportedFd {
                pid,
                fd,
                target: target.to_string(),
                kind: family_name(other),
            })
        }
    };
    Ok(Classified {
        kind,
        stat: None,
        dup: Some(dup),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(bracket_ino("pipe:[77]"), Some(77));
        assert_eq!(bracket_ino("socket:[5]"), Some(5));
        assert_eq!(
            by_target("anon_inode:[eventpoll]", 3, false),
            Some(FdKind::Epoll)
        );
        assert_eq!(
            by_target("/memfd:x (deleted)", 3, false),
            Some(FdKind::Memfd)
        );
        assert_eq!(
            by_target("anon_inode:inotify", 3, false),
            Some(FdKind::Inotify)
        );
        assert_eq!(
            by_target("anon_inode:[pidfd]", 3, false),
            Some(FdKind::Pidfd)
        );
        assert_eq!(by_target("/etc/passwd", 3, false), None);
        assert_eq!(
            by_target("/dev/pts/4", 1, false),
            Some(FdKind::PtySlave { index: 4 })
        );
        assert_eq!(
            by_target("/dev/pts/4", 1, true),
            None,
            "the shell job's terminal"
        );
    }

    #[test]
    fn kinds() {
        assert_eq!(unsupported_kind("pipe:[7788]", None), "pipe");
        assert_eq!(unsupported_kind("socket:[1]", None), "socket");
        assert_eq!(
            unsupported_kind("anon_inode:[eventfd]", None),
            "anonymous inode"
        );
        assert_eq!(
            unsupported_kind("/dev/sda", Some(libc::S_IFBLK | 0o600)),
            "block device"
        );
    }
}
