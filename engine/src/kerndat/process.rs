//! Process probes: clone3 with set_tid, PR_SET_MM_MAP, ARCH_MAP_VDSO_64, pidfds, kcmp and time
//! namespaces.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::time::{clock_gettime, ClockId};
use nix::unistd::{fork, getpid, ForkResult, Pid};

use super::child::{in_child, Sleeper};
use super::error::ProbeError;
use super::procfs::{read_to_string, self_maps};
use super::sys::{self, PrctlMmMap};
use super::Found;

/// Pids below this are where the kernel wraps around; keep the probe away from them.
const RESERVED_PIDS: i32 = 300;
/// How many free-looking pids to try before giving up (each one taken meanwhile costs an EEXIST).
const SET_TID_ATTEMPTS: i32 = 32;

fn read_number(path: &str) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// clone3 with set_tid: pick a pid nobody uses, ask clone3 for it, and check that the child got it
/// (the child compares getpid() itself and exits 0 when it matches). A pid taken between the check and
/// the call gives EEXIST; then the next one is tried.
pub(crate) fn clone3_set_tid() -> Result<Found, ProbeError> {
    let pid_max = read_number("/proc/sys/kernel/pid_max").unwrap_or(32768);
    // ns_last_pid needs CONFIG_CHECKPOINT_RESTORE; our own pid is a fine starting point without it.
    let last = read_number("/proc/sys/kernel/ns_last_pid").unwrap_or_else(|| getpid().as_raw());
    let span = pid_max - RESERVED_PIDS;
    if span <= 0 {
        return Err(ProbeError::unexpected(format!("pid_max is {pid_max}")));
    }
    let mut candidate = last;
    let mut attempts = 0;
    for _ in 0..span.min(SET_TID_ATTEMPTS * 64) {
        if attempts == SET_TID_ATTEMPTS {
            break;
        }
        candidate = RESERVED_PIDS + (candidate - RESERVED_PIDS + 97).rem_euclid(span);
        if Path::new(&format!("/proc/{candidate}")).exists() {
            continue;
        }
        attempts += 1;
        let wanted = Pid::from_raw(candidate);
        match sys::clone3_exiting_child(wanted) {
            Ok(child) => {
                let status =
                    waitpid(child, None).map_err(|e| ProbeError::on_pid("waitpid", child, e))?;
                if child != wanted {
                    return Err(ProbeError::unexpected(format!(
                        "clone3 asked for pid {wanted} returned pid {child}"
                    )));
                }
                return match status {
                    WaitStatus::Exited(_, 0) => Ok(Found::detail(format!(
                        "child created with the requested pid {wanted}"
                    ))),
                    other => Err(ProbeError::unexpected(format!(
                        "child {child} did not see its requested pid: {other:?}"
                    ))),
                };
            }
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(ProbeError::sys("clone3 with set_tid", e)),
        }
    }
    Err(ProbeError::unexpected(format!(
        "found no free pid: {attempts} free-looking pids were taken meanwhile (EEXIST)"
    )))
}

/// Fields of /proc/self/stat (1-based numbers as in proc(5)) PR_SET_MM_MAP needs.
const STAT_START_CODE: usize = 26;
const STAT_END_CODE: usize = 27;
const STAT_START_STACK: usize = 28;
const STAT_START_DATA: usize = 45;
const STAT_END_DATA: usize = 46;
const STAT_START_BRK: usize = 47;
const STAT_ARG_START: usize = 48;
const STAT_ARG_END: usize = 49;
const STAT_ENV_START: usize = 50;
const STAT_ENV_END: usize = 51;

/// This process's memory layout as PR_SET_MM_MAP wants it (brk is filled in by the caller).
fn current_mm_map() -> Result<PrctlMmMap, ProbeError> {
    let stat = read_to_string("/proc/self/stat")?;
    let after_comm = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| ProbeError::unexpected("/proc/self/stat has no ')' after comm"))?;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // `fields[0]` is field 3 (state).
    let field = |n: usize| -> Result<u64, ProbeError> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| ProbeError::unexpected(format!("/proc/self/stat field {n} missing")))
    };
    Ok(PrctlMmMap {
        start_code: field(STAT_START_CODE)?,
        end_code: field(STAT_END_CODE)?,
        start_data: field(STAT_START_DATA)?,
        end_data: field(STAT_END_DATA)?,
        start_brk: field(STAT_START_BRK)?,
        start_stack: field(STAT_START_STACK)?,
        arg_start: field(STAT_ARG_START)?,
        arg_end: field(STAT_ARG_END)?,
        env_start: field(STAT_ENV_START)?,
        env_end: field(STAT_ENV_END)?,
        ..PrctlMmMap::default()
    })
}

