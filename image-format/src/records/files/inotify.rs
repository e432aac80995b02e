//! inotify instances: their watches ([`super::DescKind::Inotify`]).

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

/// One watch of an inotify instance.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InotifyWatch {
    /// The watch descriptor the task knows the watch by.
    pub wd: i32,
    /// The event mask as the kernel keeps it (`IN_*` events plus `IN_ONESHOT`, `IN_EXCL_UNLINK`, ...).
    pub mask: u32,
    /// The watched inode's path at dump time (resolved from its file handle).
    pub path: String,
    /// The inode and device (`st_dev`) it had, for messages and checks.
    pub ino: u64,
    pub dev: u64,
    /// The path named a symlink itself (watched with `IN_DONT_FOLLOW`).
    pub symlink: bool,
}
