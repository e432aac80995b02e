//! File-system helpers that pin down modes and durability instead of relying on the umask or on defaults.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{ImageError, Result, TrustFix};

/// Mode of every file in an image: images hold process memory, readable by the owner only.
pub(crate) const FILE_MODE: u32 = 0o600;
/// Mode of the image directory.
pub(crate) const DIR_MODE: u32 = 0o700;

/// Creates a new file (never reuses an existing one) with exactly [`FILE_MODE`], open for reading and
/// writing. The mode is set again after creation because `open(2)` applies the umask to it.
pub(crate) fn create_file(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| ImageError::fs(path, "create", e))?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))
        .map_err(|e| ImageError::fs(path, "chmod", e))?;
    Ok(file)
}

/// Creates a directory with exactly [`DIR_MODE`] (again set explicitly, past the umask).
pub(crate) fn create_dir(path: &Path) -> Result<()> {
    DirBuilder::new()
        .mode(DIR_MODE)
        .create(path)
        .map_err(|e| ImageError::fs(path, "create directory", e))?;
    std::fs::set_permissions(path, Permissions::from_mode(DIR_MODE))
        .map_err(|e| ImageError::fs(path, "chmod", e))
}

/// fsyncs a directory so that entries created or renamed in it survive a crash.
pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    let dir = File::open(path).map_err(|e| ImageError::fs(path, "open directory", e))?;
    dir.sync_all()
        .map_err(|e| ImageError::fs(path, "fsync directory", e))
}

/// Opens the image directory `path` for reading its files relative to it. The path itself is the caller's
/// to choose and may pass through symlinks; nothing inside the directory is followed (see [`open_in`]).
/// The directory must be [trusted](check_trusted).
pub(crate) fn open_dir(path: &Path) -> Result<OwnedFd> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    let fd = open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ImageError::fs(path, "open directory", e.into()))?;
    let st = nix::sys::stat::fstat(&fd).map_err(|e| ImageError::fs(path, "stat", e.into()))?;
    check_trusted(path, st.st_uid, st.st_mode, true)?;
    Ok(fd)
}

/// Refuses an image directory or file (`owner` and `mode` from fstat of the open fd: no race with a
/// rename) that anyone but the user running dormant could have changed, in the spirit of ssh's
/// StrictModes: whoever can write an image chooses what its restore runs. It must belong to the effective
/// user or to root (so root trusts root-owned images only), and be writable by neither group nor others.
/// `recursive`: the path is the directory, whose files need the same fix.
pub(crate) fn check_trusted(path: &Path, owner: u32, mode: u32, recursive: bool) -> Result<()> {
    let uid = nix::unistd::geteuid().as_raw();
    if owner != uid && owner != 0 {
        return Err(ImageError::Untrusted {
            path: path.to_path_buf(),
            what: format!("owned by uid {owner}, not by uid {uid} who runs dormant"),
            fix: TrustFix::Chown { recursive, uid },
        });
    }
    let mode = mode & 0o7777;
    if mode & 0o022 != 0 {
        let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => "group and others",
            (true, false) => "its group",
            _ => "others",
        };
        return Err(ImageError::Untrusted {
            path: path.to_path_buf(),
            what: format!("mode {mode:04o} (writable by {who})"),
            fix: TrustFix::Chmod { recursive },
        });
    }
    Ok(())
}

/// Opens file `name` of the image directory `dir` (at `dir_path`, for messages) for reading: relative to
/// the directory fd, never following a symlink, and only if it is a regular file. A FIFO or device cannot
/// block or feed the reader: the open does not wait (`O_NONBLOCK`) and anything but a regular file is
/// refused before a byte is read. `Ok(None)` when the file does not exist.
pub(crate) fn open_in(dir: BorrowedFd<'_>, dir_path: &Path, name: &str) -> Result<Option<File>> {
    use nix::errno::Errno;
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::Mode;
    let flags = OFlag::O_RDONLY
        | OFlag::O_NOFOLLOW
        | OFlag::O_CLOEXEC
        | OFlag::O_NONBLOCK
        | OFlag::O_NOCTTY;
    let fd = match openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(Errno::ELOOP) => {
            return Err(ImageError::NotRegularFile {
                file: name.to_owned(),
                found: "symbolic link",
            })
        }
        Err(e) => return Err(ImageError::fs(dir_path.join(name), "open", e.into())),
    };
    let file = File::from(fd);
    let meta = file
        .metadata()
        .map_err(|e| ImageError::fs(dir_path.join(name), "stat", e))?;
    let ft = meta.file_type();
    let found = if ft.is_file() {
        use std::os::unix::fs::MetadataExt;
        check_trusted(&dir_path.join(name), meta.uid(), meta.mode(), false)?;
        return Ok(Some(file));
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() || ft.is_block_device() {
        "device"
    } else {
        "special file"
    };
    Err(ImageError::NotRegularFile {
        file: name.to_owned(),
        found,
    })
}

/// The names in directory `dir` (at `dir_path`, for messages), without `.` and `..`.
pub(crate) fn list_dir(dir: BorrowedFd<'_>, dir_path: &Path) -> Result<Vec<String>> {
    use nix::dir::Dir;
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    let err = |e: nix::errno::Errno| ImageError::fs(dir_path, "read directory", e.into());
    let mut d = Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(err)?;
    let mut names = Vec::new();
    for entry in d.iter() {
        let entry = entry.map_err(err)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "." && name != ".." {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}
