//! ctr_agent's serve mode: kata-agent's side of dormant's ttrpc service.
//!
//! As kata-agent does: a multi-threaded tokio runtime, the service registered on a
//! `ttrpc::r#async::Server` bound to a unix socket, a SIGCHLD reaper that collects any child, stdio pipes
//! whose container ends go to the container and whose agent ends the agent holds (stdout and stderr
//! copied into the container log). [`Host`] is the agent's [`ContainerHost`]: its containers, the sandbox
//! side of a restored one (rootfs, shared files, cgroup, fresh stdio), and the restored container taken
//! over.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use dormant_agent_glue::{
    CheckpointReport, Container, ContainerHost, GlueError, KataPaths, RestoreTarget,
    RestoredContainer, Stdio,
};
use oci_spec::runtime::Spec;

use crate::{ctx, Failure, Result, CONTAINER_ID};

/// The sandbox the agent built: where things are in its mount namespace.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// The shared directory (`BASE/shared`, the stand-in for `/run/kata-containers/shared/containers`).
    pub shared: PathBuf,
    /// `shared/ctr0`: the container's rootfs and the files bound into it.
    pub cdir: PathBuf,
    /// The sandbox's shm.
    pub shm: PathBuf,
    /// Where the container's stdout and stderr are copied.
    pub log: PathBuf,
    /// The container's cgroup directory, if it has one.
    pub cgroup: Option<PathBuf>,
    /// A destination left out of the spec (a sandbox missing a mount key).
    pub omit: Option<String>,
}

impl Sandbox {
    /// The container's OCI spec in this sandbox, as kata-agent would hold it: the mounts the init makes,
    /// with their sources in the agent's namespace.
    pub fn spec(&self) -> Result<Spec> {
        let bind = |dest: &str, src: &Path| {
            serde_json::json!({
                "destination": dest, "type": "bind", "source": src, "options": ["rbind", "rslave"]
            })
        };
        let mut mounts = vec![
            serde_json::json!({"destination": "/proc", "type": "proc", "source": "proc"}),
            serde_json::json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs"}),
            bind("/dev/shm", &self.shm),
        ];
        for f in ["hosts", "resolv.conf", "hostname"] {
            mounts.push(bind(&format!("/etc/{f}"), &self.cdir.join(f)));
        }
        mounts.retain(|m| Some(m["destination"].as_str().unwrap_or("")) != self.omit.as_deref());
        let spec = serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": self.cdir.join("rootfs")},
            "hostname": crate::HOSTNAME,
            "mounts": mounts,
        });
        ctx(serde_json::from_value(spec), "the container spec")
    }

    pub fn paths(&self) -> KataPaths {
        KataPaths {
            shared: self.shared.clone(),
            checkpoints: self.shared.join("checkpoints"),
        }
    }

    fn container(&self, id: &str, init_pid: u32) -> Result<Container> {
        Ok(Container {
            id: id.to_string(),
            init_pid,
            spec: self.spec()?,
            bundle: self.cdir.clone(),
            rootfs: self.cdir.join("rootfs"),
            cgroups: self.cgroup.iter().cloned().collect(),
        })
    }
}

/// Copies everything read from `from` to the end of `log` until EOF (a pipe's agent end).
fn forward(from: OwnedFd, log: PathBuf) {
    std::thread::spawn(move || {
        let mut from = std::fs::File::from(from);
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .and_then(|mut f| f.write_all(&buf[..n]));
            if appended.is_err() {
                break;
            }
        }
    });
}

/// New stdio pipes for a container: its ends, and the agent's end of stdin (stdout and stderr are
/// forwarded to `log`).
pub fn stdio_pipes(log: &Path) -> Result<(Stdio, OwnedFd)> {
    let pipe = || ctx(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC), "pipe");
    let (in_r, in_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    forward(out_r, log.to_owned());
    forward(err_r, log.to_owned());
    Ok((
        Stdio {
            stdin: Some(in_r),
            stdout: Some(out_w),
            stderr: Some(err_w),
        },
        in_w,
    ))
}

/// A container the agent runs.
#[derive(Debug)]
struct Entry {
    container: Container,
    /// The agent's end of its stdin, held open.
    _stdin: Option<OwnedFd>,
    /// A restored one's pidfd.
    _pidfd: Option<OwnedFd>,
}

/// The agent's state, as the service sees it.
#[derive(Debug)]
pub struct Host {
    sandbox: Sandbox,
    containers: Mutex<HashMap<String, Entry>>,
    /// The agent's stdin end of a container being restored.
    pending_stdin: Mutex<Option<OwnedFd>>,
}

impl Host {
    pub fn new(sandbox: Sandbox) -> Self {
        Host {
            sandbox,
            containers: Mutex::new(HashMap::new()),
            pending_stdin: Mutex::new(None),
        }
    }

