//! The one error type of this crate. Every variant names the file (image-relative name) and, where a byte
//! position means something, the offset, so a corrupt image can be diagnosed from the message alone.

use std::io;
use std::path::PathBuf;

pub type Result<T, E = ImageError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A positional read or write inside an image file failed.
    #[error("{file}: {op} at byte {offset}: {source}")]
    Io {
        file: String,
        offset: u64,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// A file-system operation on a path (create, open, rename, stat, fsync, ...) failed.
    #[error("{}: {op}: {source}", path.display())]
    Fs {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{file}: bad magic {found:02x?} (expected {expected:02x?}): not a dormant record file for this architecture")]
    BadMagic {
        file: String,
        found: [u8; 8],
        expected: [u8; 8],
    },
    #[error("{file}: format version {found_major}.{found_minor} is not readable: this build reads major {supported}")]
    Version {
        file: String,
        found_major: u16,
        found_minor: u16,
        supported: u16,
    },
    #[error("{file}: header at byte {offset}: {reason}")]
    BadHeader {
        file: String,
        offset: u64,
        reason: String,
    },
    #[error("{file}: holds record kind {found}, expected kind {} ({expected:?})", *expected as u16)]
    WrongKind {
        file: String,
        expected: crate::records::RecordKind,
        found: u16,
    },
    #[error("{file}: unknown record kind {found} in header")]
    UnknownKind { file: String, found: u16 },
    #[error("{file}: checksum mismatch at byte {offset}: stored {expected:#010x}, computed {found:#010x}")]
    Checksum {
        file: String,
        offset: u64,
        expected: u32,
        found: u32,
    },
    #[error("{file}: truncated at byte {offset}: wanted {wanted} bytes, {left} left")]
    Truncated {
        file: String,
        offset: u64,
        wanted: u64,
        left: u64,
    },
    #[error("{file}: entry at byte {offset} claims {len} bytes, more than the limit of {max}")]
    EntryTooLarge {
        file: String,
        offset: u64,
        len: u64,
        max: u64,
    },
    #[error("{file}: cannot decode entry at byte {offset}: {reason}")]
    Decode {
        file: String,
        offset: u64,
        reason: String,
    },
    #[error("{file}: cannot encode record: {reason}")]
    Encode { file: String, reason: String },
    #[error("{file}: expected {expected} entries, found {found}")]
    EntryCount {
        file: String,
        expected: &'static str,
        found: usize,
    },
    #[error("{file}: image is for architecture {found:?}, this build handles {supported:?}")]
    Arch {
        file: String,
        found: String,
        supported: &'static str,
    },
    #[error("{file}: {reason}")]
    Inconsistent { file: String, reason: String },
    #[error("{file}: page extent {index} (entry at byte {offset}): {reason}")]
    BadExtent {
        file: String,
        index: usize,
        offset: u64,
        reason: String,
    },
    #[error("{file}: whole-file crc32 is {found:#010x}, inventory says {expected:#010x}")]
    FileChecksum {
        file: String,
        expected: u32,
        found: u32,
    },
    #[error("{file}: length is {found} bytes, inventory says {expected}")]
    Length {
        file: String,
        expected: u64,
        found: u64,
    },
    #[error("{file}: listed in the inventory but missing")]
    Missing { file: String },
    #[error("{file}: present in the image directory but not listed in the inventory")]
    Unlisted { file: String },
    #[error("{file}: not listed in the inventory of this image")]
    NotListed { file: String },
    #[error("{}: not a dormant image (no readable inventory)", dir.display())]
    NotAnImage { dir: PathBuf },
    #[error("{}: exists and {reason}; refusing to replace it", dir.display())]
    Exists { dir: PathBuf, reason: &'static str },
    #[error("bad image file name {name:?}: {reason}")]
    BadName { name: String, reason: &'static str },
    #[error("{file}: already written to this image")]
    Duplicate { file: String },
    #[error("{file}: opened but never finished; the image would be incomplete")]
    Unfinished { file: String },
    #[error("{file}: {what} {value:#x} is not a multiple of the page size")]
    Unaligned {
        file: String,
        what: &'static str,
        value: u64,
    },
    #[error(
        "{file}: source ended after {got} of {wanted} bytes for the extent at file offset {offset}"
    )]
    ShortSource {
        file: String,
        offset: u64,
        wanted: u64,
        got: u64,
    },
    #[error("{file}: buffer of {found} bytes for an extent of {expected} bytes")]
    BufferSize {
        file: String,
        expected: u64,
        found: usize,
    },
    #[error("page store {name:?} does not belong to this image writer")]
    ForeignPageStore { name: String },
}

impl ImageError {
    /// The image-relative file name this error is about, when it is about one file.
    pub fn file(&self) -> Option<&str> {
        use ImageError::*;
        match self {
            Io { file, .. }
            | BadMagic { file, .. }
            | Version { file, .. }
            | BadHeader { file, .. }
            | WrongKind { file, .. }
            | UnknownKind { file, .. }
            | Checksum { file, .. }
            | Truncated { file, .. }
            | EntryTooLarge { file, .. }
            | Decode { file, .. }
            | Encode { file, .. }
            | EntryCount { file, .. }
            | Arch { file, .. }
            | Inconsistent { file, .. }
            | BadExtent { file, .. }
            | Length { file, .. }
            | FileChecksum { file, .. }
            | Missing { file }
            | Unlisted { file }
            | NotListed { file }
            | Duplicate { file }
            | Unfinished { file }
            | Unaligned { file, .. }
            | ShortSource { file, .. }
            | BufferSize { file, .. } => Some(file),
            Fs { .. }
            | NotAnImage { .. }
            | Exists { .. }
            | BadName { .. }
            | ForeignPageStore { .. } => None,
        }
    }

    pub(crate) fn io(file: &str, offset: u64, op: &'static str, source: std::io::Error) -> Self {
        ImageError::Io {
            file: file.to_owned(),
            offset,
            op,
            source,
        }
    }

    pub(crate) fn fs(path: impl Into<PathBuf>, op: &'static str, source: std::io::Error) -> Self {
        ImageError::Fs {
            path: path.into(),
            op,
            source,
        }
    }
}
