//! The task's private pages: which extents of the page store the blob reads back, each of which must lie
//! in private mappings (marked to be filled), and the page store's fd.

use std::path::Path;

use dormant_image::records::page_flags;
use dormant_restorer_proto::{ExtentArg, VmaArg, VmaKind};

use super::helpers::HelperFds;
use crate::error::RestoreError;
use crate::image::TaskImage;

/// The extents to read and the page store's fd (-1 when there is nothing to read).
#[derive(Debug)]
pub struct TaskPages {
    pub extents: Vec<ExtentArg>,
    pub fd: i32,
}

/// Checks every extent against `vmas` and marks the mappings it fills.
pub fn prepare(
    dir: &Path,
    task: &TaskImage,
    vmas: &mut [VmaArg],
    helpers: &mut HelperFds,
) -> Result<TaskPages, RestoreError> {
    let mut extents = Vec::new();
    let Some(store) = &task.pages else {
        return Ok(TaskPages { extents, fd: -1 });
    };
    // The vDSO's pages are only compared with the running one (`image::check_vdso`).
    for e in store
        .extents()
        .iter()
        .filter(|e| e.flags & page_flags::VDSO == 0)
    {
        let end = e.vend().unwrap_or(u64::MAX);
        let mut covered = e.vaddr;
        for v in vmas.iter_mut().filter(|v| v.start < end && e.vaddr < v.end) {
            if v.kind == VmaKind::Shared as u32 || v.start > covered {
                break;
            }
            v.fill = 1;
            covered = covered.max(v.end);
        }
        if covered < end {
            return Err(RestoreError::BadImage {
                dir: dir.to_owned(),
                reason: format!(
                    "pid {}: pages {:#x}-{end:#x} are not inside private mappings",
                    task.pid.0, e.vaddr
                ),
            });
        }
        extents.push(ExtentArg {
            vaddr: e.vaddr,
            len: e.len,
            file_offset: e.file_offset,
        });
    }
    let fd = if extents.is_empty() {
        -1
    } else {
        helpers.lift_for_blob(store.data_file(), "the page store")?
    };
    Ok(TaskPages { extents, fd })
}
