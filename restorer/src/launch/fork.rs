//! Forking a restored task with its exact pid (clone3 `set_tid`), and what the restorer holds around the
//! fork: the blob areas mapped at their final addresses (the child inherits them) and a signal mask that
//! keeps the child from running a handler of the restorer's before it enters its blob.

use std::os::fd::OwnedFd;

use dormant_sys::process::CloneArgs;
use nix::errno::Errno;

use crate::area::Area;
use crate::error::RestoreError;

pub(super) fn pipe() -> Result<(OwnedFd, OwnedFd), RestoreError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| RestoreError::sys("pipe2", e))
}

/// Maps the area at its base in this process (it is inherited by the child through the fork).
pub(super) struct MappedArea {
    base: u64,
    len: usize,
}

impl MappedArea {
    pub(super) fn map(area: &Area) -> Result<MappedArea, RestoreError> {
        let len = area.bytes.len();
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; the new private anonymous range
        // belongs to us alone.
        let p = unsafe {
            libc::mmap(
                area.base as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED || p as u64 != area.base {
            let e = Errno::last();
            if p != libc::MAP_FAILED {
                // SAFETY: `p` is the mapping just created (the kernel placed it elsewhere).
                unsafe { libc::munmap(p, len) };
            }
            return Err(RestoreError::sys(
                format!("mapping the blob area at {:#x}", area.base),
                e,
            ));
        }
        let mapped = MappedArea {
            base: area.base,
            len,
        };
        // SAFETY: `p` is a fresh writable mapping of `len` bytes, and `area.bytes` has exactly `len` bytes.
        unsafe { std::ptr::copy_nonoverlapping(area.bytes.as_ptr(), p.cast::<u8>(), len) };
        Ok(mapped)
    }
}

impl Drop for MappedArea {
    fn drop(&mut self) {
        // SAFETY: the range is the area mapped in `map`; nothing of ours refers into it.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// Blocks every signal but SIGTRAP for the lifetime of the guard (the child inherits that mask).
pub(super) struct MaskGuard(libc::sigset_t);

impl MaskGuard {
    pub(super) fn block() -> Result<MaskGuard, RestoreError> {
        // SAFETY: sigset_t is plain data; the libc calls only write the sets we pass.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::sigdelset(&mut all, libc::SIGTRAP);
            if libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old) != 0 {
                return Err(RestoreError::sys("blocking signals", Errno::last()));
            }
            Ok(MaskGuard(old))
        }
    }
}

impl Drop for MaskGuard {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `block`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

/// clone3 as a fork, with `pid` as the exact pid when non-zero and, in a container, `ns_pid` (non-zero)
/// as its pid in the pid namespace one level down (set_tid is innermost first; `pid` 0 there lets the
/// kernel choose the outer one). Returns 0 in the child, the pid in the parent, `-errno` on failure.
/// `flags`: `CLONE_PARENT` (the child is our parent's), `CLONE_FILES`/`CLONE_FS` (it shares our fd table
/// or fs struct). Allocation-free (also called in restored tasks forking their children).
pub(super) fn clone_exact(pid: u32, ns_pid: u32, flags: u64) -> i64 {
    let to_parent = flags & libc::CLONE_PARENT as u64 != 0;
    let set_tid = match (pid, ns_pid) {
        (_, 0) => [pid as libc::pid_t, 0],
        (0, ns) => [ns as libc::pid_t, 0],
        (pid, ns) => [ns as libc::pid_t, pid as libc::pid_t],
    };
    let size = match (pid, ns_pid) {
        (0, 0) => 0,
        (_, 0) | (0, _) => 1,
        _ => 2,
    };
    let args = CloneArgs {
        // With CLONE_PARENT the kernel takes the exit signal from our own (SIGCHLD for a spawned helper)
        // and refuses one in the arguments.
        flags,
        exit_signal: if to_parent { 0 } else { libc::SIGCHLD as u64 },
        set_tid: if size != 0 {
            set_tid.as_ptr() as u64
        } else {
            0
        },
        set_tid_size: size,
        ..Default::default()
    };
    // SAFETY: a fork (no CLONE_VM); `set_tid` outlives the call; the caller runs only allocation-free
    // code in the child.
    match unsafe { dormant_sys::host::clone3(&args) } {
        Ok(pid) => i64::from(pid),
        Err(e) => -(e as i64),
    }
}

/// Forks the root of `plans` as our parent's child (`CLONE_PARENT`), in a new pid namespace if asked;
/// the clone3 result. Without the guard: the caller's parent reaps what a failure leaves.
pub(super) fn fork_root_to_parent(
    plans: &[super::child::ChildPlan<'_>],
    new_pid_ns: bool,
) -> Result<i64, RestoreError> {
    if new_pid_ns {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID)
            .map_err(|e| RestoreError::sys("unshare(CLONE_NEWPID)", e))?;
    }
    let ret = clone_exact(
        plans[0].pid,
        plans[0].ns_pid,
        libc::CLONE_PARENT as u64 | plans[0].clone_flags,
    );
    if ret == 0 {
        super::child::child_main(plans, 0);
    }
    Ok(ret)
}
