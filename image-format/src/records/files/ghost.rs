//! Files unlinked while a process maps them or runs them (`deleted-files`): a library or binary upgraded
//! under a running process. The file stays in `reg-files` (its path without the kernel's ` (deleted)`,
//! its dumped identity) so mappings and the executable keep referring to it by [`FileId`]; this record
//! carries what restore needs to recreate it, since no path reaches it any more: its size and inode
//! attributes with its content in a page store of its own ([`names::deleted_pages`], offsets in the file,
//! holes and zero pages not stored: a binary can be far bigger than one record entry may be), or (when the
//! same inode is also open through an fd) the unlinked-file description that carries them already, so one
//! inode is carried once. Restore recreates the file at its path, maps and sets the executable from it,
//! and unlinks it again.
//!
//! A record kind of its own, so an image without it reads as "no deleted file", and an older restorer
//! refuses an image with it rather than reopening whatever now lives at the path.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use super::{DescId, DescKind, FileDesc, FileTime, InodeAttrs};
use crate::error::Problems;
use crate::records::file_names::DELETED_FILES;
use crate::records::ids::FileId;
#[cfg(doc)]
use crate::records::names;

/// One deleted file of `reg-files` that mappings or an executable refer to.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedFile {
    pub file: FileId,
    pub content: DeletedContent,
}

/// Where a deleted file's content comes from.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeletedContent {
    /// Carried inline: the bytes (as the page cache held them at dump time, shared writes included) and
    /// the inode's owner, permission bits (`st_mode & 07777`) and times. Written by format 3.5 (schema
    /// 1), read so its images still restore; dumps now write [`DeletedContent::Stored`].
    Data {
        data: Vec<u8>,
        uid: u32,
        gid: u32,
        mode: u32,
        atime: FileTime,
        mtime: FileTime,
    },
    /// The same inode is open through the unlinked-file description ([`DescKind::Ghost`]) `DescId`, which
    /// carries it.
    Desc(DescId),
    /// `size` bytes in page store [`names::deleted_pages`] of the file (as the page cache held them at
    /// dump time), with the inode's owner, permission bits and times as in [`DeletedContent::Data`].
    Stored {
        size: u64,
        uid: u32,
        gid: u32,
        mode: u32,
        atime: FileTime,
        mtime: FileTime,
    },
}

impl DeletedContent {
    /// The inode's owner, mode and times carried with the content, as `inode-attrs` gives them for a
    /// description (`desc`); `None` when a description carries them ([`DeletedContent::Desc`]).
    pub fn attrs(&self, desc: DescId) -> Option<InodeAttrs> {
        match *self {
            DeletedContent::Data {
                uid,
                gid,
                mode,
                atime,
                mtime,
                ..
            }
            | DeletedContent::Stored {
                uid,
                gid,
                mode,
                atime,
                mtime,
                ..
            } => Some(InodeAttrs {
                desc,
                uid,
                gid,
                mode,
                atime,
                mtime,
            }),
            DeletedContent::Desc(_) => None,
        }
    }
}

/// Checks that each entry names a file of `reg-files` once, and a carried description where it refers to
/// one.
pub(crate) fn check_deleted_files(
    deleted: &[DeletedFile],
    files: &BTreeSet<FileId>,
    descs: &[FileDesc],
    p: &mut Problems,
) {
    let mut seen = BTreeSet::new();
    for d in deleted {
        if !files.contains(&d.file) {
            p.add(
                DELETED_FILES,
                format!("file {} is not in reg-files", d.file.0),
            );
        }
        if !seen.insert(d.file) {
            p.add(DELETED_FILES, format!("file {} is listed twice", d.file.0));
        }
        match &d.content {
            DeletedContent::Desc(id) => {
                let ghost = descs
                    .iter()
                    .any(|x| x.id == *id && matches!(x.kind, DescKind::Ghost { .. }));
                if !ghost {
                    p.add(
                        DELETED_FILES,
                        format!(
                            "file {}: description {} is not an unlinked file of the image",
                            d.file.0, id.0
                        ),
                    );
                }
            }
            DeletedContent::Data {
                mode, atime, mtime, ..
            }
            | DeletedContent::Stored {
                mode, atime, mtime, ..
            } => {
                if mode & !0o7777 != 0 || atime.nsec >= 1_000_000_000 || mtime.nsec >= 1_000_000_000
                {
                    p.add(
                        DELETED_FILES,
                        format!("file {}: mode or times out of range", d.file.0),
                    );
                }
            }
        }
    }
}

/// Schema 1 of `deleted-files` (format 3.5): content inline or through a description.
pub mod v1 {
    use serde::{Deserialize, Serialize};

    use super::{DescId, FileId, FileTime};
    use crate::records::upgrade::Upgrade;

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct DeletedFileV1 {
        pub file: FileId,
        pub content: DeletedContentV1,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub enum DeletedContentV1 {
        Data {
            data: Vec<u8>,
            uid: u32,
            gid: u32,
            mode: u32,
            atime: FileTime,
            mtime: FileTime,
        },
        Desc(DescId),
    }

    impl Upgrade<super::DeletedFile> for DeletedFileV1 {
        /// Both schema 1 forms are schema 2 forms.
        fn upgrade(self) -> Result<super::DeletedFile, String> {
            Ok(super::DeletedFile {
                file: self.file,
                content: match self.content {
                    DeletedContentV1::Data {
                        data,
                        uid,
                        gid,
                        mode,
                        atime,
                        mtime,
                    } => super::DeletedContent::Data {
                        data,
                        uid,
                        gid,
                        mode,
                        atime,
                        mtime,
                    },
                    DeletedContentV1::Desc(id) => super::DeletedContent::Desc(id),
                },
            })
        }
    }
}
