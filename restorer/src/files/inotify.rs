//! inotify instances with their watches, each re-added by path with its dumped watch descriptor.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use dormant_image::records::InotifyWatch;
use nix::errno::Errno;

use super::raw::{check, errno_of, owned};

/// Watch descriptors beyond this are refused: reaching one takes that many placeholder watches.
const INOTIFY_MAX_WD: i32 = 1 << 22;

/// An inotify instance whose watches have the dumped wd numbers and masks. The kernel hands out wds
/// cyclically upward from 1 (verified on 6.18: after removing wd 1 the next add gets 2, not 1), so watches
/// are added in ascending wd order and every gap is burnt with a placeholder watch on a memfd of ours,
/// removed at once. Each removal queues an `IN_IGNORED` event, which is drained from the still private
/// instance (the dump carried no events). Returned blocking; the caller applies the dumped status flags.
///
/// `carried`: watches on inodes the image carries, as (wd, mask, fd of the restored description), added
/// through `/proc/self/fd/N`: the recreated file is already unlinked and has its attributes, so no event
/// of the restore's own making is queued.
pub(super) fn open(
    watches: &[InotifyWatch],
    carried: &[(i32, u32, RawFd)],
) -> Result<OwnedFd, (String, Errno)> {
    // SAFETY: inotify_init1 returns a new fd.
    let fd = owned(unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) })
        .map_err(|e| ("inotify_init1".to_string(), e))?;
    let mut sorted: Vec<(i32, Option<&InotifyWatch>, u32, RawFd)> = watches
        .iter()
        .map(|w| (w.wd, Some(w), w.mask, -1))
        .chain(carried.iter().map(|&(wd, mask, f)| (wd, None, mask, f)))
        .collect();
    sorted.sort_by_key(|w| w.0);
    let mut placeholder: Option<(OwnedFd, std::ffi::CString)> = None;
    let mut next = 1;
    for (wd, path_watch, mask, carried_fd) in sorted {
        let shown = match path_watch {
            Some(w) => w.path.clone(),
            None => format!("carried inode (restored fd {carried_fd})"),
        };
        if wd < next || wd > INOTIFY_MAX_WD {
            return Err((
                format!(
                    "watch descriptor {wd} of {shown} cannot be recreated (next free is {next}, limit {INOTIFY_MAX_WD})"
                ),
                Errno::EINVAL,
            ));
        }
        let mut burnt = 0u32;
        while next < wd {
            if placeholder.is_none() {
                let name = c"dormant-inotify-placeholder";
                // SAFETY: memfd_create reads the NUL-terminated name and returns a new fd.
                let m = owned(unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) })
                    .map_err(|e| ("memfd_create (inotify placeholder)".to_string(), e))?;
                let path = std::ffi::CString::new(format!("/proc/self/fd/{}", m.as_raw_fd()))
                    .map_err(|_| ("placeholder path".to_string(), Errno::EINVAL))?;
                placeholder = Some((m, path));
            }
            let Some((_, path)) = &placeholder else {
                break;
            };
            // SAFETY: reads the NUL-terminated path; returns a wd or -1.
            let got = check(unsafe {
                libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), libc::IN_ACCESS)
            })
            .map_err(|e| (format!("placeholder watch before wd {wd}"), e))?;
            // SAFETY: removes the watch just added to our own instance.
            check(unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), got) })
                .map_err(|e| (format!("removing placeholder wd {got}"), e))?;
            next = got + 1;
            burnt += 1;
            // Keep the queue of IN_IGNORED events short of its limit (an overflow event would stay).
            if burnt.is_multiple_of(1024) {
                drain(&fd);
            }
        }
        drain(&fd);
        let got = match path_watch {
            Some(w) => add_by_path(&fd, w)?,
            None => add_through_fd(&fd, carried_fd, mask)?,
        };
        if got != wd {
            return Err((
                format!("watch on {shown} got wd {got}, not the dumped {wd}"),
                Errno::EINVAL,
            ));
        }
        next = got + 1;
    }
    nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
    )
    .map_err(|e| ("F_SETFL (blocking)".to_string(), e))?;
    Ok(fd)
}

