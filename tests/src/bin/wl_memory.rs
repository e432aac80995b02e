//! Workload `wl_memory`: every kind of memory a checkpoint must carry, each verifiable after a restore.
//!
//! `wl_memory TRIGGER DIR [--inject-fault]`. It sets up, each in its own isolated place (unmapped pages on
//! both sides, so no mapping can merge with a neighbour):
//! - `big`: 300 MiB private anonymous memory (MADV_NOHUGEPAGE), about 267 MiB of it filled with a pattern
//!   derived from each word's address and a per-run seed (misplaced or stale pages are caught), with holes
//!   never touched: four 8 MiB ones and one page in every 509. Holes must read zero and must still be
//!   unpopulated (`/proc/self/pagemap`: neither present nor swapped).
//! - `guard`: 16 pages with data, the middle 8 then PROT_NONE; checked via maps, then made readable for a
//!   moment to check their content, then protected again.
//! - `ro`: 8 pages of data made read-only.
//! - `file`: a 64-page file it writes in DIR, mapped MAP_PRIVATE read-write; pages 5, 6 and 40 modified in
//!   memory, pages 0 and 20 read. Modified pages must keep the change, the others equal the file, and the file
//!   on disk (content, size, mtime) must be unchanged.
//! - `shared`: 4 MiB MAP_SHARED anonymous memory with a pattern, plus a second mapping of the same pages
//!   (mremap with old size 0). Both must show `/dev/zero (deleted)` with `s` and one inode, and a write
//!   through one must be seen through the other.
//! - a deep stack: 1200 frames of 4 KiB each with a per-frame pattern, checked on the way back up.
//!
//! Before READY it records its own mappings from `/proc/self/smaps` (range, protection, offset, file, VmFlags)
//! and after the trigger compares them. READY is printed at the bottom of the recursion, so a dump sees the
//! deep stack. With `--inject-fault` it flips one word of `big` and one stack frame after the trigger, to
//! prove the checks catch damage.

use std::ffi::c_void;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::num::NonZeroUsize;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::ptr::NonNull;

use dormant_tests::maps;
use dormant_tests::workload::{self, Report, WorkloadArgs, WorkloadError, INJECT_FAULT};
use nix::sys::mman::{MRemapFlags, MapFlags, MmapAdvise, ProtFlags};

const PAGE: usize = 4096;
const WORDS_PER_PAGE: usize = PAGE / 8;
const MIB: usize = 1 << 20;

const BIG_LEN: usize = 300 * MIB;
/// The big mapping is cut into chunks of this many pages; the last `BIG_HOLE_PAGES` of each are a hole.
const BIG_CHUNK_PAGES: usize = 72 * MIB / PAGE;
const BIG_HOLE_PAGES: usize = 8 * MIB / PAGE;
/// Besides, one page in every `BIG_SPARSE_EVERY` is a hole (at index `BIG_SPARSE_AT` modulo it).
const BIG_SPARSE_EVERY: usize = 509;
const BIG_SPARSE_AT: usize = 7;

const GUARD_PAGES: usize = 16;
const GUARD_NONE: std::ops::Range<usize> = 4..12;
const RO_PAGES: usize = 8;
const FILE_PAGES: usize = 64;
const FILE_MODIFIED: [usize; 3] = [5, 6, 40];
const FILE_READ: [usize; 2] = [0, 20];
const SHARED_LEN: usize = 4 * MIB;

const STACK_FRAMES: u32 = 1200;
const FRAME_WORDS: usize = 512;

const USAGE: &str = "[--inject-fault]";

