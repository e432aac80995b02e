//! Copying planned page data ([`CopyChunk`]s) out of a task into a page store: `process_vm_readv` or
//! `/proc/<pid>/mem` on a small local thread pool, one bounded buffer per thread.

use std::fs::File;
use std::os::unix::fs::FileExt;

use dormant_image::PageStoreWriter;
use rayon::prelude::*;

use crate::error::{DumpError, Result};
use crate::proc;

use super::walk::PageRange;

/// Largest piece copied at once; with the pool's thread count this bounds the copy buffers' memory.
pub const COPY_CHUNK: u64 = 4 << 20;

/// One piece of page data to copy into a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyChunk {
    pub vaddr: u64,
    pub len: u64,
    pub flags: u32,
}

pub fn split_into_chunks(out: &mut Vec<CopyChunk>, range: PageRange, flags: u32) {
    let mut a = range.start;
    while a < range.end {
        let len = (range.end - a).min(COPY_CHUNK);
        out.push(CopyChunk {
            vaddr: a,
            len,
            flags,
        });
        a += len;
    }
}

/// How page data leaves the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CopyMethod {
    /// `process_vm_readv`, which pins source pages in batches and copies once; pieces it cannot read
    /// (PROT_NONE pages) fall back to `/proc/<pid>/mem`. The default: on an idle 2-core guest it measured
    /// faster than the parasite at every size from 64 MiB to 4 GiB (benches/page_dump.rs; numbers in
    /// docs/design-notes.md, Dump).
    #[default]
    VmReadv,
    /// `pread` of `/proc/<pid>/mem` only: a kernel bounce page per 4 KiB, but it reads every page.
    ProcMem,
    /// The injected parasite takes the crc32 of readable pages in place and vmsplices them into
    /// pipes that copy threads splice into the page store (one copy and one read instead of two
    /// copies and a read); unreadable ones go through `VmReadv`, and so does everything when the
    /// readable part is below [`super::parasite::PARASITE_MIN_BYTES`] or injection is refused
    /// (see [`super::parasite`]). It uses less dumper CPU, so it only wins when the dumper's
    /// CPUs are busy with other work; the base for pre-dump, where pages spliced while frozen are
    /// drained after the task runs again.
    Parasite,
}

/// How page data is copied: the method and the number of copying threads (0: one per CPU, at most 4, as
/// a few parallel copies saturate a disk or the page cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PageCopy {
    pub method: CopyMethod,
    pub threads: usize,
}

/// Builds the copy thread pool.
pub fn copy_pool(threads: usize) -> Result<rayon::ThreadPool> {
    let n = if threads > 0 {
        threads
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 4)
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("dormant-copy-{i}"))
        .build()
        .map_err(|e| DumpError::ThreadPool(e.to_string()))
}

/// Opens `/proc/<pid>/mem` for reading.
pub fn open_mem(pid: u32) -> Result<File> {
    let path = proc::path(pid, "mem");
    File::open(&path).map_err(|source| DumpError::ProcRead { pid, path, source })
}

/// Copies `chunks` from the task's memory into `store`; returns the bytes written.
pub fn copy_chunks(
    pid: u32,
    mem: &File,
    chunks: &[CopyChunk],
    store: &PageStoreWriter,
    pool: &rayon::ThreadPool,
    method: CopyMethod,
) -> Result<u64> {
    pool.install(|| {
        chunks
            .par_iter()
            // One buffer per worker, reused: a fresh 4 MiB Vec per chunk is a fresh mmap whose every page
            // faults and is zeroed before the copy even starts.
            .map_init(Vec::new, |buf: &mut Vec<u8>, c| {
                buf.resize(c.len as usize, 0);
                let buf = &mut buf[..c.len as usize];
                // process_vm_readv pins the source pages in batches and copies once; /proc/pid/mem goes a
                // page at a time through a kernel bounce page, about half as fast, but it also reads
                // PROT_NONE pages, where process_vm_readv fails: it is the fallback.
                if method == CopyMethod::VmReadv && read_remote(pid, c.vaddr, buf) {
                    return store_chunk(pid, store, c, buf);
                }
                mem.read_exact_at(buf, c.vaddr)
                    .map_err(|source| DumpError::MemRead {
                        pid,
                        addr: c.vaddr,
                        len: c.len,
                        source,
                    })?;
                store_chunk(pid, store, c, buf)
            })
            .try_reduce(|| 0, |a, b| Ok(a + b))
    })
}

/// Reads `buf.len()` bytes at `addr` of task `pid` with process_vm_readv; false when it could not read
/// them all (unreadable pages, e.g. PROT_NONE), so the caller falls back to /proc/pid/mem.
fn read_remote(pid: u32, addr: u64, buf: &mut [u8]) -> bool {
    use nix::sys::uio::{process_vm_readv, RemoteIoVec};
    let len = buf.len();
    let remote = [RemoteIoVec {
        base: addr as usize,
        len,
    }];
    let mut local = [std::io::IoSliceMut::new(buf)];
    matches!(
        process_vm_readv(nix::unistd::Pid::from_raw(pid as i32), &mut local, &remote),
        Ok(n) if n == len
    )
}

fn store_chunk(pid: u32, store: &PageStoreWriter, c: &CopyChunk, buf: &[u8]) -> Result<u64> {
    store
        .write_extent(c.vaddr, c.flags, buf)
        .map_err(|source| DumpError::Image {
            pid,
            what: format!("page store {}", store.name()),
            source,
        })?;
    Ok(c.len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::pages::walk::PAGE_SIZE;

    #[test]
    fn chunks_are_bounded() {
        let mut out = Vec::new();
        split_into_chunks(
            &mut out,
            PageRange {
                start: 0,
                end: 2 * COPY_CHUNK + PAGE_SIZE,
            },
            1,
        );
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|c| c.len <= COPY_CHUNK));
        assert_eq!(
            out[2],
            CopyChunk {
                vaddr: 2 * COPY_CHUNK,
                len: PAGE_SIZE,
                flags: 1
            }
        );
    }
}
