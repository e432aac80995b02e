//! Page store indexes: where each run of stored pages is in a page store's raw data file, with its crc32
//! (`pagemap-<store>`, one entry per extent; the store I/O itself is [`crate::pages`]). A process's
//! private pages are store `task-<pid>`, a shared object's are `shmem-<id>` (offsets in the object), a
//! System V segment's `sysvshm-<ns>-<shmid>`.

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use super::ids::Pid;
use super::mm::{Mm, VmaBacking};
use crate::error::Problems;

/// One run of stored pages: `len` bytes for virtual addresses `vaddr..vaddr+len` at `file_offset` in the
/// data file.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageExtent {
    pub vaddr: u64,
    pub len: u64,
    pub file_offset: u64,
    /// See [`page_flags`].
    pub flags: u32,
    /// crc32 of the extent's bytes.
    pub crc32: u32,
}

impl PageExtent {
    /// One past the last virtual address, `None` on overflow (only possible in a corrupt index).
    pub fn vend(&self) -> Option<u64> {
        self.vaddr.checked_add(self.len)
    }
}

/// Page-store extent flags.
pub mod page_flags {
    /// Private anonymous or COW'd file page content.
    pub const PRIVATE: u32 = 1 << 0;
    /// vDSO bytes kept for comparison, not to be written into the restored task.
    pub const VDSO: u32 = 1 << 1;
    /// Offsets are object offsets of a shared-memory object, not virtual addresses.
    pub const SHMEM: u32 = 1 << 2;
}

/// Checks that a process's stored pages all lie inside its private mappings (anonymous, file or vDSO):
/// restore writes them there and nowhere else.
pub(crate) fn check_task_pages(
    store: &str,
    pid: Pid,
    mm: &Mm,
    extents: &[PageExtent],
    p: &mut Problems,
) {
    for e in extents {
        let end = e.vaddr.saturating_add(e.len);
        let inside = mm.vmas.iter().any(|v| {
            v.start <= e.vaddr
                && end <= v.end
                && matches!(
                    v.backing,
                    VmaBacking::Anon | VmaBacking::File(_) | VmaBacking::Vdso
                )
        });
        if !inside {
            p.add(
                format!("pagemap-{store}"),
                format!(
                    "pages {:#x}-{end:#x} lie outside every private mapping of pid {}",
                    e.vaddr, pid.0
                ),
            );
        }
    }
}

/// Checks that the pages of a store of object offsets (a shared object, a System V segment) lie within
/// `size` bytes; `what` names the object in the message.
pub(crate) fn check_object_pages(
    store: &str,
    what: &str,
    size: u64,
    extents: &[PageExtent],
    p: &mut Problems,
) {
    if let Some(e) = extents
        .iter()
        .find(|e| e.vaddr.saturating_add(e.len) > size)
    {
        p.add(
            format!("pagemap-{store}"),
            format!(
                "pages at offset {:#x} lie past {what} of {size:#x} bytes",
                e.vaddr
            ),
        );
    }
}
