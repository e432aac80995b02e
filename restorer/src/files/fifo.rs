//! Reopening a FIFO (named pipe) by path without blocking, and refilling its buffered bytes.
//!
//! Opening a FIFO read-only blocks until a writer exists, and write-only until a reader exists (or fails
//! with `ENXIO` under `O_NONBLOCK`). An `O_RDWR` open never waits on Linux, because it is both; holding one
//! while the real open is made through `/proc/self/fd` (the same inode, with the dumped access mode) means
//! a partner always exists. The bytes are written through that helper, which is then closed: the restored
//! end keeps the pipe and its buffer alive.
//!
//! A FIFO unlinked while open (its path reads `PATH (deleted)` in the image) is recreated once, by its
//! first end met: made under a temporary name in its directory, opened by the helper, moved to its path
//! and unlinked there (as unlinked files are, [`super::ghost`]), its dumped owner, mode and times put back
//! (`inode-attrs`); the helper stays open until every description is, so every end of the image opens
//! the one FIFO through it.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use dormant_image::records::InodeAttrs;
use nix::errno::Errno;

use super::raw::{owned, proc_fd_path, write_all};

/// What the kernel appends to the path of an unlinked FIFO; the image keeps it to say so.
const DELETED: &str = " (deleted)";

/// Unlinked FIFOs recreated so far: their helper (read-write) end, by dumped (dev, ino).
#[derive(Debug, Default)]
pub(super) struct Unlinked(BTreeMap<(u64, u64), OwnedFd>);

/// Opens the FIFO at `path` with `flags` (the dumped status flags), sets its size, and writes `data`
/// (the bytes buffered at dump time, carried by one end per FIFO). An unlinked one is recreated with
/// `attrs` on its first end (see the module docs).
#[allow(clippy::too_many_arguments)]
pub(super) fn open(
    path: &str,
    dev: u64,
    ino: u64,
    flags: u32,
    size: u32,
    data: Option<&[u8]>,
    attrs: Option<&InodeAttrs>,
    unlinked: &mut Unlinked,
) -> Result<OwnedFd, (String, Errno)> {
    if let Some(linked) = path.strip_suffix(DELETED) {
        let helper = match unlinked.0.entry((dev, ino)) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(recreate(linked)?),
        };
        if let Some(a) = attrs {
            super::inode::set(helper, a)?;
        }
        let helper = helper
            .try_clone()
            .map_err(|e| ("dup".to_string(), super::raw::errno_of(&e)))?;
        return reopen(helper, path, flags, size, data);
    }
    let cpath =
        std::ffi::CString::new(path).map_err(|_| (format!("path {path:?}"), Errno::EINVAL))?;
    // SAFETY: open reads the NUL-terminated path and returns a new fd.
    let helper = owned(unsafe {
        libc::open(
            cpath.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY,
        )
    })
    .map_err(|e| (format!("opening the FIFO {path}"), e))?;
    let md = std::fs::metadata(format!("/proc/self/fd/{}", helper.as_raw_fd())).map_err(|e| {
        (
            format!("stat of {path}"),
            Errno::from_raw(e.raw_os_error().unwrap_or(0)),
        )
    })?;
    if md.mode() & libc::S_IFMT != libc::S_IFIFO {
        return Err((format!("{path} is no longer a FIFO"), Errno::EINVAL));
    }
    if (md.dev(), md.ino()) != (dev, ino) {
        log::warn!(
            "FIFO {path} is another inode than at dump time ({}:{} instead of {dev}:{ino}); reopening it as it is now",
            md.dev(),
            md.ino()
        );
    }
    reopen(helper, path, flags, size, data)
}

/// A new FIFO at `path`, unlinked again, open read-write (non-blocking) through the returned helper.
fn recreate(path: &str) -> Result<OwnedFd, (String, Errno)> {
    super::ghost::recreate_with(path, |tmp| {
        // SAFETY: mkfifo reads the NUL-terminated path; open reads it and returns a new fd.
        super::raw::check(unsafe { libc::mkfifo(tmp.as_ptr(), 0o600) })
            .map_err(|e| ("mkfifo".to_string(), e))?;
        // SAFETY: as above; a read-write open of a FIFO never waits for a partner.
        owned(unsafe {
            libc::open(
                tmp.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY,
            )
        })
        .map_err(|e| ("opening the new FIFO".to_string(), e))
    })
}

/// The end of the FIFO `helper` holds with the access mode and status flags of `flags`, its size set and
/// `data` written into it.
fn reopen(
    helper: OwnedFd,
    path: &str,
    flags: u32,
    size: u32,
    data: Option<&[u8]>,
) -> Result<OwnedFd, (String, Errno)> {
    let keep = flags
        & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY | libc::O_CLOEXEC) as u32;
    let again = proc_fd_path(&helper)?;
    // SAFETY: open reads the NUL-terminated path and returns a new fd; the helper is reader and writer, so
    // this open does not wait for a partner.
    let fd = owned(unsafe { libc::open(again.as_ptr(), keep as libc::c_int | libc::O_CLOEXEC) })
        .map_err(|e| (format!("reopening the FIFO {path} with flags {keep:#o}"), e))?;
    // SAFETY: F_SETPIPE_SZ on our own FIFO.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size as libc::c_int) } < 0 {
        return Err((format!("F_SETPIPE_SZ {size} on {path}"), Errno::last()));
    }
    if let Some(bytes) = data.filter(|b| !b.is_empty()) {
        let mut there: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int on our stack.
        if unsafe { libc::ioctl(helper.as_raw_fd(), libc::FIONREAD, &mut there) } != 0 {
            return Err((format!("FIONREAD on {path}"), Errno::last()));
        }
        if there > 0 {
            // Someone outside kept the FIFO open: its bytes are still there, and writing ours would
            // double them.
            return Err((
                format!(
                    "FIFO {path} already holds {there} bytes (open in a process outside the image)"
                ),
                Errno::EBUSY,
            ));
        }
        write_all(&helper, bytes).map_err(|e| (format!("refilling {path}"), e))?;
    }
    Ok(fd)
}
