//! What a DUMP or RESTORE request works with besides its options: the client's directories ([`Dirs`]),
//! its notify callbacks ([`Notifier`]), CRIU's configuration file, and the mark of a complete checkpoint.
//! Apart from the request loop (`server.rs`), which dispatches to `dump.rs` and `restore.rs`, so that
//! those two need not import the loop that calls them.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::RpcError;
use crate::opts::{Common, ImagesDir};
use crate::peer::{self_fd_path, Peer};
use crate::proto::{CriuOpts, CriuResp, Notify, ReqType};
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
