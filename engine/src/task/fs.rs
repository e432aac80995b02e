//! The file-system context of a process: working directory, root directory (as paths the dumper's mount
//! namespace resolves) and umask.

use crate::error::Result;
use crate::proc;
use crate::proc::status::ProcStatus;

/// Where a process works and what it sees as `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsContext {
    pub cwd: String,
    pub root: String,
    pub umask: u32,
}

/// Reads the context of `pid`; `status` gives the umask.
pub fn read(pid: u32, status: &ProcStatus) -> Result<FsContext> {
    Ok(FsContext {
        cwd: proc::read_link(pid, "cwd")?,
        root: proc::read_link(pid, "root")?,
        umask: status.umask,
    })
}
