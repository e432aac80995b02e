//! dormant's on-disk checkpoint image: the container every dump is written into and every restore reads.
//!
//! An image is a directory holding typed record files (a small header, then length- and crc-framed postcard
//! entries), raw page-aligned page data files with a record index each, and an `inventory` that names the
//! format version, the machine and every other file with its length and crc32. Writers build the image in a
//! temporary sibling directory and rename it into place after fsync, so a crashed dump never looks complete.
//!
//! The record schemas live in [`records`], one file per kind of state, with the checks of each kind;
//! [`Image::load`] reads a whole image into typed records once and runs every check (what `verify` and
//! restore both do).
//!
//! What this crate does NOT do: it knows nothing about processes, /proc or ptrace; it makes no syscalls
//! beyond file I/O (and one `kill(pid, 0)`, to tell a killed dump's leftovers from a running dump's); it
//! checks what an image says, never whether the machine can restore it.
//!
//! The image directory is untrusted input: nothing in it is followed, only regular files are read, an
//! error never shows a byte of a file's content, and a directory or file that anyone but the user
//! reading it (or root) could have changed is refused, as ssh's StrictModes does.
//!
//! Evolution (see `docs/image-format.md`): every record kind has a schema version, written in each file's
//! header; a reader decodes the versions it has decoders for and refuses newer ones naming both versions
//! and the file. Record kind numbers are never reused: a retired kind stays reserved so an old image's
//! file can never be misread as a new record (see [`records::RETIRED_KINDS`]).

mod codec;
mod error;
mod fsutil;
pub mod image;
pub mod inventory;
pub mod pages;
mod reader;
pub mod record_file;
pub mod records;
mod writer;

pub use error::{ImageError, Result, TrustFix};
pub use image::{Image, IpcRecords, Mounts, Namespaces, SharedObject, TaskRecords};
pub use inventory::{ImageFile, Inventory, InventoryInfo};
pub use pages::{PageExtent, PageStoreReader, PageStoreWriter, PAGE_SIZE};
pub use reader::{ImageReader, VerifiedFile, VerifiedFileKind, VerifyReport};
pub use record_file::MAX_ENTRY_LEN;
pub use records::{Record, RecordKind};
pub use writer::{ImageWriter, RecordFileWriter};

/// Major version of the format. A reader refuses any other major (but 2.0, see below): a new major means
/// old readers would misread the image, not merely miss something. 3: every record kind has a schema
/// version in its files' headers; 2: threads and trees, files, mounts and namespaces; 1 was
/// single-process only. This build also reads format 2.0 (written before schema versions), whose
/// encodings are version 1 of every kind.
pub const FORMAT_MAJOR: u16 = 3;
/// Minor version of the format. Readers accept any minor of their major: what a newer minor adds (a record
/// kind, a newer schema version of one) is refused by name where this build meets it, never misread.
/// 1: `ThreadCore` version 2 (every thread's credentials).
/// 2: record kinds `Seccomp` (15) and `ProcessAttrs` (16), `InodeAttrs` (27); `FileDescs` version 2 (unix
///    sockets' shutdown state, unlinked paths, closed peers, unconnected ones).
/// 3: `TaskCore` version 2 (job-control stop signal and the parent's wait, removed working and root
///    directories).
/// 4: record kinds `DeletedFiles` (42) and `InotifyCarried` (50); `FileDescs` version 3 (unix listeners'
///    waiting connections, UDP peers), `FileLocks` version 2 (leases).
/// 5: record kinds `SharedTables` (60), `NestedMountNs` (65) and `UdpQueues` (70); `FileDescs` version 4
///    (files of /proc).
/// 6: `DeletedFiles` version 2 (a deleted file's content in a page store of its own, `deleted-<file>`);
///    record kind `DescContents` (75: an unlinked file's or memfd's content in page store `desc-<id>`).
pub const FORMAT_MINOR: u16 = 6;

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
pub const INVENTORY_FILE: &str = records::names::INVENTORY;
