//! Which pages of a mapping hold data worth dumping: the PAGEMAP_SCAN ioctl (Linux 6.7+) returns them as
//! coalesced ranges; on older kernels the per-page `/proc/<pid>/pagemap` entries are read and coalesced here.
//!
//! Skipped either way: pages never populated, pages mapping the shared zero page, and (for private file
//! mappings) pages still backed by the file's page cache, i.e. never copied on write.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use dormant_sys::pagemap::{
    PageRegion, PmScanArg, PAGE_IS_FILE, PAGE_IS_PFNZERO, PAGE_IS_PRESENT, PAGE_IS_SWAPPED,
    PM_FILE, PM_PFN_MASK, PM_PRESENT, PM_SWAPPED,
};

/// The page size of x86-64 user mappings.
pub const PAGE_SIZE: u64 = 4096;

/// Regions fetched per ioctl call.
const SCAN_BATCH: usize = 512;
/// pagemap entries read per pread in the fallback walk.
const PAGEMAP_BATCH: usize = 4096;

/// A half-open range of virtual addresses, page aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRange {
    pub start: u64,
    pub end: u64,
}

impl PageRange {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }
}

/// What a walk keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkKind {
    /// Anonymous private memory: present or swapped, not the zero page.
    Anon,
    /// A private file mapping: like `Anon`, and additionally not a page-cache (never COW'd) page.
    PrivateFile,
}

/// How pages are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Scan,
    /// Per-page entries; the zero page's PFN, when known, identifies zero-page mappings.
    Pagemap {
        zero_pfn: Option<u64>,
    },
}

/// A page walker over one process's `/proc/<pid>/pagemap`.
#[derive(Debug)]
pub struct PageWalker {
    pagemap: File,
    method: Method,
}

impl PageWalker {
    /// Opens `/proc/<pid>/pagemap` and picks PAGEMAP_SCAN when the kernel has it.
    pub fn open(pid: u32) -> io::Result<Self> {
        let pagemap = File::open(format!("/proc/{pid}/pagemap"))?;
        let method = if scan_supported(&pagemap) {
            Method::Scan
        } else {
            Method::Pagemap {
                zero_pfn: zero_page_pfn().ok(),
            }
        };
        log::debug!("pid {pid}: page walk via {method:?}");
        Ok(Self { pagemap, method })
    }

    /// Uses a given method (tests compare both).
    pub fn with_method(pid: u32, method: Method) -> io::Result<Self> {
        Ok(Self {
            pagemap: File::open(format!("/proc/{pid}/pagemap"))?,
            method,
        })
    }

    pub fn method(&self) -> Method {
        self.method
    }

    /// The ranges of `start..end` holding pages to dump, ascending and coalesced.
    pub fn walk(&self, start: u64, end: u64, kind: WalkKind) -> io::Result<Vec<PageRange>> {
        match self.method {
            Method::Scan => self.walk_scan(start, end, kind),
            Method::Pagemap { zero_pfn } => self.walk_pagemap(start, end, kind, zero_pfn),
        }
    }

    fn walk_scan(&self, start: u64, end: u64, kind: WalkKind) -> io::Result<Vec<PageRange>> {
        // Match: (PRESENT or SWAPPED) and not PFNZERO (and, for private file mappings, not FILE).
        let mut excluded = PAGE_IS_PFNZERO;
        if kind == WalkKind::PrivateFile {
            excluded |= PAGE_IS_FILE;
        }
        let mut regions = vec![PageRegion::default(); SCAN_BATCH];
        let mut out: Vec<PageRange> = Vec::new();
        let mut pos = start;
        while pos < end {
            let mut arg = PmScanArg {
                size: std::mem::size_of::<PmScanArg>() as u64,
                start: pos,
                end,
                vec: regions.as_mut_ptr() as u64,
                vec_len: regions.len() as u64,
                category_inverted: excluded,
                category_mask: excluded,
                category_anyof_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                return_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                ..Default::default()
            };
            // SAFETY: `vec` points at `regions`, vec_len of them, alive for the call.
            let n = unsafe { pm_scan(&self.pagemap, &mut arg) }?;
            for r in regions.iter().take(n) {
                push_coalesced(&mut out, r.start, r.end);
            }
            if arg.walk_end <= pos {
                return Err(io::Error::other(format!(
                    "PAGEMAP_SCAN made no progress at {pos:#x} (walk_end {:#x})",
                    arg.walk_end
                )));
            }
            pos = arg.walk_end;
        }
        Ok(out)
    }

