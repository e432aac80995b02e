//! Container runtimes driving dormant as `criu`: runc, podman and containerd (Debian's packages), each
//! given a `criu` that is a symlink to the `dormant` binary, first on PATH (and runc's `--criu`).
//!
//! Everything is private to the test: runc keeps its state under the test's scratch directory, podman its
//! storage (`--root`/`--runroot`, cgroupfs, file events), containerd its config, root, state and socket
//! (the test starts and stops the daemon). No registry is reachable: the image is a busybox rootfs
//! imported with `podman import`, and saved as an OCI archive for `ctr image import`. Containers run the
//! [`COUNTER`] workload, whose count lives in a shell variable: after a restore it must go on from the
//! dumped value, not from zero.
//!
//! What this does NOT do: judge anything. The tests in `tests/e2e_runtimes.rs` do.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{symlink, DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{self, HarnessError, Scratch};

/// How long one runtime command may take (a checkpoint, restore, run, import).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// How long to wait for a workload's output or state.
pub const WAIT: Duration = Duration::from_secs(30);

/// The workload: counts in a shell variable, prints each value and stores it in `/tmp/count`, every
/// 10 ms. Restarted instead of restored, it would count from 1 again.
pub const COUNTER: &str =
    "i=0; while true; do i=$((i+1)); echo $i; echo $i > /tmp/count; usleep 10000; done";

/// The busybox applets the rootfs links (the workload's and the tests' commands).
const APPLETS: [&str; 9] = [
    "sh", "cat", "echo", "sleep", "usleep", "mkdir", "ls", "true", "uevent",
];

#[derive(thiserror::Error)]
pub enum Error {
    #[error(
        "{tool} is not installed; the runtime tests need Debian's {package} (.ci/run installs it)"
    )]
    ToolMissing {
        tool: &'static str,
        package: &'static str,
    },
    #[error("`{cmd}` {status}\nstdout: {stdout}\nstderr: {stderr}")]
    Command {
        cmd: String,
        status: String,
        stdout: String,
        stderr: String,
    },
    #[error("{what} ({path}): {source}")]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: not within {after:?}; {seen}")]
    Timeout {
        what: String,
        after: Duration,
        seen: String,
    },
    #[error(transparent)]
    Harness(#[from] HarnessError),
}

// Test failures print errors with `{:?}`: the Display text says what happened.
impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

fn io(what: impl Into<String>, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    let path = path.to_path_buf();
    move |source| Error::Io { what, path, source }
}

/// Where a program is: PATH, then the sbin directories a root shell has.
fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Fails (never skips) unless we are root and every runtime is installed.
pub fn require_tools() -> Result<()> {
    harness::require_root()?;
    for (tool, package) in [
        ("runc", "runc"),
        ("podman", "podman"),
        ("conmon", "conmon"),
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("busybox", "busybox-static"),
        ("tar", "tar"),
    ] {
        if which(tool).is_none() {
            return Err(Error::ToolMissing { tool, package });
        }
    }
    Ok(())
}

/// Runs `cmd`, capturing its output, killed after `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let text = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io(format!("starting {text}"), Path::new("")))?;
    wait_output(child, &text, timeout)
}

fn wait_output(mut child: Child, text: &str, timeout: Duration) -> Result<Output> {
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as _));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as _));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Timeout {
                    what: text.to_string(),
                    after: timeout,
                    seen: "killed".into(),
                });
            }
        }
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Runs `cmd` and fails unless it exits 0.
pub fn run_ok(cmd: &mut Command) -> Result<Output> {
    let text = format!("{cmd:?}");
    let out = run(cmd, COMMAND_TIMEOUT)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(command_failed(&text, &out))
    }
}

