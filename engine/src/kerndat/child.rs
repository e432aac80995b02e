//! Forked children for the probes: a sleeper to trace, freeze or steal fds from, and a runner that
//! executes a risky probe (unmapping the vdso, unsharing namespaces, write-protecting memory,
//! clear_refs) in a child so the dormant process itself is never changed.
//!
//! The caller may be multi-threaded (a test harness, a CLI with a logging thread). After fork only the
//! forking thread exists in the child, so child code takes no lock another thread could hold: it never
//! prints or logs, and allocates only through glibc's malloc, which is consistent across fork.

use std::os::fd::{AsFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use super::error::ProbeError;

/// How long any probe child may take. Probes finish in milliseconds; the limit only stops a probe
/// whose feature hangs (a write-protected page nobody resolves) from hanging `dormant check`.
pub(crate) const CHILD_TIMEOUT: Duration = Duration::from_secs(3);

/// A child that does nothing but sleep in pause(); killed and reaped on drop.
#[derive(Debug)]
pub(crate) struct Sleeper {
    pid: Pid,
}

impl Sleeper {
    pub(crate) fn spawn() -> Result<Self, ProbeError> {
        // SAFETY: the child only loops in pause(), a raw syscall, until it is killed.
        match unsafe { fork() }.map_err(|e| ProbeError::sys("fork", e))? {
            ForkResult::Child => loop {
                nix::unistd::pause();
            },
            ForkResult::Parent { child } => Ok(Sleeper { pid: child }),
        }
    }

    pub(crate) fn pid(&self) -> Pid {
        self.pid
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = kill(self.pid, Signal::SIGKILL);
        reap(self.pid);
    }
}

/// Waits until `pid` is gone (it was killed or told to exit), skipping ptrace stops.
pub(crate) fn reap(pid: Pid) {
    loop {
        match waitpid(pid, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..)) => return,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}

/// Polls `pid` with WNOHANG until `done` accepts a status or `deadline` passes.
pub(crate) fn wait_until(
    pid: Pid,
    deadline: Instant,
    mut done: impl FnMut(&WaitStatus) -> bool,
) -> Result<WaitStatus, ProbeError> {
    let mut pause = Duration::from_micros(50);
    loop {
        match waitpid(pid, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
            Ok(status) if done(&status) => return Ok(status),
            Ok(status) => {
                return Err(ProbeError::Child {
                    pid,
                    how: format!("reported an unexpected state: {status:?}"),
                })
            }
            Err(errno) => return Err(ProbeError::on_pid("waitpid", pid, errno)),
        }
        if Instant::now() >= deadline {
            return Err(ProbeError::Child {
                pid,
                how: format!("did not change state within {CHILD_TIMEOUT:?}"),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// Runs `body` in a forked child and returns what it reported: `Ok(detail)` when the feature worked
/// there, `ProbeError::InChild(reason)` when it did not, `ProbeError::Child` when the child died or
/// hung without reporting.
pub(crate) fn in_child(
    body: impl FnOnce() -> Result<String, String>,
) -> Result<String, ProbeError> {
    let (read_end, write_end) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ProbeError::sys("pipe2", e))?;
    // SAFETY: see the module comment: the child takes no lock other threads may hold, and it leaves
    // through _exit without returning into the caller.
    match unsafe { fork() }.map_err(|e| ProbeError::sys("fork", e))? {
        ForkResult::Child => {
            drop(read_end);
            let outcome = panic::catch_unwind(AssertUnwindSafe(body))
                .unwrap_or_else(|_| Err("the probe panicked in the child".to_string()));
            send_frame(&write_end, &outcome);
            // SAFETY: ends the child without unwinding into or running handlers of the parent's code.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            match receive_frame(child, read_end) {
                Received::Frame(outcome) => {
                    reap(child);
                    outcome.map_err(ProbeError::InChild)
                }
                Received::Eof => {
                    let status = waitpid(child, Some(WaitPidFlag::__WALL));
                    Err(ProbeError::Child {
                        pid: child,
                        how: format!("ended without reporting: {status:?}"),
                    })
                }
                Received::Reaped(status) => Err(ProbeError::Child {
                    pid: child,
                    how: format!("ended without reporting: {status:?}"),
                }),
                Received::Failed(e) => {
                    let _ = kill(child, Signal::SIGKILL);
                    reap(child);
                    Err(e)
                }
            }
        }
    }
}

/// How reading a probe child's report ended.
enum Received {
    /// The child's whole report.
    Frame(Result<String, String>),
    /// The pipe closed before a whole report arrived; the child is not reaped yet.
    Eof,
    /// The child ended without a report and has been reaped (its pid must not be used again).
    Reaped(WaitStatus),
    /// Reading failed or timed out; the child may still run.
    Failed(ProbeError),
}

/// Frame: 1 byte (0 = worked, 1 = did not), 4 bytes length, the text.
fn send_frame(fd: &OwnedFd, outcome: &Result<String, String>) {
    let (tag, text) = match outcome {
        Ok(text) => (0u8, text),
        Err(text) => (1u8, text),
    };
    let mut frame = Vec::with_capacity(5 + text.len());
    frame.push(tag);
    frame.extend_from_slice(&(text.len() as u32).to_ne_bytes());
    frame.extend_from_slice(text.as_bytes());
    let mut off = 0;
    while off < frame.len() {
        match nix::unistd::write(fd, &frame[off..]) {
            Ok(0) => return,
            Ok(n) => off += n,
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

fn decode_frame(buf: &[u8]) -> Option<Result<String, String>> {
    let (&tag, rest) = buf.split_first()?;
    let len = u32::from_ne_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let text = String::from_utf8_lossy(rest.get(4..4 + len)?).into_owned();
    Some(if tag == 0 { Ok(text) } else { Err(text) })
}

/// Reads the child's frame. EOF can come late (another thread's fork may hold a copy of the write end),
/// so a complete frame ends the read, and the child's exit is checked between polls.
fn receive_frame(child: Pid, read_end: OwnedFd) -> Received {
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(outcome) = decode_frame(&buf) {
            return Received::Frame(outcome);
        }
        let now = Instant::now();
        if now >= deadline {
            return Received::Failed(ProbeError::Child {
                pid: child,
                how: format!("did not report within {CHILD_TIMEOUT:?}"),
            });
        }
        let slice = (deadline - now).min(Duration::from_millis(20));
        let mut fds = [PollFd::new(read_end.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(slice).unwrap_or(PollTimeout::ZERO);
        match nix::poll::poll(&mut fds, timeout) {
            Ok(0) => {
                // No data: if the child is already gone, nothing more will come from it.
                match waitpid(child, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
                    Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                        return Received::Reaped(status)
                    }
                    Ok(_) => {}
                    Err(e) => return Received::Failed(ProbeError::on_pid("waitpid", child, e)),
                }
            }
            Ok(_) => match nix::unistd::read(&read_end, &mut chunk) {
                Ok(0) => {
                    return match decode_frame(&buf) {
                        Some(outcome) => Received::Frame(outcome),
                        None => Received::Eof,
                    }
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(Errno::EINTR) => {}
                Err(e) => {
                    return Received::Failed(ProbeError::on_pid("read from probe child", child, e))
                }
            },
            Err(Errno::EINTR) => {}
            Err(e) => return Received::Failed(ProbeError::on_pid("poll on probe child", child, e)),
        }
    }
}
