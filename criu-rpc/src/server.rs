//! The request loop: one request per datagram, answered with one reply of the same type (after any
//! notifications), then the server exits unless the client asked to keep the connection open, as CRIU's
//! `swrk` does. A failed request answers `success: false` with `cr_errno` and dormant's message in
//! `cr_errmsg`, logs it as an `Error` line, and makes the process exit non-zero.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::RpcError;
use crate::opts::{Common, ImagesDir};
use crate::peer::{self_fd_path, Peer};
use crate::proto::{CriuOpts, CriuReq, CriuResp, Features, Notify, ReqType, Version};
use crate::transport::Conn;

/// The CRIU release whose RPC behaviour dormant matches (VERSION answers it; runc, podman and containerd
/// check the number against their minimums, the highest being 31600).
pub const CRIU_MAJOR: i32 = 4;
pub const CRIU_MINOR: i32 = 2;

/// The directory, inside the client's image directory, that holds dormant's image. The client keeps its
/// own files next to it (runc's `descriptors.json`), and dormant's image is committed atomically by
/// renaming a finished directory into place.
pub const IMAGE_DIR: &str = "dormant-image";

/// CRIU's inventory file, whose presence tools take as "a complete checkpoint is here".
pub const CRIU_INVENTORY: &str = "inventory.img";

/// Serves the client on inherited socket `fd` until it is done. Returns the process exit status: 0 when
/// every request succeeded (or the client just closed the connection), 1 otherwise.
pub fn serve(fd: i32) -> i32 {
    crate::log::install();
    let conn = match Conn::from_inherited(fd) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            log::error!("{}", e.chain());
            crate::log::configure(None, log::LevelFilter::Error, true);
            return 1;
        }
    };
    loop {
        let req = match conn.recv() {
            Ok(Some(r)) => r,
            Ok(None) => return 0,
            Err(e) => {
                log::error!("{}", e.chain());
                return 1;
            }
        };
        let t = ReqType::try_from(req.r#type).unwrap_or(ReqType::Empty);
        let resp = match handle(&conn, t, &req) {
            Ok(r) => r,
            Err(e) => {
                let msg = e.chain();
                log::error!("{} failed: {msg}", t.name());
                // Clients print where the log is, not cr_errmsg (runc 1.1); at RESTORE our stderr is the
                // one runc was started with, so the reason reaches its user directly too.
                let _ = writeln!(
                    std::io::stderr(),
                    "Error (dormant): {} failed: {msg}",
                    t.name()
                );
                CriuResp::failed(t, e.errno(), msg)
            }
        };
        let ok = resp.success;
        log::logger().flush();
        if let Err(e) = conn.send(&resp) {
            log::error!("sending the {} reply: {}", t.name(), e.chain());
            return 1;
        }
        if !ok {
            return 1;
        }
        if !req.keep_open.unwrap_or(false) {
            return 0;
        }
    }
}

fn handle(conn: &Arc<Conn>, t: ReqType, req: &CriuReq) -> Result<CriuResp, RpcError> {
    match t {
        ReqType::Version => Ok(CriuResp {
            version: Some(version()),
            ..CriuResp::ok(t)
        }),
        ReqType::FeatureCheck => Ok(CriuResp {
            features: Some(features(req.features.unwrap_or_default())),
            ..CriuResp::ok(t)
        }),
        ReqType::Check => check().map(|()| CriuResp::ok(t)),
        ReqType::Dump => crate::dump::serve(conn, opts(req)?),
        ReqType::Restore => crate::restore::serve(conn, opts(req)?),
        ReqType::PreDump | ReqType::SinglePreDump => Err(RpcError::Unsupported(
            "pre-dumps are not implemented in dormant yet (a DUMP alone checkpoints the tree)"
                .into(),
        )),
        other => Err(RpcError::Unsupported(format!(
            "request {} is not served by dormant",
            other.name()
        ))),
    }
}

fn opts(req: &CriuReq) -> Result<&CriuOpts, RpcError> {
    req.opts
        .as_ref()
        .ok_or_else(|| RpcError::Protocol("the request has no options".into()))
}

/// VERSION's answer: CRIU's release number (no gitid: clients then use it as is) and dormant's name.
pub fn version() -> Version {
    Version {
        major_number: CRIU_MAJOR,
        minor_number: CRIU_MINOR,
        name: Some(format!("dormant {}", env!("CARGO_PKG_VERSION"))),
        ..Default::default()
    }
}

/// FEATURE_CHECK's answer: each feature asked about, and whether dormant has it (none of these yet).
fn features(asked: Features) -> Features {
    let no = |f: Option<bool>| f.map(|_| false);
    Features {
        mem_track: no(asked.mem_track),
        lazy_pages: no(asked.lazy_pages),
        pidfd_store: no(asked.pidfd_store),
    }
}

/// CHECK: every kernel feature dormant needs is there.
fn check() -> Result<(), RpcError> {
    let probes = dormant_engine::kerndat::probe_all();
    let missing: Vec<String> = probes
        .iter()
        .filter(|p| p.required && !p.status.is_available())
        .map(|p| format!("{:?} ({})", p.feature, p.kernel_option))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(RpcError::Unsupported(format!(
            "kernel features dormant needs are missing: {}",
            missing.join(", ")
        )))
    }
}

/// Sends CRIU's notify callbacks ("action scripts") to the client, when the request asked for them.
#[derive(Debug, Clone)]
pub struct Notifier {
    conn: Arc<Conn>,
    enabled: bool,
}

impl Notifier {
    pub fn new(conn: &Arc<Conn>, enabled: bool) -> Self {
        Notifier {
            conn: conn.clone(),
            enabled,
        }
    }