/// The pattern word for address `addr` (splitmix64's finaliser: every bit of the address and seed matters).
fn mix(addr: u64, seed: u64) -> u64 {
    let mut z = addr ^ seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn is_big_hole(page: usize) -> bool {
    page % BIG_CHUNK_PAGES >= BIG_CHUNK_PAGES - BIG_HOLE_PAGES
        || page % BIG_SPARSE_EVERY == BIG_SPARSE_AT
}

/// A mapping made by this workload, with an unmapped page on each side.
#[derive(Debug, Clone, Copy)]
struct Region {
    base: NonNull<u8>,
    len: usize,
}

impl Region {
    fn addr(&self) -> u64 {
        self.base.as_ptr() as u64
    }

    fn range(&self) -> (u64, u64) {
        (self.addr(), self.addr() + self.len as u64)
    }

    fn page_ptr(&self, page: usize) -> *mut u64 {
        self.base.as_ptr().wrapping_add(page * PAGE).cast()
    }

    /// Fills page `page` with the pattern of `seed`; returns the page's word sum.
    fn fill_page(&self, page: usize, seed: u64) -> u64 {
        let p = self.page_ptr(page);
        let mut sum = 0u64;
        for i in 0..WORDS_PER_PAGE {
            let w = p.wrapping_add(i);
            let v = mix(w as u64, seed);
            // SAFETY: `w` is inside this region (page < len / PAGE), which is mapped writable here.
            unsafe { w.write_volatile(v) };
            sum = sum.wrapping_add(v);
        }
        sum
    }

    /// Checks page `page` against the pattern of `seed`; returns its word sum and the first bad word.
    fn check_page(&self, page: usize, seed: u64) -> (u64, Option<(u64, u64, u64)>) {
        let p = self.page_ptr(page);
        let mut sum = 0u64;
        let mut bad = None;
        for i in 0..WORDS_PER_PAGE {
            let w = p.wrapping_add(i);
            // SAFETY: `w` is inside this region, which is mapped readable when this is called.
            let got = unsafe { w.read_volatile() };
            let want = mix(w as u64, seed);
            sum = sum.wrapping_add(got);
            if got != want && bad.is_none() {
                bad = Some((w as u64, want, got));
            }
        }
        (sum, bad)
    }

    /// Whether every word of page `page` is zero.
    fn page_is_zero(&self, page: usize) -> bool {
        let p = self.page_ptr(page);
        // SAFETY: inside this region, mapped readable when this is called.
        (0..WORDS_PER_PAGE).all(|i| unsafe { p.wrapping_add(i).read_volatile() } == 0)
    }
}

fn sys_err(what: &str) -> impl FnOnce(nix::errno::Errno) -> WorkloadError + '_ {
    move |e| WorkloadError::setup(what, e)
}

/// Reserves `len` bytes plus a page on each side, then unmaps the two side pages: the region's neighbours
/// are holes, so its mappings never merge with anything else.
fn reserve(len: usize) -> Result<NonNull<u8>, WorkloadError> {
    let total = NonZeroUsize::new(len + 2 * PAGE)
        .ok_or_else(|| WorkloadError::setup("reserve", "empty"))?;
    // SAFETY: a new anonymous PROT_NONE mapping at an address of the kernel's choice touches no existing
    // memory.
    let p = unsafe {
        nix::sys::mman::mmap_anonymous(
            None,
            total,
            ProtFlags::PROT_NONE,
            MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
        )
    }
    .map_err(sys_err("reserving address space"))?;
    let first = p.cast::<u8>();
    let body = NonNull::new(first.as_ptr().wrapping_add(PAGE))
        .ok_or_else(|| WorkloadError::setup("reserve", "null"))?;
    let last = body.as_ptr().wrapping_add(len).cast::<c_void>();
    // SAFETY: both pages are the ends of the reservation just made, used by nothing.
    unsafe {
        nix::sys::mman::munmap(first.cast(), PAGE)
            .map_err(sys_err("unmapping the low side page"))?;
        nix::sys::mman::munmap(NonNull::new_unchecked(last), PAGE)
            .map_err(sys_err("unmapping the high side page"))?;
    }
    Ok(body)
}

