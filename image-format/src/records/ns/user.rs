//! User namespaces (`user-<id>`, an [`super::NsState::User`]) with their id maps.

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use super::NsId;

/// A user namespace of the tree with its id maps (`/proc/PID/uid_map`, `gid_map`, `setgroups`).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNamespace {
    pub id: NsId,
    pub uid_map: Vec<IdMapRange>,
    pub gid_map: Vec<IdMapRange>,
    /// `/proc/PID/setgroups` said `allow`.
    pub setgroups_allowed: bool,
}

/// One line of an id map: `count` ids from `inside` in the namespace are `outside` in its parent.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}