/// Adds watch `w` by its path, checked to name the dumped inode still; returns the wd.
fn add_by_path(fd: &OwnedFd, w: &InotifyWatch) -> Result<i32, (String, Errno)> {
    let md = std::fs::symlink_metadata(&w.path)
        .map_err(|e| (format!("watched path {}", w.path), errno_of(&e)))?;
    use std::os::unix::fs::MetadataExt;
    if md.ino() != w.ino || md.dev() != w.dev {
        return Err((
            format!(
                "watched path {} is inode {} on device {:#x} now, not inode {} on {:#x} as dumped",
                w.path,
                md.ino(),
                md.dev(),
                w.ino,
                w.dev
            ),
            Errno::ESTALE,
        ));
    }
    let mut mask = w.mask & !(libc::IN_MASK_ADD | IN_MASK_CREATE);
    if w.symlink {
        mask |= libc::IN_DONT_FOLLOW;
    }
    let cpath = std::ffi::CString::new(w.path.as_str()).map_err(|_| {
        (
            format!("watched path {:?} holds a NUL byte", w.path),
            Errno::EINVAL,
        )
    })?;
    // SAFETY: reads the NUL-terminated path; returns a wd or -1.
    let got = check(unsafe { libc::inotify_add_watch(fd.as_raw_fd(), cpath.as_ptr(), mask) })
        .map_err(|e| (format!("inotify_add_watch {} mask {mask:#x}", w.path), e))?;
    Ok(got)
}

/// Adds a watch with `mask` on the inode of our fd `file` through `/proc/self/fd/N`; returns the wd.
fn add_through_fd(fd: &OwnedFd, file: RawFd, mask: u32) -> Result<i32, (String, Errno)> {
    let mask = mask & !(libc::IN_MASK_ADD | IN_MASK_CREATE);
    let path = std::ffi::CString::new(format!("/proc/self/fd/{file}"))
        .map_err(|_| ("carried inode path".to_string(), Errno::EINVAL))?;
    // SAFETY: reads the NUL-terminated path; returns a wd or -1.
    check(unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) }).map_err(|e| {
        (
            format!("inotify_add_watch /proc/self/fd/{file} mask {mask:#x}"),
            e,
        )
    })
}

/// `IN_MASK_CREATE` (not in the libc crate for this target): never part of a kept mask.
const IN_MASK_CREATE: u32 = 0x1000_0000;

/// Reads (and drops) every queued event of a non-blocking inotify instance of ours.
fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 4096];
    while matches!(nix::unistd::read(fd, &mut buf), Ok(n) if n > 0) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn watch(wd: i32, mask: u32, path: &std::path::Path) -> InotifyWatch {
        let md = std::fs::symlink_metadata(path).unwrap();
        InotifyWatch {
            wd,
            mask,
            path: path.to_str().unwrap().to_string(),
            ino: md.ino(),
            dev: md.dev(),
            symlink: md.file_type().is_symlink(),
        }
    }

    /// Gaps in the wd numbers are burnt with placeholders; the instance comes back with exactly the wanted
    /// wds and masks, an empty queue and blocking.
    #[test]
    fn inotify_same_wds_and_masks() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::write(&b, b"").unwrap();
        let ws = [
            watch(5, libc::IN_MODIFY | libc::IN_ONESHOT, &b),
            watch(2, libc::IN_CREATE | libc::IN_DELETE, &a),
        ];
        let fd = open(&ws, &[]).unwrap();
        let info =
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
        let lines: Vec<(String, String)> = info
            .lines()
            .filter(|l| l.starts_with("inotify "))
            .map(|l| {
                let f = |k: &str| {
                    l.split_whitespace()
                        .find_map(|x| x.strip_prefix(k))
                        .unwrap()
                        .to_string()
                };
                (f("wd:"), f("mask:"))
            })
            .collect();
        let mut lines = lines;
        lines.sort();
        assert_eq!(
            lines,
            vec![
                (
                    "2".into(),
                    format!("{:x}", libc::IN_CREATE | libc::IN_DELETE)
                ),
                (
                    "5".into(),
                    format!("{:x}", libc::IN_MODIFY | libc::IN_ONESHOT)
                ),
            ]
        );
        let mut queued: libc::c_int = -1;
        // SAFETY: FIONREAD writes one int to our stack.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut queued) };
        assert_eq!(r, 0);
        assert_eq!(queued, 0, "placeholder IN_IGNORED events left in the queue");
        let fl = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        assert_eq!(fl & libc::O_NONBLOCK, 0);
    }

    /// A path that names another inode now is refused rather than watched.
    #[test]
    fn inotify_refuses_a_replaced_path() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::create_dir(&a).unwrap();
        let w = watch(1, libc::IN_CREATE, &a);
        std::fs::remove_dir(&a).unwrap();
        std::fs::write(dir.path().join("pad"), b"").unwrap();
        std::fs::create_dir(&a).unwrap();
        if std::fs::metadata(&a).unwrap().ino() == w.ino {
            return; // the file system reused the inode number: nothing to tell apart
        }
        let (what, _) = open(&[w], &[]).unwrap_err();
        assert!(what.contains("not inode"), "{what}");
    }
}
