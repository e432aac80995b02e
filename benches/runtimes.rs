//! What the CRIU RPC layer costs: `runc checkpoint` + `runc restore` of a container with dormant as
//! runc's `criu` (`criu swrk`), as a ratio to dormant's own `dump` + `restore` of the same container in the
//! same run.
//!
//! Two containers, both runc bundles on a busybox rootfs:
//! - `busybox`: a shell counting in a variable and printing each value; after either restore its next line
//!   must be exactly one past the last line before the dump;
//! - `N MiB` (default 1024, `DORMANT_BENCH_RUNTIME_MIB`): the `dormant` binary's demo workload (patterned,
//!   fully written anonymous memory; the binary and its libraries are copied into the rootfs); after
//!   either restore it is triggered, checks every word and must print PASS.
//!
//! runc side: wall time of `runc checkpoint` (the container is killed, as by default) and of
//! `runc restore -d` (stdio handed in with inherit_fd, cgroups joined, the notify callbacks answered by
//! runc, the restored init runc's child). Direct side: wall time of `dormant dump --root ROOTFS` (the
//! bench is the orphaned container init's subreaper and reaps it as soon as it is killed) and of
//! `dormant restore -d --root ROOTFS --net dumped --inherit-fd ...`. Each row is the median of
//! `DORMANT_BENCH_RUNS` (default 3) runs of both.
//!
//! Needs root, runc and busybox-static, and `cargo build --release -p dormant-cli` first.

use std::error::Error;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn Error>>;

const WAIT: Duration = Duration::from_secs(300);

fn dormant_bin() -> Res<PathBuf> {
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

/// A pipe's lines, read by a thread.
#[derive(Clone)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn spawn(r: OwnedFd) -> Lines {
        let lines = Lines(Arc::new(Mutex::new(Vec::new())));
        let out = lines.0.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(File::from(r)).lines() {
                let Ok(l) = l else { break };
                if let Ok(mut v) = out.lock() {
                    v.push(l);
                }
            }
        });
        lines
    }

    fn wait(&self, what: &str, f: impl Fn(&[String]) -> bool) -> Res<Vec<String>> {
        let start = Instant::now();
        loop {
            let v = self.0.lock().map(|v| v.clone()).unwrap_or_default();
            if f(&v) {
                return Ok(v);
            }
            if start.elapsed() > WAIT {
                return Err(format!("{what}: not within {WAIT:?}; lines {v:?}").into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn last_number(&self) -> Option<u64> {
        let v = self.0.lock().ok()?;
        v.iter().rev().find_map(|l| l.trim().parse().ok())
    }
}

fn pipe() -> Res<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe()?)
}

/// Runs `cmd` and fails unless it exits 0; returns its wall time.
fn timed(cmd: &mut Command) -> Res<Duration> {
    let t = Instant::now();
    let st = cmd.stdin(Stdio::null()).status()?;
    let d = t.elapsed();
    if !st.success() {
        return Err(format!("{cmd:?}: {st}").into());
    }
    Ok(d)
}

/// The container under test.
#[derive(Clone, Copy, PartialEq)]
enum Workload {
    Counter,
    Memory(u64),
}

impl Workload {
    fn name(&self) -> String {
        match self {
            Workload::Counter => "busybox".into(),
            Workload::Memory(m) => format!("{m} MiB"),
        }
    }

    fn args(&self) -> Vec<String> {
        match self {
            Workload::Counter => vec![
                "/bin/sh".into(),
                "-c".into(),
                "i=0; while true; do i=$((i+1)); echo $i; usleep 10000; done".into(),
            ],
            Workload::Memory(m) => vec![
                "/dormant".into(),
                "__demo-workload".into(),
                "--size-mib".into(),
                m.to_string(),
                "--trigger".into(),
                "/tmp/trigger".into(),
            ],
        }
    }

    /// Waits until the workload runs (its first line).
    fn wait_ready(&self, out: &Lines) -> Res<()> {
        match self {
            Workload::Counter => {
                out.wait("a count", |v| v.iter().any(|l| l.parse::<u64>().is_ok()))
            }
            Workload::Memory(_) => out.wait("READY", |v| v.iter().any(|l| l.starts_with("READY"))),
        }
        .map(drop)
    }

    /// After a restore: the counter's next line is one past `before`; the memory workload passes its check.
    fn verify(&self, bundle: &Path, before: Option<u64>, out: &Lines) -> Res<()> {
        match self {
            Workload::Counter => {
                let want = before.ok_or("no line before the dump")? + 1;
                let v = out.wait("the next count", |v| {
                    v.iter().any(|l| l.parse::<u64>().is_ok())
                })?;
                let first: u64 = v.iter().find_map(|l| l.parse().ok()).unwrap_or(0);
                if first != want {
                    return Err(format!("restored counter printed {first}, want {want}").into());
                }
            }
            Workload::Memory(_) => {
                fs::write(bundle.join("rootfs/tmp/trigger"), b"go")?;
                let v = out.wait("the verdict", |v| {
                    v.iter()
                        .any(|l| l.starts_with("PASS") || l.starts_with("FAIL"))
                })?;
                if !v.iter().any(|l| l.starts_with("PASS")) {
                    return Err(format!("restored workload: {v:?}").into());
                }
            }
        }
        Ok(())
    }
}

/// A runc bundle for `w` in `dir` (busybox rootfs; for the memory workload also the dormant binary and
/// the libraries it links).
fn bundle(dir: &Path, w: Workload, dormant: &Path) -> Res<PathBuf> {
    let rootfs = dir.join("rootfs");
    for d in ["bin", "tmp", "proc", "dev", "sys", "etc"] {
        fs::create_dir_all(rootfs.join(d))?;
    }
    fs::copy("/bin/busybox", rootfs.join("bin/busybox"))?;
    for a in ["sh", "usleep", "echo"] {
        symlink("busybox", rootfs.join("bin").join(a))?;
    }
    if let Workload::Memory(_) = w {
        fs::copy(dormant, rootfs.join("dormant"))?;
        let ldd = Command::new("ldd").arg(dormant).output()?;
        for lib in String::from_utf8_lossy(&ldd.stdout)
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
        {
            let to = rootfs.join(lib.trim_start_matches('/'));
            if let Some(p) = to.parent() {
                fs::create_dir_all(p)?;
            }
            fs::copy(lib, &to)?;
        }
    }
    let st = Command::new("runc")
        .arg("spec")
        .arg("--bundle")
        .arg(dir)
        .status()?;
    if !st.success() {
        return Err("runc spec failed".into());
    }
    let path = dir.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path)?)?;
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = w.args().into();
    spec["root"]["readonly"] = false.into();
    fs::write(&path, spec.to_string())?;
    Ok(dir.to_path_buf())
}

