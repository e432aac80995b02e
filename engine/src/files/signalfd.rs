//! signalfd: the signal mask, from fdinfo.

use dormant_image::records::DescKind;

use super::error::FdError;
use crate::proc::fdinfo;

/// The description of a signalfd from its fdinfo text.
pub fn dump(info: &str) -> Result<DescKind, FdError> {
    Ok(DescKind::SignalFd {
        mask: fdinfo::hex_field(info, "sigmask").map_err(FdError::Parse)?,
    })
}