/// Maps anonymous memory (`flags` add MAP_PRIVATE or MAP_SHARED) over a fresh isolated reservation.
fn map_anon(len: usize, flags: MapFlags) -> Result<Region, WorkloadError> {
    let at = reserve(len)?;
    let size = NonZeroUsize::new(len).ok_or_else(|| WorkloadError::setup("map", "empty"))?;
    let addr = NonZeroUsize::new(at.as_ptr() as usize)
        .ok_or_else(|| WorkloadError::setup("map", "null"))?;
    // SAFETY: MAP_FIXED replaces only our own PROT_NONE reservation of exactly this range.
    let p = unsafe {
        nix::sys::mman::mmap_anonymous(
            Some(addr),
            size,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            flags | MapFlags::MAP_FIXED,
        )
    }
    .map_err(sys_err("mapping anonymous memory"))?;
    Ok(Region {
        base: p.cast(),
        len,
    })
}

fn protect(r: &Region, pages: std::ops::Range<usize>, prot: ProtFlags) -> Result<(), String> {
    let p = NonNull::new(r.page_ptr(pages.start).cast::<c_void>()).ok_or("null")?;
    // SAFETY: the range lies inside region `r`, which this workload owns; no Rust reference points into it.
    unsafe { nix::sys::mman::mprotect(p, (pages.end - pages.start) * PAGE, prot) }
        .map_err(|e| format!("mprotect {prot:?}: {e}"))
}

/// Opens `/proc/self/pagemap` for one check. It is never held open across a checkpoint: a descriptor of a
/// procfs file names the old process's `/proc/PID` and is not something a restore is asked to recreate.
fn open_pagemap() -> Result<File, String> {
    File::open("/proc/self/pagemap").map_err(|e| format!("opening pagemap: {e}"))
}

/// The pagemap entry of the page at `addr`: bit 63 present, bit 62 swapped.
fn pagemap_entry(pagemap: &File, addr: u64) -> Result<u64, String> {
    let mut b = [0u8; 8];
    pagemap
        .read_exact_at(&mut b, addr / PAGE as u64 * 8)
        .map_err(|e| format!("reading pagemap at {addr:#x}: {e}"))?;
    Ok(u64::from_le_bytes(b))
}

const PM_PRESENT: u64 = 1 << 63;
const PM_SWAPPED: u64 = 1 << 62;

struct Big {
    region: Region,
    seed: u64,
    sum: u64,
    filled_pages: usize,
}

fn setup_big(seed: u64) -> Result<Big, WorkloadError> {
    let region = map_anon(BIG_LEN, MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE)?;
    // SAFETY: advice on our own fresh mapping; it changes no content.
    unsafe {
        nix::sys::mman::madvise(region.base.cast(), region.len, MmapAdvise::MADV_NOHUGEPAGE)
            .map_err(sys_err("MADV_NOHUGEPAGE"))?;
    }
    let mut sum = 0u64;
    let mut filled_pages = 0;
    for page in (0..BIG_LEN / PAGE).filter(|p| !is_big_hole(*p)) {
        sum = sum.wrapping_add(region.fill_page(page, seed));
        filled_pages += 1;
    }
    Ok(Big {
        region,
        seed,
        sum,
        filled_pages,
    })
}

fn check_big_data(big: &Big) -> Result<(), String> {
    let mut sum = 0u64;
    let mut bad_pages = 0usize;
    let mut first = None;
    for page in (0..BIG_LEN / PAGE).filter(|p| !is_big_hole(*p)) {
        let (s, bad) = big.region.check_page(page, big.seed);
        sum = sum.wrapping_add(s);
        if let Some(b) = bad {
            bad_pages += 1;
            first.get_or_insert(b);
        }
    }
    if let Some((addr, want, got)) = first {
        return Err(format!(
            "{bad_pages} of {} pages differ; first at {addr:#x}: want {want:#018x} got {got:#018x}",
            big.filled_pages
        ));
    }
    if sum != big.sum {
        return Err(format!("checksum {sum:#x}, want {:#x}", big.sum));
    }
    Ok(())
}

