//! tmpfs content: a tmpfs dormant recreates (the container's /dev, /tmp, a /dev/shm of its own) is empty
//! when restore mounts it, so its files are carried in the image: every node with mode, owner, mtime and
//! xattrs, symlinks, device nodes, fifos, hard links, and the data segments of regular files (holes found
//! with `SEEK_DATA`/`SEEK_HOLE` stay holes).
//!
//! Dump walks a detached clone of the mount alone ([`crate::reach`]), so the directories and files that
//! mounts inside it or over it hide are read as well; given a path that shows submounts instead (an
//! external tmpfs through `/proc/PID/root`), it stays on the mount's device and leaves mountpoints out.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use dormant_image::records::{TmpfsNode, TmpfsNodeKind, TmpfsRecord, Xattr, TMPFS_CHUNK};
use nix::sys::stat::{mknod, Mode, SFlag};

use crate::error::{MountError, Result};
use crate::sys;

fn io(what: &str, p: &Path) -> impl Fn(std::io::Error) -> MountError {
    let (what, p) = (what.to_string(), p.to_path_buf());
    move |source| MountError::Io {
        what: what.clone(),
        path: p.clone(),
        source,
    }
}

fn errno(what: &'static str, p: &Path) -> impl Fn(nix::errno::Errno) -> MountError {
    let p = p.display().to_string();
    move |errno| MountError::Sys {
        what,
        mount: None,
        mountpoint: p.clone(),
        errno,
    }
}

/// The data segments of a regular file: `(offset, len)` pairs, holes skipped.
fn data_segments(f: &fs::File, size: u64) -> Vec<(u64, u64)> {
    use std::os::fd::AsFd;
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let Ok(start) = nix::unistd::lseek(f.as_fd(), pos as i64, nix::unistd::Whence::SeekData)
        else {
            break; // ENXIO: no data after pos
        };
        let end = nix::unistd::lseek(f.as_fd(), start, nix::unistd::Whence::SeekHole)
            .map_or(size as i64, |e| e.min(size as i64));
        if end <= start {
            break;
        }
        out.push((start as u64, (end - start) as u64));
        pos = end as u64;
    }
    out
}

