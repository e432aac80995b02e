//! Unlinked ("ghost") regular files, carried with their content: fds open on a file that was unlinked,
//! and files deleted while mapped or executed (`deleted-files`, a library or binary upgraded under the
//! process). Each is recreated at its old path ([`recreate`]), filled, given the dumped owner, mode and
//! times (`inode-attrs`), opened, and unlinked again at that same name, so `/proc/PID/fd/N`,
//! `/proc/PID/maps` and `/proc/PID/exe` read `PATH (deleted)` as they did and `st_nlink` is 0. An fd is
//! then a reopen of it through `/proc/self/fd` with the dumped access mode and flags.
//!
//! The path may be taken by now (the upgraded library): the copy is made under a temporary name in the
//! same directory and swapped with it (`RENAME_EXCHANGE`), unlinked, and the file now there renamed
//! back; between the unlink and that rename (two syscalls) the path does not exist.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use dormant_image::records::{DeletedContent, DescId, InodeAttrs};
use dormant_image::PageStoreReader;
use nix::errno::Errno;

use super::raw::{check, owned, proc_fd_path, write_all};

/// Where a carried inode's bytes come from: inline in its record, or a page store of the image.
#[derive(Debug, Clone, Copy)]
pub enum Content<'a> {
    Inline(&'a [u8]),
    Stored {
        size: u64,
        pages: &'a PageStoreReader,
    },
}

impl Content<'_> {
    /// Writes the content into the new, empty file `fd` (its size is the content's).
    pub fn write_into(&self, fd: &OwnedFd) -> Result<(), (String, Errno)> {
        match *self {
            Content::Inline(data) => {
                write_all(fd, data).map_err(|e| ("writing the content".to_string(), e))
            }
            Content::Stored { size, pages } => {
                let file = std::fs::File::from(
                    fd.try_clone()
                        .map_err(|e| ("dup".to_string(), super::raw::errno_of(&e)))?,
                );
                pages.write_into(&file, size, pages.name()).map_err(|e| {
                    let errno = match &e {
                        dormant_image::ImageError::Io { source, .. } => {
                            super::raw::errno_of(source)
                        }
                        _ => Errno::EIO,
                    };
                    (format!("writing the content from the image: {e}"), errno)
                })
            }
        }
    }
}

pub(super) fn open(
    path: &str,
    mode: u32,
    flags: u32,
    content: Content<'_>,
    pos: u64,
    attrs: Option<&InodeAttrs>,
) -> Result<OwnedFd, (String, Errno)> {
    let copy = recreate(path, content, attrs)?;
    if attrs.is_none() {
        // An image without `inode-attrs`: the mode of the description is all that is known.
        // SAFETY: fchmod on our own fd.
        check(unsafe { libc::fchmod(copy.as_raw_fd(), mode as libc::mode_t) })
            .map_err(|e| (format!("fchmod {path} to {mode:o}"), e))?;
    }
    let keep = flags
        & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY | libc::O_TMPFILE) as u32;
    let fd = reopen(&copy, keep as i32)?;
    nix::unistd::lseek(&fd, pos as i64, nix::unistd::Whence::SeekSet)
        .map_err(|e| (format!("seeking {path} to {pos}"), e))?;
    Ok(fd)
}

/// A new description of the file behind `fd`, opened with `flags` through `/proc/self/fd`.
pub fn reopen(fd: &OwnedFd, flags: i32) -> Result<OwnedFd, (String, Errno)> {
    let again = proc_fd_path(fd)?;
    // SAFETY: open reads the NUL-terminated path and returns a new fd.
    owned(unsafe { libc::open(again.as_ptr(), flags | libc::O_CLOEXEC) }).map_err(|e| {
        (
            format!("reopening the recreated file with flags {flags:#o}"),
            e,
        )
    })
}

/// The deleted mapped file or executable `content` of the image, recreated at `path` (unlinked) and
/// open read-only; `pages` is its page store when the content is in one, and `desc` gives the open
/// unlinked-file description that carries it, when it is one.
pub fn recreate_deleted<'a>(
    path: &str,
    content: &DeletedContent,
    pages: Option<&PageStoreReader>,
    desc: impl FnOnce(DescId) -> Option<std::os::fd::BorrowedFd<'a>>,
) -> Result<OwnedFd, (String, Errno)> {
    let attrs = content.attrs(DescId(0));
    let copy = match content {
        DeletedContent::Data { data, .. } => recreate(path, Content::Inline(data), attrs.as_ref())?,
        DeletedContent::Stored { size, .. } => {
            let pages = pages.ok_or_else(|| {
                (
                    format!("the image has no page store for the content of {path}"),
                    Errno::ENOENT,
                )
            })?;
            let content = Content::Stored { size: *size, pages };
            recreate(path, content, attrs.as_ref())?
        }
        DeletedContent::Desc(id) => {
            let fd = desc(*id).ok_or_else(|| {
                (
                    format!("unlinked-file description {} of {path} is not open", id.0),
                    Errno::ENOENT,
                )
            })?;
            fd.try_clone_to_owned()
                .map_err(|e| ("dup".to_string(), super::raw::errno_of(&e)))?
        }
    };
    reopen(&copy, libc::O_RDONLY)
}

