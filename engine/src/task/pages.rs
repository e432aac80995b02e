//! The page data of a task's mappings: which pages hold data (private anonymous pages, COW'd pages of private
//! file mappings, the vDSO; from pagemap, [`walk`]), copying them into the image's page store ([`copy`], or
//! the injected blob's splice with [`CopyMethod::Parasite`], [`parasite`]), and the shared-memory objects,
//! each stored once per dump ([`shmem`]).

pub mod copy;
pub mod parasite;
pub mod shmem;
pub mod walk;

use dormant_image::records::{names, page_flags, Pid, ShmemObject, VmaBacking};
use dormant_image::ImageWriter;

use crate::error::{DumpError, Result};
use crate::proc;
use crate::task::mm::{CollectedVma, VmaClass};

use copy::split_into_chunks;
pub use copy::{CopyChunk, CopyMethod, PageCopy};
use walk::{PageRange, PageWalker, WalkKind};

/// The private page data of a task: which ranges of which mappings, in copy-sized chunks.
pub fn plan_private_pages(
    pid: u32,
    vmas: &[CollectedVma],
    walker: &PageWalker,
) -> Result<Vec<CopyChunk>> {
    let mut chunks = Vec::new();
    for v in vmas {
        let (start, end) = (v.vma.start, v.vma.end);
        let shared = v.vma.map_flags & libc::MAP_SHARED as u32 != 0;
        let kind = match &v.class {
            VmaClass::Anon => WalkKind::Anon,
            VmaClass::File { .. } if !shared => WalkKind::PrivateFile,
            VmaClass::Vdso => {
                split_into_chunks(&mut chunks, PageRange { start, end }, page_flags::VDSO);
                continue;
            }
            // Shared files keep their data in the file; shmem objects are dumped once, separately; vvar and
            // vsyscall come from the running kernel.
            _ => continue,
        };
        let ranges = walker
            .walk(start, end, kind)
            .map_err(|source| DumpError::PageWalk {
                pid,
                start,
                end,
                source,
            })?;
        for r in ranges {
            split_into_chunks(&mut chunks, r, page_flags::PRIVATE);
        }
    }
    Ok(chunks)
}

/// Copies the private page data of `pid` (mappings `vmas`, already collected) into its page store and
/// stores the shared-memory objects it maps that no process dumped before has stored (`known`). Returns
/// the objects it stored and the bytes of page data written.
pub fn dump(
    pid: u32,
    mem_file: &std::fs::File,
    vmas: &[CollectedVma],
    writer: &mut ImageWriter,
    known: &[ShmemObject],
    page_copy: PageCopy,
) -> Result<(Vec<ShmemObject>, u64)> {
    let walker = PageWalker::open(pid).map_err(|source| DumpError::ProcRead {
        pid,
        path: proc::path(pid, "pagemap"),
        source,
    })?;
    let chunks = plan_private_pages(pid, vmas, &walker)?;
    let store_name = names::task_pages(Pid(pid));
    let image_err = |what: String| move |source| DumpError::Image { pid, what, source };
    let store = writer
        .page_store(&store_name)
        .map_err(image_err(format!("page store {store_name}")))?;
    let pool = copy::copy_pool(page_copy.threads)?;
    let private_bytes = if page_copy.method == CopyMethod::Parasite {
        let fallback = (mem_file, &pool);
        parasite::copy_chunks(pid, vmas, &chunks, &store, page_copy.threads, fallback)?
    } else {
        copy::copy_chunks(pid, mem_file, &chunks, &store, &pool, page_copy.method)?
    };
    writer
        .finish_page_store(store)
        .map_err(image_err(format!("page store {store_name}")))?;
    // An object shared with a process dumped before is stored once (its first dumper owns it).
    let new_shmem: Vec<CollectedVma> = vmas
        .iter()
        .filter(|v| match v.vma.backing {
            VmaBacking::Shmem(id) => !known.iter().any(|o| o.id == id),
            _ => true,
        })
        .cloned()
        .collect();
    let (shmem, shmem_bytes) =
        shmem::dump_shmem(pid, &new_shmem, writer).map_err(crate::caps::explain_map_files)?;
    Ok((shmem, private_bytes + shmem_bytes))
}
