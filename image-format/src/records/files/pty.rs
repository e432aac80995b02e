//! Pseudo-terminal pairs held in the tree: the state a pair carries ([`super::DescKind::Pty`]).

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

/// What a pseudo-terminal pair carries: the slave's termios, the window size, the master's packet mode
/// and the slave's lock.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtyState {
    pub iflag: u32,
    pub oflag: u32,
    pub cflag: u32,
    pub lflag: u32,
    pub line: u8,
    /// `c_cc`, 32 bytes on this architecture.
    pub cc: Vec<u8>,
    pub ispeed: u32,
    pub ospeed: u32,
    /// `struct winsize`: rows, columns, x and y pixels.
    pub winsize: [u16; 4],
    pub packet: bool,
    pub locked: bool,
}
