//! Files reopened by path (`reg-files`): regular files, directories and devices an fd, a mapping or the
//! executable refers to, with their identity at dump time.

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use crate::records::ids::FileId;

/// An open file description reachable by path (`reg-files`, one entry per description). Also used for the
/// files behind mappings and for the executable, where `flags`/`pos` do not matter.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegFile {
    pub id: FileId,
    /// Absolute path in the dumped task's mount namespace.
    pub path: String,
    /// `O_*` flags from fdinfo (without `O_CLOEXEC`, which belongs to the fd).
    pub flags: u32,
    pub pos: u64,
    /// What the file was at dump time; restore refuses a file that differs.
    pub stat: FileStat,
}

/// Identity of a file at dump time.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FileStat {
    pub dev: u64,
    pub ino: u64,
    /// `st_mode` (type and permission bits).
    pub mode: u32,
    pub size: u64,
    pub mtime_ns: i128,
    /// `st_rdev` for device nodes.
    pub rdev: u64,
}
