//! uts namespaces: host and domain name (`uts-<id>`).

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use super::NsId;
use crate::error::Problems;

/// A dumped uts namespace (`uts-<id>`, one entry).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UtsNamespace {
    pub id: NsId,
    pub hostname: String,
    pub domainname: String,
}

/// Checks that `uts-<id>` holds namespace `id`.
pub(crate) fn check_uts(file: &str, id: NsId, uts: &UtsNamespace, p: &mut Problems) {
    if uts.id != id {
        p.add(file, format!("holds namespace {}", uts.id.0));
    }
}
