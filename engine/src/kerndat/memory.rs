//! Memory probes: pagemap with PFNs, the PAGEMAP_SCAN ioctl, soft-dirty, userfaultfd write-protect in
//! async mode, and memfd. Each works on a small anonymous mapping of its own.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use nix::sys::memfd::{memfd_create, MFdFlags};

use super::child::in_child;
use super::error::ProbeError;
use super::sys::{self, AnonMap, PageRegion, ScanQuery, PAGE_IS_PFNZERO, PAGE_IS_PRESENT};
use super::{Fact, Found};

const PM_PRESENT: u64 = 1 << 63;
const PM_UFFD_WP: u64 = 1 << 57;
const PM_SOFT_DIRTY: u64 = 1 << 55;
const PM_PFN_MASK: u64 = (1 << 55) - 1;
const SELF_PAGEMAP: &str = "/proc/self/pagemap";

/// This process's /proc/self/pagemap, read one 8-byte entry per page.
struct Pagemap {
    file: File,
    page_size: u64,
}

impl Pagemap {
    fn open_self() -> Result<Self, ProbeError> {
        let file = File::open(SELF_PAGEMAP).map_err(|e| ProbeError::read(SELF_PAGEMAP, e))?;
        Ok(Pagemap {
            file,
            page_size: sys::page_size() as u64,
        })
    }

    fn entry(&self, addr: usize) -> Result<u64, ProbeError> {
        let mut raw = [0u8; 8];
        self.file
            .read_exact_at(&mut raw, addr as u64 / self.page_size * 8)
            .map_err(|e| ProbeError::read(format!("{SELF_PAGEMAP} at {addr:#x}"), e))?;
        Ok(u64::from_ne_bytes(raw))
    }
}

/// Writes one page and reads another, then checks their pagemap entries: the written page must be
/// present with a non-zero PFN (PFNs read as zero without CAP_SYS_ADMIN); the read-faulted page maps
/// the shared zero page, whose PFN the engine uses to skip zero pages.
pub(crate) fn pagemap() -> Result<Found, ProbeError> {
    let map = AnonMap::new(2).map_err(|e| ProbeError::sys("mmap", e))?;
    map.write(0, 0x5a);
    let _ = map.read(1);
    let pagemap = Pagemap::open_self()?;
    let written = pagemap.entry(map.page_addr(0))?;
    if written & PM_PRESENT == 0 {
        return Err(ProbeError::unexpected(format!(
            "a page just written is not present in pagemap (entry {written:#x})"
        )));
    }
    let pfn = written & PM_PFN_MASK;
    if pfn == 0 {
        return Err(ProbeError::unexpected(
            "pagemap hides PFNs (reads 0): CAP_SYS_ADMIN is needed",
        ));
    }
    let read = pagemap.entry(map.page_addr(1))?;
    let zero_pfn =
        (read & PM_PRESENT != 0 && read & PM_PFN_MASK != 0).then_some(read & PM_PFN_MASK);
    let zero_note = match zero_pfn {
        Some(z) => format!("zero page PFN {z:#x}"),
        None => "a read fault did not map the zero page".to_string(),
    };
    Ok(Found {
        detail: format!("written page at PFN {pfn:#x}; {zero_note}"),
        fact: Fact::ZeroPagePfn(zero_pfn),
    })
}

/// PAGEMAP_SCAN over eight pages of which 1, 2 and 5 were written and 7 read-faulted. The kernel must
/// answer exactly three present ranges: pages 1-2, page 5, and page 7 flagged as the zero page.
pub(crate) fn pagemap_scan() -> Result<Found, ProbeError> {
    let map = AnonMap::new(8).map_err(|e| ProbeError::sys("mmap", e))?;
    for page in [1, 2, 5] {
        map.write(page, 0xa5);
    }
    let _ = map.read(7);
    let pagemap = Pagemap::open_self()?;
    let mut regions = [PageRegion::default(); 8];
    let query = ScanQuery {
        start: map.start(),
        end: map.start() + map.len(),
        category_mask: PAGE_IS_PRESENT,
        return_mask: PAGE_IS_PRESENT | PAGE_IS_PFNZERO,
    };
    let (filled, walk_end) = sys::pagemap_scan(pagemap.file.as_fd(), query, &mut regions)
        .map_err(|e| ProbeError::sys("ioctl(PAGEMAP_SCAN)", e))?;
    let page = |n: usize| map.page_addr(n) as u64;
    let expected = [
        PageRegion {
            start: page(1),
            end: page(3),
            categories: PAGE_IS_PRESENT,
        },
        PageRegion {
            start: page(5),
            end: page(6),
            categories: PAGE_IS_PRESENT,
        },
        PageRegion {
            start: page(7),
            end: page(8),
            categories: PAGE_IS_PRESENT | PAGE_IS_PFNZERO,
        },
    ];
    let got = regions.get(..filled).unwrap_or(&regions);
    if got != expected || walk_end != page(8) {
        return Err(ProbeError::unexpected(format!(
            "PAGEMAP_SCAN answered {got:x?} up to {walk_end:#x}, expected {expected:x?}"
        )));
    }
    Ok(Found::detail(
        "3 ranges as expected (written pages 1-2 and 5, zero page 7)".to_string(),
    ))
}