/// Holes must be unpopulated (checked first: reading a hole maps the zero page) and then read as zeros.
fn check_big_holes(big: &Big, read_them: bool) -> Result<(), String> {
    let pagemap = open_pagemap()?;
    let mut populated = Vec::new();
    let holes: Vec<usize> = (0..BIG_LEN / PAGE).filter(|p| is_big_hole(*p)).collect();
    for &page in &holes {
        let addr = big.region.addr() + (page * PAGE) as u64;
        let e = pagemap_entry(&pagemap, addr)?;
        if e & (PM_PRESENT | PM_SWAPPED) != 0 {
            populated.push(addr);
        }
    }
    if !populated.is_empty() {
        return Err(format!(
            "{} of {} hole pages are populated (first {:#x})",
            populated.len(),
            holes.len(),
            populated[0]
        ));
    }
    if read_them {
        if let Some(page) = holes.iter().copied().find(|&p| !big.region.page_is_zero(p)) {
            return Err(format!(
                "hole page {:#x} is not zero",
                big.region.addr() + (page * PAGE) as u64
            ));
        }
    }
    Ok(())
}

fn check_pages(r: &Region, pages: std::ops::Range<usize>, seed: u64) -> Result<(), String> {
    for page in pages {
        if let (_, Some((addr, want, got))) = r.check_page(page, seed) {
            return Err(format!(
                "word at {addr:#x}: want {want:#018x} got {got:#018x}"
            ));
        }
    }
    Ok(())
}

/// The file's byte pattern: a function of the offset, distinct from the memory patterns.
fn file_word(offset: u64, seed: u64) -> u64 {
    mix(offset, seed ^ 0xf11e_f11e_f11e_f11e)
}

fn file_page_bytes(page: usize, seed: u64) -> Vec<u8> {
    (0..WORDS_PER_PAGE)
        .flat_map(|i| file_word((page * PAGE + i * 8) as u64, seed).to_le_bytes())
        .collect()
}

struct FileMap {
    region: Region,
    path: PathBuf,
    seed: u64,
    mtime: (i64, i64),
    ino: u64,
}

fn setup_file(dir: &Path, seed: u64) -> Result<FileMap, WorkloadError> {
    let path = dir.join("wl_memory.data");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| WorkloadError::setup("creating the mapped file", e))?;
    for page in 0..FILE_PAGES {
        f.write_all(&file_page_bytes(page, seed))
            .map_err(|e| WorkloadError::setup("writing the mapped file", e))?;
    }
    f.sync_all()
        .map_err(|e| WorkloadError::setup("syncing the mapped file", e))?;
    let meta = f
        .metadata()
        .map_err(|e| WorkloadError::setup("stat of the mapped file", e))?;
    let len = FILE_PAGES * PAGE;
    let at = reserve(len)?;
    let size = NonZeroUsize::new(len).ok_or_else(|| WorkloadError::setup("map", "empty"))?;
    let addr = NonZeroUsize::new(at.as_ptr() as usize)
        .ok_or_else(|| WorkloadError::setup("map", "null"))?;
    // SAFETY: MAP_FIXED over our own reservation; a private mapping never writes back to the file.
    let p = unsafe {
        nix::sys::mman::mmap(
            Some(addr),
            size,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_PRIVATE | MapFlags::MAP_FIXED,
            &f,
            0,
        )
    }
    .map_err(sys_err("mapping the file"))?;
    let region = Region {
        base: p.cast(),
        len,
    };
    for page in FILE_MODIFIED {
        region.fill_page(page, seed);
    }
    for page in FILE_READ {
        let ptr = region.page_ptr(page);
        // SAFETY: inside the mapping just made; the read populates a clean page-cache page.
        std::hint::black_box(unsafe { ptr.read_volatile() });
    }
    Ok(FileMap {
        region,
        path,
        seed,
        mtime: (meta.mtime(), meta.mtime_nsec()),
        ino: meta.ino(),
    })
}

