//! Network namespaces (`net-<id>`, an [`super::NsState::Net`]): described, never dumped; restore joins an
//! existing namespace or makes a loopback-only one.

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use super::NsId;

/// The network namespace of the tree. Its devices, addresses, routes and sockets are not dumped: restore
/// joins an existing namespace (the default) or makes a loopback-only one.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetNamespace {
    pub id: NsId,
    /// The dumper shared it (`false`: the tree had a namespace of its own, which is still not dumped).
    pub external: bool,
    /// `lo` was up.
    pub loopback_up: bool,
    /// Every interface name the namespace had, for the log and for checks at restore.
    pub interfaces: Vec<String>,
}
