//! The restore guard: a small process between the restorer and the restored tree, so that a restore that
//! fails or is killed leaves no process of the image behind, not even a zombie.
//!
//! Without it, a killed restorer (SIGKILL) takes the tree down with it (every restored task is traced with
//! `PTRACE_O_EXITKILL`), but the killed tasks become zombies of whatever reaps orphans (init, which may
//! reap late), and they hold the image's pids until it does. The guard closes that gap:
//! - it is forked by the restorer and forks the tree's root itself, so it is the root's parent; as a child
//!   subreaper it also gets every orphan of the tree. Whatever of the tree dies ends up its child, and it
//!   reaps it;
//! - it traces the restorer (`PTRACE_SEIZE`, no options). A zombie tracee is only visible to its tracer, so
//!   when the restorer dies, whoever waits for it (the shell, the test, kata-agent) sees it dead only once
//!   the guard has reaped every process of the tree and exited (which detaches it);
//! - it leaves the restorer's process group, so a signal to that group (a shell's `kill -9 %1`) does not
//!   take the guard down with it.
//!
//! Protocol (a pipe from the restorer): one byte `Q` on success, and the guard exits at once, leaving the
//! restored tree to the restorer (a child subreaper until then, so the root is reparented to it and it can
//! wait for it as before); end of file (the restorer failed and killed the tree, or died) and the guard
//! kills and reaps every child it has, repeatedly, until it has none.
//!
//! While the guard traces it, the restorer blocks SIGCHLD: a traced process stops for every signal, even
//! an ignored one, and the tracer's own tracees send one at each of their stops. Other signals are
//! forwarded by the guard as they come. Where the restorer cannot be traced (already traced, or a ptrace
//! policy that forbids it) the guard still reaps the tree, only without holding the restorer's exit back.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid as NixPid;

use super::child::{child_main, ChildPlan};
use super::fork::{clone_exact, pipe};
use crate::error::RestoreError;

/// What the guard needs to fork the root.
pub(super) struct RootFork<'a> {
    pub(super) plans: &'a [ChildPlan<'a>],
    /// Make the root the init of a new pid namespace (`unshare(CLONE_NEWPID)` in the guard first).
    pub(super) new_pid_ns: bool,
    /// Fds of the restorer's that neither the guard nor the root may hold (the write end the root waits
    /// on for the tracer).
    pub(super) close_first: &'a [RawFd],
}

/// The running guard, seen from the restorer.
pub(super) struct Guard {
    pid: u32,
    /// Write end of the control pipe: `Q` dismisses the guard, closing it makes it clean up.
    ctl: Option<OwnedFd>,
    /// The restorer's `PR_SET_CHILD_SUBREAPER` before the guard, restored when it is gone.
    was_subreaper: bool,
    /// SIGCHLD blocked while the guard traces us.
    sigchld: Option<SigchldBlocked>,
}

impl Guard {
    /// Forks the guard, which forks the root; returns the guard and the root's clone3 result (its pid, or
    /// `-errno`).
    pub(super) fn start(root: RootFork<'_>) -> Result<(Guard, i64), RestoreError> {
        let was_subreaper =
            subreaper().map_err(|e| RestoreError::sys("PR_GET_CHILD_SUBREAPER", e))?;
        set_subreaper(true).map_err(|e| RestoreError::sys("PR_SET_CHILD_SUBREAPER", e))?;
        let sigchld = SigchldBlocked::block()?;
        let (ctl_read, ctl_write) = pipe()?;
        let (result_read, result_write) = pipe()?;
        let restorer = std::process::id();
        // SAFETY: the restorer is single-threaded (checked by the caller), so the child may run any code;
        // it never returns into the caller's frames (guard_main ends with exit_group).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            let e = Errno::last();
            let _ = set_subreaper(was_subreaper);
            return Err(RestoreError::sys("forking the restore guard", e));
        }
        if pid == 0 {
            drop(ctl_write);
            drop(result_read);
            guard_main(restorer, root, ctl_read, result_write);
        }
        drop(ctl_read);
        drop(result_write);
        let guard = Guard {
            pid: pid as u32,
            ctl: Some(ctl_write),
            was_subreaper,
            sigchld: Some(sigchld),
        };
        let mut buf = [0u8; 9];
        let ret = match nix::unistd::read(&result_read, &mut buf) {
            Ok(9) => {
                if buf[8] != 3 {
                    log::warn!(
                        "restore guard {}: {}; if this restore is killed, processes of the image may \
                         outlive it for a moment",
                        guard.pid,
                        if buf[8] & 1 == 0 {
                            "cannot trace the restorer"
                        } else {
                            "cannot read its children list"
                        }
                    );
                }
                i64::from_ne_bytes([
                    buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6], buf[7],
                ])
            }
            Ok(_) => {
                return Err(RestoreError::ChildLost {
                    pid: guard.pid,
                    what: "the restore guard ended before forking the root".into(),
                })
            }
            Err(e) => return Err(RestoreError::sys("reading the restore guard's report", e)),
        };
        Ok((guard, ret))
    }

    /// The guard's pid.
    pub(super) fn pid(&self) -> u32 {
        self.pid
    }

    /// The restore succeeded: the guard exits without touching the tree, whose root becomes our child.
    pub(super) fn dismiss(mut self) -> Result<(), RestoreError> {
        if let Some(ctl) = self.ctl.take() {
            nix::unistd::write(&ctl, b"Q")
                .map_err(|e| RestoreError::sys("dismissing the restore guard", e))?;
        }
        self.finish()
    }

    /// Waits for the guard, then puts the restorer's subreaper flag and signal mask back.
    fn finish(&mut self) -> Result<(), RestoreError> {
        self.ctl = None;
        let res = loop {
            match waitpid(NixPid::from_raw(self.pid as i32), Some(WaitPidFlag::__WALL)) {
                Err(Errno::EINTR) => continue,
                Err(Errno::ECHILD) => break Ok(()),
                Err(e) => break Err(RestoreError::sys("waiting for the restore guard", e)),
                Ok(_) => break Ok(()),
            }
        };
        let _ = set_subreaper(self.was_subreaper);
        self.sigchld = None;
        res
    }
}

