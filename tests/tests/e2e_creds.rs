//! End-to-end: credentials. Processes that run as other users, with supplementary groups, capabilities
//! dropped from every set, ambient capabilities, securebits and no_new_privs, per thread, dumped with
//! `dormant dump`, restored with `dormant restore`, and checked from outside (`/proc/PID/task/*/status`,
//! read the same way before the dump) and from inside (the workloads' own checks). The worst defect a
//! restore of credentials can have is giving a process a capability it had dropped; each test checks the
//! restored sets are exactly the dumped ones, never more. Privileged (root).

#![allow(clippy::unwrap_used)] // Tests may unwrap: a failure is the test failing.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dormant_tests::harness::{self, require_root, wait_until, Result, Spec, Workload};
use dormant_tests::workload::INJECT_FAULT;

fn creds() -> Spec {
    Spec::workload("wl_creds", env!("CARGO_BIN_EXE_wl_creds"))
}

/// The status lines that make up a thread's credentials.
const CRED_LINES: [&str; 9] = [
    "Uid",
    "Gid",
    "Groups",
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
    "NoNewPrivs",
];

/// Every thread's credential lines, by tid.
fn thread_creds(pid: i32) -> BTreeMap<u32, Vec<String>> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(tid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap_or_default();
        let lines = CRED_LINES
            .iter()
            .map(|k| {
                status
                    .lines()
                    .find(|l| l.starts_with(&format!("{k}:")))
                    .unwrap_or("(missing)")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        out.insert(tid, lines);
    }
    out
}

fn cap_set(lines: &[String], key: &str) -> u64 {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .unwrap_or(u64::MAX)
}

/// `wl_creds` (three threads, each with credentials of its own) is restored with every thread's
/// credentials as dumped: from outside, each thread's status lines; from inside, its securebits, ambient
/// set, dumpable flag, and every dropped capability still refused.
#[test]
fn per_thread_credentials_dump_restore() -> Result<()> {
    require_root()?;
    harness::dormant_bin()?;
    let mut w = Workload::start(creds())?;
    let before = thread_creds(w.pid());
    if before.len() != 3
        || before
            .values()
            .any(|l| l.iter().any(|v| v.contains("missing")))
    {
        return Err(w.fail(format!("unexpected threads before the dump: {before:?}")));
    }
    // The threads differ from each other: the test would not tell per-thread restore from per-process.
    let distinct: std::collections::BTreeSet<_> = before.values().collect();
    if distinct.len() != 3 {
        return Err(w.fail(format!("threads share credentials: {before:?}")));
    }
    w.dump(false)?;
    let mut r = w.restore()?;
    w.expect_restored_pid(&mut r)?;
    let mut after = BTreeMap::new();
    if !wait_until(Duration::from_secs(20), || {
        after = thread_creds(w.pid());
        after == before
    }) {
        r.kill();
        return Err(w.fail(format!(
            "restored credentials differ:\n before {before:#?}\n after  {after:#?}"
        )));
    }
    w.release()?;
    w.finish_restored(&mut r)?;
    Ok(())
}

/// The workload's checks fail when its credentials are not what it set (its fsuid and one capability
/// changed after the trigger): what a restore that lost them would look like.
#[test]
fn creds_workload_detects_damage() -> Result<()> {
    require_root()?;
    harness::self_check_fails(
        creds().args([INJECT_FAULT]),
        &["main-Uid", "dumpable", "t2-CapPrm", "t2-CapEff"],
    )?;
    Ok(())
}

#[test]
fn creds_workload_passes_untouched() -> Result<()> {
    require_root()?;
    harness::self_check(creds())?;
    Ok(())
}

/// A program run with `setpriv` (`args` before `sleep 1000`), in its own process group, fds on /dev/null;
/// killed on drop.
struct Sleeper(Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        // SAFETY: kill takes a pid and a signal.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

fn setpriv_sleep(args: &[&str]) -> Sleeper {
    let mut cmd = Command::new("setpriv");
    cmd.args(args)
        .args(["sleep", "1000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    // SAFETY: close_range is async-signal-safe and touches only this child's fd table (the test runner's
    // pipes would be pipes to a process outside the dump).
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        })
    };
    Sleeper(cmd.spawn().expect("setpriv"))
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn dormant(args: &[&str], dir: &Path) -> std::process::Output {
    let bin = harness::dormant_bin().expect("the dormant binary");
    Command::new(bin)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("running dormant")
}

/// Dumps `sleep` run by `setpriv args`, restores it detached, and returns its credential lines before the
/// dump and after the restore.
fn setpriv_roundtrip(args: &[&str]) -> (Vec<String>, Vec<String>) {
    let s = setpriv_sleep(args);
    let pid = s.0.id();
    assert!(
        wait_until(Duration::from_secs(10), || comm(pid) == "sleep"),
        "setpriv did not exec sleep"
    );
    let before = thread_creds(pid as i32).remove(&pid).expect("status");
    let tmp = harness::Scratch::new("creds").unwrap();
    let img = tmp.path().join("img");
    let img_s = img.to_str().unwrap();
    let o = dormant(
        &[
            "dump",
            "--leave-running",
            "-t",
            &pid.to_string(),
            "-D",
            img_s,
        ],
        tmp.path(),
    );
    assert!(
        o.status.success(),
        "dump of {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    drop(s);
    let o = dormant(&["restore", "-d", "-D", img_s], tmp.path());
    assert!(
        o.status.success(),
        "restore of {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let after = thread_creds(pid as i32).remove(&pid).unwrap_or_default();
    // SAFETY: kill takes a pid and a signal; the restored sleep is ours to end.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    (before, after)
}

/// A root process that dropped capabilities (CHOWN and DAC_OVERRIDE gone from its bounding set, so from
/// its permitted and effective sets at exec: `fefffffc`-like, the sets issue 12 saw come back as
/// `feffffff`) is restored with them still dropped, in every set.
#[test]
fn dropped_capability_stays_dropped() {
    require_root().unwrap();
    let (before, after) = setpriv_roundtrip(&["--bounding-set=-chown,-dac_override"]);
    assert_eq!(before, after, "restored credentials differ");
    for set in ["CapPrm", "CapEff", "CapBnd"] {
        let v = cap_set(&after, set);
        assert_eq!(v & 0b11, 0, "{set} {v:#x}: a dropped capability came back");
    }
}

/// A process of another user with supplementary groups (setpriv's own credentials, not ours) is
/// dumped and restored as that user, with its groups, and with no capability.
#[test]
fn other_user_with_groups_dump_restore() {
    require_root().unwrap();
    let (before, after) =
        setpriv_roundtrip(&["--reuid=65534", "--regid=65534", "--groups=27,44,100"]);
    assert_eq!(before, after, "restored credentials differ");
    assert!(
        after.iter().any(|l| l == "Uid: 65534 65534 65534 65534"),
        "{after:?}"
    );
    assert!(after.iter().any(|l| l == "Groups: 27 44 100"), "{after:?}");
    assert_eq!(cap_set(&after, "CapPrm"), 0, "{after:?}");
    assert_eq!(cap_set(&after, "CapEff"), 0, "{after:?}");
}