    /// Registers the container the agent started.
    pub fn add(&self, init_pid: u32, stdin: OwnedFd) -> Result<()> {
        let container = self.sandbox.container(CONTAINER_ID, init_pid)?;
        if let Ok(mut c) = self.containers.lock() {
            c.insert(
                CONTAINER_ID.to_string(),
                Entry {
                    container,
                    _stdin: Some(stdin),
                    _pidfd: None,
                },
            );
        }
        Ok(())
    }

    /// Kills every container's init (on shutdown).
    pub fn kill_all(&self) {
        if let Ok(c) = self.containers.lock() {
            for e in c.values() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(e.container.init_pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }

    fn io(id: &str, what: &'static str, path: &Path, e: impl std::fmt::Display) -> GlueError {
        GlueError::Io {
            id: id.to_string(),
            what,
            path: path.to_owned(),
            source: std::io::Error::other(e.to_string()),
        }
    }
}

#[async_trait]
impl ContainerHost for Host {
    async fn container(&self, id: &str) -> Option<Container> {
        let c = self.containers.lock().ok()?;
        c.get(id).map(|e| e.container.clone())
    }

    async fn prepare_restore(
        &self,
        id: &str,
        _spec: Option<Spec>,
    ) -> std::result::Result<RestoreTarget, GlueError> {
        if self.containers.lock().map_or(true, |c| c.contains_key(id)) {
            return Err(GlueError::InvalidRequest {
                id: id.to_string(),
                reason: "a container of this id runs in the sandbox".into(),
            });
        }
        let spec = self
            .sandbox
            .spec()
            .map_err(|Failure(e)| Self::io(id, "the spec of", &self.sandbox.cdir, e))?;
        let (stdio, stdin) = stdio_pipes(&self.sandbox.log)
            .map_err(|Failure(e)| Self::io(id, "stdio for", &self.sandbox.log, e))?;
        if let Ok(mut p) = self.pending_stdin.lock() {
            *p = Some(stdin);
        }
        Ok(RestoreTarget {
            spec,
            rootfs: self.sandbox.cdir.join("rootfs"),
            cgroups: self.sandbox.cgroup.iter().cloned().collect(),
            stdio,
        })
    }

    async fn restored(&self, restored: RestoredContainer) {
        let stdin = self.pending_stdin.lock().ok().and_then(|mut p| p.take());
        match self.sandbox.container(&restored.id, restored.init_pid) {
            Ok(container) => {
                if let Ok(mut c) = self.containers.lock() {
                    c.insert(
                        restored.id.clone(),
                        Entry {
                            container,
                            _stdin: stdin,
                            _pidfd: Some(restored.pidfd),
                        },
                    );
                }
            }
            Err(Failure(e)) => eprintln!("ctr_agent: restored {}: {e}", restored.id),
        }
    }

    async fn checkpointed(&self, id: &str, report: &CheckpointReport) {
        if !report.left_running {
            if let Ok(mut c) = self.containers.lock() {
                c.remove(id);
            }
        }
    }
}

/// Collects every child as it ends, as kata-agent's SIGCHLD handler does.
async fn reap(mut sig: tokio::signal::unix::Signal) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    loop {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(st) => eprintln!("ctr_agent: reaped {st:?}"),
            }
        }
        if sig.recv().await.is_none() {
            return;
        }
    }
}

/// Serves dormant's service on `socket` until stdin reaches EOF, then kills the containers.
pub fn serve(socket: &Path, host: Host, init: u32) -> Result<()> {
    let paths = host.sandbox.paths();
    let rt = ctx(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
        "tokio runtime",
    )?;
    let host = Arc::new(host);
    rt.block_on(async {
        // The handler is installed before the agent announces itself.
        let sigchld = ctx(
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()),
            "SIGCHLD stream",
        )?;
        let reaper = tokio::spawn(reap(sigchld));
        let service = dormant_agent_glue::create_service(host.clone(), paths);
        let mut server = ctx(
            ttrpc::r#async::Server::new().bind(&format!("unix://{}", socket.display())),
            "bind the ttrpc socket",
        )?
        .register_service(service);
        ctx(server.start().await, "start the ttrpc server")?;
        println!("AGENT {} INIT {init}", std::process::id());
        ctx(std::io::stdout().flush(), "flush stdout")?;
        let _ = tokio::task::spawn_blocking(|| {
            let mut buf = [0u8; 64];
            while matches!(std::io::stdin().read(&mut buf), Ok(n) if n > 0) {}
        })
        .await;
        let _ = server.shutdown().await;
        host.kill_all();
        // Let the reaper collect the killed inits.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        reaper.abort();
        Ok(())
    })
}
