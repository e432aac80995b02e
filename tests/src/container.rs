//! The test side of the container tests: starts `ctr_agent` (a stand-in for kata-agent that builds a
//! container with plain syscalls, see `src/bin/ctr_agent.rs`), finds the container's processes, and runs
//! commands such as `dormant` inside the agent's mount namespace, where the container's external masters
//! live.
//!
//! Dropping a [`Container`] closes the agent's stdin: the agent kills the container (if it is still the
//! agent's child) and exits, and its mount namespace goes with it.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::harness::{
    io_err, isolate, read_lossy, require_root, wait_until, HarnessError, Result, Scratch,
    READY_TIMEOUT,
};

/// A running agent and its container.
#[derive(Debug)]
pub struct Container {
    agent: Child,
    stdin: Option<ChildStdin>,
    agent_pid: i32,
    init_pid: i32,
    scratch: Scratch,
    /// The read end of the container's stdout pipe (non-blocking), when started with one.
    stdout: Option<std::fs::File>,
    /// What was read from `stdout` so far.
    stdout_seen: std::cell::RefCell<String>,
    /// The stand-in agent's ttrpc socket (serve mode).
    socket: Option<PathBuf>,
}

/// How to start `ctr_agent` as the stand-in for kata-agent serving dormant's ttrpc service.
#[derive(Debug, Clone, Default)]
pub struct KataOptions {
    /// The container's freezer: `"v1"` (freezer hierarchy) or `"v2"` (cgroup2); `None`: no cgroup.
    pub cgroup: Option<&'static str>,
    /// Build the sandbox only (a new VM waiting for a restore).
    pub sandbox_only: bool,
    /// A mount destination left out of the sandbox's container spec.
    pub omit: Option<&'static str>,
}

impl Container {
    /// Builds the Kata-like layout and starts the container; returns when the workload inside announced
    /// `READY`.
    pub fn start(agent_bin: &Path, workload_bin: &Path, workload_args: &[&str]) -> Result<Self> {
        Self::start_inner(agent_bin, workload_bin, workload_args, false, None)
    }

    /// Starts `ctr_agent` as the stand-in for kata-agent (serve mode, see its docs): the container's stdio
    /// are pipes the agent holds (their output lands in [`Container::log_path`]), and dormant's service
    /// listens on [`Container::socket`]. Returns when the workload announced `READY` (at once with
    /// `sandbox_only`).
    pub fn start_kata(agent_bin: &Path, workload_bin: &Path, opts: &KataOptions) -> Result<Self> {
        Self::start_inner(agent_bin, workload_bin, &[], false, Some(opts))
    }

    /// The stand-in agent's ttrpc socket.
    pub fn socket(&self) -> Option<&Path> {
        self.socket.as_deref()
    }

    /// [`Container::start`], the container's stdout being a pipe whose read end only the test holds (as
    /// kata-agent hands a container stdio pipes); `READY` and the verdict arrive there
    /// ([`Container::read_stdout_until`]).
    pub fn start_with_stdout_pipe(
        agent_bin: &Path,
        workload_bin: &Path,
        workload_args: &[&str],
    ) -> Result<Self> {
        Self::start_inner(agent_bin, workload_bin, workload_args, true, None)
    }

