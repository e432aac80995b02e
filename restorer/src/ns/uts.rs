//! UTS namespace: the host and domain names, set in the namespace restore unshares.

use dormant_image::records::{ns_names, NsId, UtsNamespace};

use super::error::Result;
use super::read::Source;

/// The names of uts namespace `id`.
pub(super) fn read(src: &Source<'_>, id: NsId) -> Result<UtsNamespace> {
    src.single(&ns_names::uts(id))
}

/// Calls `sethostname` or `setdomainname` (same signature) with `name`.
pub(super) fn set_uts_name(
    call: unsafe extern "C" fn(*const libc::c_char, libc::size_t) -> libc::c_int,
    name: &str,
) -> std::result::Result<(), nix::errno::Errno> {
    // SAFETY: both calls read `len` bytes of the string, which lives across the call.
    if unsafe { call(name.as_ptr().cast(), name.len()) } != 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok(())
}
