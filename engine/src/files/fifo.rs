//! FIFOs (named pipes) opened by path: the path and identity of the FIFO, its size, and the buffered bytes
//! (copied with the pipe module's `tee`, so nothing is consumed). Restore reopens the path; the bytes are
//! carried once per FIFO, on the first end met.

use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;

use dormant_image::records::DescKind;

use super::pipe;

/// Identity of a FIFO: (dev, ino).
pub type FifoKey = (u64, u64);

/// The FIFO behind `/proc/<pid>/fd/<fd>`, if it is one (a path target whose inode is `S_IFIFO`).
pub fn identify(pid: u32, fd: i32) -> Option<FifoKey> {
    let md = std::fs::metadata(format!("/proc/{pid}/fd/{fd}")).ok()?;
    (md.mode() & libc::S_IFMT == libc::S_IFIFO).then(|| (md.dev(), md.ino()))
}

/// One open of the FIFO `key` at `path`. `with_data`: the first end of this FIFO met, which carries its
/// bytes.
pub fn dump(
    pid: u32,
    fd: i32,
    path: &str,
    key: FifoKey,
    dup: &OwnedFd,
    with_data: bool,
) -> Result<DescKind, String> {
    let DescKind::PipeEnd { size, data, .. } = pipe::dump(pid, fd, key.1, 0, dup, with_data)?
    else {
        return Err("pipe state of the FIFO not readable".into());
    };
    Ok(DescKind::Fifo {
        path: path.to_string(),
        dev: key.0,
        ino: key.1,
        size,
        data,
    })
}