fn self_auxv() -> Result<Vec<u64>, ProbeError> {
    let raw =
        std::fs::read("/proc/self/auxv").map_err(|e| ProbeError::read("/proc/self/auxv", e))?;
    Ok(raw
        .chunks_exact(8)
        .map(|w| u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]))
        .collect())
}

/// PR_SET_MM_MAP: the size query must match `struct prctl_mm_map`, and a child must be able to set
/// its mm fields (code, data, brk, stack, args, env, auxv) to their current values, which is what
/// the restorer does with the dumped ones.
pub(crate) fn pr_set_mm_map() -> Result<Found, ProbeError> {
    let size = sys::prctl_mm_map_size()
        .map_err(|e| ProbeError::sys("prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE)", e))?;
    if size as usize != std::mem::size_of::<PrctlMmMap>() {
        return Err(ProbeError::unexpected(format!(
            "PR_SET_MM_MAP_SIZE says {size}, struct prctl_mm_map here is {}",
            std::mem::size_of::<PrctlMmMap>()
        )));
    }
    let map = current_mm_map()?;
    let auxv = self_auxv()?;
    in_child(move || {
        // brk is read in the child: another thread of the parent may have moved it since.
        let map = PrctlMmMap {
            brk: sys::current_brk(),
            ..map
        };
        sys::prctl_set_mm_map(&map, &auxv)
            .map_err(|e| format!("PR_SET_MM_MAP with the current layout failed: {e}"))?;
        Ok(format!(
            "PR_SET_MM_MAP_SIZE = {size}; a child re-set its mm layout and {} auxv words",
            auxv.len()
        ))
    })
    .map(Found::detail)
}

/// ARCH_MAP_VDSO_64, in a child: unmap its vdso and vvar pages, ask the kernel to map the vdso again
/// at the old place, and check that /proc/self/maps shows `[vdso]` again with an ELF header in it.
/// The child makes no call that goes through the vdso while it is gone.
pub(crate) fn arch_map_vdso() -> Result<Found, ProbeError> {
    if !cfg!(target_arch = "x86_64") {
        return Err(ProbeError::Arch);
    }
    let maps = self_maps()?;
    let special: Vec<(usize, usize)> = maps
        .iter()
        .filter(|m| matches!(m.name.as_str(), "[vdso]" | "[vvar]" | "[vvar_vclock]"))
        .map(|m| (m.start as usize, m.end as usize))
        .collect();
    let vdso = maps
        .iter()
        .find(|m| m.name == "[vdso]")
        .map(|m| m.start as usize)
        .ok_or_else(|| ProbeError::unexpected("this process has no [vdso]"))?;
    let lowest = special.iter().map(|r| r.0).min().unwrap_or(vdso);
    in_child(move || {
        for &(start, end) in &special {
            // SAFETY: the child makes no vdso call and holds no reference into vdso/vvar until the
            // kernel has mapped them again.
            unsafe { sys::munmap_range(start, end - start) }
                .map_err(|e| format!("munmap {start:#x} failed: {e}"))?;
        }
        sys::arch_map_vdso_64(lowest)
            .map_err(|e| format!("arch_prctl(ARCH_MAP_VDSO_64, {lowest:#x}) failed: {e}"))?;
        let maps = self_maps().map_err(|e| e.to_string())?;
        let new_vdso = maps
            .iter()
            .find(|m| m.name == "[vdso]")
            .map(|m| m.start as usize)
            .ok_or("ARCH_MAP_VDSO_64 succeeded but no [vdso] is mapped")?;
        // SAFETY: maps just showed [vdso] mapped (readable) at `new_vdso`.
        let magic: [u8; 4] = unsafe { sys::read_mapped(new_vdso) };
        if magic != *b"\x7fELF" {
            return Err(format!(
                "the new [vdso] at {new_vdso:#x} starts with {magic:x?}, not ELF"
            ));
        }
        let place = if new_vdso == vdso {
            "at its old address"
        } else {
            "elsewhere"
        };
        Ok(format!(
            "a child unmapped its vdso and got it back {place} ({new_vdso:#x})"
        ))
    })
    .map(Found::detail)
}

