//! Inet sockets other than established TCP connections ([`super::DescKind::Inet`]).

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

/// A TCP or UDP socket, IPv4 or IPv6: unbound, bound, listening, or (UDP only) connected.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InetSocket {
    /// `AF_INET` or `AF_INET6`.
    pub family: i32,
    /// `SOCK_STREAM` or `SOCK_DGRAM`.
    pub sock_type: i32,
    pub protocol: i32,
    /// Local address (16 bytes; IPv4 in the first 4) and port; `None` when unbound.
    pub bound: Option<([u8; 16], u16)>,
    /// The address and port a UDP socket is connected to (as `bound`); restore connects after the bind.
    /// `None` when not connected.
    pub peer: Option<([u8; 16], u16)>,
    /// Listen backlog when listening.
    pub listen_backlog: Option<u32>,
    pub reuseaddr: bool,
    pub reuseport: bool,
    pub keepalive: bool,
    pub nodelay: bool,
    pub v6only: bool,
}
