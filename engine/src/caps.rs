//! What the dumper itself must be allowed to do, checked before the target is touched so that a dump run
//! without the privileges fails naming the capability it lacks instead of a bare EPERM halfway through.
//!
//! - `/proc/PID/map_files/*` (the files behind mappings, the shared-memory objects) open only with
//!   CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN in the initial user namespace, whatever the target's owner.
//! - ptrace of another user's process (or of a more privileged one) needs CAP_SYS_PTRACE.

use crate::error::{DumpError, Result};
use crate::proc;

/// Capability numbers of `<linux/capability.h>`.
pub const CAP_SYS_PTRACE: u32 = 19;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_CHECKPOINT_RESTORE: u32 = 40;

/// What map_files needs, for messages.
pub const MAP_FILES_CAPS: &str = "CAP_CHECKPOINT_RESTORE (or CAP_SYS_ADMIN)";
/// Why the dump needs it, for messages.
pub const MAP_FILES_PURPOSE: &str =
    "opening /proc/PID/map_files (the files and shared memory behind \
     the mappings) needs in the initial user namespace";

/// The effective capability set of the dumping process.
fn own_effective() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let v = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(v.trim(), 16).ok()
        })
        .unwrap_or(0)
}

/// Whether the dumping process has capability `cap` in its effective set.
pub fn has(cap: u32) -> bool {
    own_effective() & (1u64 << cap) != 0
}

/// Refuses a dump of `pid` that could not trace the target or read its mappings (see the module docs).
pub fn check_dumper(pid: u32) -> Result<()> {
    let owner = proc::read_string(pid, "status")
        .ok()
        .and_then(|s| {
            let v = s.lines().find_map(|l| l.strip_prefix("Uid:"))?;
            let ids: Option<Vec<u32>> = v.split_whitespace().map(|u| u.parse().ok()).collect();
            ids
        })
        .unwrap_or_default();
    // SAFETY: getuid cannot fail and touches no memory.
    let me = unsafe { libc::getuid() };
    if !has(CAP_SYS_PTRACE) && owner.iter().any(|u| *u != me) {
        return Err(DumpError::MissingCapability {
            pid,
            capability: "CAP_SYS_PTRACE",
            purpose: "tracing a process of another user (or with other saved ids) needs",
        });
    }
    if has(CAP_CHECKPOINT_RESTORE) || has(CAP_SYS_ADMIN) {
        return Ok(());
    }
    Err(DumpError::MissingCapability {
        pid,
        capability: MAP_FILES_CAPS,
        purpose: MAP_FILES_PURPOSE,
    })
}

/// Why PTRACE_SEIZE of `pid` was refused with EPERM, as far as `/proc` tells: another tracer, another
/// owner without CAP_SYS_PTRACE, or the Yama policy.
pub fn seize_denied(pid: u32) -> String {
    let status = proc::read_string(pid, "status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
    };
    if let Some(tracer) = field("TracerPid:").filter(|t| t != "0") {
        let comm = std::fs::read_to_string(format!("/proc/{tracer}/comm"))
            .map(|c| c.trim().to_string())
            .unwrap_or_else(|_| "?".into());
        return format!("it is already traced by pid {tracer} ({comm}); detach that tracer first");
    }
    let owner = field("Uid:").unwrap_or_default();
    let owner: Vec<&str> = owner.split_whitespace().collect();
    // SAFETY: getuid cannot fail and touches no memory.
    let me = unsafe { libc::getuid() }.to_string();
    if !has(CAP_SYS_PTRACE) && owner.iter().any(|u| *u != me) {
        return format!(
            "it runs as uid {} and dormant as uid {me} without CAP_SYS_PTRACE, which tracing another \
             user's process needs",
            owner.first().copied().unwrap_or("?")
        );
    }
    match std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope") {
        Ok(s) if s.trim() != "0" && !has(CAP_SYS_PTRACE) => format!(
            "kernel.yama.ptrace_scope is {} and dormant lacks CAP_SYS_PTRACE",
            s.trim()
        ),
        _ => "the kernel refused (a dumpable-0 process, or an LSM policy)".into(),
    }
}

/// A failure to open or stat `/proc/PID/map_files/*` with EPERM, told as the capability it lacks (a
/// dumper in a user namespace passes [`check_dumper`] with capabilities there, but not in the initial one).
pub fn explain_map_files(err: DumpError) -> DumpError {
    match err {
        DumpError::Stat {
            pid, ref source, ..
        } if source.raw_os_error() == Some(libc::EPERM) => DumpError::MissingCapability {
            pid,
            capability: MAP_FILES_CAPS,
            purpose: MAP_FILES_PURPOSE,
        },
        DumpError::Shmem {
            pid, ref source, ..
        } if source.raw_os_error() == Some(libc::EPERM) => DumpError::MissingCapability {
            pid,
            capability: MAP_FILES_CAPS,
            purpose: MAP_FILES_PURPOSE,
        },
        other => other,
    }
}
