//! File-system helpers that pin down modes and durability instead of relying on the umask or on defaults.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{ImageError, Result};

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
