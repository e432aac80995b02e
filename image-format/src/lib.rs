//! dormant's on-disk checkpoint image: the container every dump is written into and every restore reads.
//!
//! An image is a directory holding typed record files (a small header, then length- and crc-framed postcard
//! entries), raw page-aligned page data files with a record index each, and an `inventory` that names the
//! format version, the machine and every other file with its length and crc32. Writers build the image in a
//! temporary sibling directory and rename it into place after fsync, so a crashed dump never looks complete.
//!
//! What this crate does NOT do: it knows nothing about processes, /proc or ptrace; it makes no syscalls
//! beyond file I/O; it does not check schema-level cross references between records (a pid in one file
//! pointing at another): [`ImageReader::verify`] returns a [`VerifyReport`] the caller extends with those.
//! The record schemas themselves live in [`records`].
//!
//! Record kind numbers are never reused: a retired kind stays reserved so an old image's file can never be
//! misread as a new record. Retired so far: 40 (`ns-pids`, each task's `NSpid` levels, a duplicate of
//! `PsTreeEntry::ns_pids`; no longer written or read, an old image's file shows as unknown).

mod codec;
mod error;
mod fsutil;
pub mod inventory;
pub mod pages;
mod reader;
pub mod record_file;
pub mod records;
mod writer;

pub use error::{ImageError, Result};
pub use inventory::{ImageFile, Inventory, InventoryInfo};
pub use pages::{PageExtent, PageStoreReader, PageStoreWriter, PAGE_SIZE};
pub use reader::{ImageReader, VerifiedFile, VerifiedFileKind, VerifyReport};
pub use record_file::{RecordFileWriter, MAX_ENTRY_LEN};
pub use records::RecordKind;
pub use writer::ImageWriter;

/// Major version of the format. A reader refuses any other major: a new major means old readers would
/// misread the image, not merely miss something. 2: threads and trees (`ThreadCore::robust_list`,
/// `PsTreeEntry::ns_pids`), files, mounts and namespaces; 1 was single-process only.
pub const FORMAT_MAJOR: u16 = 2;
/// Minor version of the format. Readers accept any minor of their major (minors only add).
pub const FORMAT_MINOR: u16 = 0;

/// The architecture this build reads and writes images for (as `std::env::consts::ARCH` spells it);
/// register state in an image is only meaningful on the same architecture.
#[cfg(target_arch = "x86_64")]
pub const ARCH: &str = "x86_64";
/// The 8-byte magic at the start of every record file; it carries the architecture so a file from another
/// architecture is refused before anything in it is interpreted.
#[cfg(target_arch = "x86_64")]
pub const MAGIC: [u8; 8] = *b"DRMTx64\0";

#[cfg(target_arch = "aarch64")]
pub const ARCH: &str = "aarch64";
#[cfg(target_arch = "aarch64")]
pub const MAGIC: [u8; 8] = *b"DRMTa64\0";

/// Name of the inventory file inside an image directory.
pub const INVENTORY_FILE: &str = "inventory";

/// A typed record: one struct per [`RecordKind`]. A record file holds entries of exactly one kind, and the
/// kind in its header is checked against `KIND` by every reader.
pub trait Record: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug {
    const KIND: RecordKind;
}
