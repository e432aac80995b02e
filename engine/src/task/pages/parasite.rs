//! Private pages through the injected parasite: the blob takes the crc32 of each page range in place and
//! vmsplices it into a pipe (two per copy thread, at most fs.pipe-max-size each), and dumper threads
//! splice the pipes into the page store while the blob fills the next ones. Each byte is copied once
//! (page -> page cache) and read once more by the crc in the target, against two copies plus a crc for
//! process_vm_readv (page -> buffer -> page cache).
//!
//! Only readable mappings go this way (vmsplice cannot read PROT_NONE pages); the rest, everything when
//! the readable part is too small to pay for the injection ([`PARASITE_MIN_BYTES`]), and everything
//! when injection is refused or fails before any page moved, goes through [`copy::copy_chunks`].

use dormant_image::PageStoreWriter;
use dormant_parasite::{PagePiece, Parasite, SpliceError, Tid};

use crate::error::{DumpError, Result};
use crate::task::mm::CollectedVma;

use super::copy::{self, CopyChunk, CopyMethod};

/// Bytes asked for each page pipe (the kernel caps it at fs.pipe-max-size, 1 MiB by default).
const PIPE_SIZE: u64 = 1 << 20;

/// Pipes per drain thread. The blob refills them half at a time, so while it fills one half the drain
/// threads splice the other; four (two per command and thread) measured no worse than two and halve
/// the commands, each of which costs a ptrace round trip and a few syscall stops.
const PIPES_PER_DRAIN: usize = 4;

/// Below this many readable bytes the parasite is not injected even when asked for: injecting, opening
/// the pipes and curing cost about 1.5-2 ms, and at 32 MiB process_vm_readv measured as fast or faster
/// (10.5 ms best vs 12.5 ms) even on a loaded guest, where the parasite otherwise does best.
pub const PARASITE_MIN_BYTES: u64 = 48 << 20;

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
    let direct_bytes: u64 = direct.iter().map(|c| c.len).sum();
    if direct_bytes < PARASITE_MIN_BYTES {
        log::debug!(
            "pid {pid}: {direct_bytes} bytes of pages, process_vm_readv without the parasite"
        );
        return copy::copy_chunks(pid, mem_file, chunks, store, pool, CopyMethod::VmReadv);
    }
    let parasite_bytes = match splice_all(pid, &direct, store, threads) {
        Ok(n) => {
            log::info!("pid {pid}: {n} bytes of pages spliced through the parasite");
            n
        }
        Err(Fallback(reason)) => {
            log::warn!("pid {pid}: parasite page copy refused ({reason}); using process_vm_readv");
            copy::copy_chunks(pid, mem_file, &direct, store, pool, CopyMethod::VmReadv)?
        }
        Err(Failed(e)) => return Err(e),
    };
    let rest_bytes = copy::copy_chunks(pid, mem_file, &rest, store, pool, CopyMethod::VmReadv)?;
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
    let drains = if threads > 0 {
        threads
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 4)
    };
    if let Err(e) = parasite.open_page_pipes(PIPES_PER_DRAIN * drains, PIPE_SIZE) {
        // Nothing stored yet: cure and fall back.
        parasite.cure().map_err(|e| Failed(perr("cure")(e)))?;
        return Err(Fallback(e.to_string()));
    }
    let extents: Vec<(u64, u64, u32)> = chunks.iter().map(|c| (c.vaddr, c.len, c.flags)).collect();
    let moved = parasite.splice_pages(&extents, drains, |p: PagePiece, fd| {
        // The blob took the crc of these very bytes in the frozen target: nothing is read back.
        store
            .write_extent_from_fd_with_crc(p.vaddr, p.tag, fd, p.len, p.crc32)
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
