//! `dormant demo`: the main job of the README, end to end with no arguments.
//!
//! It starts its own workload (this binary in a hidden role: a counter over a few hundred MiB of patterned
//! memory), checkpoints it with `dormant dump`, lets it die, restores it with `dormant restore -d`, and shows
//! that the counter goes on from where it was and every byte of the memory is intact. The dump and restore run
//! as separate `dormant` processes, exactly as a user would run them; the demo is their parent's parent and a
//! child subreaper, so it can reap the original and wait for the restored process.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::error::CliError;
use crate::out::outln;

const TICK: Duration = Duration::from_millis(50);

fn demo_err(what: impl Into<String>) -> CliError {
    CliError::Demo(what.into())
}

/// A scratch directory that holds an image of process memory: 0700, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Self, CliError> {
        let base = std::env::temp_dir();
        for n in 0..100u32 {
            let p = base.join(format!("dormant-demo-{}-{n}", std::process::id()));
            match fs::DirBuilder::new().mode(0o700).create(&p) {
                Ok(()) => return Ok(Self(p)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(CliError::Write { path: p, source }),
            }
        }
        Err(demo_err("cannot create a scratch directory"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn read_log(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

fn last_tick(log: &str) -> Option<u64> {
    log.lines()
        .rev()
        .find_map(|l| l.strip_prefix("tick ")?.trim().parse().ok())
}

fn wait_for(log: &Path, what: &str, timeout: Duration) -> Result<String, CliError> {
    let start = Instant::now();
    loop {
        let text = read_log(log);
        if text.contains(what) {
            return Ok(text);
        }
        if start.elapsed() > timeout {
            return Err(demo_err(format!(
                "workload did not print {what:?} within {timeout:?}; log:\n{text}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn run(size_mib: u64) -> Result<ExitCode, CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| demo_err(format!("cannot find own executable: {e}")))?;
    let scratch = Scratch::new()?;
    let log_path = scratch.0.join("workload.log");
    let trigger = scratch.0.join("check");
    let images = scratch.0.join("image");
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(|source| CliError::Write {
            path: log_path.clone(),
            source,
        })?;
    let log_err = log.try_clone().map_err(|source| CliError::Write {
        path: log_path.clone(),
        source,
    })?;

    let _ = outln!("dormant demo: starting a workload with {size_mib} MiB of patterned memory");
    let mut cmd = Command::new(&exe);
    cmd.args([
        "__demo-workload",
        "--size-mib",
        &size_mib.to_string(),
        "--trigger",
    ])
    .arg(&trigger)
    .stdin(Stdio::null())
    .stdout(log)
    .stderr(log_err);
    close_inherited_fds(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| demo_err(format!("cannot start the workload: {e}")))?;
    let pid = child.id();
    let fill_timeout = Duration::from_secs(60 + size_mib / 16);
    wait_for(&log_path, "READY", fill_timeout)?;
    std::thread::sleep(Duration::from_millis(600));
    let before = last_tick(&read_log(&log_path)).unwrap_or(0);
    let _ = outln!("workload pid {pid} is counting (tick {before}); dumping it");

    let stats_path = scratch.0.join("stats.json");
    let t_dump = Instant::now();
    let mut dump = Command::new(&exe)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&images)
        .arg("--stats-json")
        .arg(&stats_path)
        .spawn()
        .map_err(|e| demo_err(format!("cannot run dormant dump: {e}")))?;
    // We are the workload's parent: reap it when the dump kills it, so its pid becomes free.
    let status = child
        .wait()
        .map_err(|e| demo_err(format!("waiting for the workload: {e}")))?;
    let dump_status = dump
        .wait()
        .map_err(|e| demo_err(format!("waiting for dormant dump: {e}")))?;
    let dump_time = t_dump.elapsed();
    if !dump_status.success() {
        return Err(demo_err(format!(
            "dormant dump failed ({dump_status}); workload ended with {status}"
        )));
    }
    let at_dump = last_tick(&read_log(&log_path)).unwrap_or(0);
    let image_bytes = dir_size(&images);
    let _ = outln!(
        "dumped in {:.0} ms: image {:.1} MiB ({:.0} MiB/s); the workload is gone ({status})",
        dump_time.as_secs_f64() * 1e3,
        image_bytes as f64 / 1048576.0,
        image_bytes as f64 / 1048576.0 / dump_time.as_secs_f64()
    );
    if let Ok(stats) = fs::read_to_string(&stats_path) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&stats) {
            if let Some(ms) = v.get("frozen_ms").and_then(|x| x.as_f64()) {
                let _ = outln!("the workload was frozen for {ms:.0} ms");
            }
        }
    }

    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| demo_err(format!("cannot become a child subreaper: {e}")))?;
    let t_restore = Instant::now();
    let restore = Command::new(&exe)
        .args(["restore", "-d", "-D"])
        .arg(&images)
        .status()
        .map_err(|e| demo_err(format!("cannot run dormant restore: {e}")))?;
    let restore_time = t_restore.elapsed();
    if !restore.success() {
        return Err(demo_err(format!("dormant restore failed ({restore})")));
    }
    let _ = outln!(
        "restored pid {pid} in {:.0} ms ({:.0} MiB/s)",
        restore_time.as_secs_f64() * 1e3,
        image_bytes as f64 / 1048576.0 / restore_time.as_secs_f64()
    );
    std::thread::sleep(Duration::from_millis(600));
    let after = last_tick(&read_log(&log_path)).unwrap_or(0);
    let _ = outln!("the counter went on: tick {at_dump} at the dump, tick {after} now");
    fs::write(&trigger, b"check").map_err(|source| CliError::Write {
        path: trigger.clone(),
        source,
    })?;
    let npid = nix::unistd::Pid::from_raw(pid as i32);
    let code = match nix::sys::wait::waitpid(npid, None) {
        Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => c,
        Ok(other) => {
            return Err(demo_err(format!(
                "restored workload ended abnormally: {other:?}"
            )))
        }
        Err(e) => {
            return Err(demo_err(format!(
                "cannot wait for the restored workload {pid}: {e}"
            )))
        }
    };
    let text = read_log(&log_path);
    let verdict = text
        .lines()
        .rev()
        .find(|l| l.starts_with("PASS") || l.starts_with("FAIL"))
        .unwrap_or("");
    let _ = outln!("workload says: {verdict}");
    if code == 0 && verdict.starts_with("PASS") && after > at_dump {
        let _ = outln!("demo OK");
        Ok(ExitCode::SUCCESS)
    } else {
        Err(demo_err(format!(
            "the restored workload did not pass (exit {code}); log:\n{text}"
        )))
    }
}

/// The workload must hold only what dormant can checkpoint: whatever fds the demo itself inherited (a pipe
/// from a terminal multiplexer, a CI runner's log fd) are closed in the child before exec.
fn close_inherited_fds(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // Marked close-on-exec rather than closed, so std's own exec-error pipe keeps working until exec.
    const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
    // SAFETY: the closure runs in the forked child before exec and only makes one async-signal-safe syscall.
    unsafe {
        cmd.pre_exec(|| {
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The word at index `i` of the demo's memory: unique per position, so misplaced pages are caught too.
fn pattern(i: u64) -> u64 {
    (i.wrapping_add(1)).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5DEE_CE66_D0A1_B2C3
}

/// The hidden workload role: fills memory, counts, verifies on request.
pub fn workload(size_mib: u64, trigger: &Path) -> Result<ExitCode, CliError> {
    let words = (size_mib * 1024 * 1024 / 8) as usize;
    let mut mem: Vec<u64> = Vec::with_capacity(words);
    mem.extend((0..words as u64).map(pattern));
    let mut out = std::io::stdout();
    let _ = writeln!(out, "READY {}", std::process::id());
    let _ = out.flush();
    let mut tick: u64 = 0;
    let mut last_print = Instant::now();
    loop {
        std::thread::sleep(TICK);
        tick += 1;
        if last_print.elapsed() >= Duration::from_millis(100) {
            let _ = writeln!(out, "tick {tick}");
            let _ = out.flush();
            last_print = Instant::now();
        }
        if trigger.exists() {
            break;
        }
    }
    let bad = mem
        .iter()
        .enumerate()
        .filter(|(i, w)| **w != pattern(*i as u64))
        .count();
    if bad == 0 {
        let _ = writeln!(
            out,
            "PASS {size_mib} MiB of memory intact, counter at tick {tick}"
        );
        Ok(ExitCode::SUCCESS)
    } else {
        let _ = writeln!(out, "FAIL {bad} of {words} words differ");
        Ok(ExitCode::FAILURE)
    }
}