/// Soft-dirty, in a child because clear_refs affects the whole process: a fresh page must carry bit
/// 55, lose it after `4 > clear_refs` and regain it on the next write. The write to clear_refs
/// succeeds even on kernels without CONFIG_MEM_SOFT_DIRTY, so only the bit tells.
pub(crate) fn soft_dirty() -> Result<Found, ProbeError> {
    in_child(|| {
        let map = AnonMap::new(1).map_err(|e| format!("mmap failed: {e}"))?;
        map.write(0, 1);
        let pagemap = Pagemap::open_self().map_err(|e| e.to_string())?;
        let bit = |pm: &Pagemap| -> Result<bool, String> {
            Ok(pm.entry(map.page_addr(0)).map_err(|e| e.to_string())? & PM_SOFT_DIRTY != 0)
        };
        let fresh = bit(&pagemap)?;
        std::fs::write("/proc/self/clear_refs", "4").map_err(|e| format!("writing 4 to /proc/self/clear_refs failed: {e}"))?;
        let cleared = bit(&pagemap)?;
        map.write(0, 2);
        let rewritten = bit(&pagemap)?;
        match (fresh, cleared, rewritten) {
            (true, false, true) => Ok("bit 55 set on a new page, cleared by clear_refs, set again by a write".to_string()),
            (false, false, false) => Err(
                "pagemap bit 55 never set (clear_refs accepted \"4\" but the kernel tracks no soft-dirty bits)"
                    .to_string(),
            ),
            other => Err(format!(
                "pagemap bit 55 (fresh, after clear_refs, after write) = {other:?}, expected (true, false, true)"
            )),
        }
    })
    .map(Found::detail)
}

/// userfaultfd with UFFD_FEATURE_WP_ASYNC, in a child: ask UFFDIO_API for the feature, write-protect
/// two written pages, write one of them. In async mode the kernel resolves the fault itself and clears
/// the uffd-wp pagemap bit (57) of that page only. Without async mode the write would block forever;
/// the child's time limit turns that into a Missing.
pub(crate) fn uffd_wp_async() -> Result<Found, ProbeError> {
    in_child(|| {
        let uffd = sys::userfaultfd().map_err(|e| format!("userfaultfd() failed: {e}"))?;
        let granted = sys::uffdio_api(uffd.as_fd(), sys::UFFD_FEATURE_WP_ASYNC)
            .map_err(|e| format!("UFFDIO_API with UFFD_FEATURE_WP_ASYNC failed: {e}"))?;
        if granted & sys::UFFD_FEATURE_WP_ASYNC == 0 {
            return Err(format!("UFFDIO_API did not grant WP_ASYNC (features {granted:#x})"));
        }
        let map = AnonMap::new(2).map_err(|e| format!("mmap failed: {e}"))?;
        map.write(0, 1);
        map.write(1, 1);
        sys::uffdio_register_wp(uffd.as_fd(), map.start(), map.len())
            .map_err(|e| format!("UFFDIO_REGISTER (MODE_WP) failed: {e}"))?;
        sys::uffdio_writeprotect(uffd.as_fd(), map.start(), map.len())
            .map_err(|e| format!("UFFDIO_WRITEPROTECT failed: {e}"))?;
        let pagemap = Pagemap::open_self().map_err(|e| e.to_string())?;
        let wp = |page: usize| -> Result<bool, String> {
            Ok(pagemap.entry(map.page_addr(page)).map_err(|e| e.to_string())? & PM_UFFD_WP != 0)
        };
        let before = (wp(0)?, wp(1)?);
        map.write(0, 2);
        let after = (wp(0)?, wp(1)?);
        if before == (true, true) && after == (false, true) {
            Ok("WP_ASYNC granted; a write to a protected page was resolved by the kernel and unprotected it alone".to_string())
        } else {
            Err(format!(
                "uffd-wp bits (page 0, page 1) before a write {before:?}, after {after:?}; expected (true, true) then (false, true)"
            ))
        }
    })
    .map(Found::detail)
}

/// memfd_create, then write, read back and check the /proc fd link names the memfd.
pub(crate) fn memfd() -> Result<Found, ProbeError> {
    let fd = memfd_create(c"dormant-probe", MFdFlags::MFD_CLOEXEC)
        .map_err(|e| ProbeError::sys("memfd_create", e))?;
    let link_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    let link = std::fs::read_link(&link_path).map_err(|e| ProbeError::read(&link_path, e))?;
    let mut file = File::from(fd);
    let payload = b"dormant memfd probe";
    file.write_all(payload)
        .map_err(|e| ProbeError::write(&link_path, "probe payload", e))?;
    let mut back = Vec::new();
    let mut reader = &file;
    std::io::Seek::rewind(&mut reader).map_err(|e| ProbeError::read(&link_path, e))?;
    reader
        .read_to_end(&mut back)
        .map_err(|e| ProbeError::read(&link_path, e))?;
    if back != payload {
        return Err(ProbeError::unexpected(
            "memfd did not read back what was written",
        ));
    }
    let link = link.to_string_lossy().into_owned();
    if !link.starts_with("/memfd:dormant-probe") {
        return Err(ProbeError::unexpected(format!(
            "memfd fd links to {link:?}"
        )));
    }
    Ok(Found::detail(format!("{link} holds what was written")))
}