pub fn command_failed(cmd: &str, out: &Output) -> Error {
    Error::Command {
        cmd: cmd.to_string(),
        status: format!("ended with {}", out.status),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Waits until `cond` gives a value.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_string(),
                after: timeout,
                seen: String::new(),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A directory holding `criu`, a symlink to the `dormant` binary under test.
#[derive(Debug)]
pub struct CriuShim {
    _scratch: Scratch,
    dir: PathBuf,
}

impl CriuShim {
    pub fn new() -> Result<Self> {
        let dormant = harness::dormant_bin()?;
        let scratch = Scratch::new("criu-shim")?;
        // Runtimes run as root but check nothing else; the directory only needs to be searchable.
        let dir = scratch.path().join("bin");
        fs::create_dir(&dir).map_err(io("creating the shim directory", &dir))?;
        fs::set_permissions(scratch.path(), fs::Permissions::from_mode(0o755))
            .map_err(io("opening the shim directory", scratch.path()))?;
        symlink(&dormant, dir.join("criu")).map_err(io("linking criu to dormant", &dir))?;
        Ok(Self {
            _scratch: scratch,
            dir,
        })
    }

    /// The `criu` to give `runc --criu`.
    pub fn criu(&self) -> PathBuf {
        self.dir.join("criu")
    }

    /// PATH with the shim first: what the runtimes (and runc below them) look `criu` up in.
    pub fn path_env(&self) -> OsString {
        let mut dirs = vec![self.dir.clone()];
        dirs.extend(
            [
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ]
            .map(PathBuf::from),
        );
        std::env::join_paths(dirs).unwrap_or_default()
    }
}

/// Fills `dir` with a busybox root filesystem (busybox-static and the applets the tests use).
pub fn busybox_rootfs(dir: &Path) -> Result<()> {
    let busybox = which("busybox").ok_or(Error::ToolMissing {
        tool: "busybox",
        package: "busybox-static",
    })?;
    for d in ["bin", "tmp", "proc", "dev", "sys", "etc", "root", "run"] {
        let p = dir.join(d);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&p)
            .map_err(io("creating a rootfs directory", &p))?;
    }
    let tmp = dir.join("tmp");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777))
        .map_err(io("chmod /tmp", &tmp))?;
    let bin = dir.join("bin/busybox");
    fs::copy(&busybox, &bin).map_err(io("copying busybox", &bin))?;
    for a in APPLETS {
        let p = dir.join("bin").join(a);
        symlink("busybox", &p).map_err(io("linking an applet", &p))?;
    }
    let passwd = dir.join("etc/passwd");
    fs::write(&passwd, "root:x:0:0:root:/root:/bin/sh\n").map_err(io("writing", &passwd))?;
    let group = dir.join("etc/group");
    fs::write(&group, "root:x:0:\n").map_err(io("writing", &group))?;
    Ok(())
}