    /// Sends `script` (with `pid` for the scripts that carry one) and waits for the client's answer.
    pub fn notify(&self, script: &str, pid: Option<u32>) -> Result<(), RpcError> {
        self.notify_with_fd(script, pid, None)
    }

    /// [`Self::notify`] with an fd attached (orphan-pts-master).
    pub fn notify_with_fd(
        &self,
        script: &str,
        pid: Option<u32>,
        fd: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> Result<(), RpcError> {
        if !self.enabled {
            return Ok(());
        }
        log::debug!("notify {script} (pid {pid:?})");
        let msg = CriuResp {
            notify: Some(Notify {
                script: Some(script.to_string()),
                pid: pid.and_then(|p| i32::try_from(p).ok()),
            }),
            ..CriuResp::ok(ReqType::Notify)
        };
        self.conn.send_with_fd(&msg, fd)?;
        let answer = self.conn.recv()?.ok_or_else(|| {
            RpcError::Protocol(format!(
                "the client closed the connection during {script:?}"
            ))
        })?;
        if answer.r#type() != ReqType::Notify {
            return Err(RpcError::Protocol(format!(
                "answer to {script:?} is a {} request",
                answer.r#type().name()
            )));
        }
        if !answer.notify_success.unwrap_or(false) {
            return Err(RpcError::NotifyFailed {
                script: script.to_string(),
            });
        }
        Ok(())
    }
}

/// The directories of a DUMP or RESTORE, opened from the client's fds before anything else (a restore
/// leaves our mount namespace), and the log configured in the work directory.
#[derive(Debug)]
pub struct Dirs {
    images: File,
    work: Option<File>,
    /// The client's status fd, written once the request succeeded.
    status: Option<File>,
}

impl Dirs {
    /// Opens the images and work directories and points the log at the work directory's `log_file`.
    pub fn open(conn: &Conn, c: &Common) -> Result<Dirs, RpcError> {
        let peer = Peer {
            pid: conn.peer_pid(),
        };
        let images = match &c.images_dir {
            ImagesDir::ClientFd(fd) => peer.open_dir(*fd, "images_dir_fd")?,
            ImagesDir::Path(p) => File::open(p).map_err(|source| RpcError::File {
                what: "opening images_dir",
                path: p.clone(),
                source,
            })?,
        };
        let work = match c.work_dir_fd {
            Some(fd) => Some(peer.open_dir(fd, "work_dir_fd")?),
            None => None,
        };
        let log_file = match &c.log.file {
            Some(name) => {
                let dir = self_fd_path(work.as_ref().unwrap_or(&images));
                let path = dir.join(name);
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|source| RpcError::File {
                        what: "opening log_file",
                        path,
                        source,
                    })?;
                Some(f)
            }
            None => None,
        };
        crate::log::configure(log_file, c.log.level, c.log.to_stderr);
        log::info!(
            "dormant {} serving CRIU {CRIU_MAJOR}.{CRIU_MINOR} RPC for pid {}",
            env!("CARGO_PKG_VERSION"),
            peer.pid
        );
        let status = match c.status_fd {
            Some(fd) => Some(peer.open_write(fd, "status_fd")?),
            None => None,
        };
        Ok(Dirs {
            images,
            work,
            status,
        })
    }

    /// Where dormant's image is in the images directory (a path through our fd of it).
    pub fn image_path(&self) -> PathBuf {
        self_fd_path(&self.images).join(IMAGE_DIR)
    }

    /// The work directory (the images directory when none was given).
    pub fn work(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.work.as_ref().unwrap_or(&self.images).as_fd()
    }

    /// The images directory (a path through our fd of it, valid while `self` lives).
    pub fn images_path(&self) -> PathBuf {
        self_fd_path(&self.images)
    }

    /// Tells the client's status fd that the request is done (one zero byte, as CRIU writes).
    pub fn status_ready(&mut self) -> Result<(), RpcError> {
        if let Some(mut f) = self.status.take() {
            f.write_all(&[0]).map_err(|source| RpcError::File {
                what: "writing status_fd",
                path: PathBuf::from("status_fd"),
                source,
            })?;
        }
        Ok(())
    }
}

/// Marks the committed image in images directory `dir` the way tools look for a finished CRIU checkpoint:
/// podman refuses to restore unless `inventory.img` exists there. It is a symlink to dormant's own
/// inventory (replacing one a previous checkpoint left).
pub fn mark_complete(dir: &std::path::Path) -> Result<(), RpcError> {
    let target = PathBuf::from(IMAGE_DIR).join(dormant_image::INVENTORY_FILE);
    let tmp = dir.join(".inventory.img.dormant");
    let _ = std::fs::remove_file(&tmp);
    let err = |source| RpcError::File {
        what: "linking CRIU's inventory name to dormant's",
        path: dir.join(CRIU_INVENTORY),
        source,
    };
    std::os::unix::fs::symlink(&target, &tmp).map_err(err)?;
    std::fs::rename(&tmp, dir.join(CRIU_INVENTORY)).map_err(err)
}

/// Reads CRIU's configuration file named in the request (missing: nothing to apply).
pub fn read_config_file(o: &CriuOpts) -> Result<crate::opts::ConfigFile, RpcError> {
    let Some(path) = o.config_file.as_deref().filter(|p| !p.is_empty()) else {
        return Ok(Default::default());
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(RpcError::File {
                what: "reading config_file",
                path: path.into(),
                source,
            })
        }
    };
    crate::opts::parse_config_file(path, text.as_deref())
}