    fn walk_pagemap(
        &self,
        start: u64,
        end: u64,
        kind: WalkKind,
        zero_pfn: Option<u64>,
    ) -> io::Result<Vec<PageRange>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; PAGEMAP_BATCH * 8];
        let mut page = start;
        while page < end {
            let pages = (((end - page) / PAGE_SIZE) as usize).min(PAGEMAP_BATCH);
            let bytes = &mut buf[..pages * 8];
            self.pagemap.read_exact_at(bytes, page / PAGE_SIZE * 8)?;
            for (i, entry) in bytes.chunks_exact(8).enumerate() {
                let mut w = [0u8; 8];
                w.copy_from_slice(entry);
                let e = u64::from_ne_bytes(w);
                if keep_pagemap_entry(e, kind, zero_pfn) {
                    let addr = page + i as u64 * PAGE_SIZE;
                    push_coalesced(&mut out, addr, addr + PAGE_SIZE);
                }
            }
            page += pages as u64 * PAGE_SIZE;
        }
        Ok(out)
    }
}

/// Whether one pagemap entry marks a page to dump.
pub fn keep_pagemap_entry(e: u64, kind: WalkKind, zero_pfn: Option<u64>) -> bool {
    if e & (PM_PRESENT | PM_SWAPPED) == 0 {
        return false;
    }
    if kind == WalkKind::PrivateFile && e & PM_FILE != 0 {
        return false;
    }
    if e & PM_PRESENT != 0 && e & PM_SWAPPED == 0 {
        if let Some(z) = zero_pfn {
            if e & PM_PFN_MASK == z {
                return false;
            }
        }
    }
    true
}

/// Appends `start..end` to `out`, merging it with the last range when adjacent.
pub fn push_coalesced(out: &mut Vec<PageRange>, start: u64, end: u64) {
    if start >= end {
        return;
    }
    if let Some(last) = out.last_mut() {
        if last.end == start {
            last.end = end;
            return;
        }
    }
    out.push(PageRange { start, end });
}

/// One PAGEMAP_SCAN ioctl (dormant-sys's, which the kerndat probe calls too).
///
/// # Safety
/// `arg.vec`/`arg.vec_len` must describe a buffer of `PageRegion`s the caller owns for the call.
unsafe fn pm_scan(pagemap: &File, arg: &mut PmScanArg) -> io::Result<usize> {
    // SAFETY: the caller's contract.
    unsafe { dormant_sys::host::pagemap_scan(pagemap.as_fd(), arg) }.map_err(io::Error::from)
}

/// Probes PAGEMAP_SCAN with an empty range: ENOTTY/EINVAL mean the kernel predates it.
fn scan_supported(pagemap: &File) -> bool {
    let mut region = PageRegion::default();
    let mut arg = PmScanArg {
        size: std::mem::size_of::<PmScanArg>() as u64,
        start: 0,
        end: PAGE_SIZE,
        vec: &mut region as *mut PageRegion as u64,
        vec_len: 1,
        category_anyof_mask: PAGE_IS_PRESENT,
        return_mask: PAGE_IS_PRESENT,
        ..Default::default()
    };
    // SAFETY: `vec` points at `region`, one PageRegion alive for the call.
    match unsafe { pm_scan(pagemap, &mut arg) } {
        Ok(_) => true,
        Err(e) => {
            log::debug!("PAGEMAP_SCAN unavailable ({e}); using pagemap entries");
            false
        }
    }
}

