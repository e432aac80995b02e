//! inotify instances: their watches ([`super::DescKind::Inotify`]).

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use std::collections::BTreeSet;

use super::{DescId, DescKind, FileDesc};
use crate::error::Problems;
use crate::records::file_names::INOTIFY_CARRIED;

/// One watch of an inotify instance.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InotifyWatch {
    /// The watch descriptor the task knows the watch by.
    pub wd: i32,
    /// The event mask as the kernel keeps it (`IN_*` events plus `IN_ONESHOT`, `IN_EXCL_UNLINK`, ...).
    pub mask: u32,
    /// The watched inode's path at dump time (resolved from its file handle).
    pub path: String,
    /// The inode and device (`st_dev`) it had, for messages and checks.
    pub ino: u64,
    pub dev: u64,
    /// The path named a symlink itself (watched with `IN_DONT_FOLLOW`).
    pub symlink: bool,
}

/// An inotify watch on an inode the image carries (an unlinked file or a memfd, `inotify-carried`): it has
/// no path to be re-added by, so restore adds it on the recreated inode through `/proc/self/fd/N` of the
/// restored description, with the dumped wd and mask. A record kind of its own so that a reader that does
/// not know it refuses the image instead of restoring the instance without the watch.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InotifyCarriedWatch {
    /// The inotify instance ([`super::DescKind::Inotify`]).
    pub inotify: DescId,
    pub wd: i32,
    pub mask: u32,
    /// The description carrying the watched inode ([`super::DescKind::Ghost`] or [`super::DescKind::Memfd`]).
    pub file: DescId,
}

/// Checks that each carried watch names an inotify instance and a carried description of the image, and
/// that no wd is used twice in one instance.
pub(crate) fn check_inotify_carried(
    watches: &[InotifyCarriedWatch],
    descs: &[FileDesc],
    p: &mut Problems,
) {
    let mut seen = BTreeSet::new();
    for w in watches {
        let kind = |id: DescId| descs.iter().find(|d| d.id == id).map(|d| &d.kind);
        let taken = match kind(w.inotify) {
            Some(DescKind::Inotify { watches }) => watches.iter().any(|x| x.wd == w.wd),
            _ => {
                p.add(
                    INOTIFY_CARRIED,
                    format!("description {} is not an inotify instance", w.inotify.0),
                );
                false
            }
        };
        if taken || !seen.insert((w.inotify, w.wd)) {
            p.add(
                INOTIFY_CARRIED,
                format!("inotify {} has wd {} twice", w.inotify.0, w.wd),
            );
        }
        if !matches!(
            kind(w.file),
            Some(DescKind::Ghost { .. } | DescKind::Memfd { .. })
        ) {
            p.add(
                INOTIFY_CARRIED,
                format!(
                    "wd {} of inotify {}: description {} is not an unlinked file or memfd",
                    w.wd, w.inotify.0, w.file.0
                ),
            );
        }
    }
}