struct Runc {
    state: PathBuf,
    criu: PathBuf,
}

impl Runc {
    fn cmd(&self) -> Command {
        let mut c = Command::new("runc");
        c.arg("--root")
            .arg(&self.state)
            .arg("--criu")
            .arg(&self.criu);
        c
    }

    /// `runc run -d` (or `runc restore -d` of `images`) with stdout and stderr a new pipe; its lines and
    /// the command's wall time.
    fn start(&self, bundle: &Path, id: &str, images: Option<&Path>) -> Res<(Lines, Duration)> {
        let (r, w) = pipe()?;
        let mut c = self.cmd();
        match images {
            None => c.args(["run", "-d"]),
            Some(i) => c.args(["restore", "-d", "--image-path"]).arg(i),
        };
        c.arg("--bundle").arg(bundle).arg(id);
        c.stdout(File::from(w.try_clone()?)).stderr(File::from(w));
        let lines = Lines::spawn(r);
        let took = timed(&mut c)?;
        Ok((lines, took))
    }

    fn pid(&self, id: &str) -> Res<i32> {
        let out = self.cmd().args(["state", id]).output()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        v["pid"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| format!("runc state {id}: no pid").into())
    }

    fn delete(&self, id: &str) {
        let _ = self.cmd().args(["delete", "-f", id]).status();
    }
}

/// Reaps `pid` (our child through the subreaper role) without blocking forever.
fn reap(pid: i32) {
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
}

