//! Private pages through the injected parasite: the blob vmsplices page ranges into pipes (one per
//! copy thread, at most fs.pipe-max-size each) and dumper threads splice them into the page store, so
//! each byte is copied once (page -> page cache) instead of twice (page -> buffer -> page cache).
//!
//! Only readable mappings go this way (vmsplice cannot read PROT_NONE pages); the rest, and everything
//! when injection is refused or fails before any page moved, goes through [`mem::copy_chunks`].

use dormant_image::PageStoreWriter;
use dormant_parasite::{Parasite, SpliceError, Tid};

use crate::error::{DumpError, Result};
use crate::mem::{self, CollectedVma, CopyChunk, CopyMethod};

/// Bytes asked for each page pipe (the kernel caps it at fs.pipe-max-size, 1 MiB by default).
const PIPE_SIZE: u64 = 1 << 20;

/// Copy `chunks` of task `pid` (single-threaded, or with its other threads stopped) into `store`
/// through the parasite; returns the bytes written.
pub fn copy_chunks(
    pid: u32,
    vmas: &[CollectedVma],
    chunks: &[CopyChunk],
    store: &PageStoreWriter,
    threads: usize,
    fallback: (&std::fs::File, &rayon::ThreadPool),
) -> Result<u64> {
    let readable = |c: &CopyChunk| {
        vmas.iter()
            .find(|v| v.vma.start <= c.vaddr && c.vaddr < v.vma.end)
            .is_some_and(|v| v.vma.prot & libc::PROT_READ as u32 != 0)
    };
    let (direct, rest): (Vec<CopyChunk>, Vec<CopyChunk>) =
        chunks.iter().copied().partition(|c| readable(c));
    let (mem_file, pool) = fallback;
    let parasite_bytes = match splice_all(pid, &direct, store, threads) {
        Ok(n) => {
            log::info!("pid {pid}: {n} bytes of pages spliced through the parasite");
            n
        }
        Err(Fallback(reason)) => {
            log::warn!("pid {pid}: parasite page copy refused ({reason}); using process_vm_readv");
            mem::copy_chunks(pid, mem_file, &direct, store, pool, CopyMethod::VmReadv)?
        }
        Err(Failed(e)) => return Err(e),
    };
    let rest_bytes = mem::copy_chunks(pid, mem_file, &rest, store, pool, CopyMethod::VmReadv)?;
    Ok(parasite_bytes + rest_bytes)
}

/// Why the parasite path did not finish: nothing stored yet (fall back), or a real failure.
enum Outcome {
    Fallback(String),
    Failed(DumpError),
}
use Outcome::{Failed, Fallback};

fn splice_all(
    pid: u32,
    chunks: &[CopyChunk],
    store: &PageStoreWriter,
    threads: usize,
) -> std::result::Result<u64, Outcome> {
    if chunks.is_empty() {
        return Ok(0);
    }
    let perr = |what: &'static str| {
        move |e: dormant_parasite::ParasiteError| DumpError::Parasite {
            pid,
            what,
            reason: e.to_string(),
        }
    };
    let mut parasite =
        Parasite::inject(Tid(pid as i32), &[]).map_err(|e| Fallback(e.to_string()))?;
    let pipes = if threads > 0 {
        threads
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 4)
    };
    if let Err(e) = parasite.open_page_pipes(pipes, PIPE_SIZE) {
        // Nothing stored yet: cure and fall back.
        parasite.cure().map_err(|e| Failed(perr("cure")(e)))?;
        return Err(Fallback(e.to_string()));
    }
    let extents: Vec<(u64, u64, u32)> = chunks.iter().map(|c| (c.vaddr, c.len, c.flags)).collect();
    let moved = parasite.splice_pages(&extents, |vaddr, len, flags, fd| {
        store
            .write_extent_from_fd(vaddr, flags, fd, len)
            .map(drop)
            .map_err(|source| DumpError::Image {
                pid,
                what: format!("page store {}", store.name()),
                source,
            })
    });
    let cured = parasite.cure().map_err(perr("cure"));
    let moved = match moved {
        Ok(n) => n,
        Err(SpliceError::Sink(e)) => return Err(Failed(e)),
        Err(SpliceError::Parasite(e)) => return Err(Failed(perr("vmsplice pages")(e))),
    };
    cured.map_err(Failed)?;
    Ok(moved)
}