fn check_file_memory(fm: &FileMap) -> Result<(), String> {
    for page in 0..FILE_PAGES {
        if FILE_MODIFIED.contains(&page) {
            check_pages(&fm.region, page..page + 1, fm.seed)
                .map_err(|e| format!("modified page {page}: {e}"))?;
        } else {
            let want = file_page_bytes(page, fm.seed);
            let p = fm.region.page_ptr(page).cast::<u8>();
            // SAFETY: one page inside the file mapping, readable; no mutable reference exists.
            let got = unsafe { std::slice::from_raw_parts(p, PAGE) };
            if got != want.as_slice() {
                return Err(format!("unmodified page {page} differs from the file"));
            }
        }
    }
    Ok(())
}

fn check_file_disk(fm: &FileMap) -> Result<(), String> {
    let f = File::open(&fm.path).map_err(|e| format!("opening {}: {e}", fm.path.display()))?;
    let meta = f.metadata().map_err(|e| format!("stat: {e}"))?;
    if meta.len() != (FILE_PAGES * PAGE) as u64 {
        return Err(format!(
            "size is {}, want {}",
            meta.len(),
            FILE_PAGES * PAGE
        ));
    }
    if (meta.mtime(), meta.mtime_nsec()) != fm.mtime || meta.ino() != fm.ino {
        return Err("mtime or inode changed".into());
    }
    let mut buf = vec![0u8; PAGE];
    for page in 0..FILE_PAGES {
        f.read_exact_at(&mut buf, (page * PAGE) as u64)
            .map_err(|e| format!("reading page {page}: {e}"))?;
        if buf != file_page_bytes(page, fm.seed) {
            return Err(format!("page {page} on disk changed"));
        }
    }
    Ok(())
}

struct Shared {
    a: Region,
    b: Region,
    seed: u64,
}

fn setup_shared(seed: u64) -> Result<Shared, WorkloadError> {
    let a = map_anon(SHARED_LEN, MapFlags::MAP_SHARED)?;
    for page in 0..SHARED_LEN / PAGE {
        a.fill_page(page, seed);
    }
    let at = reserve(SHARED_LEN)?;
    // SAFETY: old size 0 on a shared mapping makes a second mapping of the same pages; MREMAP_FIXED puts it
    // over our own reservation.
    let p = unsafe {
        nix::sys::mman::mremap(
            a.base.cast(),
            0,
            SHARED_LEN,
            MRemapFlags::MREMAP_MAYMOVE | MRemapFlags::MREMAP_FIXED,
            Some(at.cast()),
        )
    }
    .map_err(sys_err("mremap of the shared mapping"))?;
    Ok(Shared {
        a,
        b: Region {
            base: p.cast(),
            len: SHARED_LEN,
        },
        seed,
    })
}

fn check_shared_content(s: &Shared) -> Result<(), String> {
    let pages = 0..SHARED_LEN / PAGE;
    // The alias maps the same pages at another address, so it holds the pattern of `a`'s addresses.
    for page in pages {
        let (_, bad) = s.a.check_page(page, s.seed);
        if let Some((addr, want, got)) = bad {
            return Err(format!(
                "word at {addr:#x}: want {want:#018x} got {got:#018x}"
            ));
        }
        for i in 0..WORDS_PER_PAGE {
            // SAFETY: both addresses are inside the two live shared mappings.
            let (x, y) = unsafe {
                (
                    s.a.page_ptr(page).add(i).read_volatile(),
                    s.b.page_ptr(page).add(i).read_volatile(),
                )
            };
            if x != y {
                return Err(format!(
                    "alias differs at page {page} word {i}: {x:#x} vs {y:#x}"
                ));
            }
        }
    }
    Ok(())
}

/// A write through one mapping must be seen through the other: they are one shmem object.
fn check_shared_is_shared(s: &Shared) -> Result<(), String> {
    let a = s.a.page_ptr(3).wrapping_add(17);
    let b = s.b.page_ptr(3).wrapping_add(17);
    // SAFETY: both inside the live shared mappings; nothing else uses these words concurrently.
    unsafe {
        let old = a.read_volatile();
        a.write_volatile(!old);
        let seen = b.read_volatile();
        a.write_volatile(old);
        if seen != !old {
            return Err(format!(
                "wrote {:#x} through {a:p}, read {seen:#x} through {b:p}",
                !old
            ));
        }
    }
    Ok(())
}

