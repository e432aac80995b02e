//! Unix sockets ([`super::DescKind::UnixPair`], `UnixListen`, `UnixConn`, `UnixDgram`): the queued
//! datagrams of a datagram socket; the other states are the variants' own fields.

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

/// One datagram waiting in a unix datagram socket's receive queue.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixDatagram {
    /// The sender's name as `recvfrom` reports it; empty when the sender was unnamed.
    pub from: Vec<u8>,
    pub data: Vec<u8>,
}
