//! Regular files (and devices) open by path: reopened with the dumped access mode and flags, never
//! creating or truncating, never taking a controlling terminal. Their identity is checked against the
//! dump before anything is forked (`image::check_files`); a description shared by several tasks is
//! reopened once per tree (`task::TreeShared::reg`), so its offset stays shared.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;

/// Opens `path` with the access mode and status flags of `flags` (creation and truncation flags dropped,
/// `O_NOCTTY` added, close-on-exec).
pub fn open(path: &str, flags: i32) -> std::io::Result<File> {
    let access = flags & libc::O_ACCMODE;
    let extra =
        flags & !(libc::O_ACCMODE | libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_CLOEXEC);
    OpenOptions::new()
        .read(access == libc::O_RDONLY || access == libc::O_RDWR)
        .write(access == libc::O_WRONLY || access == libc::O_RDWR)
        .custom_flags(extra | libc::O_NOCTTY)
        .open(path)
}