fn read_own_maps(ranges: &[(u64, u64)]) -> Result<Vec<maps::Vma>, String> {
    let text =
        std::fs::read_to_string("/proc/self/smaps").map_err(|e| format!("reading smaps: {e}"))?;
    let all = maps::parse_smaps(&text).map_err(|e| e.to_string())?;
    Ok(maps::within(&maps::normalize(&all), ranges))
}

fn check_shared_maps(s: &Shared, own: &[maps::Vma]) -> Result<(), String> {
    let pick = |r: &Region| {
        own.iter()
            .find(|v| v.start == r.addr())
            .cloned()
            .ok_or_else(|| format!("no mapping at {:#x}", r.addr()))
    };
    let (a, b) = (pick(&s.a)?, pick(&s.b)?);
    for v in [&a, &b] {
        if v.perms != "rw-s" || v.path != "/dev/zero (deleted)" {
            return Err(format!("shared mapping is {v}"));
        }
    }
    if a.inode != b.inode || a.dev != b.dev {
        return Err(format!("the two mappings are different objects: {a} / {b}"));
    }
    Ok(())
}

struct Setup {
    args: WorkloadArgs,
    big: Big,
    guard: Region,
    ro: Region,
    file: FileMap,
    shared: Shared,
    ranges: Vec<(u64, u64)>,
    maps_before: Vec<maps::Vma>,
    seed: u64,
}

fn setup(args: WorkloadArgs) -> Result<Setup, WorkloadError> {
    // A per-run seed: an image of another run, or pages from the wrong place, cannot pass.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let seed = mix(now, u64::from(std::process::id()));

    let big = setup_big(seed)?;
    let guard = map_anon(GUARD_PAGES * PAGE, MapFlags::MAP_PRIVATE)?;
    for page in 0..GUARD_PAGES {
        guard.fill_page(page, seed);
    }
    protect(&guard, GUARD_NONE, ProtFlags::PROT_NONE)
        .map_err(|e| WorkloadError::setup("guard pages", e))?;
    let ro = map_anon(RO_PAGES * PAGE, MapFlags::MAP_PRIVATE)?;
    for page in 0..RO_PAGES {
        ro.fill_page(page, seed);
    }
    protect(&ro, 0..RO_PAGES, ProtFlags::PROT_READ)
        .map_err(|e| WorkloadError::setup("read-only pages", e))?;
    let file = setup_file(&args.dir, seed)?;
    let shared = setup_shared(seed)?;

    let ranges = vec![
        big.region.range(),
        guard.range(),
        ro.range(),
        file.region.range(),
        shared.a.range(),
        shared.b.range(),
    ];
    let maps_before = read_own_maps(&ranges).map_err(|e| WorkloadError::setup("maps", e))?;
    // The workload's own sanity: the holes are unpopulated before anyone else touched them.
    check_big_holes(&big, false).map_err(|e| WorkloadError::setup("holes", e))?;
    Ok(Setup {
        args,
        big,
        guard,
        ro,
        file,
        shared,
        ranges,
        maps_before,
        seed,
    })
}

