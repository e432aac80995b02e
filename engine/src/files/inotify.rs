//! inotify instances: the watches listed in fdinfo, each resolved from its file handle to a path.
//!
//! fdinfo gives, per watch, the watch descriptor, the inode, the superblock's device, the mask and the
//! inode's file handle. The handle is opened with `open_by_handle_at` against each mount of that device
//! (CAP_DAC_READ_SEARCH, which the dumper has as root) and the path read back from `/proc/self/fd`; the
//! path counts only when `lstat` of it gives the same device and inode again, so a watch is never recorded
//! under a path that names something else. An instance with unread events is refused: the events are not
//! carried (they would have to be read, which consumes them from the running target).

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use dormant_image::records::{DescKind, InotifyWatch};
use dormant_mounts::mountinfo::unescape;

use super::error::FdError;

/// Longest file handle the kernel hands out (`MAX_HANDLE_SZ`).
const MAX_HANDLE_SZ: usize = 128;

/// One `inotify wd:...` line of fdinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchLine {
    pub wd: i32,
    pub ino: u64,
    /// The superblock's device in the kernel's encoding (`major << 20 | minor`).
    pub sdev: u64,
    pub mask: u32,
    /// The file handle (type and bytes), absent on file systems that cannot export handles.
    pub handle: Option<(i32, Vec<u8>)>,
}

impl WatchLine {
    /// `sdev` as `st_dev` encodes it.
    pub fn dev(&self) -> u64 {
        libc::makedev((self.sdev >> 20) as u32, (self.sdev & 0xf_ffff) as u32)
    }
}

/// The watches of an inotify fdinfo text, in the order listed.
pub fn parse(info: &str) -> Result<Vec<WatchLine>, String> {
    let mut out = Vec::new();
    for line in info.lines() {
        let Some(rest) = line.strip_prefix("inotify ") else {
            continue;
        };
        let mut wd = None;
        let mut ino = None;
        let mut sdev = None;
        let mut mask = None;
        let mut hbytes = None;
        let mut htype = None;
        let mut handle = None;
        for field in rest.split_whitespace() {
            let Some((k, v)) = field.split_once(':') else {
                continue;
            };
            let hex = |v: &str| {
                u64::from_str_radix(v, 16).map_err(|e| format!("{line:?}: {k} {v:?}: {e}"))
            };
            match k {
                "wd" => wd = Some(v.parse::<i32>().map_err(|e| format!("{line:?}: wd: {e}"))?),
                "ino" => ino = Some(hex(v)?),
                "sdev" => sdev = Some(hex(v)?),
                "mask" => {
                    mask = Some(
                        u32::from_str_radix(v, 16).map_err(|e| format!("{line:?}: mask: {e}"))?,
                    )
                }
                "fhandle-bytes" => hbytes = Some(hex(v)?),
                "fhandle-type" => {
                    htype = Some(
                        i32::from_str_radix(v, 16)
                            .map_err(|e| format!("{line:?}: fhandle-type: {e}"))?,
                    )
                }
                "f_handle" => handle = Some(unhex(v).ok_or(format!("{line:?}: f_handle"))?),
                _ => {}
            }
        }
        let (Some(wd), Some(ino), Some(sdev), Some(mask)) = (wd, ino, sdev, mask) else {
            return Err(format!("{line:?}: wd, ino, sdev or mask missing"));
        };
        let handle = match (hbytes, htype, handle) {
            (Some(n), Some(t), Some(h)) => {
                if n as usize != h.len() || h.len() > MAX_HANDLE_SZ {
                    return Err(format!(
                        "{line:?}: fhandle-bytes {n} but {} handle bytes",
                        h.len()
                    ));
                }
                Some((t, h))
            }
            _ => None,
        };
        out.push(WatchLine {
            wd,
            ino,
            sdev,
            mask,
            handle,
        });
    }
    Ok(out)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// A watch whose inode has no path (an unlinked file, a memfd): resolved against the inodes the dump
/// carries once every fd is dumped ([`super::collector::FileCollector::finish`]).
#[derive(Debug, Clone)]
pub struct Unresolved {
    pub wd: i32,
    pub mask: u32,
    pub ino: u64,
    /// `st_dev` of the watched inode.
    pub dev: u64,
    /// Why no path was found.
    pub why: String,
}

impl Unresolved {
    /// The refusal when no carried inode matches either.
    pub fn refusal(&self) -> FdError {
        FdError::InotifyWatch {
            wd: self.wd,
            ino: self.ino,
            major: libc::major(self.dev) as u64,
            minor: libc::minor(self.dev) as u64,
            why: format!(
                "{}; nor is it an unlinked file or memfd the dump carries",
                self.why
            ),
        }
    }
}

/// The description of an inotify fd: every watch with its path (the caller names the pid and fd in
/// errors), and the watches no path names (left for the caller to match with the carried inodes).
pub fn dump(info: &str, dup: &OwnedFd) -> Result<(DescKind, Vec<Unresolved>), FdError> {
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to our stack.
    if unsafe { libc::ioctl(dup.as_raw_fd(), libc::FIONREAD, &mut queued) } != 0 {
        return Err(FdError::last_os("FIONREAD"));
    }
    if queued > 0 {
        return Err(FdError::InotifyQueued { bytes: queued });
    }
    let mounts = own_mounts()?;
    let mut watches = Vec::new();
    let mut unresolved = Vec::new();
    for w in parse(info).map_err(FdError::Parse)? {
        match resolve(&w, &mounts) {
            Ok((path, symlink)) => watches.push(InotifyWatch {
                wd: w.wd,
                mask: w.mask,
                path,
                ino: w.ino,
                dev: w.dev(),
                symlink,
            }),
            Err(why) => unresolved.push(Unresolved {
                wd: w.wd,
                mask: w.mask,
                ino: w.ino,
                dev: w.dev(),
                why,
            }),
        }
    }
    Ok((DescKind::Inotify { watches }, unresolved))
}

/// The dumper's mounts as (st_dev, mount point).
fn own_mounts() -> Result<Vec<(u64, String)>, FdError> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(FdError::sys("reading /proc/self/mountinfo"))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (Some(devs), Some(point)) = (f.get(2), f.get(4)) else {
            continue;
        };
        let Some((ma, mi)) = devs.split_once(':') else {
            continue;
        };
        let (Ok(ma), Ok(mi)) = (ma.parse::<u32>(), mi.parse::<u32>()) else {
            continue;
        };
        out.push((libc::makedev(ma, mi), unescape(point)));
    }
    Ok(out)
}

