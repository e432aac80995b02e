//! Proc files reopened by their task (see `files/procfs.rs` for why): the tracer stops each task once the
//! whole tree exists and injects `openat`, `lseek`, `dup3` and `close` into it for every [`ProcOpen`] of
//! the task. Here, apart from the records, because it drives a stopped task, as the rest of `launch` does.

use dormant_parasite::{RemoteTask, Tid};

use crate::error::RestoreError;
use crate::files::procfs::ProcOpen;

/// Makes stopped task `pid` open its proc files, injecting syscalls from `site` (outside any area it
/// should not run). Any failure fails the restore (the tree is killed): the task never runs with a fd
/// missing or about the wrong process.
pub(super) fn reopen_in(pid: u32, site: u64, opens: &[ProcOpen]) -> Result<(), RestoreError> {
    if opens.is_empty() {
        return Ok(());
    }
    let mut remote = RemoteTask::with_site_unguarded(Tid(pid as i32), site)
        .map_err(|source| RestoreError::Cleanup { pid, source })?;
    let done = opens
        .iter()
        .try_for_each(|o| reopen_one(&mut remote, pid, o));
    let ended = remote
        .finish()
        .map_err(|source| RestoreError::Cleanup { pid, source });
    done.and(ended)
}

fn reopen_one(remote: &mut RemoteTask, pid: u32, o: &ProcOpen) -> Result<(), RestoreError> {
    let first = o.fds.first().map_or(-1, |f| f.0);
    let fail = |what: String| RestoreError::ProcFile {
        pid,
        fd: first,
        path: o.path.clone(),
        what,
    };
    let mut bytes = o.path.as_bytes().to_vec();
    bytes.push(0);
    if bytes.len() > PAGE || o.path.as_bytes().contains(&0) {
        return Err(fail("the path is longer than a page or holds a NUL".into()));
    }
    let mut call = Call {
        remote,
        fail: &fail,
    };
    // The path goes into a page of the task's own for the call (a restored task's stack has no room to
    // spare: the release sessions run unguarded).
    let page = call.sys(
        "mmap",
        libc::SYS_mmap,
        [
            0,
            PAGE as u64,
            (libc::PROT_READ | libc::PROT_WRITE) as u64,
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
            u64::MAX,
            0,
        ],
    )? as u64;
    let opened = call
        .remote
        .write_mem(page, &bytes)
        .map_err(|e| fail(format!("writing the path: {e}")))
        .and_then(|()| open_at(&mut call, page, o));
    let unmapped = call.sys("munmap", libc::SYS_munmap, [page, PAGE as u64, 0, 0, 0, 0]);
    log::debug!("pid {pid}: reopened {} as fd(s) {:?}", o.path, o.fds);
    opened.and(unmapped.map(drop))
}

const PAGE: usize = 4096;

/// Injected syscalls whose failures name the proc file.
struct Call<'a> {
    remote: &'a mut RemoteTask,
    fail: &'a dyn Fn(String) -> RestoreError,
}

impl Call<'_> {
    fn sys(&mut self, what: &str, nr: i64, args: [u64; 6]) -> Result<i64, RestoreError> {
        let ret = self
            .remote
            .syscall(nr, args)
            .map_err(|e| (self.fail)(format!("{what}: {e}")))?;
        if (-4095..0).contains(&ret) {
            return Err((self.fail)(format!(
                "{what}: {}",
                nix::errno::Errno::from_raw(-ret as i32)
            )));
        }
        Ok(ret)
    }
}

/// `openat` of the path at `addr` in the task, then `lseek` and `dup3` onto each fd number.
fn open_at(call: &mut Call<'_>, addr: u64, o: &ProcOpen) -> Result<(), RestoreError> {
    let flags = (o.flags | libc::O_CLOEXEC) as u32 as u64;
    let tmp = call.sys(
        "openat",
        libc::SYS_openat,
        [libc::AT_FDCWD as u64, addr, flags, 0, 0, 0],
    )? as u64;
    let mut rest = || -> Result<(), RestoreError> {
        if o.pos != 0 {
            let at = call.sys(
                "lseek",
                libc::SYS_lseek,
                [tmp, o.pos, libc::SEEK_SET as u64, 0, 0, 0],
            )?;
            if at as u64 != o.pos {
                return Err((call.fail)(format!("lseek to {} landed at {at}", o.pos)));
            }
        }
        for &(fd, cloexec) in &o.fds {
            // The open took the lowest free number, which may be this one (every fd number the task
            // had is either in place or one of its proc files').
            if fd as u64 == tmp {
                let fl = if cloexec { libc::FD_CLOEXEC as u64 } else { 0 };
                call.sys(
                    "fcntl F_SETFD",
                    libc::SYS_fcntl,
                    [tmp, libc::F_SETFD as u64, fl, 0, 0, 0],
                )?;
                continue;
            }
            let fl = if cloexec { libc::O_CLOEXEC as u64 } else { 0 };
            let got = call.sys("dup3", libc::SYS_dup3, [tmp, fd as u64, fl, 0, 0, 0])?;
            if got != i64::from(fd) {
                return Err((call.fail)(format!("dup3 onto {fd} gave {got}")));
            }
        }
        Ok(())
    };
    let done = rest();
    let keep = o.fds.iter().any(|&(fd, _)| fd as u64 == tmp);
    if keep && done.is_ok() {
        return Ok(());
    }
    let closed = call.sys("close", libc::SYS_close, [tmp, 0, 0, 0, 0, 0]);
    done.and(closed.map(drop))
}
