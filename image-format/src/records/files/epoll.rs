//! epoll instances: their registrations ([`super::DescKind::Epoll`]).

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use std::collections::BTreeSet;

use super::{DescId, FdFile};
use crate::error::Problems;
use crate::records::file_names::{FILE_DESCS, REG_FILES};
use crate::records::ids::FileId;

/// One epoll registration: the description behind the registered fd, the fd number the task used, the
/// events and the user data.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollTarget {
    pub file: FdFile,
    pub fd: i32,
    pub events: u32,
    pub data: u64,
}

/// Checks an epoll instance's registrations: each target is a description listed before it in
/// `file-descs` (restore opens them in that order) or a file in `reg-files`.
pub(crate) fn check_epoll(
    desc: DescId,
    targets: &[EpollTarget],
    earlier: &BTreeSet<DescId>,
    files: &BTreeSet<FileId>,
    p: &mut Problems,
) {
    for t in targets {
        let missing = match t.file {
            FdFile::Desc(id) if !earlier.contains(&id) => {
                format!("description {} is not listed before it", id.0)
            }
            FdFile::Reg(id) if !files.contains(&id) => {
                format!("file {} is not in {REG_FILES}", id.0)
            }
            _ => continue,
        };
        p.add(
            FILE_DESCS,
            format!("epoll {} registers fd {}, whose {missing}", desc.0, t.fd),
        );
    }
}