/// Creates the file `path` with `content` and the attributes `attrs` (times last, once written), then
/// unlinks it at that name; returns it open read-write. See the module docs for a path taken meanwhile.
pub fn recreate(
    path: &str,
    content: Content<'_>,
    attrs: Option<&InodeAttrs>,
) -> Result<OwnedFd, (String, Errno)> {
    recreate_with(path, |tmp| {
        // SAFETY: open reads the NUL-terminated path and returns a new fd.
        let fd = owned(unsafe {
            libc::open(
                tmp.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                0o600 as libc::c_uint,
            )
        })
        .map_err(|e| ("creating the copy".to_string(), e))?;
        content.write_into(&fd)?;
        if let Some(a) = attrs {
            super::inode::set(&fd, a)?;
        }
        Ok(fd)
    })
}

/// Makes a new inode with `create` (given a free temporary name in the directory of `path`, it returns
/// the new file open), then moves it to `path` and unlinks it there, so its name reads `PATH (deleted)`.
/// A failed `create` may leave its name behind: it is unlinked.
pub(super) fn recreate_with(
    path: &str,
    create: impl FnOnce(&CString) -> Result<OwnedFd, (String, Errno)>,
) -> Result<OwnedFd, (String, Errno)> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let p = std::path::Path::new(path);
    let (dir, name) = match (p.parent(), p.file_name()) {
        (Some(d), Some(n)) => (d, n.to_string_lossy()),
        _ => return Err((format!("path {path} has no file name"), Errno::EINVAL)),
    };
    let tmp = dir.join(format!(
        ".{name}.dormant-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let c = |p: &std::path::Path| {
        CString::new(p.as_os_str().as_encoded_bytes())
            .map_err(|_| (format!("path {}", p.display()), Errno::EINVAL))
    };
    let (ctmp, cpath) = (c(&tmp)?, c(p)?);
    let fd = match create(&ctmp) {
        Ok(fd) => fd,
        Err((what, e)) => {
            // SAFETY: unlink reads the NUL-terminated path; the temporary name is ours (O_EXCL).
            unsafe { libc::unlink(ctmp.as_ptr()) };
            return Err((format!("{}: {what}", tmp.display()), e));
        }
    };
    place(&ctmp, &cpath, path).map(|()| fd)
}

/// Moves the filled file `tmp` to `path` and unlinks it there; a file already at `path` is swapped out
/// and back. The temporary name is gone afterwards, whatever failed (it never names the file that was at
/// `path`).
fn place(tmp: &CString, cpath: &CString, path: &str) -> Result<(), (String, Errno)> {
    let rename = |from: &CString, to: &CString, flags: libc::c_uint| {
        // SAFETY: renameat2 reads two NUL-terminated paths.
        check(unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                flags,
            )
        })
    };
    // SAFETY: unlink reads the NUL-terminated path.
    let unlink = |p: &CString| check(unsafe { libc::unlink(p.as_ptr()) });
    match rename(tmp, cpath, libc::RENAME_NOREPLACE) {
        Ok(_) => unlink(cpath)
            .map(drop)
            .map_err(|e| (format!("unlinking the copy at {path}"), e)),
        Err(Errno::EEXIST) => {
            if let Err(e) = rename(tmp, cpath, libc::RENAME_EXCHANGE) {
                unlink(tmp).ok();
                return Err((format!("swapping the copy with the file now at {path}"), e));
            }
            let gone = unlink(cpath).map_err(|e| (format!("unlinking the copy at {path}"), e));
            // The file that is at the path now goes back whatever happened.
            rename(tmp, cpath, 0)
                .map_err(|e| (format!("putting the file now at {path} back"), e))?;
            gone.map(drop)
        }
        Err(e) => {
            unlink(tmp).ok();
            Err((format!("moving the copy to {path}"), e))
        }
    }
}