/// The count a container's workload stored last (`/tmp/count` seen through `/proc/PID/root`).
pub fn count_of(pid: i32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/root/tmp/count"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Waits until the count of `pid` reaches `at_least`; returns it.
pub fn wait_count(pid: i32, at_least: u64) -> Result<u64> {
    wait_for(&format!("pid {pid} counting to {at_least}"), WAIT, || {
        count_of(pid).filter(|c| *c >= at_least)
    })
}

/// Asserts the count of `pid` goes on growing (the container runs), returns the last value seen.
pub fn still_counting(pid: i32) -> Result<u64> {
    let now = wait_for(&format!("a count from pid {pid}"), WAIT, || count_of(pid))?;
    wait_count(pid, now + 5)
}

/// The lines of a pipe, read by a thread as they come.
#[derive(Debug, Clone)]
pub struct Lines {
    lines: Arc<Mutex<Vec<String>>>,
    closed: Arc<AtomicBool>,
}

impl Lines {
    /// Reads `file` until EOF in a thread of its own.
    pub fn spawn(file: File) -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(AtomicBool::new(false));
        let (out, done) = (lines.clone(), closed.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(file).lines() {
                let Ok(line) = line else { break };
                match out.lock() {
                    Ok(mut v) => v.push(line),
                    Err(_) => break,
                }
            }
            done.store(true, Ordering::SeqCst);
        });
        Self { lines, closed }
    }

    /// Waits until every writer closed the pipe (the container holding it is gone); returns the last
    /// number it carried.
    pub fn last_number_at_close(&self) -> Result<u64> {
        wait_for("the pipe's writers to close", WAIT, || {
            self.closed.load(Ordering::SeqCst).then_some(())
        })?;
        self.numbers()
            .last()
            .copied()
            .ok_or_else(|| Error::Timeout {
                what: "a number on the pipe".into(),
                after: WAIT,
                seen: format!("lines: {:?}", self.all()),
            })
    }

    pub fn all(&self) -> Vec<String> {
        self.lines.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The numbers among the lines, in order.
    pub fn numbers(&self) -> Vec<u64> {
        self.all()
            .iter()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Waits for a number of at least `n`; returns the numbers so far.
    pub fn wait_number(&self, n: u64) -> Result<Vec<u64>> {
        wait_for(&format!("a line >= {n}"), WAIT, || {
            let nums = self.numbers();
            nums.iter().any(|x| *x >= n).then_some(nums)
        })
        .map_err(|e| match e {
            Error::Timeout { what, after, .. } => Error::Timeout {
                what,
                after,
                seen: format!("lines: {:?}", self.all()),
            },
            e => e,
        })
    }

    /// Waits for the first number; returns it.
    pub fn first_number(&self) -> Result<u64> {
        self.wait_number(0).map(|n| n[0])
    }
}

/// A pipe: its read end becomes [`Lines`], its write end the stdout and stderr of a command.
pub fn output_pipe() -> Result<(Lines, File)> {
    let (r, w) = nix::unistd::pipe().map_err(|e| {
        Error::Harness(HarnessError::Sys {
            what: "pipe".into(),
            source: e,
        })
    })?;
    Ok((Lines::spawn(File::from(r)), File::from(w)))
}

/// The log file a failed runtime command names (`log file: PATH` from runc and podman, `path= PATH`
/// from containerd), relative paths taken in `dir`; its text.
pub fn named_log(output: &str, dir: &Path) -> Option<(PathBuf, String)> {
    let path = output
        .split("log file: ")
        .nth(1)
        .or_else(|| output.split("path= ").nth(1))?
        .split(|c: char| c.is_whitespace() || c == '"' || c == '\\')
        .next()?
        .trim_end_matches(':');
    let path = dir.join(path);
    let text = fs::read_to_string(&path).ok()?;
    Some((path, text))
}

/// Detaches every mount under `dir` (podman's and containerd's storage mounts), deepest first.
pub fn unmount_under(dir: &Path) {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut mps: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|mp| mp.starts_with(dir))
        .collect();
    mps.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for mp in mps {
        let _ = nix::mount::umount2(&mp, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// runc with a private state directory, dormant as its `--criu`.
#[derive(Debug, Clone)]
pub struct Runc {
    state: PathBuf,
    criu: PathBuf,
    path_env: OsString,
}

impl Runc {
    pub fn new(dir: &Path, shim: &CriuShim) -> Self {
        Self {
            state: dir.join("runc-state"),
            criu: shim.criu(),
            path_env: shim.path_env(),
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new("runc");
        c.env("PATH", &self.path_env)
            .arg("--root")
            .arg(&self.state)
            .arg("--criu")
            .arg(&self.criu);
        c
    }

    /// Makes a bundle in `dir` running `script` (non-terminal, writable rootfs), with OCI `annotations`.
    pub fn bundle(dir: &Path, script: &str, annotations: &[(&str, &str)]) -> Result<PathBuf> {
        fs::create_dir_all(dir).map_err(io("creating the bundle", dir))?;
        busybox_rootfs(&dir.join("rootfs"))?;
        run_ok(Command::new("runc").arg("spec").arg("--bundle").arg(dir))?;
        let path = dir.join("config.json");
        let text = fs::read_to_string(&path).map_err(io("reading", &path))?;
        let mut spec: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| io("parsing", &path)(std::io::Error::other(e)))?;
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = serde_json::json!(["/bin/sh", "-c", script]);
        spec["root"]["readonly"] = false.into();
        let notes: serde_json::Map<String, serde_json::Value> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        spec["annotations"] = notes.into();
        fs::write(&path, spec.to_string()).map_err(io("writing", &path))?;
        Ok(dir.to_path_buf())
    }

    /// `runc run -d`: stdout and stderr are a pipe whose lines come back.
    pub fn run(&self, bundle: &Path, id: &str) -> Result<Lines> {
        let (lines, w) = output_pipe()?;
        let mut c = self.cmd();
        c.args(["run", "-d", "--bundle"]).arg(bundle).arg(id);
        self.detached(c, w, &lines)?;
        Ok(lines)
    }

    /// `runc restore -d` of the checkpoint in `images` as container `id`, with new stdio pipes.
    pub fn restore(&self, bundle: &Path, id: &str, images: &Path, extra: &[&str]) -> Result<Lines> {
        let (lines, w) = output_pipe()?;
        let mut c = self.cmd();
        c.args(["restore", "-d", "--image-path"])
            .arg(images)
            .arg("--bundle")
            .arg(bundle)
            .args(extra)
            .arg(id);
        self.detached(c, w, &lines)?;
        Ok(lines)
    }

    /// Runs a command whose stdio the detached container keeps (so its output is not waited for).
    fn detached(&self, mut c: Command, w: File, lines: &Lines) -> Result<()> {
        let text = format!("{c:?}");
        let w2 = w.try_clone().map_err(io("dup", Path::new("pipe")))?;
        let mut child = c
            .stdin(Stdio::null())
            .stdout(w)
            .stderr(w2)
            .spawn()
            .map_err(io(format!("starting {text}"), Path::new("runc")))?;
        drop(c);
        let status = wait_for(&text, COMMAND_TIMEOUT, || child.try_wait().ok().flatten())?;
        if !status.success() {
            // Whatever runc said went to the pipe.
            std::thread::sleep(Duration::from_millis(100));
            return Err(Error::Command {
                cmd: text,
                status: format!("ended with {status}"),
                stdout: lines.all().join("\n"),
                stderr: String::new(),
            });
        }
        Ok(())
    }

    /// `runc checkpoint` (plus `extra` flags) into `images`; the output, whatever the status.
    pub fn checkpoint(&self, id: &str, images: &Path, extra: &[&str]) -> Result<Output> {
        let mut c = self.cmd();
        c.args(["checkpoint", "--image-path"])
            .arg(images)
            .args(extra)
            .arg(id);
        run(&mut c, COMMAND_TIMEOUT)
    }

    /// The container's status and init pid, if runc knows it.
    pub fn state(&self, id: &str) -> Option<(String, i32)> {
        let out = run(self.cmd().args(["state", id]), COMMAND_TIMEOUT).ok()?;
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some((
            v["status"].as_str()?.to_string(),
            i32::try_from(v["pid"].as_i64()?).ok()?,
        ))
    }

    /// Kills and deletes the container (nothing if it is gone).
    pub fn remove(&self, id: &str) {
        let _ = run(self.cmd().args(["delete", "-f", id]), COMMAND_TIMEOUT);
    }
}

/// podman with private storage, runc as its runtime and dormant as criu on its PATH.
#[derive(Debug)]
pub struct Podman {
    dir: PathBuf,
    path_env: OsString,
}

/// The image the tests run, imported from a busybox rootfs.
pub const IMAGE: &str = "localhost/dormant-busybox:test";

impl Podman {
    /// Sets up the storage in `dir` and imports the busybox image.
    pub fn new(dir: &Path, shim: &CriuShim) -> Result<Self> {
        let p = Self {
            dir: dir.to_path_buf(),
            path_env: shim.path_env(),
        };
        let rootfs = dir.join("image-rootfs");
        busybox_rootfs(&rootfs)?;
        let tar = dir.join("busybox.tar");
        run_ok(
            Command::new("tar")
                .arg("-C")
                .arg(&rootfs)
                .arg("-cf")
                .arg(&tar)
                .arg("."),
        )?;
        run_ok(p.cmd().arg("import").arg(&tar).arg(IMAGE))?;
        Ok(p)
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("PATH", &self.path_env)
            .arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .args([
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
                "--runtime",
                "runc",
            ]);
        c
    }

    /// `podman run -d` of the busybox image running `script`, with the options a checkpoint needs here
    /// (no CAP_SYS_RESOURCE: limits runc can set; no network).
    pub fn run(&self, name: &str, script: &str, extra: &[&str]) -> Result<()> {
        let mut c = self.cmd();
        c.args(["run", "-d", "--name", name, "--network", "none"])
            .args([
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=4096:4096",
            ])
            .args(extra)
            .args([IMAGE, "/bin/sh", "-c", script]);
        run_ok(&mut c).map(drop)
    }

    /// A `podman inspect --format` field of container `name`.
    pub fn inspect(&self, name: &str, format: &str) -> Option<String> {
        let out = run(
            self.cmd().args(["inspect", "--format", format, name]),
            COMMAND_TIMEOUT,
        )
        .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The container's init pid while it runs.
    pub fn pid(&self, name: &str) -> Option<i32> {
        let state = self.inspect(name, "{{.State.Status}} {{.State.Pid}}")?;
        let (status, pid) = state.split_once(' ')?;
        (status == "running")
            .then(|| pid.parse().ok())
            .flatten()
            .filter(|p| *p > 0)
    }

    /// Saves the image as an OCI archive (for containerd).
    pub fn save_oci(&self, out: &Path) -> Result<()> {
        run_ok(
            self.cmd()
                .args(["save", "--format", "oci-archive", "-o"])
                .arg(out)
                .arg(IMAGE),
        )
        .map(drop)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = run(self.cmd().args(["rm", "-f", "-a"]), COMMAND_TIMEOUT);
        // conmon runs `podman container cleanup` when a container exits, later, and that mounts the
        // storage again: wait for every process naming our storage before unmounting it.
        let _ = wait_for("podman's cleanup processes", WAIT, || {
            (!processes_naming(&self.dir)).then_some(())
        });
        unmount_under(&self.dir);
    }
}

/// Whether a process has `dir` in its command line.
fn processes_naming(dir: &Path) -> bool {
    let Some(want) = dir.to_str() else {
        return false;
    };
    let me = std::process::id().to_string();
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            let name = e.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                return false;
            };
            pid != me
                && fs::read(e.path().join("cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains(want))
                    .unwrap_or(false)
        })
}

/// A containerd daemon of the test's own (config, root, state and socket in its directory), with
/// dormant as criu on its PATH (the shim and runc below it inherit it).
#[derive(Debug)]
pub struct Containerd {
    dir: PathBuf,
    daemon: Child,
    address: PathBuf,
}

impl Containerd {
    pub fn start(dir: &Path, shim: &CriuShim) -> Result<Self> {
        fs::create_dir_all(dir).map_err(io("creating containerd's directory", dir))?;
        let address = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        let text = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.snapshotter.v1.btrfs\", \
             \"io.containerd.snapshotter.v1.zfs\", \"io.containerd.snapshotter.v1.devmapper\", \
             \"io.containerd.snapshotter.v1.aufs\"]\n\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n\
             [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n",
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            sock = address.display()
        );
        fs::write(&config, text).map_err(io("writing", &config))?;
        let log_path = dir.join("containerd.log");
        let log = File::create(&log_path).map_err(io("creating", &log_path))?;
        let log2 = log.try_clone().map_err(io("dup", &log_path))?;
        let daemon = Command::new("containerd")
            .env("PATH", shim.path_env())
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(io("starting containerd", &config))?;
        let me = Self {
            dir: dir.to_path_buf(),
            daemon,
            address,
        };
        wait_for("containerd answering", WAIT, || {
            run(me.ctr().arg("version"), COMMAND_TIMEOUT)
                .ok()
                .filter(|o| o.status.success())
        })?;
        Ok(me)
    }

    pub fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(&self.address);
        c
    }

    pub fn import(&self, archive: &Path) -> Result<()> {
        run_ok(
            self.ctr()
                .args([
                    "image",
                    "import",
                    "--base-name",
                    "localhost/dormant-busybox",
                ])
                .arg(archive),
        )
        .map(drop)
    }

    /// `ctr run -d` of the image as container `id` running `script`, with OCI `annotations`.
    pub fn run(&self, id: &str, script: &str, annotations: &[(&str, &str)]) -> Result<()> {
        let mut c = self.ctr();
        c.args(["run", "-d"]);
        for (k, v) in annotations {
            c.arg("--annotation").arg(format!("{k}={v}"));
        }
        c.args([IMAGE, id, "/bin/sh", "-c", script]);
        run_ok(&mut c).map(drop)
    }

    /// The pid of container `id`'s task, if it runs.
    pub fn pid(&self, id: &str) -> Option<i32> {
        let out = run(self.ctr().args(["task", "ls"]), COMMAND_TIMEOUT).ok()?;
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id) && f.get(2) == Some(&"RUNNING"))
                .then(|| f.get(1)?.parse().ok())
                .flatten()
        })
    }

    /// Kills and removes container `id`'s task and the container.
    pub fn remove(&self, id: &str) {
        let _ = run(
            self.ctr().args(["task", "kill", "-s", "KILL", id]),
            COMMAND_TIMEOUT,
        );
        let _ = wait_for("the task to stop", Duration::from_secs(10), || {
            let out = run(self.ctr().args(["task", "ls"]), COMMAND_TIMEOUT).ok()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (!text
                .lines()
                .any(|l| l.split_whitespace().next() == Some(id) && l.contains("RUNNING")))
            .then_some(())
        });
        let _ = run(self.ctr().args(["task", "rm", "-f", id]), COMMAND_TIMEOUT);
        let _ = run(self.ctr().args(["container", "rm", id]), COMMAND_TIMEOUT);
    }

    /// The daemon's log (for failures).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Ok(out) = run(self.ctr().args(["task", "ls", "-q"]), COMMAND_TIMEOUT) {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                self.remove(id.trim());
            }
        }
        if let Ok(out) = run(self.ctr().args(["container", "ls", "-q"]), COMMAND_TIMEOUT) {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = run(
                    self.ctr().args(["container", "rm", id.trim()]),
                    COMMAND_TIMEOUT,
                );
            }
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.daemon.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.daemon.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        unmount_under(&self.dir);
    }
}
