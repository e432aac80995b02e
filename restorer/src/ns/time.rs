//! Time namespaces: not restored yet. A tree with one of its own is refused here (issue 11 moves the
//! refusal to the dump).

use super::error::{NsRestoreError, Result};

/// Refuses a tree that had a time namespace of its own (`own`: its id).
pub(super) fn refuse_own(own: Option<dormant_image::records::NsId>) -> Result<()> {
    if own.is_some() {
        return Err(NsRestoreError::Unsupported(
            "the tree had a time namespace of its own; time namespaces are not restored yet".into(),
        ));
    }
    Ok(())
}
