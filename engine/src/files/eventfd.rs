//! eventfd: the counter and the semaphore flag, from fdinfo.

use dormant_image::records::DescKind;

use super::error::FdError;
use crate::proc::fdinfo;

/// The description of an eventfd from its fdinfo text.
pub fn dump(info: &str) -> Result<DescKind, FdError> {
    let count = fdinfo::hex_field(info, "eventfd-count").map_err(FdError::Parse)?;
    let semaphore = fdinfo::field(info, "eventfd-semaphore").is_some_and(|v| v != "0");
    Ok(DescKind::EventFd { count, semaphore })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventfd_fdinfo() {
        let k =
            dump("pos:\t0\neventfd-count:                7\neventfd-id: 3\neventfd-semaphore: 1\n")
                .unwrap();
        assert_eq!(
            k,
            DescKind::EventFd {
                count: 7,
                semaphore: true
            }
        );
        assert!(dump("pos: 0\n").is_err());
    }
}