impl Drop for Guard {
    /// A failed restore (the tree is killed by then): the guard reaps what is left of it and exits.
    fn drop(&mut self) {
        if self.ctl.is_some() || self.sigchld.is_some() {
            if let Err(e) = self.finish() {
                log::warn!("restore guard {}: {e}", self.pid);
            }
        }
    }
}

fn subreaper() -> Result<bool, Errno> {
    let mut v: libc::c_int = 0;
    // SAFETY: PR_GET_CHILD_SUBREAPER writes one int to the pointer.
    if unsafe {
        libc::prctl(
            libc::PR_GET_CHILD_SUBREAPER,
            &mut v as *mut libc::c_int,
            0,
            0,
            0,
        )
    } != 0
    {
        return Err(Errno::last());
    }
    Ok(v != 0)
}

fn set_subreaper(on: bool) -> Result<(), Errno> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes one integer and changes only the calling process.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, on as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// SIGCHLD blocked in the calling thread for the guard's lifetime.
struct SigchldBlocked(libc::sigset_t);

impl SigchldBlocked {
    fn block() -> Result<Self, RestoreError> {
        // SAFETY: sigset_t is plain data; the libc calls only write the sets we pass.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGCHLD);
            if libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) != 0 {
                return Err(RestoreError::sys("blocking SIGCHLD", Errno::last()));
            }
            Ok(SigchldBlocked(old))
        }
    }
}

impl Drop for SigchldBlocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `block`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

// ---------------------------------------------------------------------------------------------------------
// The guard process
// ---------------------------------------------------------------------------------------------------------

/// How long the guard keeps killing and reaping before it gives up (a task stuck in the kernel).
const CLEANUP_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

fn guard_main(restorer: u32, root: RootFork<'_>, ctl: OwnedFd, result: OwnedFd) -> ! {
    // SAFETY: PR_SET_NAME reads the NUL-terminated literal.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"dormant-guard".as_ptr()) };
    for &fd in root.close_first {
        // SAFETY: closes our copy of an fd of the restorer's that we must not hold.
        unsafe { libc::close(fd) };
    }
    let _ = set_subreaper(true);
    // Every signal but SIGTRAP blocked: the root inherits the mask (see `fork::MaskGuard`), and the guard
    // reads SIGCHLD from a signalfd.
    // SAFETY: sigset_t is plain data; the calls only change this process's mask.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigdelset(&mut all, libc::SIGTRAP);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
    }
    // Opened before the restorer goes on: a container's /proc shows another pid namespace later.
    let children = std::fs::File::open(format!("/proc/self/task/{0}/children", std::process::id()));
    // The restorer's death stays hidden from its waiter until we are done (see the module docs).
    let traced = nix::sys::ptrace::seize(
        NixPid::from_raw(restorer as i32),
        nix::sys::ptrace::Options::empty(),
    )
    .is_ok();
    // A restorer that died (or is dying: it cannot be traced then) before we traced it is seen dead by
    // now or soon: no root is forked for it.
    let ret = if traced || !dying(restorer) {
        fork_root(&root)
    } else {
        -(libc::ESRCH as i64)
    };
    // Nothing of the restorer's but the two pipes and the children list from here on; the root has its
    // copies.
    let mut keep = vec![ctl.as_raw_fd(), result.as_raw_fd()];
    keep.extend(children.as_ref().ok().map(AsRawFd::as_raw_fd));
    close_all_but(&keep);
    let mut report = ret.to_ne_bytes().to_vec();
    report.push(u8::from(traced) | u8::from(children.is_ok()) << 1);
    let _ = nix::unistd::write(&result, &report);
    drop(result);
    // SAFETY: setpgid(0, 0) only moves this process into a group of its own.
    unsafe { libc::setpgid(0, 0) };
    let dismissed = serve(restorer, traced, &ctl);
    if !dismissed {
        if let Ok(children) = children {
            clean_up(&children);
        }
    }
    // SAFETY: ends the guard without running anything of the restorer's copy; the kernel detaches the
    // traced restorer (its zombie, if it died, goes to its parent now).
    unsafe { libc::syscall(libc::SYS_exit_group, 0) };
    loop {
        std::hint::spin_loop();
    }
}

