//! The helper process: checkpoints and restores run in a process started by re-executing the caller's
//! own binary with a hidden first argument, as rustjail starts a container's init with `init`.
//!
//! Why: kata-agent is a multi-threaded tokio process. A dump seizes and injects, a restore changes its
//! namespaces, cgroups and root and forks the restored tree; none of that may touch the agent, and forking
//! a multi-threaded process and then allocating is not safe. `std::process::Command` execs right after its
//! fork, so the helper starts single-threaded, with the agent's namespaces and credentials, and whatever it
//! changes dies with it.
//!
//! This module is the caller's side and the wire between the two; the helper's side is `helper_process.rs`.
//! The agent's binary calls [`run_if_helper`](crate::run_if_helper) first thing in `main` (before its runtime starts). The request
//! arrives as JSON on fd [`REQUEST_FD`], the answer (with the helper's log records, which the caller logs
//! again through `log`) leaves on fd [`ANSWER_FD`]; a restore's stdio arrives on fds 5-7. The caller never
//! relies on `waitpid` of the helper: kata-agent's SIGCHLD reaper may collect it first. A restored init is
//! forked with `CLONE_PARENT`, so it is the caller's child, not the helper's.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio as ProcStdio};

use serde::{Deserialize, Serialize};

use crate::container::{CheckpointOptions, CheckpointReport, Container, KataPaths};
use crate::error::{FailureKind, GlueError, Operation};

/// The hidden first argument that makes the caller's binary a helper.
pub const HELPER_ARG: &str = "__dormant_agent_glue_helper";
/// Where the helper reads its request.
pub const REQUEST_FD: RawFd = 3;
/// Where the helper writes its answer.
pub const ANSWER_FD: RawFd = 4;
/// The restore's stdin; stdout and stderr follow.
pub const STDIO_FD: RawFd = 5;
/// Descriptors handed to the helper are first moved at or above this, clear of 3-7.
const HANDOVER_MIN_FD: RawFd = 10;
/// The helper's log level, from the environment (`error` .. `trace`); `info` by default.
pub const LOG_ENV: &str = "DORMANT_AGENT_LOG";

/// A restore as the helper gets it (the stdio descriptors travel beside it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RestoreWire {
    pub id: String,
    pub image_dir: PathBuf,
    pub spec: oci_spec::runtime::Spec,
    pub rootfs: PathBuf,
    pub cgroups: Vec<PathBuf>,
    /// Which of stdin, stdout, stderr were handed in (at `STDIO_FD + n`).
    pub stdio: [bool; 3],
    pub paused: bool,
    pub tcp_established: bool,
    pub paths: KataPaths,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Request {
    Checkpoint {
        container: Container,
        options: CheckpointOptions,
        paths: KataPaths,
    },
    Restore(RestoreWire),
    Features,
}

/// One probe of `dormant check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureProbe {
    pub name: String,
    pub available: bool,
    pub required: bool,
    pub detail: String,
    pub needed_for: String,
    pub kernel_option: String,
}

/// A failure inside the helper, as it crosses back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl std::fmt::Display) -> Self {
        Failure {
            kind,
            message: message.to_string(),
        }
    }
}

impl From<GlueError> for Failure {
    fn from(e: GlueError) -> Self {
        Failure::new(e.kind(), e)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Answer {
    Checkpointed(CheckpointReport),
    Restored { init_pid: u32 },
    Features(Vec<FeatureProbe>),
    Failed(Failure),
}

/// One log record of the helper, sent back with the answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LogLine {
    pub level: usize,
    pub target: String,
    pub message: String,
}

/// What the helper writes on [`ANSWER_FD`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Response {
    pub answer: Answer,
    pub log: Vec<LogLine>,
}

/// A copy of `fd` at `HANDOVER_MIN_FD` or above, close-on-exec.
fn lift(fd: &OwnedFd) -> std::io::Result<OwnedFd> {
    let n = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(HANDOVER_MIN_FD))?;
    // SAFETY: F_DUPFD_CLOEXEC just returned this new descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// Runs `request` in a helper process (this binary re-executed with [`HELPER_ARG`]), handing it `stdio`
/// at fds 5-7; returns its answer once it has exited (or closed its answer descriptor).
pub(crate) fn run(
    id: &str,
    op: Operation,
    request: &Request,
    stdio: [Option<OwnedFd>; 3],
) -> Result<Answer, GlueError> {
    let io_err = |what: &'static str| {
        let id = id.to_string();
        move |source: std::io::Error| GlueError::Helper {
            id: id.clone(),
            op,
            what,
            source,
        }
    };
    let (req_r, req_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| io_err("pipe")(e.into()))?;
    let (ans_r, ans_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| io_err("pipe")(e.into()))?;
    // The child's descriptors, clear of the numbers they are moved to (3..=7).
    let mut moves: Vec<(OwnedFd, RawFd)> = vec![
        (lift(&req_r).map_err(io_err("dup"))?, REQUEST_FD),
        (lift(&ans_w).map_err(io_err("dup"))?, ANSWER_FD),
    ];
    drop((req_r, ans_w));
    for (n, fd) in stdio.iter().enumerate() {
        if let Some(fd) = fd {
            moves.push((lift(fd).map_err(io_err("dup"))?, STDIO_FD + n as RawFd));
        }
    }
    drop(stdio);
    let pairs: Vec<(RawFd, RawFd)> = moves.iter().map(|(f, to)| (f.as_raw_fd(), *to)).collect();
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg(HELPER_ARG)
        .stdin(ProcStdio::null())
        .stdout(ProcStdio::null())
        .stderr(ProcStdio::inherit());
    // SAFETY: the closure runs between fork and exec and only calls dup2, which is async-signal-safe;
    // every source descriptor is at HANDOVER_MIN_FD or above, so no target overwrites a later source.
    unsafe {
        cmd.pre_exec(move || {
            for &(from, to) in &pairs {
                if libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(io_err("starting /proc/self/exe"))?;
    drop(moves);
    let pid = child.id();
    log::debug!("container {id}: {op} helper process {pid} started");
    let written = serde_json::to_vec(request)
        .map_err(std::io::Error::other)
        .and_then(|bytes| File::from(req_w).write_all(&bytes));
    let mut text = Vec::new();
    let read = File::from(ans_r).read_to_end(&mut text);
    // kata-agent's SIGCHLD reaper may have collected it already (ECHILD): its answer is what counts.
    let status = match child.wait() {
        Ok(s) => s.to_string(),
        Err(e) => format!("not waited for: {e}"),
    };
    written.map_err(io_err("sending the request"))?;
    read.map_err(io_err("reading the answer"))?;
    let response: Response = serde_json::from_slice(&text).map_err(|_| GlueError::HelperDied {
        id: id.to_string(),
        op,
        status: status.clone(),
    })?;
    for l in response.log {
        let level = match l.level {
            1 => log::Level::Error,
            2 => log::Level::Warn,
            3 => log::Level::Info,
            4 => log::Level::Debug,
            _ => log::Level::Trace,
        };
        log::log!(target: "dormant_agent_glue::helper", level, "[{pid} {}] {}", l.target, l.message);
    }
    log::debug!("container {id}: {op} helper process {pid}: {status}");
    Ok(response.answer)
}