/// One run of both sides: (runc checkpoint, runc restore, dormant dump, dormant restore).
fn one(dir: &Path, w: Workload, dormant: &Path, runc: &Runc) -> Res<[Duration; 4]> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    let b = bundle(&dir.join("bundle"), w, dormant)?;
    let id = format!("dormant-bench-{}", std::process::id());

    // runc with dormant as criu.
    let (out, _) = runc.start(&b, &id, None)?;
    w.wait_ready(&out)?;
    let pid = runc.pid(&id)?;
    let images = dir.join("runc-images");
    let ckpt = timed(
        runc.cmd()
            .args(["checkpoint", "--image-path"])
            .arg(&images)
            .arg(&id),
    )?;
    reap(pid);
    let before = out.last_number();
    let (out2, rst) = runc.start(&b, &id, Some(&images))?;
    w.verify(&b, before, &out2)?;
    runc.delete(&id);

    // dormant directly, same container.
    let (out, _) = runc.start(&b, &id, None)?;
    w.wait_ready(&out)?;
    let pid = runc.pid(&id)?;
    let img = dir.join("dormant-image");
    let t = Instant::now();
    let mut dump = Command::new(dormant)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&img)
        .arg("--root")
        .arg(b.join("rootfs"))
        .stdin(Stdio::null())
        .spawn()?;
    // The container's init is ours to reap (subreaper): dormant waits for its pid to be free.
    reap(pid);
    let st = dump.wait()?;
    let dump_time = t.elapsed();
    if !st.success() {
        return Err(format!("dormant dump: {st}").into());
    }
    let before = out.last_number();
    let (r, wr) = pipe()?;
    let key = pipe_key(&img)?;
    let out2 = Lines::spawn(r);
    let pidfile = dir.join("restored.pid");
    let mut c = Command::new(dormant);
    c.args(["restore", "-d", "-D"])
        .arg(&img)
        .arg("--root")
        .arg(b.join("rootfs"))
        .args(["--net", "dumped", "--inherit-fd"])
        .arg(format!("fd[3]:{key}"))
        .arg("--pidfile")
        .arg(&pidfile);
    let fd = wr.as_raw_fd();
    // SAFETY: dup2 in the child before exec only installs the pipe's write end as fd 3.
    unsafe {
        c.pre_exec(move || {
            if libc::dup2(fd, 3) != 3 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let restore_time = timed(&mut c)?;
    drop(wr);
    w.verify(&b, before, &out2)?;
    let restored: i32 = fs::read_to_string(&pidfile)?.trim().parse()?;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(restored),
        nix::sys::signal::Signal::SIGKILL,
    );
    reap(restored);
    runc.delete(&id);
    let _ = fs::remove_dir_all(dir);
    Ok([ckpt, rst, dump_time, restore_time])
}

/// The external stdout pipe's key in a dormant image (`pipe:[INODE]`).
fn pipe_key(img: &Path) -> Res<String> {
    let out = Command::new(dormant_bin()?)
        .args(["show", "--json", "-D"])
        .arg(img)
        .output()?;
    let s = String::from_utf8_lossy(&out.stdout);
    let at = s.find("pipe:[").ok_or("no external pipe in the image")?;
    let end = s[at..].find(']').ok_or("bad pipe key")? + at + 1;
    Ok(s[at..end].to_string())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Res<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err("the runtime bench must run as root".into());
    }
    let dormant = dormant_bin()?;
    let dir = std::env::var_os("DORMANT_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
        .join("runtimes");
    let mib: u64 = std::env::var("DORMANT_BENCH_RUNTIME_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let runs: usize = std::env::var("DORMANT_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    // Orphaned container inits come to us, so the direct dump's kill is reaped at once.
    nix::sys::prctl::set_child_subreaper(true)?;
    let shim = dir.join("bin");
    fs::create_dir_all(&shim)?;
    let criu = shim.join("criu");
    let _ = fs::remove_file(&criu);
    symlink(&dormant, &criu)?;
    let runc = Runc {
        state: dir.join("runc-state"),
        criu,
    };
    println!(
        "{:<10} {:>14} {:>12} {:>12} {:>14} {:>7}",
        "container", "runc ckpt ms", "runc rst ms", "dump ms", "restore ms", "ratio"
    );
    for w in [Workload::Counter, Workload::Memory(mib)] {
        let mut rows = Vec::new();
        for _ in 0..runs {
            rows.push(one(&dir.join("run"), w, &dormant, &runc)?);
        }
        let ms = |i: usize| median(rows.iter().map(|r| r[i].as_secs_f64() * 1e3).collect());
        let ratio = median(
            rows.iter()
                .map(|r| (r[0] + r[1]).as_secs_f64() / (r[2] + r[3]).as_secs_f64())
                .collect(),
        );
        println!(
            "{:<10} {:>14.1} {:>12.1} {:>12.1} {:>14.1} {:>7.2}",
            w.name(),
            ms(0),
            ms(1),
            ms(2),
            ms(3),
            ratio
        );
    }
    Ok(())
}
