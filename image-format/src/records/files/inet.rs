//! Inet sockets other than established TCP connections ([`super::DescKind::Inet`]).

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use super::{DescId, DescKind, FileDesc};
use crate::error::Problems;
use crate::records::file_names::UDP_QUEUES;

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

/// The datagrams waiting in a UDP socket's receive queue (`udp-queues`, one entry per socket that had
/// any), in the order `recv` returns them. Restore sends each again to the socket from its sender's address
/// and port (a raw packet looped back), before the socket is connected, so `recvfrom` gives the same bytes
/// and sender. A record kind of its own so that a reader that does not know it refuses the image instead
/// of restoring the socket empty.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UdpQueue {
    /// The socket ([`DescKind::Inet`], `SOCK_DGRAM`).
    pub socket: DescId,
    pub datagrams: Vec<UdpDatagram>,
}

/// One queued datagram: its sender (address as [`InetSocket::bound`], port) and payload.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UdpDatagram {
    pub from: ([u8; 16], u16),
    pub data: Vec<u8>,
}

/// Checks that each queue names a UDP socket of the image, once, and holds at least one datagram no larger
/// than a UDP payload can be.
pub(crate) fn check_udp_queues(queues: &[UdpQueue], descs: &[FileDesc], p: &mut Problems) {
    let mut seen = std::collections::BTreeSet::new();
    for q in queues {
        let udp = descs.iter().find(|d| d.id == q.socket).is_some_and(
            |d| matches!(&d.kind, DescKind::Inet(s) if s.sock_type == libc::SOCK_DGRAM),
        );
        if !udp {
            p.add(
                UDP_QUEUES,
                format!("description {} is not a UDP socket", q.socket.0),
            );
        }
        if !seen.insert(q.socket) {
            p.add(UDP_QUEUES, format!("socket {} has two queues", q.socket.0));
        }
        if q.datagrams.is_empty() {
            p.add(UDP_QUEUES, format!("socket {}: an empty queue", q.socket.0));
        }
        if q.datagrams.iter().any(|d| d.data.len() > MAX_UDP_PAYLOAD) {
            p.add(
                UDP_QUEUES,
                format!("socket {}: a datagram larger than UDP allows", q.socket.0),
            );
        }
    }
}

/// The largest UDP payload (a 65535-byte IP packet less the UDP header; IPv6 jumbograms are not carried).
pub const MAX_UDP_PAYLOAD: usize = 65_535 - 8;
