//! The file-system context of a process: working directory, root directory (as paths the dumper's mount
//! namespace resolves) and umask, and what a removed working or root directory looked like (its mode and
//! owner, read through the `/proc/PID/cwd` link, which still reaches it).

use std::os::unix::fs::MetadataExt;

use dormant_image::records::fs::DELETED_SUFFIX;
use dormant_image::records::RemovedDir;

use crate::error::{DumpError, Result};
use crate::proc;
use crate::proc::status::ProcStatus;

/// Where a process works and what it sees as `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsContext {
    pub cwd: String,
    pub root: String,
    pub umask: u32,
    /// The working directory's attributes when it was removed.
    pub cwd_removed: Option<RemovedDir>,
    /// The root directory's attributes when it was removed.
    pub root_removed: Option<RemovedDir>,
}

/// Reads the context of `pid`; `status` gives the umask.
pub fn read(pid: u32, status: &ProcStatus) -> Result<FsContext> {
    let cwd = proc::read_link(pid, "cwd")?;
    let root = proc::read_link(pid, "root")?;
    Ok(FsContext {
        cwd_removed: removed(pid, "cwd", &cwd)?,
        root_removed: removed(pid, "root", &root)?,
        cwd,
        root,
        umask: status.umask,
    })
}

/// The attributes of the directory `/proc/<pid>/<link>` (whose target reads `path`) if it was removed.
fn removed(pid: u32, link: &'static str, path: &str) -> Result<Option<RemovedDir>> {
    if !path.ends_with(DELETED_SUFFIX) {
        return Ok(None);
    }
    let at = format!("/proc/{pid}/{link}");
    let meta = std::fs::metadata(&at).map_err(|source| DumpError::ProcRead {
        pid,
        path: at.clone().into(),
        source,
    })?;
    Ok(Some(RemovedDir {
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
    }))
}
