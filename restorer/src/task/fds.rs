//! The task's fd table: where each of its fds comes from (a description opened for the whole tree, a
//! regular file reopened once per tree, the restorer's terminal for a shell job), the locks it held, and,
//! in the child, putting them at their numbers.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::os::fd::{OwnedFd, RawFd};
use std::path::Path;

use dormant_image::records::{FdFile, FileId};

use super::helpers::HelperFds;
use super::ChildFailed;
use crate::error::RestoreError;
use crate::files::{self, ChildAction, LockTaker, OpenedFiles};
use crate::image::TaskImage;
use crate::launch::FdMove;
use dormant_restorer_proto::{LockArg, Step};

/// The task's fds as the child puts them in place.
#[derive(Debug, Default)]
pub struct TaskFds {
    pub moves: Vec<FdMove>,
    /// Steps on its files once they are in place (pidfds, epoll registrations, flocks, leases).
    pub actions: Vec<ChildAction>,
    /// POSIX record locks, which the blob takes once its helper fds are closed.
    pub posix_locks: Vec<LockArg>,
    /// Files of `/proc` the task opens once the whole tree exists (their fd numbers stay empty until).
    pub proc_files: Vec<files::ProcOpen>,
}

/// Builds the fd table of `task`. Fds that shared one description at dump time share the one reopened
/// here (and, through `reg_shared`, with the other tasks of the tree).
pub fn prepare(
    dir: &Path,
    task: &TaskImage,
    shell_job: bool,
    reg_shared: &mut BTreeMap<FileId, OwnedFd>,
    opened: &OpenedFiles,
    helpers: &mut HelperFds,
) -> Result<TaskFds, RestoreError> {
    let mut moves = Vec::with_capacity(task.fds.len());
    let mut reg_fds: BTreeMap<FileId, RawFd> = BTreeMap::new();
    let mut proc_files = Vec::new();
    for fd in task.fds.iter() {
        if let Some((d, f)) = match fd.file {
            FdFile::Desc(id) => opened.proc_file(id),
            _ => None,
        } {
            files::procfs::add(&mut proc_files, d, f, fd.fd, fd.cloexec);
            continue;
        }
        let from = match &fd.file {
            FdFile::Reg(id) if reg_fds.contains_key(id) => reg_fds[id],
            FdFile::Desc(id) => {
                let f = opened.get(*id).ok_or_else(|| RestoreError::BadImage {
                    dir: dir.to_owned(),
                    reason: format!(
                        "fd {} refers to file description {} which is not in {}",
                        fd.fd,
                        id.0,
                        dormant_image::records::names::FILE_DESCS
                    ),
                })?;
                helpers.lift(f, &format!("file description {}", id.0))?
            }
            FdFile::Reg(id) => {
                let f = task.file(dir, *id, &format!("fd {}", fd.fd))?;
                let file = match reg_shared.entry(*id) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => e.insert(reopen(&f.path, f.flags as i32, f.pos)?),
                };
                let lifted = helpers.lift(&*file, &f.path)?;
                reg_fds.insert(*id, lifted);
                lifted
            }
            FdFile::InheritedTty => {
                if !shell_job {
                    return Err(RestoreError::ShellJobRequired {
                        pid: task.pid.0,
                        fd: fd.fd,
                    });
                }
                helpers.lift(files::tty::ours(fd.fd), "the terminal")?
            }
        };
        moves.push(FdMove {
            from,
            to: fd.fd,
            cloexec: fd.cloexec,
        });
    }
    let mut actions = opened.child_actions_for(task.fds);
    let mut posix_locks = Vec::new();
    for taker in locks(dir, task, &moves)? {
        match taker {
            LockTaker::Taken => {}
            LockTaker::Child(a) => actions.push(a),
            LockTaker::Blob(l) => posix_locks.push(l),
        }
    }
    Ok(TaskFds {
        moves,
        actions,
        posix_locks,
        proc_files,
    })
}

/// A regular file reopened with its dumped flags at its dumped offset.
fn reopen(path: &str, flags: i32, pos: u64) -> Result<OwnedFd, RestoreError> {
    let file = super::open_file(path, flags, "cannot reopen")?;
    if pos != 0 {
        nix::unistd::lseek(&file, pos as i64, nix::unistd::Whence::SeekSet)
            .map_err(|e| RestoreError::sys(format!("seeking {path} to {pos}"), e))?;
    }
    Ok(OwnedFd::from(file))
}

/// The task's locks: OFD ones taken on our copy now, the others left to the child or the blob.
fn locks(dir: &Path, task: &TaskImage, moves: &[FdMove]) -> Result<Vec<LockTaker>, RestoreError> {
    let mut out = Vec::new();
    for l in task.locks.iter() {
        let m = moves
            .iter()
            .find(|m| m.to == l.fd)
            .ok_or_else(|| RestoreError::BadImage {
                dir: dir.to_owned(),
                reason: format!("lock on fd {} which the task does not have", l.fd),
            })?;
        out.push(files::lock_description(m.from, l).map_err(|e| {
            RestoreError::sys(format!("taking the {:?} lock of fd {}", l.kind, l.fd), e)
        })?);
    }
    Ok(out)
}

/// In the child: every fd to its number, every other fd but `keep` (sorted ascending) closed, then the
/// actions. Allocation-free.
pub fn apply(moves: &[FdMove], keep: &[RawFd], actions: &[ChildAction]) -> Result<(), ChildFailed> {
    let errno = nix::errno::Errno::last_raw;
    for m in moves {
        // SAFETY: `from` is a helper fd inherited from the parent, `to` a target fd number below every
        // helper fd, so no helper is overwritten.
        if unsafe { libc::dup2(m.from, m.to) } != m.to {
            return Err(ChildFailed::new(Step::ChildDupFd, errno(), m.to as u64));
        }
        let flags = if m.cloexec { libc::FD_CLOEXEC } else { 0 };
        // SAFETY: sets the fd flags of the fd just installed.
        if unsafe { libc::fcntl(m.to, libc::F_SETFD, flags) } != 0 {
            return Err(ChildFailed::new(Step::ChildDupFd, errno(), m.to as u64));
        }
    }
    // Close every fd outside `keep`, gap by gap.
    let mut next: u32 = 0;
    for &k in keep.iter().chain(std::iter::once(&-1)) {
        let hi = if k < 0 { u32::MAX } else { k as u32 };
        if hi > next {
            // SAFETY: close_range only closes fds of this (child) process.
            if unsafe { libc::syscall(libc::SYS_close_range, next, hi - 1, 0) } != 0 {
                return Err(ChildFailed::new(Step::ChildCloseFds, errno(), next as u64));
            }
        }
        if k < 0 {
            break;
        }
        next = k as u32 + 1;
    }
    // After the close: an epoll registration of a closed number dups the file there and closes it again.
    for a in actions {
        files::run_child_action(a).map_err(|e| ChildFailed::new(Step::ChildDupFd, e, 0))?;
    }
    Ok(())
}