/// The PFN of the shared zero page, found by read-faulting a private anonymous page of our own and
/// looking it up in our pagemap (needs CAP_SYS_ADMIN for PFNs to be shown).
pub fn zero_page_pfn() -> io::Result<u64> {
    let len = PAGE_SIZE as usize;
    // SAFETY: a fresh private anonymous mapping, not aliased by anything; unmapped below.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: addr is a readable mapping of len bytes; the volatile read faults in the zero page.
    let _ = unsafe { std::ptr::read_volatile(addr.cast::<u8>()) };
    let result = (|| {
        let pm = File::open("/proc/self/pagemap")?;
        let mut e = [0u8; 8];
        pm.read_exact_at(&mut e, addr as u64 / PAGE_SIZE * 8)?;
        let pfn = u64::from_ne_bytes(e) & PM_PFN_MASK;
        if pfn == 0 {
            return Err(io::Error::other("PFNs hidden (no CAP_SYS_ADMIN)"));
        }
        Ok(pfn)
    })();
    // SAFETY: unmapping the mapping created above, nothing refers to it.
    unsafe { libc::munmap(addr, len) };
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ioctl_number() {
        assert_eq!(std::mem::size_of::<PmScanArg>(), 96);
        assert_eq!(dormant_sys::pagemap::PAGEMAP_SCAN, 0xc060_6610);
    }

    #[test]
    fn entry_rules() {
        let present = PM_PRESENT | 1234;
        assert!(keep_pagemap_entry(present, WalkKind::Anon, Some(99)));
        assert!(!keep_pagemap_entry(0, WalkKind::Anon, None));
        assert!(
            keep_pagemap_entry(PM_SWAPPED | 5, WalkKind::Anon, Some(5)),
            "swap entries are not PFNs"
        );
        assert!(
            !keep_pagemap_entry(PM_PRESENT | 99, WalkKind::Anon, Some(99)),
            "zero page"
        );
        assert!(
            !keep_pagemap_entry(present | PM_FILE, WalkKind::PrivateFile, None),
            "clean file page"
        );
        assert!(
            keep_pagemap_entry(present, WalkKind::PrivateFile, None),
            "COW'd page"
        );
    }

    proptest! {
        #[test]
        fn coalescing(pages in proptest::collection::btree_set(0u64..200, 0..100)) {
            let mut out = Vec::new();
            for p in &pages {
                push_coalesced(&mut out, p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
            }
            // Same pages, no two ranges adjacent or overlapping.
            let total: u64 = out.iter().map(|r| r.len() / PAGE_SIZE).sum();
            prop_assert_eq!(total, pages.len() as u64);
            for w in out.windows(2) {
                prop_assert!(w[0].end < w[1].start);
            }
            for r in &out {
                for a in (r.start..r.end).step_by(PAGE_SIZE as usize) {
                    prop_assert!(pages.contains(&(a / PAGE_SIZE)));
                }
            }
        }
    }

    /// Both methods agree on our own memory: written pages found, untouched and zero-page ones not.
    #[test]
    fn scan_and_pagemap_agree_on_self() {
        let pages = 64usize;
        let len = pages * PAGE_SIZE as usize;
        // SAFETY: a fresh private anonymous mapping owned by this test.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED);
        let base = addr as u64;
        for p in [0usize, 1, 2, 10, 40, 63] {
            // SAFETY: inside the mapping.
            unsafe { *(addr as *mut u8).add(p * PAGE_SIZE as usize) = 1 };
        }
        // Read-fault page 20 (zero page).
        // SAFETY: inside the mapping.
        let _ =
            unsafe { std::ptr::read_volatile((addr as *const u8).add(20 * PAGE_SIZE as usize)) };
        let me = std::process::id();
        let want = vec![
            PageRange {
                start: base,
                end: base + 3 * PAGE_SIZE,
            },
            PageRange {
                start: base + 10 * PAGE_SIZE,
                end: base + 11 * PAGE_SIZE,
            },
            PageRange {
                start: base + 40 * PAGE_SIZE,
                end: base + 41 * PAGE_SIZE,
            },
            PageRange {
                start: base + 63 * PAGE_SIZE,
                end: base + 64 * PAGE_SIZE,
            },
        ];
        let pm = PageWalker::with_method(
            me,
            Method::Pagemap {
                zero_pfn: zero_page_pfn().ok(),
            },
        )
        .unwrap();
        assert_eq!(
            pm.walk(base, base + len as u64, WalkKind::Anon).unwrap(),
            want
        );
        let w = PageWalker::open(me).unwrap();
        if w.method() == Method::Scan {
            assert_eq!(
                w.walk(base, base + len as u64, WalkKind::Anon).unwrap(),
                want
            );
        }
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(addr, len) };
    }
}
