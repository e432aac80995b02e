//! Timers: the three interval timers and the POSIX timers. How each POSIX timer notifies comes from
//! `/proc/<pid>/timers` (the kernel prints the `sigevent` a timer was created with); where every timer
//! stands is asked from the task itself ([`super::remote`]).

use dormant_image::records::{ITimer, PosixTimer, Tid};
use dormant_parasite::query;

use crate::error::{DumpError, Result};
use crate::proc;

/// `SIGEV_THREAD_ID`: the signal goes to one thread (`notify: .../tid.N`).
pub const SIGEV_THREAD_ID: i32 = 4;

/// One timer's entry in `/proc/<pid>/timers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerEntry {
    pub id: i32,
    pub signo: i32,
    /// `sigev_value`, printed as a pointer.
    pub value: u64,
    /// `SIGEV_SIGNAL` / `SIGEV_NONE` / `SIGEV_THREAD`, plus `SIGEV_THREAD_ID` for a thread target.
    pub notify: i32,
    /// The target thread when `notify` has `SIGEV_THREAD_ID`.
    pub notify_tid: Option<Tid>,
    pub clock: i32,
}

/// Parses the whole `/proc/<pid>/timers` text: blocks of `ID:`, `signal:`, `notify:`, `ClockID:` lines.
/// Returns the timers ascending by id, or why the text is not understood.
pub fn parse(text: &str) -> Result<Vec<TimerEntry>, String> {
    let mut out = Vec::new();
    let mut cur: Option<Partial> = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (key, val) = line
            .split_once(':')
            .map(|(k, v)| (k.trim(), v.trim()))
            .ok_or_else(|| format!("line without ':' {line:?}"))?;
        if key == "ID" {
            if let Some(p) = cur.take() {
                out.push(p.finish()?);
            }
            let id = val.parse().map_err(|_| format!("bad timer id {val:?}"))?;
            cur = Some(Partial::new(id));
            continue;
        }
        let p = cur
            .as_mut()
            .ok_or_else(|| format!("{key:?} line before any ID line"))?;
        match key {
            "signal" => {
                let (sig, value) = val
                    .split_once('/')
                    .ok_or_else(|| format!("timer {}: bad signal line {val:?}", p.id))?;
                p.signo = Some(
                    sig.parse()
                        .map_err(|_| format!("timer {}: bad signal {sig:?}", p.id))?,
                );
                let hex = value.trim_start_matches("0x");
                p.value = Some(
                    u64::from_str_radix(hex, 16)
                        .map_err(|_| format!("timer {}: bad sigev value {value:?}", p.id))?,
                );
            }
            "notify" => {
                let (how, target) = val
                    .split_once('/')
                    .ok_or_else(|| format!("timer {}: bad notify line {val:?}", p.id))?;
                let base = match how {
                    "signal" => libc::SIGEV_SIGNAL,
                    "none" => libc::SIGEV_NONE,
                    "thread" => libc::SIGEV_THREAD,
                    _ => return Err(format!("timer {}: unknown notify kind {how:?}", p.id)),
                };
                let (kind, num) = target
                    .split_once('.')
                    .ok_or_else(|| format!("timer {}: bad notify target {target:?}", p.id))?;
                let num: u32 = num
                    .parse()
                    .map_err(|_| format!("timer {}: bad notify target {target:?}", p.id))?;
                match kind {
                    "tid" => {
                        p.notify = Some(base | SIGEV_THREAD_ID);
                        p.notify_tid = Some(Tid(num));
                    }
                    "pid" => p.notify = Some(base),
                    _ => return Err(format!("timer {}: bad notify target {target:?}", p.id)),
                }
            }
            "ClockID" => {
                p.clock = Some(
                    val.parse()
                        .map_err(|_| format!("timer {}: bad clock {val:?}", p.id))?,
                );
            }
            // Newer kernels may add lines; none of them is needed to re-create a timer.
            _ => {}
        }
    }
    if let Some(p) = cur.take() {
        out.push(p.finish()?);
    }
    out.sort_by_key(|t| t.id);
    Ok(out)
}

/// The POSIX timers of `pid` as `/proc/<pid>/timers` lists them.
pub fn read_entries(pid: u32) -> Result<Vec<TimerEntry>> {
    parse(&proc::read_string(pid, "timers")?).map_err(|reason| DumpError::ProcParse {
        pid,
        file: "timers",
        reason,
    })
}

/// The records of the POSIX timers: how each notifies (`entries`) and where it stands (`states`, in the
/// same order).
pub fn posix_timers(entries: &[TimerEntry], states: &[query::TimerState]) -> Vec<PosixTimer> {
    entries
        .iter()
        .zip(states)
        .map(|(e, s)| PosixTimer {
            id: e.id,
            clock: e.clock,
            notify: e.notify,
            signo: e.signo,
            value: e.value,
            notify_tid: e.notify_tid,
            interval_ns: s.interval_ns,
            value_ns: s.value_ns,
            overrun: s.overrun,
        })
        .collect()
}

/// The real, virtual and profiling interval timers as records (microseconds).
pub fn itimers(t: &query::ITimers) -> [ITimer; 3] {
    let us = |t: query::TimeVal| (t.sec.max(0) as u64) * 1_000_000 + t.usec.max(0) as u64;
    let it = |v: query::ITimerVal| ITimer {
        interval_us: us(v.interval),
        value_us: us(v.value),
    };
    [it(t.real), it(t.virtual_), it(t.prof)]
}

struct Partial {
    id: i32,
    signo: Option<i32>,
    value: Option<u64>,
    notify: Option<i32>,
    notify_tid: Option<Tid>,
    clock: Option<i32>,
}

impl Partial {
    fn new(id: i32) -> Self {
        Partial {
            id,
            signo: None,
            value: None,
            notify: None,
            notify_tid: None,
            clock: None,
        }
    }

    fn finish(self) -> Result<TimerEntry, String> {
        let missing = |what: &str| format!("timer {}: no {what} line", self.id);
        Ok(TimerEntry {
            id: self.id,
            signo: self.signo.ok_or_else(|| missing("signal"))?,
            value: self.value.ok_or_else(|| missing("signal"))?,
            notify: self.notify.ok_or_else(|| missing("notify"))?,
            notify_tid: self.notify_tid,
            clock: self.clock.ok_or_else(|| missing("ClockID"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_signal_and_thread_targets() {
        let text = "ID: 3\nsignal: 36/0000000000000309\nnotify: signal/pid.1234\nClockID: 1\n\
                    ID: 0\nsignal: 14/00007ffd1234abcd\nnotify: signal/tid.1240\nClockID: 0\n";
        let t = parse(text).unwrap();
        assert_eq!(
            t,
            vec![
                TimerEntry {
                    id: 0,
                    signo: 14,
                    value: 0x7ffd_1234_abcd,
                    notify: libc::SIGEV_SIGNAL | SIGEV_THREAD_ID,
                    notify_tid: Some(Tid(1240)),
                    clock: 0,
                },
                TimerEntry {
                    id: 3,
                    signo: 36,
                    value: 0x309,
                    notify: libc::SIGEV_SIGNAL,
                    notify_tid: None,
                    clock: 1,
                },
            ]
        );
        assert_eq!(parse("").unwrap(), vec![]);
    }

    #[test]
    fn rejects_incomplete_blocks() {
        assert!(parse("ID: 1\nsignal: 10/0\n").is_err());
        assert!(parse("signal: 10/0\n").is_err());
        assert!(parse("ID: x\n").is_err());
        assert!(parse("ID: 1\nsignal: 10/0\nnotify: bogus/pid.1\nClockID: 1\n").is_err());
    }
}
