//! What the caller names as living outside the dumped tree (CRIU's `--external`), as typed values: the
//! command line parses its strings into these at its edge.

/// Something the dumped tree uses that lives outside it, which the dump records as external instead of
/// refusing it; the restore is handed it again (CRIU's `--external`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum External {
    /// The container mount at `mountpoint` (a path in the container's mount namespace) is recorded as
    /// external under `key`; the restore binds it from wherever it maps `key` to (CRIU's
    /// `mnt[MOUNTPOINT]:KEY`). The container root, binds from outside and outside masters are found
    /// without being named.
    Mount { mountpoint: String, key: String },
    /// A pipe end whose other end only processes outside the dump hold is recorded as external, keyed
    /// `pipe:[INODE]`, and handed in at restore as an inherited fd. A container dump always does this
    /// (the agent holds the other ends of its stdio pipes).
    Pipes,
}