/// The path of the watched inode, and whether it is a symlink: the first mount of its device against which
/// the handle opens to a path that `lstat`s to the same inode.
fn resolve(w: &WatchLine, mounts: &[(u64, String)]) -> Result<(String, bool), String> {
    let (htype, bytes) = w
        .handle
        .as_ref()
        .ok_or("fdinfo has no file handle (the file system does not export handles)")?;
    let dev = w.dev();
    let mut tried = Vec::new();
    for (_, point) in mounts.iter().filter(|(d, _)| *d == dev) {
        match resolve_on(point, *htype, bytes, dev, w.ino) {
            Ok(found) => return Ok(found),
            Err(e) => tried.push(format!("{point}: {e}")),
        }
    }
    if tried.is_empty() {
        return Err("no mount of that device in the dumper's mount namespace".into());
    }
    Err(tried.join("; "))
}

fn resolve_on(
    point: &str,
    htype: i32,
    bytes: &[u8],
    dev: u64,
    ino: u64,
) -> Result<(String, bool), String> {
    let cpoint = std::ffi::CString::new(point).map_err(|_| "NUL in mount point".to_string())?;
    // SAFETY: open reads the NUL-terminated path and returns a new fd (or -1).
    // Not O_PATH: open_by_handle_at refuses an O_PATH mount fd (EBADF).
    let m = unsafe {
        libc::open(
            cpoint.as_ptr(),
            libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if m < 0 {
        return Err(format!("open: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `m` was just opened and is owned by nobody else.
    let m = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(m) };
    // struct file_handle: u32 handle_bytes, i32 handle_type, then the bytes; u32 words keep it aligned.
    let mut buf = vec![0u32; 2 + MAX_HANDLE_SZ / 4];
    buf[0] = bytes.len() as u32;
    buf[1] = htype as u32;
    for (i, b) in bytes.iter().enumerate() {
        let word = &mut buf[2 + i / 4];
        let mut w = word.to_ne_bytes();
        w[i % 4] = *b;
        *word = u32::from_ne_bytes(w);
    }
    // SAFETY: open_by_handle_at reads the file_handle in `buf` (its header says how many bytes follow, at
    // most MAX_HANDLE_SZ, all inside `buf`) and returns a new fd (or -1).
    let r = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            m.as_raw_fd(),
            buf.as_mut_ptr(),
            libc::O_PATH | libc::O_CLOEXEC,
        )
    };
    if r < 0 {
        return Err(format!(
            "open_by_handle_at: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the syscall returned a new fd owned by nobody else.
    let f = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(r as i32) };
    let path = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd()))
        .map_err(|e| format!("readlink: {e}"))?;
    let path = path
        .to_str()
        .ok_or_else(|| format!("path {} is not UTF-8", path.display()))?
        .to_string();
    if !path.starts_with('/') {
        return Err(format!("{path} is not reachable from the dumper's root"));
    }
    let md = std::fs::symlink_metadata(&path).map_err(|e| format!("lstat {path}: {e}"))?;
    if md.dev() != dev || md.ino() != ino {
        return Err(format!(
            "{path} is now inode {} on device {:#x}, not the watched one",
            md.ino(),
            md.dev()
        ));
    }
    Ok((path, md.file_type().is_symlink()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const INFO: &str = "pos:\t0\nflags:\t04000\nmnt_id:\t17\nino:\t1039\n\
inotify wd:3 ino:994161 sdev:fe00000 mask:100 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:6141990028a4f72d\n\
inotify wd:2 ino:994171 sdev:fe00001 mask:80000fff ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:71419900b8a9014a\n";

    #[test]
    fn watches() {
        let w = parse(INFO).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].wd, 3);
        assert_eq!(w[0].ino, 0x994161);
        assert_eq!(w[0].mask, 0x100);
        assert_eq!(
            w[0].handle,
            Some((1, vec![0x61, 0x41, 0x99, 0x00, 0x28, 0xa4, 0xf7, 0x2d]))
        );
        assert_eq!(w[1].mask, 0x8000_0fff);
        assert_eq!(w[1].dev(), libc::makedev(0xfe, 1));
    }

    #[test]
    fn bad_lines() {
        assert!(parse("inotify wd:x ino:1 sdev:1 mask:1").is_err());
        assert!(parse("inotify wd:1 ino:1 sdev:1").is_err());
        let short =
            "inotify wd:1 ino:1 sdev:1 mask:1 fhandle-bytes:8 fhandle-type:1 f_handle:abcd\n";
        assert!(parse(short).is_err());
        // No handle at all (a file system without export operations): parsed, resolved later.
        let w = parse("inotify wd:1 ino:1 sdev:1 mask:1\n").unwrap();
        assert_eq!(w[0].handle, None);
        assert!(parse("pos: 0\n").unwrap().is_empty());
    }

    #[test]
    fn mount_point_escapes() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/x\\"), "/x\\");
        assert_eq!(unescape("/x\\04"), "/x\\04");
    }

    /// A watch on a directory of our own resolves to its path.
    #[test]
    fn resolves_own_watch() {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: inotify_init1 returns a new fd.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: just created, owned here.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let p = std::ffi::CString::new(dir.path().to_str().unwrap()).unwrap();
        // SAFETY: reads the NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), p.as_ptr(), libc::IN_CREATE) };
        assert_eq!(wd, 1);
        let info =
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
        // Needs CAP_DAC_READ_SEARCH for open_by_handle_at: the tests run as root.
        let (DescKind::Inotify { watches }, unresolved) = dump(&info, &fd).unwrap() else {
            panic!("not an inotify description")
        };
        assert!(unresolved.is_empty(), "{unresolved:?}");
        assert_eq!(watches.len(), 1);
        assert_eq!(watches[0].wd, 1);
        assert_eq!(watches[0].mask, libc::IN_CREATE);
        assert!(!watches[0].symlink);
        assert_eq!(
            std::fs::canonicalize(&watches[0].path).unwrap(),
            std::fs::canonicalize(dir.path()).unwrap()
        );
        std::fs::write(dir.path().join("new"), b"").unwrap();
        let e = dump(&info, &fd).unwrap_err().to_string();
        assert!(e.contains("unread events"), "{e}");
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse(&s);
            let _ = unescape(&s);
        }

        #[test]
        fn never_panics_on_near_lines(wd in "[-0-9a-z]{0,6}", ino in "[0-9a-fx]{0,8}", h in "[0-9a-f]{0,20}", n in 0u32..300) {
            let line = format!("inotify wd:{wd} ino:{ino} sdev:fe mask:{ino} fhandle-bytes:{n:x} fhandle-type:1 f_handle:{h}\n");
            let _ = parse(&line);
        }
    }
}