/// Whether the restorer is gone or exiting: we are no longer its child, or its `PF_EXITING` flag is set.
fn dying(restorer: u32) -> bool {
    // SAFETY: getppid has no side effects.
    if unsafe { libc::getppid() } as u32 != restorer {
        return true;
    }
    const PF_EXITING: u64 = 0x4;
    std::fs::read_to_string(format!("/proc/{restorer}/stat"))
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 1..];
            rest.split_whitespace().nth(6)?.parse::<u64>().ok()
        })
        .is_none_or(|flags| flags & PF_EXITING != 0)
}

/// Forks the root (in a new pid namespace if asked); its clone3 result.
fn fork_root(root: &RootFork<'_>) -> i64 {
    if root.new_pid_ns {
        // SAFETY: unshare changes only this (single-threaded) process's namespace for children.
        if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
            return -(Errno::last_raw() as i64);
        }
    }
    let first = &root.plans[0];
    let ret = clone_exact(first.pid, first.ns_pid, first.clone_flags);
    if ret == 0 {
        child_main(root.plans, 0);
    }
    ret
}

fn close_all_but(keep: &[RawFd]) {
    let mut keep = keep.to_vec();
    keep.sort_unstable();
    let mut next: u32 = 0;
    for &k in keep.iter() {
        if k as u32 > next {
            // SAFETY: close_range only closes fds of this process.
            unsafe { libc::syscall(libc::SYS_close_range, next, k as u32 - 1, 0) };
        }
        next = k as u32 + 1;
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, next, u32::MAX, 0) };
}

/// Waits for the restorer's word, forwarding the signals that stop it meanwhile; true when dismissed.
fn serve(restorer: u32, traced: bool, ctl: &OwnedFd) -> bool {
    let sigchld = signalfd_for_sigchld();
    loop {
        let mut fds = vec![libc::pollfd {
            fd: ctl.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some(s) = &sigchld {
            fds.push(libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: polls the pollfds in our vector.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            if Errno::last() == Errno::EINTR {
                continue;
            }
            return false;
        }
        if fds.get(1).is_some_and(|f| f.revents != 0) {
            if let Some(s) = &sigchld {
                let mut buf = [0u8; 128];
                let _ = nix::unistd::read(s, &mut buf);
            }
            if traced {
                forward_stops(restorer);
            }
        }
        if fds[0].revents != 0 {
            let mut b = [0u8; 1];
            return matches!(nix::unistd::read(ctl, &mut b), Ok(1) if b[0] == b'Q');
        }
    }
}

fn signalfd_for_sigchld() -> Option<OwnedFd> {
    // SAFETY: sigset_t is plain data; the calls only write the set on our stack.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        (fd >= 0).then(|| OwnedFd::from_raw_fd(fd))
    }
}

/// Resumes the traced restorer from every stop it is in: a signal is handed on, a group stop is left
/// to the job control (`PTRACE_LISTEN`). Its exit is never collected here.
fn forward_stops(restorer: u32) {
    loop {
        // SAFETY: siginfo_t is plain data; waitid writes it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waits for stops of our tracee only (no WEXITED: its exit stays for the end).
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                restorer as libc::id_t,
                &mut info,
                libc::WSTOPPED | libc::WNOHANG | libc::__WALL,
            )
        };
        // SAFETY: si_pid and si_status are valid for the CLD_* codes waitid reports.
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if r != 0 || pid == 0 {
            return;
        }
        let tracee = NixPid::from_raw(restorer as i32);
        let sig = status & 0xff;
        let event = status >> 8;
        if event == libc::PTRACE_EVENT_STOP {
            // SAFETY: PTRACE_LISTEN on our stopped tracee; no data.
            unsafe { libc::ptrace(libc::PTRACE_LISTEN, restorer as libc::pid_t, 0, 0) };
        } else {
            let sig = nix::sys::signal::Signal::try_from(sig).ok();
            let _ = nix::sys::ptrace::cont(tracee, sig);
        }
    }
}

/// Kills and reaps every child (the tree's root and every orphan reparented to us), until none is left.
fn clean_up(children: &std::fs::File) {
    use std::os::unix::fs::FileExt;
    let start = std::time::Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    while start.elapsed() < CLEANUP_LIMIT {
        let n = children.read_at(&mut buf, 0).unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        let pids: Vec<i32> = text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if pids.is_empty() {
            return;
        }
        for p in pids {
            // Our own child, unreaped: its pid cannot have been reused.
            let pid = NixPid::from_raw(p);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(pid, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
