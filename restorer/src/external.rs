//! What the caller hands in for what the image recorded as external (CRIU's `--external` and
//! `--inherit-fd` at restore), as typed values: the command line parses its strings into these at its edge.

use std::os::fd::RawFd;
use std::path::PathBuf;

/// Where an external mount of a container image comes from at restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum External {
    /// The external mount or master the image stores under `key` is bound from `path` (CRIU's
    /// `mnt[KEY]:PATH`). A key not given binds from the path the key names: auto-detected external mounts
    /// and masters are keyed by where the dumper found them, so restoring in the same place needs nothing.
    Mount { key: String, path: PathBuf },
}

/// A descriptor of the restoring process handed in for an external description of the image: every fd
/// of the tree on the description the image keys `key` (`pipe:[INODE]`, as `dormant show` lists it) gets
/// a copy of `fd` (CRIU's `--inherit-fd fd[N]:KEY`). The caller keeps `fd` open until the restore returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InheritFd {
    pub fd: RawFd,
    pub key: String,
}
