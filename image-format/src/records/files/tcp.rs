//! Established TCP connections, dumped in repair mode ([`super::DescKind::TcpEstablished`]).

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

/// The state of an established TCP connection read in repair mode: sequence numbers, queued bytes,
/// the options negotiated in the handshake and the windows.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpConnection {
    /// `AF_INET` or `AF_INET6`.
    pub family: i32,
    /// Local and peer address (16 bytes; IPv4 in the first 4) and port.
    pub local: ([u8; 16], u16),
    pub peer: ([u8; 16], u16),
    /// `TCP_QUEUE_SEQ` of the send queue: the sequence number after the last byte written (`write_seq`).
    pub send_seq: u32,
    /// `TCP_QUEUE_SEQ` of the receive queue: the next sequence number expected (`rcv_nxt`).
    pub recv_seq: u32,
    /// Bytes written but not acknowledged by the peer (sent or not yet sent), in order; they end at
    /// `send_seq`.
    pub send_queue: Vec<u8>,
    /// Bytes received and acknowledged but not read by the task; they end at `recv_seq`.
    pub recv_queue: Vec<u8>,
    /// `TCP_MAXSEG`.
    pub mss: u32,
    /// `tcpi_options` of `TCP_INFO` (`TCPI_OPT_TIMESTAMPS` 1, `_SACK` 2, `_WSCALE` 4).
    pub options: u8,
    pub snd_wscale: u8,
    pub rcv_wscale: u8,
    /// `TCP_TIMESTAMP`: the connection's timestamp clock at dump, so the peer's PAWS check still passes.
    pub timestamp: u32,
    /// `TCP_REPAIR_WINDOW`.
    pub window: TcpWindow,
    pub reuseaddr: bool,
    pub reuseport: bool,
    pub keepalive: bool,
    pub nodelay: bool,
    pub v6only: bool,
    /// `SO_SNDBUF` / `SO_RCVBUF` as read (the kernel's doubled values). Restore sets them (which stops
    /// the kernel's buffer autotuning for this socket), raised while the queues are refilled if needed.
    pub sndbuf: u32,
    pub rcvbuf: u32,
}

/// `struct tcp_repair_window`.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TcpWindow {
    pub snd_wl1: u32,
    pub snd_wnd: u32,
    pub max_window: u32,
    pub rcv_wnd: u32,
    pub rcv_wup: u32,
}
