//! A `dormant restore` killed with SIGKILL at any moment leaves no process of the image behind, not even a
//! zombie, by the time its death can be seen (its waiter's `waitpid` returns), and the image restores
//! afterwards; killed after it committed, the whole tree runs on. Each scenario kills the restore at a
//! sweep of delays, from right after the start to after the commit, and checks after every kill:
//! - every pid of the image (tasks, threads, zombies, stand-ins for gone leaders) is free, or
//! - the restore had committed: the root runs its own code untraced and every task of the tree exists.
//!
//! Then a last restore must pass the workload's own check. Privileged (root).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use dormant_tests::container::Container;
use dormant_tests::harness::{
    self, dormant_bin, pid_is_free, proc_state, tree_ids, wait_until, Spec, Workload,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Kills that land after the commit before a sweep stops (each needs the tree to be killed and reaped by
/// init, which takes a while here).
const COMMITTED_ENOUGH: usize = 2;
/// The longest delay tried.
const MAX_DELAY: Duration = Duration::from_secs(3);

/// Every pid the image holds: the tree's processes and threads, and the ids of gone session and group
/// leaders (their stand-ins take them during the restore).
#[derive(Debug, Clone)]
struct ImagePids {
    root: i32,
    /// Processes of the tree (zombies included).
    tasks: Vec<i32>,
    all: BTreeSet<i32>,
}

impl ImagePids {
    /// Read from the live tree of `root` before the dump.
    fn of(root: i32) -> ImagePids {
        let ids = tree_ids(root).expect("the tree is readable before the dump");
        let tasks: Vec<i32> = ids.iter().map(|t| t.pid).collect();
        let mut all: BTreeSet<i32> = tasks.iter().copied().collect();
        for t in &ids {
            if let Ok(dir) = std::fs::read_dir(format!("/proc/{}/task", t.pid)) {
                all.extend(dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()));
            }
        }
        // Leaders that are gone (their pids are free): their stand-ins are forked with these ids.
        for t in &ids {
            for id in [t.pgid, t.sid] {
                if !tasks.contains(&id) && id > 1 && pid_is_free(id) {
                    all.insert(id);
                }
            }
        }
        ImagePids { root, tasks, all }
    }

    fn taken(&self) -> Vec<i32> {
        self.all
            .iter()
            .copied()
            .filter(|&p| !pid_is_free(p))
            .collect()
    }
}

fn tracer_of(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// What a killed restore left.
#[derive(Debug, PartialEq, Eq)]
enum Left {
    /// Nothing of the image.
    Nothing,
    /// The whole tree, running: the restore had committed.
    Committed,
}

/// Judges what is left right after the restorer's death was seen.
fn judge(pids: &ImagePids) -> Result<Left, String> {
    let taken = pids.taken();
    if taken.is_empty() {
        return Ok(Left::Nothing);
    }
    let root_runs = proc_state(pids.root).is_some_and(|(s, _)| !matches!(s, 'Z' | 'X' | 't'))
        && tracer_of(pids.root) == Some(0);
    let tree_there = pids.tasks.iter().all(|&p| !pid_is_free(p));
    if root_runs && tree_there {
        return Ok(Left::Committed);
    }
    let states: Vec<String> = taken
        .iter()
        .map(|&p| {
            format!(
                "{p}: {:?} traced by {:?}",
                proc_state(p),
                tracer_of(p).unwrap_or(-1)
            )
        })
        .collect();
    Err(format!(
        "a killed restore left a part of the image: {}",
        states.join(", ")
    ))
}

/// Kills what a committed restore left and waits for every pid of the image to be free (the tree's
/// parent is init now, which reaps when it does).
fn kill_committed(pids: &ImagePids) {
    for &p in &pids.tasks {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    assert!(
        wait_until(Duration::from_secs(30), || pids.taken().is_empty()),
        "the committed tree's pids {:?} are still taken 30 s after it was killed",
        pids.taken()
    );
}

/// A running `dormant restore`.
trait Running {
    fn pid(&self) -> i32;
    /// Waits up to `timeout` for it to end.
    fn wait(&mut self, timeout: Duration) -> Option<ExitStatus>;
}

impl Running for harness::Restored {
    fn pid(&self) -> i32 {
        self.dormant_pid()
    }

    fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        harness::Restored::wait(self, timeout).ok().flatten()
    }
}

impl Running for Child {
    fn pid(&self) -> i32 {
        self.id() as i32
    }

    fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = self.try_wait() {
                return Some(st);
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// What a sweep saw.
#[derive(Debug, Default)]
struct Sweep {
    /// Kills before the commit, each with the last line the restore logged (where it was).
    before: Vec<String>,
    committed: usize,
}

/// Kills restores started by `start` at growing delays until `COMMITTED_ENOUGH` of them had committed.
fn sweep(
    name: &str,
    pids: &ImagePids,
    log: &Path,
    mut start: impl FnMut() -> Box<dyn Running>,
) -> Sweep {
    assert!(
        pids.taken().is_empty(),
        "{name}: pids {:?} taken before the first restore",
        pids.taken()
    );
    let mut out = Sweep::default();
    let mut delay = Duration::ZERO;
    let began = Instant::now();
    while out.committed < COMMITTED_ENOUGH && delay <= MAX_DELAY {
        let _ = std::fs::remove_file(log);
        let mut r = start();
        std::thread::sleep(delay);
        let _ = kill(Pid::from_raw(r.pid()), Signal::SIGKILL);
        let status = r.wait(Duration::from_secs(60));
        assert!(
            status.is_some(),
            "{name}: dormant restore not dead 60 s after SIGKILL"
        );
        match judge(pids) {
            Ok(Left::Nothing) => {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let last = text
                    .lines()
                    .last()
                    .unwrap_or("(nothing logged)")
                    .to_string();
                out.before.push(last);
            }
            Ok(Left::Committed) => {
                out.committed += 1;
                kill_committed(pids);
            }
            Err(e) => panic!(
                "{name}: killed after {delay:?}: {e}\nrestore log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            ),
        }
        delay += if delay < Duration::from_millis(3) {
            Duration::from_micros(100)
        } else if delay < Duration::from_millis(20) {
            Duration::from_micros(500)
        } else if delay < Duration::from_millis(60) {
            Duration::from_millis(2)
        } else {
            delay / 8
        };
    }
    // Where the kills landed: the last line logged, without its time and numbers.
    let stages: BTreeSet<String> = out
        .before
        .iter()
        .map(|l| {
            let msg = l.split_once("] ").map_or(l.as_str(), |(_, m)| m);
            let msg = msg.split_once(": ").map_or(msg, |(_, m)| m);
            msg.chars()
                .map(|c| {
                    if c.is_ascii_hexdigit() && c.is_ascii_digit() {
                        '#'
                    } else {
                        c
                    }
                })
                .collect::<String>()
                .split(" {")
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    eprintln!(
        "{name}: {} kills before the commit, {} after, in {:.1} s; last log lines before a kill: {stages:?}",
        out.before.len(),
        out.committed,
        began.elapsed().as_secs_f64()
    );
    assert!(
        out.before.len() >= 10,
        "{name}: only {} kills landed before the commit",
        out.before.len()
    );
    assert!(
        out.committed >= 1,
        "{name}: no restore committed within {MAX_DELAY:?}"
    );
    out
}

/// Dumps `spec`'s workload, sweeps killed restores over the image, then restores it for real: it passes.
fn killed_restores_leave_nothing(spec: Spec) {
    harness::require_root().unwrap();
    dormant_bin().unwrap();
    // -v -v: debug lines, to tell where each kill landed.
    let mut w = Workload::start(spec.restore_args(["-v"])).unwrap();
    let name = w.name().to_string();
    let pids = ImagePids::of(w.pid());
    w.dump(false).unwrap();
    let log = w.scratch().join("restore.log");
    sweep(&name, &pids, &log, || Box::new(w.restore().unwrap()));
    let mut r = w.restore().unwrap();
    w.expect_restored_pid(&mut r).unwrap();
    w.release().unwrap();
    w.finish_restored(&mut r).unwrap();
}

/// One process with signal state, timers and a pending signal.
#[test]
fn killed_restore_of_one_process_leaves_nothing() {
    killed_restores_leave_nothing(Spec::workload(
        "wl_signals",
        env!("CARGO_BIN_EXE_wl_signals"),
    ));
}

/// A tree whose session and group leaders are gone: stand-in helpers are forked with their pids.
#[test]
fn killed_restore_with_helpers_for_gone_leaders_leaves_nothing() {
    killed_restores_leave_nothing(Spec::workload(
        "wl_orphans",
        env!("CARGO_BIN_EXE_wl_orphans"),
    ));
}

/// A tree that is the init of its own pid namespace (restored into a new one), with a zombie.
#[test]
fn killed_restore_of_a_pid_namespace_leaves_nothing() {
    killed_restores_leave_nothing(
        Spec::workload("wl_pidns", env!("CARGO_BIN_EXE_wl_pidns")).root_from_ready(),
    );
}

/// A container (its own mount, pid, uts and ipc namespaces, restored by a restorer that enters them).
#[test]
fn killed_restore_of_a_container_leaves_nothing() {
    harness::require_root().unwrap();
    let c = Container::start(
        Path::new(env!("CARGO_BIN_EXE_ctr_agent")),
        Path::new(env!("CARGO_BIN_EXE_wl_container")),
        &[],
    )
    .unwrap();
    let pids = ImagePids::of(c.init_pid());
    let img: PathBuf = c.scratch().join("img");
    let log = c.scratch().join("restore.log");
    let mut dump = c.in_agent_ns(dormant_bin().unwrap());
    dump.args(["dump", "-t", &pids.root.to_string(), "-D"])
        .arg(&img);
    let out = dump.output().unwrap();
    assert!(
        out.status.success(),
        "container dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_until(Duration::from_secs(30), || pids.taken().is_empty()),
        "the dumped container's pids {:?} are still taken",
        pids.taken()
    );
    let restore = || {
        let mut cmd = c.in_agent_ns(dormant_bin().unwrap());
        cmd.arg("restore")
            .arg("-D")
            .arg(&img)
            .arg("-o")
            .arg(&log)
            .arg("-vv")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd
    };
    sweep("container", &pids, &log, || {
        Box::new(restore().spawn().unwrap())
    });
    let mut last = restore().spawn().unwrap();
    let back =
        || tracer_of(pids.root) == Some(0) && pids.tasks.iter().all(|&p| tracer_of(p) == Some(0));
    assert!(
        wait_until(Duration::from_secs(60), back),
        "the last restore did not bring the container back"
    );
    c.trigger().unwrap();
    let verdict = c.wait_verdict().unwrap();
    assert!(
        verdict.contains("PASS wl_container"),
        "the container restored after the killed restores must pass:\n{verdict}"
    );
    let _ = Running::wait(&mut last, Duration::from_secs(60));
}
