//! Workload `wl_timens`: a process in a time namespace of its own, checked after a restore to still be
//! in one with the same clock offsets, its clocks never having gone backwards.
//!
//! `unshare --time --monotonic=M --boottime=B wl_timens TRIGGER DIR M B`: the process expects offsets `M`
//! and `B` (seconds). Before READY it records CLOCK_MONOTONIC and CLOCK_BOOTTIME. After the trigger:
//! - `offsets`: `/proc/self/timens_offsets` shows `M` and `B` (the namespace its children get: its own,
//!   since it was exec'd after the unshare);
//! - `clocks-ahead`: both clocks read at least their offset (the host's clocks are positive: a task
//!   restored into the host's namespace reads less) and no less than before the checkpoint.
//!
//! Its self-check runs it without `unshare` (what a restore into the host's time namespace gives): every
//! check must fail.

use std::process::ExitCode;

use dormant_tests::workload::{self, Report, WorkloadArgs, WorkloadError};

fn now(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec on our stack.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec
}

fn offsets() -> Result<(i64, i64), String> {
    let text = std::fs::read_to_string("/proc/self/timens_offsets").map_err(|e| e.to_string())?;
    let mut mono = None;
    let mut boot = None;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let secs = f.get(1).and_then(|s| s.parse::<i64>().ok());
        match f.first() {
            Some(&"monotonic") | Some(&"1") => mono = secs,
            Some(&"boottime") | Some(&"7") => boot = secs,
            _ => {}
        }
    }
    mono.zip(boot)
        .ok_or_else(|| format!("unreadable: {text:?}"))
}

fn run() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env("MONOTONIC_SECS BOOTTIME_SECS")?;
    let want: Vec<i64> = args.rest.iter().filter_map(|a| a.parse().ok()).collect();
    let [want_mono, want_boot] = want[..] else {
        return Err(WorkloadError::setup(
            "arguments",
            "expected the monotonic and boottime offsets in seconds",
        ));
    };
    let before = (now(libc::CLOCK_MONOTONIC), now(libc::CLOCK_BOOTTIME));

    workload::ready()?;
    workload::wait_for_trigger(&args.trigger)?;

    let mut report = Report::new("wl_timens");
    report.check(
        "offsets",
        match offsets() {
            Ok(got) if got == (want_mono, want_boot) => Ok(()),
            Ok(got) => Err(format!(
                "offsets {got:?}, expected ({want_mono}, {want_boot})"
            )),
            Err(e) => Err(e),
        },
    );
    let after = (now(libc::CLOCK_MONOTONIC), now(libc::CLOCK_BOOTTIME));
    report.check(
        "clocks-ahead",
        if after.0 >= want_mono && after.1 >= want_boot && after.0 >= before.0 && after.1 >= before.1
        {
            Ok(())
        } else {
            Err(format!(
                "monotonic/boottime {after:?}, before the checkpoint {before:?}, offsets ({want_mono}, {want_boot})"
            ))
        },
    );
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_timens", run)
}
