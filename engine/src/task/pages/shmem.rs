//! Shared-memory objects (shared anonymous mappings, `/dev/zero` shared mappings, memfd-less shmem): each is
//! stored once per dump in a page store of its own, read through one of its mappings' `map_files` entry.

use std::collections::BTreeMap;
use std::fs::File;

use dormant_image::records::{page_flags, Pid, ShmemId, ShmemObject, Vma};
use dormant_image::ImageWriter;

use crate::error::{DumpError, Result};
use crate::proc;
use crate::task::mm::{CollectedVma, VmaClass};

/// The shared-memory objects mapped by a task, each with its size and one mapping to read it through.
pub fn shmem_objects(vmas: &[CollectedVma]) -> BTreeMap<u64, (u64, &Vma)> {
    let mut objs: BTreeMap<u64, (u64, &Vma)> = BTreeMap::new();
    for v in vmas {
        if let VmaClass::Shmem { ino } = v.class {
            let end = v.vma.pgoff + (v.vma.end - v.vma.start);
            let e = objs.entry(ino).or_insert((0, &v.vma));
            e.0 = e.0.max(end);
        }
    }
    objs
}

/// Dumps each shared-memory object of a task once into its own page store (offsets are object offsets);
/// only data segments (SEEK_DATA/SEEK_HOLE) and only pages that are not all zero are stored.
pub fn dump_shmem(
    pid: u32,
    vmas: &[CollectedVma],
    writer: &mut ImageWriter,
) -> Result<(Vec<ShmemObject>, u64)> {
    let mut records = Vec::new();
    let mut total = 0u64;
    for (ino, (mapped_size, vma)) in shmem_objects(vmas) {
        let err = |source| DumpError::Shmem { pid, ino, source };
        let name = format!("map_files/{:x}-{:x}", vma.start, vma.end);
        let path = proc::path(pid, &name);
        let file = File::open(&path).map_err(err)?;
        let size = file.metadata().map_err(err)?.len().max(mapped_size);
        let store = writer
            .page_store(&dormant_image::records::names::shmem_pages(ShmemId(ino)))
            .map_err(|source| DumpError::Image {
                pid,
                what: format!("shmem object {ino}"),
                source,
            })?;
        let what = format!("shmem object {ino} of pid {pid}");
        total += store
            .store_file(&file, size, page_flags::SHMEM, &what)
            .map_err(|source| DumpError::Image {
                pid,
                what: format!("shmem object {ino}"),
                source,
            })?;
        writer
            .finish_page_store(store)
            .map_err(|source| DumpError::Image {
                pid,
                what: format!("shmem object {ino}"),
                source,
            })?;
        records.push(ShmemObject {
            id: ShmemId(ino),
            size,
            owner: Pid(pid),
        });
    }
    Ok((records, total))
}
