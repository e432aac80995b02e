//! The task's resource limits, clamped to what the restorer may set (raising a hard limit needs
//! CAP_SYS_RESOURCE), and set by the child before it enters the blob.

use dormant_restorer_proto::Step;

use super::ChildFailed;
use crate::image::TaskImage;
use crate::launch::RlimitSet;

pub fn prepare(task: &TaskImage) -> Vec<RlimitSet> {
    let pid = task.pid.0;
    task.core
        .rlimits
        .iter()
        .filter_map(|r| {
            let current = nix::sys::resource::getrlimit(resource_of(r.resource)?).ok()?;
            let (mut soft, mut hard) = (r.soft, r.hard);
            if hard > current.1 {
                log::warn!(
                    "pid {pid}: rlimit {} hard {} exceeds ours ({}); raising it needs CAP_SYS_RESOURCE, \
                     keeping {}",
                    r.resource,
                    hard,
                    current.1,
                    current.1
                );
                hard = current.1;
                soft = soft.min(hard);
            }
            Some(RlimitSet {
                resource: r.resource,
                soft,
                hard,
            })
        })
        .collect()
}

/// In the child: sets every limit. Allocation-free.
pub fn apply(rlimits: &[RlimitSet]) -> Result<(), ChildFailed> {
    for r in rlimits {
        let lim = libc::rlimit {
            rlim_cur: r.soft,
            rlim_max: r.hard,
        };
        // SAFETY: setrlimit reads the struct on our stack.
        if unsafe { libc::setrlimit(r.resource as _, &lim) } != 0 {
            return Err(ChildFailed::errno(Step::ChildRlimit, r.resource as u64));
        }
    }
    Ok(())
}

fn resource_of(r: u32) -> Option<nix::sys::resource::Resource> {
    use nix::sys::resource::Resource::*;
    Some(match r {
        0 => RLIMIT_CPU,
        1 => RLIMIT_FSIZE,
        2 => RLIMIT_DATA,
        3 => RLIMIT_STACK,
        4 => RLIMIT_CORE,
        5 => RLIMIT_RSS,
        6 => RLIMIT_NPROC,
        7 => RLIMIT_NOFILE,
        8 => RLIMIT_MEMLOCK,
        9 => RLIMIT_AS,
        10 => RLIMIT_LOCKS,
        11 => RLIMIT_SIGPENDING,
        12 => RLIMIT_MSGQUEUE,
        13 => RLIMIT_NICE,
        14 => RLIMIT_RTPRIO,
        15 => RLIMIT_RTTIME,
        _ => return None,
    })
}