/// pidfd_open on a sleeper and pidfd_getfd of a pipe it inherited: the stolen descriptor must be the
/// same pipe (same inode) as ours.
pub(crate) fn pidfd() -> Result<Found, ProbeError> {
    let (read_end, _write_end) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ProbeError::sys("pipe2", e))?;
    let sleeper = Sleeper::spawn()?;
    let pid = sleeper.pid();
    let pidfd = sys::pidfd_open(pid).map_err(|e| ProbeError::on_pid("pidfd_open", pid, e))?;
    let stolen = sys::pidfd_getfd(pidfd.as_fd(), read_end.as_raw_fd())
        .map_err(|e| ProbeError::on_pid("pidfd_getfd", pid, e))?;
    let ino = |fd: std::os::fd::BorrowedFd<'_>| nix::sys::stat::fstat(fd).map(|st| st.st_ino);
    let ours = ino(read_end.as_fd()).map_err(|e| ProbeError::sys("fstat", e))?;
    let theirs = ino(stolen.as_fd()).map_err(|e| ProbeError::sys("fstat", e))?;
    if ours != theirs {
        return Err(ProbeError::unexpected(format!(
            "pidfd_getfd of fd {} of pid {pid} gave inode {theirs}, expected {ours}",
            read_end.as_raw_fd()
        )));
    }
    Ok(Found::detail(format!(
        "took fd {} out of pid {pid}: the same pipe",
        read_end.as_raw_fd()
    )))
}

/// kcmp(KCMP_FILE): a descriptor and its dup must compare equal, the two ends of a pipe must not.
pub(crate) fn kcmp() -> Result<Found, ProbeError> {
    let (read_end, write_end) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ProbeError::sys("pipe2", e))?;
    let dup = nix::unistd::dup(&read_end).map_err(|e| ProbeError::sys("dup", e))?;
    let me = getpid();
    let same = sys::kcmp_file(me, read_end.as_raw_fd(), me, dup.as_raw_fd())
        .map_err(|e| ProbeError::sys("kcmp(KCMP_FILE)", e))?;
    let different = sys::kcmp_file(me, read_end.as_raw_fd(), me, write_end.as_raw_fd())
        .map_err(|e| ProbeError::sys("kcmp(KCMP_FILE)", e))?;
    if same != 0 || different == 0 {
        return Err(ProbeError::unexpected(format!(
            "kcmp said {same} for a dup'd fd (expected 0) and {different} for another file (expected non-zero)"
        )));
    }
    Ok(Found::detail(format!(
        "dup'd fds compare equal, different files compare {different}"
    )))
}

/// Offset the probe gives CLOCK_MONOTONIC in its time namespace.
const TIMENS_OFFSET_SECS: i64 = 86_400;

/// Time namespaces, in a child: unshare(CLONE_NEWTIME) must give the child's future children a new
/// namespace, an offset written to timens_offsets must be accepted, and a grandchild must see its
/// CLOCK_MONOTONIC shifted by that offset.
pub(crate) fn time_namespace() -> Result<Found, ProbeError> {
    in_child(|| {
        let before = clock_gettime(ClockId::CLOCK_MONOTONIC).map_err(|e| format!("clock_gettime failed: {e}"))?;
        sys::unshare(libc::CLONE_NEWTIME).map_err(|e| format!("unshare(CLONE_NEWTIME) failed: {e}"))?;
        let ino = |p: &str| std::fs::metadata(p).map(|m| m.ino()).map_err(|e| format!("stat {p} failed: {e}"));
        if ino("/proc/self/ns/time")? == ino("/proc/self/ns/time_for_children")? {
            return Err("unshare(CLONE_NEWTIME) succeeded but time_for_children is unchanged".to_string());
        }
        std::fs::write("/proc/self/timens_offsets", format!("monotonic {TIMENS_OFFSET_SECS} 0"))
            .map_err(|e| format!("writing /proc/self/timens_offsets failed: {e}"))?;
        // SAFETY: this child is single-threaded; the grandchild only reads a clock and exits.
        match unsafe { fork() }.map_err(|e| format!("fork failed: {e}"))? {
            ForkResult::Child => {
                let shifted = clock_gettime(ClockId::CLOCK_MONOTONIC)
                    .map(|now| now.tv_sec() - before.tv_sec() >= TIMENS_OFFSET_SECS - 1)
                    .unwrap_or(false);
                // SAFETY: ends the grandchild at once.
                unsafe { libc::_exit(if shifted { 0 } else { 1 }) }
            }
            ForkResult::Parent { child } => match waitpid(child, Some(WaitPidFlag::__WALL)) {
                Ok(WaitStatus::Exited(_, 0)) => Ok(format!(
                    "a process in a new time namespace sees CLOCK_MONOTONIC {TIMENS_OFFSET_SECS}s ahead"
                )),
                other => Err(format!(
                    "the process in the new time namespace did not see the offset: {other:?}"
                )),
            },
        }
    })
    .map(Found::detail)
}
