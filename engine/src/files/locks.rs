//! File locks from the `lock:` lines of fdinfo (the kernel lists there the flock/OFD locks and leases of
//! the description and the POSIX locks the task took through it), read with the parser the restore checks
//! its result with ([`FileLock::from_fdinfo`]). A lease being broken is refused.

use dormant_image::records::{FileLock, LockLineError};

use super::error::FdError;

/// The locks held through fd `fd`, from its fdinfo text.
pub fn parse(fd: i32, info: &str) -> Result<Vec<FileLock>, FdError> {
    FileLock::from_fdinfo(fd, info).map_err(|e| match e {
        LockLineError::Malformed(_) => FdError::Parse(e.to_string()),
        LockLineError::Unsupported(reason) => FdError::Lock(reason),
    })
}
