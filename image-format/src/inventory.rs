//! The inventory: the one file that says what an image is (format, machine, root task) and what it holds
//! (every other file, with length and crc32). It is written last, so an image without a valid inventory was
//! never completed.

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use crate::records::ids::Pid;

/// Contents of the `inventory` file (a record file with exactly one entry of this type).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Format version the image was written with; also in every record file header.
    pub format_major: u16,
    pub format_minor: u16,
    /// `std::env::consts::ARCH` of the dumping machine, e.g. `"x86_64"`.
    pub arch: String,
    /// `uname -r` of the dumping kernel (restore on another kernel is allowed but worth a log line).
    pub kernel_release: String,
    /// XCR0 feature mask of the dumping CPU: restore needs every bit present on the restoring CPU.
    pub xsave_features: u64,
    /// Size of the (uncompacted) XSAVE area in bytes, as CPUID leaf 0xD reported it.
    pub xsave_size: u32,
    /// Version string of the dumping tool.
    pub tool_version: String,
    /// Creation time, seconds since the Unix epoch.
    pub created_unix_secs: u64,
    /// The root of the dumped process tree.
    pub root_pid: Pid,
    /// Every other file of the image, sorted by name.
    pub files: Vec<ImageFile>,
}

impl Inventory {
    /// The listed file called `name`.
    pub fn file(&self, name: &str) -> Option<&ImageFile> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// One file of an image as the inventory lists it.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFile {
    pub name: String,
    pub len: u64,
    /// crc32 (IEEE, as `crc32fast`) of the whole file content.
    pub crc32: u32,
}

/// What the caller of [`ImageWriter::commit`](crate::ImageWriter::commit) supplies: the inventory minus the
/// format version and the file list, which the writer fills in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryInfo {
    pub arch: String,
    pub kernel_release: String,
    pub xsave_features: u64,
    pub xsave_size: u32,
    pub tool_version: String,
    pub created_unix_secs: u64,
    pub root_pid: Pid,
}
