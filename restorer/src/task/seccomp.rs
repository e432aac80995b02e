//! seccomp, per thread: what the blob installs (see `SeccompArg` in `restorer/proto` for the order and
//! why the restorer stays unfiltered), and the check of every thread's mode and filter count in `/proc`
//! before the release.
//!
//! Sharing: a thread whose chain starts with filters of the leader's chain is created by the leader once
//! it has installed exactly those, so it shares them as it did. Filters two other threads shared without
//! the leader (one created the other after installing them) are installed by each: the same programs,
//! not the same kernel objects, which only a later `SECCOMP_FILTER_FLAG_TSYNC` could tell apart.

use dormant_image::records::{SeccompMode, TaskSeccomp};
use dormant_sys::process::{
    SockFilter, SECCOMP_FILTER_FLAG_LOG, SECCOMP_MODE_DISABLED, SECCOMP_MODE_FILTER,
    SECCOMP_MODE_STRICT,
};

use crate::error::RestoreError;

/// One thread's seccomp state as the blob installs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadSeccompInput {
    /// `SECCOMP_MODE_*`.
    pub mode: u32,
    /// Leading filters of `chain` the thread inherits from the leader.
    pub inherited: u32,
    /// The thread's filters, oldest first: flags and program.
    pub chain: Vec<(u64, Vec<SockFilter>)>,
}

/// Every thread's state (the leader first, as the tree lists them); all disabled when the image has no
/// seccomp record.
pub fn prepare(seccomp: Option<&TaskSeccomp>, nr_threads: usize) -> Vec<ThreadSeccompInput> {
    let Some(s) = seccomp else {
        return vec![ThreadSeccompInput::default(); nr_threads];
    };
    let leader = s
        .threads
        .first()
        .map(|t| s.chain(t.mode))
        .unwrap_or_default();
    s.threads
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let chain = s.chain(t.mode);
            let inherited = if i == 0 {
                0
            } else {
                chain
                    .iter()
                    .zip(&leader)
                    .take_while(|(a, b)| a == b)
                    .count() as u32
            };
            ThreadSeccompInput {
                mode: match t.mode {
                    SeccompMode::Disabled => SECCOMP_MODE_DISABLED,
                    SeccompMode::Strict => SECCOMP_MODE_STRICT,
                    SeccompMode::Filter { .. } => SECCOMP_MODE_FILTER,
                },
                inherited,
                chain: chain
                    .iter()
                    .filter_map(|&f| s.filters.get(f as usize))
                    .map(|f| {
                        let insns = f
                            .insns
                            .iter()
                            .map(|i| SockFilter {
                                code: i.code,
                                jt: i.jt,
                                jf: i.jf,
                                k: i.k,
                            })
                            .collect();
                        (f.flags & SECCOMP_FILTER_FLAG_LOG, insns)
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Whether any thread of the task runs under seccomp (its restore needs the tracer to suspend it).
pub fn any(seccomp: Option<&TaskSeccomp>) -> bool {
    seccomp.is_some_and(|s| s.threads.iter().any(|t| t.mode != SeccompMode::Disabled))
}

/// Checks thread `tid` of `pid` against its image: the mode and the number of filters its status shows.
pub fn verify(pid: u32, tid: u32, want: &ThreadSeccompInput) -> Result<(), RestoreError> {
    let path = format!("/proc/{tid}/status");
    let text = std::fs::read_to_string(&path).map_err(|source| RestoreError::Proc {
        path: path.clone().into(),
        source,
    })?;
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let filters = if want.mode == SECCOMP_MODE_FILTER {
        want.chain.len()
    } else {
        0
    };
    for (what, want) in [
        ("Seccomp", want.mode.to_string()),
        ("Seccomp_filters", filters.to_string()),
    ] {
        let found = field(what);
        if found != want {
            return Err(RestoreError::AttrMismatch {
                pid,
                tid,
                what,
                found,
                want,
            });
        }
    }
    Ok(())
}