    fn start_inner(
        agent_bin: &Path,
        workload_bin: &Path,
        workload_args: &[&str],
        stdout_pipe: bool,
        kata: Option<&KataOptions>,
    ) -> Result<Self> {
        require_root()?;
        let scratch = Scratch::new("container")?;
        let base = scratch.path().join("agent");
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&base)
            .map_err(io_err("creating the agent directory", &base))?;
        let mut cmd = Command::new(agent_bin);
        cmd.arg(&base)
            .arg(workload_bin)
            .args(workload_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        isolate(&mut cmd, true);
        let socket = kata.map(|_| scratch.path().join("agent.sock"));
        if let (Some(k), Some(sock)) = (kata, &socket) {
            cmd.env("CTR_AGENT_SOCKET", sock);
            if let Some(v) = k.cgroup {
                cmd.env("CTR_AGENT_CGROUP", v);
            }
            if k.sandbox_only {
                cmd.env("CTR_AGENT_SANDBOX_ONLY", "1");
            }
            if let Some(d) = k.omit {
                cmd.env("CTR_AGENT_OMIT", d);
            }
        }
        let pipe = if stdout_pipe {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|source| {
                HarnessError::Sys {
                    what: "pipe for the container's stdout".into(),
                    source,
                }
            })?;
            crate::harness::pass_as_fd3(&mut cmd, w.as_raw_fd());
            cmd.env("CTR_AGENT_STDOUT_FD", "3");
            Some((r, w))
        } else {
            None
        };
        let mut agent = cmd
            .spawn()
            .map_err(io_err("starting the container agent", agent_bin))?;
        // Only the container keeps the write end.
        let pipe_read = pipe.map(|(r, w)| {
            drop(w);
            let f = std::fs::File::from(r);
            set_nonblocking(&f);
            f
        });
        let stdin = agent.stdin.take();
        let Some(stdout) = agent.stdout.take() else {
            return Err(HarnessError::Sys {
                what: "agent stdout".into(),
                source: nix::errno::Errno::EBADF,
            });
        };
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(io_err("reading the agent's first line", agent_bin))?;
        let parsed: Vec<&str> = line.split_whitespace().collect();
        let (agent_pid, init_pid) = match parsed.as_slice() {
            ["AGENT", a, "INIT", i] => (a.parse().ok(), i.parse().ok()),
            _ => (None, None),
        };
        let (Some(agent_pid), Some(init_pid)) = (agent_pid, init_pid) else {
            let _ = agent.kill();
            let _ = agent.wait();
            return Err(HarnessError::Verdict {
                workload: "ctr_agent".into(),
                pid: agent.id() as i32,
                detail: format!("unexpected first line {line:?}"),
                logs: read_lossy(&scratch.path().join("container.log")),
            });
        };
        let c = Self {
            agent,
            stdin,
            agent_pid,
            init_pid,
            scratch,
            stdout: pipe_read,
            stdout_seen: Default::default(),
            socket,
        };
        if kata.is_some_and(|k| k.sandbox_only) {
            return Ok(c);
        }
        if c.stdout.is_some() {
            c.read_stdout_until("READY ", READY_TIMEOUT)?;
            return Ok(c);
        }
        let log = c.log_path();
        if !wait_until(READY_TIMEOUT, || {
            let text = read_lossy(&log);
            text.lines().any(|l| l.starts_with("READY ")) || text.contains("exited")
        }) || !read_lossy(&log).lines().any(|l| l.starts_with("READY "))
        {
            return Err(HarnessError::Timeout {
                what: "READY from the container workload".into(),
                after: READY_TIMEOUT,
                logs: c.log_text(),
            });
        }
        Ok(c)
    }

    /// The read end of the container's stdout pipe, when started with one.
    pub fn stdout_pipe(&self) -> Option<&std::fs::File> {
        self.stdout.as_ref()
    }

    /// Reads the container's stdout pipe until what was read holds `needle`; returns all of it.
    pub fn read_stdout_until(&self, needle: &str, timeout: std::time::Duration) -> Result<String> {
        let Some(f) = &self.stdout else {
            return Err(HarnessError::Verdict {
                workload: "ctr_agent".into(),
                pid: self.agent_pid,
                detail: "the container was started without a stdout pipe".into(),
                logs: self.log_text(),
            });
        };
        read_until(f, &self.stdout_seen, needle, timeout).map_err(|seen| HarnessError::Timeout {
            what: format!("{needle:?} on the container's stdout pipe"),
            after: timeout,
            logs: format!("stdout pipe: {seen}\nlog: {}", self.log_text()),
        })
    }

    /// The agent (its mount namespace is the "outside" of the container).
    pub fn agent_pid(&self) -> i32 {
        self.agent_pid
    }

    /// The container's init (the busybox shell), as seen from outside.
    pub fn init_pid(&self) -> i32 {
        self.init_pid
    }

    /// The workload process, the shell's only child, as seen from outside.
    pub fn workload_pid(&self) -> Option<i32> {
        let pid = self.init_pid;
        fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// The agent-side directory that holds the shared dir and the sandbox's /dev/shm.
    pub fn base(&self) -> PathBuf {
        self.scratch.path().join("agent")
    }

    /// The container's root filesystem in the agent's namespace (`BASE/shared/ctr0/rootfs`, which the
    /// container's root mount is a bind of): what `dormant dump --root` names.
    pub fn rootfs(&self) -> PathBuf {
        self.base().join("shared/ctr0/rootfs")
    }

    /// The sandbox's /dev/shm in the agent's namespace: the outside master of the container's /dev/shm.
    pub fn sandbox_shm(&self) -> PathBuf {
        self.base().join("sandbox/shm")
    }

    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.scratch.path().join("container.log")
    }

    pub fn log_text(&self) -> String {
        read_lossy(&self.log_path())
    }

    /// A command that runs `program` in the agent's mount namespace.
    pub fn in_agent_ns(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--mount=/proc/{}/ns/mnt", self.agent_pid))
            .arg("--")
            .arg(program);
        isolate(&mut cmd, false);
        cmd
    }

    /// The mountinfo of `pid` (read from outside: it shows the task's own mount namespace).
    pub fn mountinfo(pid: i32) -> Result<String> {
        let path = PathBuf::from(format!("/proc/{pid}/mountinfo"));
        fs::read_to_string(&path).map_err(io_err("reading mountinfo", &path))
    }

    /// Tells the workload to verify itself: creates /tmp/trigger inside the container.
    pub fn trigger(&self) -> Result<()> {
        let path = PathBuf::from(format!("/proc/{}/root/tmp/trigger", self.init_pid));
        fs::write(&path, b"").map_err(io_err("creating the trigger", &path))
    }

    /// Waits until the container's shell reported the workload's exit; returns the whole log.
    pub fn wait_verdict(&self) -> Result<String> {
        let log = self.log_path();
        if !wait_until(crate::harness::FINISH_TIMEOUT, || {
            read_lossy(&log).contains("sh: workload exited")
        }) {
            return Err(HarnessError::Timeout {
                what: "the container workload's verdict".into(),
                after: crate::harness::FINISH_TIMEOUT,
                logs: self.log_text(),
            });
        }
        Ok(self.log_text())
    }
}

/// Makes `f` non-blocking (a pipe read end polled by [`read_until`]).
pub fn set_nonblocking(f: &std::fs::File) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if let Ok(fl) = fcntl(f, FcntlArg::F_GETFL) {
        let _ = fcntl(
            f,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(fl) | OFlag::O_NONBLOCK),
        );
    }
}

/// Reads the non-blocking `f` into `seen` until `seen` holds `needle` (Ok, all of it) or `timeout` passes
/// (Err, what was seen).
pub fn read_until(
    mut f: &std::fs::File,
    seen: &std::cell::RefCell<String>,
    needle: &str,
    timeout: std::time::Duration,
) -> std::result::Result<String, String> {
    use std::io::Read;
    let mut buf = [0u8; 4096];
    let found = wait_until(timeout, || {
        loop {
            match f.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen
                    .borrow_mut()
                    .push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        seen.borrow().contains(needle)
    });
    let text = seen.borrow().clone();
    if found {
        Ok(text)
    } else {
        Err(text)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.agent.wait();
    }
}
