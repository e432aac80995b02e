//! Shared-memory objects (shared anonymous mappings, `/dev/zero` shared mappings, memfd-less shmem): each is
//! stored once per dump in a page store of its own, read through one of its mappings' `map_files` entry.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use dormant_image::records::{page_flags, Pid, ShmemId, ShmemObject, Vma};
use dormant_image::ImageWriter;

use crate::error::{DumpError, Result};
use crate::proc;
use crate::task::mm::{CollectedVma, VmaClass};
use crate::task::pages::walk::PAGE_SIZE;

use super::copy::COPY_CHUNK;

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

fn seek(fd: &File, offset: u64, whence: libc::c_int) -> std::io::Result<Option<u64>> {
    // SAFETY: lseek on a file descriptor we own; no memory is involved.
    let r = unsafe { libc::lseek(fd.as_raw_fd(), offset as libc::off_t, whence) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(r as u64))
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
        let mut pos = 0u64;
        let mut buf = vec![0u8; COPY_CHUNK as usize];
        while pos < size {
            let Some(data) = seek(&file, pos, libc::SEEK_DATA).map_err(err)? else {
                break;
            };
            let hole = seek(&file, data, libc::SEEK_HOLE)
                .map_err(err)?
                .unwrap_or(size);
            let (seg_start, seg_end) = (
                data / PAGE_SIZE * PAGE_SIZE,
                hole.min(size).div_ceil(PAGE_SIZE) * PAGE_SIZE,
            );
            let mut a = seg_start;
            while a < seg_end {
                let len = (seg_end - a).min(COPY_CHUNK) as usize;
                let chunk = &mut buf[..len];
                file.read_exact_at(chunk, a).map_err(err)?;
                // Store runs of non-zero pages.
                let mut run: Option<usize> = None;
                let pages = len / PAGE_SIZE as usize;
                for p in 0..=pages {
                    let nonzero = p < pages
                        && chunk[p * PAGE_SIZE as usize..(p + 1) * PAGE_SIZE as usize]
                            .iter()
                            .any(|b| *b != 0);
                    match (nonzero, run) {
                        (true, None) => run = Some(p),
                        (false, Some(s)) => {
                            let bytes = &chunk[s * PAGE_SIZE as usize..p * PAGE_SIZE as usize];
                            store
                                .write_extent(a + s as u64 * PAGE_SIZE, page_flags::SHMEM, bytes)
                                .map_err(|source| DumpError::Image {
                                    pid,
                                    what: format!("shmem object {ino}"),
                                    source,
                                })?;
                            total += bytes.len() as u64;
                            run = None;
                        }
                        _ => {}
                    }
                }
                a += len as u64;
            }
            pos = seg_end.max(pos + PAGE_SIZE);
        }
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
