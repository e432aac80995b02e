//! time namespace: the clock offsets of a tree's own time namespace (`/proc/PID/timens_offsets`).
//!
//! `timens_offsets` and `ns/time_for_children` describe the namespace a task's *children* get; a task
//! that unshared a time namespace without forking since has a different one for its children than its
//! own, which restore cannot rebuild (it forks every task into one namespace), so that is refused.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use dormant_image::records::{ClockOffset, NsId, Pid, TimeNamespace};

use super::error::{NsError, Result};

/// Refuses task `pid` when its children would get another time namespace than its own `id`.
pub fn check_children_namespace(pid: Pid, id: NsId) -> Result<()> {
    let path = PathBuf::from(format!("/proc/{}/ns/time_for_children", pid.0));
    let children = std::fs::metadata(&path)
        .map_err(|source| NsError::Proc { pid, path, source })?
        .ino();
    if children != id.0 {
        return Err(NsError::Unsupported {
            pid,
            reason: format!(
                "it unshared a time namespace ({children}) for its children without entering it \
                 (its own is {}); restore puts a task and its children in one",
                id.0
            ),
        });
    }
    Ok(())
}

/// The offsets of task `pid`'s time namespace `id` (checked with [`check_children_namespace`] first).
pub fn read_time_namespace(pid: Pid, id: NsId) -> Result<TimeNamespace> {
    check_children_namespace(pid, id)?;
    let path = PathBuf::from(format!("/proc/{}/timens_offsets", pid.0));
    let text = std::fs::read_to_string(&path).map_err(|source| NsError::Proc {
        pid,
        path: path.clone(),
        source,
    })?;
    let bad = |reason: String| NsError::Unsupported {
        pid,
        reason: format!("{}: {reason}", path.display()),
    };
    let mut monotonic = None;
    let mut boottime = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [clock, secs, nanos] = f.as_slice() else {
            return Err(bad(format!("unexpected line {line:?}")));
        };
        let offset = ClockOffset {
            secs: secs
                .parse()
                .map_err(|_| bad(format!("bad seconds in {line:?}")))?,
            nanos: nanos
                .parse()
                .ok()
                .filter(|n| *n < 1_000_000_000)
                .ok_or_else(|| bad(format!("bad nanoseconds in {line:?}")))?,
        };
        // The kernel names the clocks, or (before 5.x naming) gives their numbers.
        match *clock {
            "monotonic" | "1" => monotonic = Some(offset),
            "boottime" | "7" => boottime = Some(offset),
            _ => return Err(bad(format!("unknown clock in {line:?}"))),
        }
    }
    match (monotonic, boottime) {
        (Some(monotonic), Some(boottime)) => Ok(TimeNamespace {
            id,
            monotonic,
            boottime,
        }),
        _ => Err(bad("monotonic or boottime offset missing".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_time_namespace_has_zero_offsets() {
        let me = Pid(std::process::id());
        let ino = std::fs::metadata("/proc/self/ns/time").unwrap().ino();
        let t = read_time_namespace(me, NsId(ino)).unwrap();
        assert_eq!(t.monotonic, ClockOffset::default());
        assert_eq!(t.boottime, ClockOffset::default());
        assert!(check_children_namespace(me, NsId(ino + 1)).is_err());
    }
}
