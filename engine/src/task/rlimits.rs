//! `/proc/<pid>/limits`: resource limits. Read here rather than with `prlimit(pid)`, which needs
//! CAP_SYS_RESOURCE for another uid's task.

use dormant_image::records::Rlimit;

use crate::error::{DumpError, Result};
use crate::proc;

/// The row titles of `/proc/<pid>/limits`, indexed by `RLIMIT_*` number.
const NAMES: [&str; 16] = [
    "Max cpu time",
    "Max file size",
    "Max data size",
    "Max stack size",
    "Max core file size",
    "Max resident set",
    "Max processes",
    "Max open files",
    "Max locked memory",
    "Max address space",
    "Max file locks",
    "Max pending signals",
    "Max msgqueue size",
    "Max nice priority",
    "Max realtime priority",
    "Max realtime timeout",
];

/// The resource limits of `pid`.
pub fn read(pid: u32) -> Result<Vec<Rlimit>> {
    parse(&proc::read_string(pid, "limits")?).map_err(|reason| DumpError::ProcParse {
        pid,
        file: "limits",
        reason,
    })
}

fn value(s: &str) -> std::result::Result<u64, String> {
    if s == "unlimited" {
        Ok(u64::MAX)
    } else {
        s.parse().map_err(|e| format!("{s:?}: {e}"))
    }
}

/// Parses the text of `/proc/<pid>/limits` into one [`Rlimit`] per known row, ascending by resource.
/// Every one of the 16 rows must be present.
pub fn parse(text: &str) -> std::result::Result<Vec<Rlimit>, String> {
    let mut out = Vec::with_capacity(NAMES.len());
    for line in text.lines().skip(1) {
        let Some(resource) = NAMES.iter().position(|n| {
            line.strip_prefix(n)
                .is_some_and(|rest| rest.starts_with(' '))
        }) else {
            continue;
        };
        let rest = &line[NAMES[resource].len()..];
        let mut cols = rest.split_whitespace();
        let soft = value(cols.next().ok_or("soft limit missing")?)
            .map_err(|e| format!("{}: {e}", NAMES[resource]))?;
        let hard = value(cols.next().ok_or("hard limit missing")?)
            .map_err(|e| format!("{}: {e}", NAMES[resource]))?;
        out.push(Rlimit {
            resource: resource as u32,
            soft,
            hard,
        });
    }
    out.sort_by_key(|r| r.resource);
    out.dedup_by_key(|r| r.resource);
    if out.len() != NAMES.len() {
        return Err(format!(
            "expected {} limits, found {}",
            NAMES.len(),
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn render(vals: &[(u64, u64)]) -> String {
        let mut s = format!(
            "{:<25} {:<20} {:<20} {:<10}\n",
            "Limit", "Soft Limit", "Hard Limit", "Units"
        );
        let show = |v: u64| {
            if v == u64::MAX {
                "unlimited".to_string()
            } else {
                v.to_string()
            }
        };
        for (i, (soft, hard)) in vals.iter().enumerate() {
            s.push_str(&format!(
                "{:<25} {:<20} {:<20} {:<10}\n",
                NAMES[i],
                show(*soft),
                show(*hard),
                "units"
            ));
        }
        s
    }

    #[test]
    fn real_sample() {
        let t = std::fs::read_to_string("/proc/self/limits").unwrap();
        let l = parse(&t).unwrap();
        assert_eq!(l.len(), 16);
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the rlimit we own.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) }, 0);
        assert_eq!(l[7].soft, r.rlim_cur);
        assert_eq!(l[7].hard, r.rlim_max);
    }

    proptest! {
        #[test]
        fn roundtrip(vals in proptest::collection::vec((prop_oneof![Just(u64::MAX), 0u64..1 << 40],
                                                          prop_oneof![Just(u64::MAX), 0u64..1 << 40]), 16)) {
            let l = parse(&render(&vals)).unwrap();
            for (i, r) in l.iter().enumerate() {
                prop_assert_eq!(r.resource as usize, i);
                prop_assert_eq!((r.soft, r.hard), vals[i]);
            }
        }

        #[test]
        fn never_panics(t in "\\PC{0,400}") {
            let _ = parse(&t);
        }
    }
}
