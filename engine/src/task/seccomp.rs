//! seccomp, per thread: each thread's mode (`Seccomp:` of its status) and, in filter mode, every filter
//! of its chain read with `PTRACE_SECCOMP_GET_FILTER` (by index from the oldest, until ENOENT) and its
//! flags with `PTRACE_SECCOMP_GET_METADATA`. The threads were seized with their filters suspended
//! (`PTRACE_O_SUSPEND_SECCOMP`, see `dormant_parasite::seize_options`), so nothing injected is judged by
//! them.
//!
//! Filters are merged by content into one table per process (see `records/seccomp.rs`): a filter equal
//! to one already read (same program, flags and filter before it) is the same entry, so threads whose
//! chains are equal share them, as a thread created after its creator's filters does in the kernel.
//! Whether the tree can be restored with them is decided by `dormant-restorable`.

use dormant_image::records::{
    BpfInsn, Pid, SeccompFilter, SeccompMode, TaskSeccomp, ThreadSeccomp, Tid,
};
use dormant_sys::process::{SECCOMP_MODE_DISABLED, SECCOMP_MODE_FILTER, SECCOMP_MODE_STRICT};
use nix::errno::Errno;

use crate::error::{DumpError, Result};

/// The seccomp state of `pid` (threads `tids`, the leader first, seized and stopped); `None` when no
/// thread is under seccomp.
pub fn read(pid: u32, tids: &[u32]) -> Result<Option<TaskSeccomp>> {
    let mut out = TaskSeccomp {
        pid: Pid(pid),
        filters: Vec::new(),
        threads: Vec::with_capacity(tids.len()),
    };
    for &tid in tids {
        let status = if tid == pid {
            crate::proc::status::parse(&crate::proc::read_string(pid, "status")?).map_err(
                |reason| DumpError::ProcParse {
                    pid,
                    file: "status",
                    reason,
                },
            )?
        } else {
            super::threads::status(pid, tid)?
        };
        let mode = match status.seccomp {
            SECCOMP_MODE_DISABLED => SeccompMode::Disabled,
            SECCOMP_MODE_STRICT => SeccompMode::Strict,
            SECCOMP_MODE_FILTER => SeccompMode::Filter {
                last: read_chain(pid, tid, &mut out.filters)?,
            },
            other => {
                return Err(DumpError::ProcParse {
                    pid,
                    file: "status",
                    reason: format!("thread {tid}: unknown seccomp mode {other}"),
                })
            }
        };
        out.threads.push(ThreadSeccomp {
            tid: Tid(tid),
            mode,
        });
    }
    let any = out.threads.iter().any(|t| t.mode != SeccompMode::Disabled);
    Ok(any.then_some(out))
}

/// Reads the filter chain of thread `tid`, oldest first, into `table` (merging equal filters); returns
/// the index of its newest filter.
fn read_chain(pid: u32, tid: u32, table: &mut Vec<SeccompFilter>) -> Result<u32> {
    let err = |op: &'static str| {
        move |source| DumpError::Ptrace {
            pid: tid,
            op,
            source,
        }
    };
    let mut prev: Option<u32> = None;
    for index in 0u64.. {
        let insns = match dormant_sys::host::seccomp_filter(tid as i32, index) {
            Ok(insns) => insns,
            Err(Errno::ENOENT) => break,
            Err(e) => return Err(err("PTRACE_SECCOMP_GET_FILTER")(e)),
        };
        let flags = dormant_sys::host::seccomp_filter_flags(tid as i32, index)
            .map_err(err("PTRACE_SECCOMP_GET_METADATA"))?;
        let filter = SeccompFilter {
            prev,
            flags,
            insns: insns
                .iter()
                .map(|i| BpfInsn {
                    code: i.code,
                    jt: i.jt,
                    jf: i.jf,
                    k: i.k,
                })
                .collect(),
        };
        let at = match table.iter().position(|f| *f == filter) {
            Some(at) => at,
            None => {
                table.push(filter);
                table.len() - 1
            }
        };
        prev = Some(at as u32);
    }
    prev.ok_or_else(|| DumpError::ProcParse {
        pid,
        file: "status",
        reason: format!("thread {tid} is in seccomp filter mode but the kernel lists no filter"),
    })
}
