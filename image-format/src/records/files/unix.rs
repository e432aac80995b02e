//! Unix sockets ([`super::DescKind::UnixPair`], `UnixListen`, `UnixConn`, `UnixDgram`): the queued
//! datagrams of a datagram socket, the connections waiting in a listener's queue and the shutdown bits; the other states are the variants' own fields.

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

/// A connection waiting in a unix listener's accept queue, named by its client socket: a
/// [`super::DescKind::UnixConn`] of the image whose peer is [`PENDING_PEER`] (the embryonic socket
/// `accept` would return has no inode). Restore connects the clients to the listener in queue order, so
/// `accept` returns them in the original order.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixPending {
    /// Inode of the client socket.
    pub client: u64,
}

/// The peer of a client whose connection waits in a listener's queue: the embryonic socket, which has no
/// inode (sock_diag reports 0).
pub const PENDING_PEER: u64 = 0;

/// Shutdown bit: this socket receives no more (`shutdown(SHUT_RD)` here, or `SHUT_WR` by the stream peer).
/// The kernel's `RCV_SHUTDOWN`, as `UNIX_DIAG_SHUTDOWN` reports it.
pub const RCV_SHUTDOWN: u8 = 1;
/// Shutdown bit: this socket sends no more (`shutdown(SHUT_WR)` here, or `SHUT_RD` by the stream peer).
pub const SEND_SHUTDOWN: u8 = 2;

/// Marks the stand-in peer inode of a stream socket whose peer was closed before the dump (the kernel keeps
/// the survivor connected to the released socket): `CLOSED_PEER | ino` of the survivor. No description
/// holds it; restore creates that end to fill the survivor's queue and closes it.
pub const CLOSED_PEER: u64 = 1 << 63;