/// Everything but the stack, checked at the bottom of the recursion after the trigger.
fn check_all(s: &Setup, report: &mut Report) {
    // Maps first: the checks below must not have changed anything yet.
    let maps_after = read_own_maps(&s.ranges);
    report.check(
        "maps",
        maps_after.as_ref().map_err(Clone::clone).and_then(|after| {
            // Shared anonymous memory is a new shmem object after a restore: its inode may differ.
            let files_before: Vec<_> = s
                .maps_before
                .iter()
                .filter(|v| !v.is_shared())
                .cloned()
                .collect();
            let files_after: Vec<_> = after.iter().filter(|v| !v.is_shared()).cloned().collect();
            let mut d = maps::diff(&files_before, &files_after, true);
            d.extend(maps::diff(&s.maps_before, after, false));
            d.sort();
            d.dedup();
            if d.is_empty() {
                Ok(())
            } else {
                Err(d.join("; "))
            }
        }),
    );
    report.check("big-holes", check_big_holes(&s.big, true));
    report.check("big-data", check_big_data(&s.big));
    report.check("ro-data", check_pages(&s.ro, 0..RO_PAGES, s.seed));
    report.check(
        "guard-data",
        check_pages(&s.guard, 0..GUARD_NONE.start, s.seed)
            .and_then(|()| check_pages(&s.guard, GUARD_NONE.end..GUARD_PAGES, s.seed))
            .and_then(|()| protect(&s.guard, GUARD_NONE, ProtFlags::PROT_READ))
            .and_then(|()| check_pages(&s.guard, GUARD_NONE, s.seed))
            .and_then(|()| protect(&s.guard, GUARD_NONE, ProtFlags::PROT_NONE)),
    );
    report.check("file-private-memory", check_file_memory(&s.file));
    report.check("file-on-disk", check_file_disk(&s.file));
    report.check("shared-data", check_shared_content(&s.shared));
    report.check("shared-is-shared", check_shared_is_shared(&s.shared));
    report.check(
        "shared-maps",
        maps_after.and_then(|after| check_shared_maps(&s.shared, &after)),
    );
}

struct Descent<'a> {
    setup: &'a Setup,
    report: Report,
    bad_frames: Vec<u32>,
    protocol: Option<WorkloadError>,
}

fn frame_word(depth: u32, i: usize, seed: u64) -> u64 {
    mix((u64::from(depth) << 32) | i as u64, seed ^ 0x57ac_57ac)
}

/// Recurses `depth` frames deep, each holding 4 KiB of its own pattern; at the bottom it announces READY,
/// waits for the trigger and runs the checks; on the way back up every frame checks its pattern.
#[inline(never)]
fn descend(depth: u32, d: &mut Descent<'_>) {
    let seed = d.setup.seed;
    let mut frame = [0u64; FRAME_WORDS];
    for (i, w) in frame.iter_mut().enumerate() {
        *w = frame_word(depth, i, seed);
    }
    // The frame escapes to the optimiser: it must really live on the stack across the recursion.
    std::hint::black_box(&mut frame);
    if depth == 0 {
        if let Err(e) = bottom(d) {
            d.protocol = Some(e);
        }
        if d.setup.args.has_flag(INJECT_FAULT) {
            frame[7] ^= 1;
        }
    } else {
        descend(depth - 1, d);
    }
    std::hint::black_box(&mut frame);
    if frame
        .iter()
        .enumerate()
        .any(|(i, w)| *w != frame_word(depth, i, seed))
    {
        d.bad_frames.push(depth);
    }
}

fn bottom(d: &mut Descent<'_>) -> Result<(), WorkloadError> {
    workload::ready()?;
    workload::wait_for_trigger(&d.setup.args.trigger)?;
    if d.setup.args.has_flag(INJECT_FAULT) {
        let w = d.setup.big.region.page_ptr(1000).wrapping_add(3);
        // SAFETY: page 1000 of the big region is a filled (not hole) page, mapped writable.
        unsafe { w.write_volatile(w.read_volatile() ^ 0x100) };
    }
    check_all(d.setup, &mut d.report);
    Ok(())
}

fn run() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env(USAGE)?;
    let setup = setup(args)?;
    let mut d = Descent {
        setup: &setup,
        report: {
            let r = Report::new("wl_memory");
            r.note(&format!(
                "recorded {} own mappings before READY",
                setup.maps_before.len()
            ));
            r
        },
        bad_frames: Vec::new(),
        protocol: None,
    };
    descend(STACK_FRAMES, &mut d);
    if let Some(e) = d.protocol {
        return Err(e);
    }
    let frames = if d.bad_frames.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {} frames damaged (deepest {:?})",
            d.bad_frames.len(),
            STACK_FRAMES + 1,
            d.bad_frames.first()
        ))
    };
    d.report.check("deep-stack", frames);
    Ok(d.report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_memory", run)
}
