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
    /// Only the fixed magic is ever shown of a file's content: an image file may be anything (a link to a
    /// secret, if a symlink slipped through), and its bytes do not belong in a log.
    #[error("{file}: bad magic (expected {expected:?}): not a dormant record file for this architecture")]
    BadMagic {
        file: String,
        expected: &'static str,
    },
    #[error(
        "{file}: image format {found_major}.{found_minor} is not readable by this build, which reads format \
         {}.{} (and images of format 2.0)", crate::FORMAT_MAJOR, crate::FORMAT_MINOR
    )]
    Version {
        file: String,
        found_major: u16,
        found_minor: u16,
    },
    /// A record file of a kind at a schema version this build does not decode: a newer one (the image was
    /// written by a newer dormant) or an older one whose decoder is not kept.
    #[error(
        "{file}: record kind {kind} ({kind_name}) is at schema version {found}, {} this build reads (version \
         {current}{})",
        if found > current { "newer than what" } else { "not one" },
        if *current > 1 { " and older ones" } else { "" }
    )]
    SchemaVersion {
        file: String,
        kind: u16,
        kind_name: &'static str,
        found: u16,
        current: u16,
    },
    #[error("{file}: header at byte {offset}: {reason}")]
    BadHeader {
        file: String,
        offset: u64,
        reason: String,
    },
    #[error("{file}: holds record kind {found}, expected kind {expected} ({expected_name})")]
    WrongKind {
        file: String,
        expected: u16,
        expected_name: &'static str,
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
    /// Image files are regular files, opened without following links: anything else in their place is
    /// refused before a byte of it is read.
    #[error("{file}: is a {found}, not a regular file (nothing in an image directory is followed or read but regular files)")]
    NotRegularFile { file: String, found: &'static str },
    /// An image directory or file someone other than the user running dormant (or root) could have
    /// written: whoever can write an image chooses what its restore runs, as that user.
    #[error("{}: {what}; an image must be changeable by no one but the user who reads it or root (to fix: {fix} {}, if its content is trusted)", path.display(), path.display())]
    Untrusted {
        path: PathBuf,
        what: String,
        fix: TrustFix,
    },
    #[error("{file}: listed in the inventory but missing")]
    Missing { file: String },
    #[error("{file}: present in the image directory but not listed in the inventory")]
    Unlisted { file: String },
    #[error("{file}: not listed in the inventory of this image")]
    NotListed { file: String },
    /// Everything [`crate::Image::load`] found wrong with an image, each naming its file.
    #[error("image {} is not valid:\n{}", dir.display(), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Rejected {
        dir: PathBuf,
        problems: Vec<ImageError>,
    },
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

/// The command that makes an [untrusted](ImageError::Untrusted) image path trusted (the path follows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustFix {
    /// `chmod [-R] go-w`.
    Chmod { recursive: bool },
    /// `chown [-R] UID`: the reader's uid.
    Chown { recursive: bool, uid: u32 },
}

impl std::fmt::Display for TrustFix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = |recursive: bool| if recursive { "-R " } else { "" };
        match *self {
            TrustFix::Chmod { recursive } => write!(f, "chmod {}go-w", r(recursive)),
            TrustFix::Chown { recursive, uid } => write!(f, "chown {}{uid}", r(recursive)),
        }
    }
}

impl ImageError {
    /// The image-relative file name this error is about, when it is about one file.
    pub fn file(&self) -> Option<&str> {
        use ImageError::*;
        match self {
            Io { file, .. }
            | BadMagic { file, .. }
            | Version { file, .. }
            | SchemaVersion { file, .. }
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
            | NotRegularFile { file, .. }
            | Unlisted { file }
            | NotListed { file }
            | Duplicate { file }
            | Unfinished { file }
            | Unaligned { file, .. }
            | ShortSource { file, .. }
            | BufferSize { file, .. } => Some(file),
            Fs { .. }
            | Untrusted { .. }
            | NotAnImage { .. }
            | Rejected { .. }
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

/// Problems found by the checks of a loaded image (see [`crate::Image::load`]): each names its file.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<ImageError>);

impl Problems {
    /// A record that does not hold what it should, or refers to something the image does not have.
    pub(crate) fn add(&mut self, file: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ImageError::Inconsistent {
            file: file.into(),
            reason: reason.into(),
        });
    }

    pub(crate) fn push(&mut self, e: ImageError) {
        self.0.push(e);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn into_vec(self) -> Vec<ImageError> {
        self.0
    }
}
