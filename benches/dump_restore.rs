//! Dump and restore throughput of a live process, each beside a physical baseline measured in the same run.
//!
//! For each size the bench starts the `dormant demo` workload (this repository's `dormant` binary in its
//! hidden workload role: patterned, fully written anonymous memory), then:
//! - baseline write: the same number of bytes written with plain `write()` + fsync to the same directory;
//! - dump: `dormant dump` wall time (seize, read, write, fsync, commit; the kill and the wait for the pid to
//!   be free are reported separately), plus the time the target was frozen;
//! - baseline read: the baseline file read back with `read()` (page cache warm, as the image is for restore);
//! - restore: `dormant restore -d` wall time until the process runs again; then the restored workload checks
//!   every word of its memory and must say PASS, so a fast but wrong restore cannot pass.
//!
//! Needs root and `cargo build --release -p dormant-cli` first. Environment: `DORMANT_BENCH_SIZES_MIB`
//! (default `256,1024,4096`), `DORMANT_BENCH_DIR` (default: cargo's target tmp dir).

use std::error::Error;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHUNK: usize = 1 << 20;

fn dormant_bin() -> Result<PathBuf, Box<dyn Error>> {
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("dormant"))
        .ok_or("cannot locate the target directory")?;
    if !bin.exists() {
        return Err(format!(
            "{} is missing: run `cargo build --release -p dormant-cli` first",
            bin.display()
        )
        .into());
    }
    Ok(bin)
}

fn wait_for_line(log: &Path, what: &str, timeout: Duration) -> Result<(), Box<dyn Error>> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if fs::read_to_string(log).unwrap_or_default().contains(what) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("workload did not print {what} within {timeout:?}").into())
}

fn baseline_write(path: &Path, bytes: u64) -> Result<Duration, Box<dyn Error>> {
    let buf: Vec<u8> = (0..CHUNK).map(|i| (i * 7 + 1) as u8).collect();
    let start = Instant::now();
    let mut f = File::create(path)?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    Ok(start.elapsed())
}

fn baseline_read(path: &Path) -> Result<Duration, Box<dyn Error>> {
    let mut buf = vec![0u8; CHUNK];
    let start = Instant::now();
    let mut f = File::open(path)?;
    while f.read(&mut buf)? > 0 {}
    Ok(start.elapsed())
}

struct Row {
    mib: u64,
    image_mib: f64,
    write: Duration,
    dump: Duration,
    frozen_ms: f64,
    read: Duration,
    restore: Duration,
}

fn one(bin: &Path, dir: &Path, mib: u64) -> Result<Row, Box<dyn Error>> {
    let work = dir.join(format!("dump-restore-{mib}"));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let log = work.join("workload.log");
    let trigger = work.join("check");
    let images = work.join("image");
    let out = File::create(&log)?;
    let mut cmd = Command::new(bin);
    cmd.args([
        "__demo-workload",
        "--size-mib",
        &mib.to_string(),
        "--trigger",
    ])
    .arg(&trigger)
    .stdin(Stdio::null())
    .stdout(out.try_clone()?)
    .stderr(out);
    // The workload must hold only fds dormant can checkpoint, not whatever the bench inherited.
    // SAFETY: one async-signal-safe syscall in the child before exec; CLOSE_RANGE_CLOEXEC (4) keeps std's
    // exec-error pipe working until exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 4u32) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let pid = child.id();
    wait_for_line(&log, "READY", Duration::from_secs(120 + mib / 8))?;

    let stats = work.join("stats.json");
    let t = Instant::now();
    let mut dump = Command::new(bin)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&images)
        .arg("--stats-json")
        .arg(&stats)
        .spawn()?;
    child.wait()?;
    let dump_status = dump.wait()?;
    let dump_wall = t.elapsed();
    if !dump_status.success() {
        return Err(format!("dormant dump failed: {dump_status}").into());
    }
    let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&stats)?)?;
    let frozen_ms = v["frozen_ms"].as_f64().unwrap_or(f64::NAN);
    let release = Duration::from_secs_f64(v["release_ms"].as_f64().unwrap_or(0.0) / 1e3);
    let bytes = v["bytes_written"].as_u64().unwrap_or(mib << 20);
    let dump = dump_wall.saturating_sub(release);

    let base = work.join("baseline.bin");
    let write = baseline_write(&base, bytes)?;
    let read = baseline_read(&base)?;
    fs::remove_file(&base)?;

    let t = Instant::now();
    let st = Command::new(bin)
        .args(["restore", "-d", "-D"])
        .arg(&images)
        .status()?;
    let restore = t.elapsed();
    if !st.success() {
        return Err(format!("dormant restore failed: {st}").into());
    }
    fs::write(&trigger, b"go")?;
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None)?;
    let text = fs::read_to_string(&log)?;
    if !matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)) || !text.contains("PASS") {
        return Err(format!("restored workload did not pass ({status:?}):\n{text}").into());
    }
    fs::remove_dir_all(&work)?;
    Ok(Row {
        mib,
        image_mib: bytes as f64 / 1048576.0,
        write,
        dump,
        frozen_ms,
        read,
        restore,
    })
}

/// The host backs guest memory lazily: the first touch of a guest page costs a host fault, which would be
/// charged to whichever side of the comparison touches fresh memory first (the workload, the page cache of
/// the image, the baseline file). Touch enough memory once, up front, for every later allocation to reuse
/// host-backed pages: the workload, its image and the baseline file, plus slack.
fn warm_guest_memory(max_mib: u64) {
    let bytes = ((3 * max_mib + 1024) << 20) as usize;
    // Zeroed allocation of this size is fresh mmap'd memory: nothing is touched until the loop below.
    let mut v = vec![0u8; bytes];
    for page in v.chunks_mut(4096) {
        page[0] = 1;
    }
    std::hint::black_box(&v);
    println!("touched {} MiB of guest memory before timing", bytes >> 20);
}

fn main() -> Result<(), Box<dyn Error>> {
    if !nix::unistd::geteuid().is_root() {
        return Err("the dump/restore bench must run as root (ptrace, clone3 set_tid)".into());
    }
    let bin = dormant_bin()?;
    let dir = std::env::var_os("DORMANT_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    fs::create_dir_all(&dir)?;
    let sizes: Vec<u64> = std::env::var("DORMANT_BENCH_SIZES_MIB")
        .unwrap_or_else(|_| "256,1024,4096".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    nix::sys::prctl::set_child_subreaper(true)?;
    warm_guest_memory(sizes.iter().copied().max().unwrap_or(0));
    println!("dump/restore throughput, dir {}", dir.display());
    println!(
        "{:>6} {:>9} | {:>10} {:>10} {:>6} {:>9} | {:>10} {:>10} {:>6}",
        "MiB",
        "image",
        "write MB/s",
        "dump MB/s",
        "ratio",
        "frozen ms",
        "read MB/s",
        "rstr MB/s",
        "ratio"
    );
    for mib in sizes {
        let r = one(&bin, &dir, mib)?;
        let rate = |d: Duration| r.image_mib / d.as_secs_f64();
        println!(
            "{:>6} {:>9.1} | {:>10.0} {:>10.0} {:>6.2} {:>9.0} | {:>10.0} {:>10.0} {:>6.2}",
            r.mib,
            r.image_mib,
            rate(r.write),
            rate(r.dump),
            r.write.as_secs_f64() / r.dump.as_secs_f64(),
            r.frozen_ms,
            rate(r.read),
            rate(r.restore),
            r.read.as_secs_f64() / r.restore.as_secs_f64(),
        );
    }
    Ok(())
}
