//! Owner, mode and times of the inodes behind descriptions whose content the image carries (`inode-attrs`):
//! unlinked files, memfds and unlinked FIFOs. Restore creates a new inode for each, which would otherwise
//! belong to the restorer (root) and be dated at the restore; these put back what the dumped one had. A record kind of
//! its own (rather than fields of `file-descs`) so that images without it read as "not known": the inode
//! is then left as it is created.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use super::{DescId, DescKind, FileDesc};
use crate::error::Problems;
use crate::records::file_names::{DESC_CONTENTS, INODE_ATTRS};
#[cfg(doc)]
use crate::records::names;

/// The dumped attributes of one carried inode (`inode-attrs`, one entry per description that carries one).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InodeAttrs {
    /// The description ([`DescKind::Ghost`], [`DescKind::Memfd`], or an unlinked [`DescKind::Fifo`]).
    pub desc: DescId,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits with set-id and sticky bits (`st_mode & 07777`).
    pub mode: u32,
    pub atime: FileTime,
    pub mtime: FileTime,
}

/// A timestamp as `stat` gives it.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FileTime {
    pub sec: i64,
    pub nsec: u32,
}

/// Checks that each entry names a carried description of the image, once, and holds a valid time.
pub(crate) fn check_inode_attrs(attrs: &[InodeAttrs], descs: &[FileDesc], p: &mut Problems) {
    let mut seen = BTreeSet::new();
    for a in attrs {
        let carried = descs.iter().any(|d| {
            d.id == a.desc
                && match &d.kind {
                    DescKind::Ghost { .. } | DescKind::Memfd { .. } => true,
                    DescKind::Fifo { path, .. } => path.ends_with(" (deleted)"),
                    _ => false,
                }
        });
        if !carried {
            p.add(
                INODE_ATTRS,
                format!(
                    "description {} is not an unlinked file, memfd or unlinked FIFO of the image",
                    a.desc.0
                ),
            );
        }
        if !seen.insert(a.desc) {
            p.add(
                INODE_ATTRS,
                format!("description {} is listed twice", a.desc.0),
            );
        }
        if a.atime.nsec >= 1_000_000_000 || a.mtime.nsec >= 1_000_000_000 {
            p.add(
                INODE_ATTRS,
                format!("description {}: nanoseconds out of range", a.desc.0),
            );
        }
        if a.mode & !0o7777 != 0 {
            p.add(
                INODE_ATTRS,
                format!("description {}: mode {:o} has type bits", a.desc.0, a.mode),
            );
        }
    }
}

/// The content of an unlinked file or memfd description, stored in page store [`names::desc_pages`] of
/// the description (offsets in the file; holes and zero pages not stored) rather than inline in
/// `file-descs`, whose entries are bounded ([`crate::MAX_ENTRY_LEN`]) and held in memory whole. The
/// description's own `data` is then empty. A record kind of its own, so a reader that does not know it
/// refuses the image rather than restoring the file empty.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredContent {
    /// The description ([`DescKind::Ghost`] or [`DescKind::Memfd`]).
    pub desc: DescId,
    /// The file's size in bytes.
    pub size: u64,
}

/// Checks that each entry names an unlinked file or memfd of the image whose inline data is empty, once.
pub(crate) fn check_stored_contents(
    stored: &[StoredContent],
    descs: &[FileDesc],
    p: &mut Problems,
) {
    let mut seen = BTreeSet::new();
    for c in stored {
        let ok = descs.iter().any(|d| {
            d.id == c.desc
                && matches!(&d.kind,
                    DescKind::Ghost { data, .. } | DescKind::Memfd { data, .. } if data.is_empty())
        });
        if !ok {
            p.add(
                DESC_CONTENTS,
                format!(
                    "description {} is not an unlinked file or memfd without inline data",
                    c.desc.0
                ),
            );
        }
        if !seen.insert(c.desc) {
            p.add(
                DESC_CONTENTS,
                format!("description {} is listed twice", c.desc.0),
            );
        }
    }
}