/// Reads the content of the tmpfs whose root is `dir`.
pub fn dump_tree(dir: &Path) -> Result<Vec<TmpfsRecord>> {
    let root_meta = fs::symlink_metadata(dir).map_err(io("stat tmpfs root", dir))?;
    let dev = root_meta.dev();
    let mut out = Vec::new();
    let mut inodes: BTreeMap<u64, u32> = BTreeMap::new();
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    let mut index = 0u32;
    while let Some(rel) = stack.pop() {
        let p = dir.join(&rel);
        let meta = fs::symlink_metadata(&p).map_err(io("stat", &p))?;
        if meta.dev() != dev {
            continue; // a mount on top: its own mount is restored separately
        }
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            TmpfsNodeKind::Dir
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                if let Some(&to) = inodes.get(&meta.ino()) {
                    out.push(TmpfsRecord::Node(node(
                        index,
                        &rel,
                        TmpfsNodeKind::HardLink { to },
                        &meta,
                        Vec::new(),
                    )));
                    index += 1;
                    continue;
                }
                inodes.insert(meta.ino(), index);
            }
            TmpfsNodeKind::File { size: meta.len() }
        } else if ft.is_symlink() {
            let t = fs::read_link(&p).map_err(io("readlink", &p))?;
            TmpfsNodeKind::Symlink {
                target: t.as_os_str().as_bytes().to_vec(),
            }
        } else if ft.is_fifo() {
            TmpfsNodeKind::Fifo
        } else if ft.is_char_device() {
            TmpfsNodeKind::CharDev { rdev: meta.rdev() }
        } else if ft.is_block_device() {
            TmpfsNodeKind::BlockDev { rdev: meta.rdev() }
        } else {
            log::warn!("tmpfs dump: {} is a socket; not restored", p.display());
            continue;
        };
        let mut xattrs = Vec::new();
        for name in sys::list_xattrs(&p).map_err(errno("listxattr", &p))? {
            let value = sys::get_xattr(&p, &name).map_err(errno("getxattr", &p))?;
            xattrs.push(Xattr { name, value });
        }
        let this = index;
        out.push(TmpfsRecord::Node(node(
            index,
            &rel,
            kind.clone(),
            &meta,
            xattrs,
        )));
        index += 1;
        match kind {
            TmpfsNodeKind::Dir => {
                let mut names: Vec<_> = fs::read_dir(&p)
                    .map_err(io("readdir", &p))?
                    .map(|e| e.map(|e| e.file_name()))
                    .collect::<std::io::Result<_>>()
                    .map_err(io("readdir", &p))?;
                names.sort();
                stack.extend(names.into_iter().rev().map(|n| rel.join(n)));
            }
            TmpfsNodeKind::File { size } => {
                let mut f = fs::File::open(&p).map_err(io("open", &p))?;
                for (off, len) in data_segments(&f, size) {
                    let mut done = 0u64;
                    while done < len {
                        let n = (len - done).min(TMPFS_CHUNK as u64) as usize;
                        let mut bytes = vec![0u8; n];
                        f.seek(SeekFrom::Start(off + done))
                            .map_err(io("seek", &p))?;
                        f.read_exact(&mut bytes).map_err(io("read", &p))?;
                        out.push(TmpfsRecord::Data {
                            node: this,
                            offset: off + done,
                            bytes,
                        });
                        done += n as u64;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn node(
    index: u32,
    rel: &Path,
    kind: TmpfsNodeKind,
    m: &fs::Metadata,
    xattrs: Vec<Xattr>,
) -> TmpfsNode {
    TmpfsNode {
        index,
        path: rel.as_os_str().as_bytes().to_vec(),
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        xattrs,
    }
}

/// Recreates the content `recs` in the (empty, freshly mounted) tmpfs whose root is `dir`.
pub fn restore_tree(dir: &Path, recs: &[TmpfsRecord]) -> Result<()> {
    use std::ffi::OsStr;
    let mut paths: BTreeMap<u32, PathBuf> = BTreeMap::new();
    let mut nodes: Vec<&TmpfsNode> = Vec::new();
    for r in recs {
        match r {
            TmpfsRecord::Node(n) => {
                let p = dir.join(OsStr::from_bytes(&n.path));
                if !n.path.is_empty() {
                    match &n.kind {
                        TmpfsNodeKind::Dir => fs::create_dir(&p).map_err(io("mkdir", &p))?,
                        TmpfsNodeKind::File { size } => fs::File::create(&p)
                            .and_then(|f| f.set_len(*size))
                            .map_err(io("create", &p))?,
                        TmpfsNodeKind::Symlink { target } => {
                            std::os::unix::fs::symlink(OsStr::from_bytes(target), &p)
                                .map_err(io("symlink", &p))?
                        }
                        TmpfsNodeKind::Fifo => {
                            nix::unistd::mkfifo(&p, Mode::from_bits_truncate(0o600))
                                .map_err(errno("mkfifo", &p))?
                        }
                        TmpfsNodeKind::CharDev { rdev } => {
                            mknod(&p, SFlag::S_IFCHR, Mode::from_bits_truncate(0o600), *rdev)
                                .map_err(errno("mknod", &p))?
                        }
                        TmpfsNodeKind::BlockDev { rdev } => {
                            mknod(&p, SFlag::S_IFBLK, Mode::from_bits_truncate(0o600), *rdev)
                                .map_err(errno("mknod", &p))?
                        }
                        TmpfsNodeKind::HardLink { to } => {
                            let src = paths.get(to).ok_or_else(|| {
                                MountError::Plan(format!(
                                    "tmpfs hard link {} to unknown node {to}",
                                    p.display()
                                ))
                            })?;
                            fs::hard_link(src, &p).map_err(io("link", &p))?
                        }
                    }
                }
                paths.insert(n.index, p);
                nodes.push(n);
            }
            TmpfsRecord::Data {
                node,
                offset,
                bytes,
            } => {
                let p = paths.get(node).ok_or_else(|| {
                    MountError::Plan(format!("tmpfs data for unknown node {node}"))
                })?;
                let f = fs::OpenOptions::new()
                    .write(true)
                    .open(p)
                    .map_err(io("open", p))?;
                f.write_all_at(bytes, *offset).map_err(io("write", p))?;
            }
        }
    }
    // Owners, modes, xattrs, then times, deepest first so creating entries no longer touches them.
    for n in nodes.iter().rev() {
        if matches!(n.kind, TmpfsNodeKind::HardLink { .. }) {
            continue;
        }
        let p = &paths[&n.index];
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            p.as_path(),
            Some(n.uid.into()),
            Some(n.gid.into()),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(errno("chown", p))?;
        let is_link = matches!(n.kind, TmpfsNodeKind::Symlink { .. });
        if !is_link {
            fs::set_permissions(p, fs::Permissions::from_mode(n.mode)).map_err(io("chmod", p))?;
        }
        for x in &n.xattrs {
            sys::set_xattr(p, &x.name, &x.value).map_err(errno("setxattr", p))?;
        }
        let secs = n.mtime_ns.div_euclid(1_000_000_000) as i64;
        let nsec = n.mtime_ns.rem_euclid(1_000_000_000) as i64;
        let t = nix::sys::time::TimeSpec::new(secs, nsec);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            p.as_path(),
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .map_err(errno("utimensat", p))?;
    }
    Ok(())
}
