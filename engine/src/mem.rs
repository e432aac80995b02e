//! A task's address space: every mapping classified by what backs it, and the page data that must go into
//! the image (private anonymous pages, COW'd pages of private file mappings, the vDSO, shared-memory objects).
//!
//! Page data is read with `pread` on `/proc/<pid>/mem`, which works on PROT_NONE pages too and needs no ptrace
//! request, so any thread may copy; copying runs on a small local thread pool with one bounded buffer per
//! thread.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use dormant_image::records::{page_flags, Pid, ShmemId, ShmemObject, Vma, VmaBacking};
use dormant_image::{ImageWriter, PageStoreWriter};
use rayon::prelude::*;

use crate::error::{DumpError, Result};
use crate::files::{self, FileTable};
use crate::pagemap::{PageRange, PageWalker, WalkKind};
use crate::proc::{self, smaps::SmapsEntry};
use crate::PAGE_SIZE;

/// Largest piece copied at once; with the pool's thread count this bounds the copy buffers' memory.
pub const COPY_CHUNK: u64 = 4 << 20;

/// `VmFlags` mnemonics and the madvise advice that re-creates them.
const MADVISE_FLAGS: [(&str, u32); 8] = [
    ("sr", libc::MADV_SEQUENTIAL as u32),
    ("rr", libc::MADV_RANDOM as u32),
    ("dc", libc::MADV_DONTFORK as u32),
    ("dd", libc::MADV_DONTDUMP as u32),
    ("wf", libc::MADV_WIPEONFORK as u32),
    ("hg", libc::MADV_HUGEPAGE as u32),
    ("nh", libc::MADV_NOHUGEPAGE as u32),
    ("mg", libc::MADV_MERGEABLE as u32),
];

/// What a mapping is, before files are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmaClass {
    Anon,
    Shmem {
        ino: u64,
    },
    /// A System V shm attachment; maps show the segment id as the inode.
    SysvShm {
        shmid: u32,
    },
    File {
        path: String,
    },
    Vdso,
    Vvar,
    Vsyscall,
}

/// Classifies one smaps entry, or says why it cannot be dumped.
pub fn classify(e: &SmapsEntry) -> std::result::Result<VmaClass, String> {
    let name = e.name.as_str();
    match name {
        "[vdso]" => return Ok(VmaClass::Vdso),
        "[vvar]" | "[vvar_vclock]" => return Ok(VmaClass::Vvar),
        "[vsyscall]" => return Ok(VmaClass::Vsyscall),
        _ => {}
    }
    if e.has_flag("io") || e.has_flag("pf") {
        return Err("I/O or PFN mapping (VM_IO/VM_PFNMAP) cannot be dumped".into());
    }
    if e.has_flag("ht") {
        return Err("hugetlb mappings are not supported yet".into());
    }
    if e.has_flag("ss") {
        return Err("shadow-stack mappings are not supported yet".into());
    }
    if name.starts_with("[anon_shmem:") {
        return Ok(VmaClass::Shmem { ino: e.inode });
    }
    if name.is_empty() || name == "[heap]" || name == "[stack]" || name.starts_with("[anon:") {
        if e.inode != 0 {
            return Err(format!("anonymous-looking mapping with inode {}", e.inode));
        }
        if e.shared {
            return Err("shared mapping without a shmem object".into());
        }
        return Ok(VmaClass::Anon);
    }
    if name.starts_with('[') {
        return Err("special mapping of unknown kind".into());
    }
    if e.shared && name == "/dev/zero (deleted)" {
        return Ok(VmaClass::Shmem { ino: e.inode });
    }
    if name.starts_with("/SYSV") {
        let shmid = u32::try_from(e.inode).map_err(|_| format!("SysV segment id {}", e.inode))?;
        return Ok(VmaClass::SysvShm { shmid });
    }
    if name.starts_with("/memfd:") {
        return Err("memfd mappings are not supported yet".into());
    }
    if !e.shared && name == "/dev/zero" {
        // A private mapping of /dev/zero is anonymous memory that still names the device.
        return Ok(VmaClass::Anon);
    }
    if name.starts_with('/') {
        return Ok(VmaClass::File {
            path: name.to_string(),
        });
    }
    Err("mapping of unknown kind".into())
}

/// One mapping with what the dumper needs to handle its contents.
#[derive(Debug, Clone)]
pub struct CollectedVma {
    pub vma: Vma,
    pub class: VmaClass,
}

fn map_files_name(e: &SmapsEntry) -> String {
    format!("map_files/{:x}-{:x}", e.start, e.end)
}

/// Reads smaps, classifies every mapping and registers the files behind file mappings in `table`.
pub fn collect_vmas(pid: u32, table: &mut FileTable) -> Result<Vec<CollectedVma>> {
    let text = proc::read_string(pid, "smaps")?;
    let entries = proc::smaps::parse(&text).map_err(|reason| DumpError::ProcParse {
        pid,
        file: "smaps",
        reason,
    })?;
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let unsupported = |reason: String| DumpError::UnsupportedVma {
            pid,
            start: e.start,
            end: e.end,
            name: e.name.clone(),
            reason,
        };
        let class = classify(&e).map_err(unsupported)?;
        let what = || format!("mapping {:#x}-{:#x}", e.start, e.end);
        let backing = match &class {
            VmaClass::Anon => VmaBacking::Anon,
            VmaClass::Shmem { ino } => VmaBacking::Shmem(ShmemId(*ino)),
            VmaClass::SysvShm { shmid } => VmaBacking::SysvShm { shmid: *shmid },
            VmaClass::Vdso => VmaBacking::Vdso,
            VmaClass::Vvar => VmaBacking::Vvar,
            VmaClass::Vsyscall => VmaBacking::Vsyscall,
            VmaClass::File { path } => {
                files::check_not_deleted(pid, what, path)?;
                let source = map_files_name(&e);
                let stat = files::stat_proc_link(pid, &source, what)?;
                if stat.mode & libc::S_IFMT != libc::S_IFREG {
                    return Err(unsupported(format!(
                        "backed by a non-regular file (mode {:o})",
                        stat.mode
                    )));
                }
                VmaBacking::File(table.by_identity(path, stat, pid, &source))
            }
        };
        let mut map_flags = if e.shared {
            libc::MAP_SHARED
        } else {
            libc::MAP_PRIVATE
        } as u32;
        if matches!(class, VmaClass::Anon | VmaClass::Shmem { .. }) {
            map_flags |= libc::MAP_ANONYMOUS as u32;
        }
        if e.has_flag("gd") {
            map_flags |= libc::MAP_GROWSDOWN as u32;
        }
        if e.has_flag("nr") {
            map_flags |= libc::MAP_NORESERVE as u32;
        }
        if e.has_flag("lo") {
            map_flags |= libc::MAP_LOCKED as u32;
        }
        let prot = (if e.read { libc::PROT_READ } else { 0 }
            | if e.write { libc::PROT_WRITE } else { 0 }
            | if e.exec { libc::PROT_EXEC } else { 0 }) as u32;
        let madvise = MADVISE_FLAGS
            .iter()
            .filter(|(f, _)| e.has_flag(f))
            .map(|(_, a)| *a)
            .collect();
        out.push(CollectedVma {
            vma: Vma {
                start: e.start,
                end: e.end,
                prot,
                map_flags,
                madvise,
                pgoff: e.offset,
                backing,
                name: e.name.clone(),
            },
            class,
        });
    }
    Ok(out)
}

/// One piece of page data to copy into a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyChunk {
    pub vaddr: u64,
    pub len: u64,
    pub flags: u32,
}

fn split_into_chunks(out: &mut Vec<CopyChunk>, range: PageRange, flags: u32) {
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
    /// readable part is below [`crate::parasite_pages::PARASITE_MIN_BYTES`] or injection is refused
    /// (see [`crate::parasite_pages`]). It uses less dumper CPU, so it only wins when the dumper's
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, shared: bool, inode: u64, flags: &[&str]) -> SmapsEntry {
        SmapsEntry {
            start: 0x1000,
            end: 0x3000,
            read: true,
            shared,
            inode,
            name: name.into(),
            vm_flags: flags.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn classes() {
        assert_eq!(classify(&entry("", false, 0, &["rd"])), Ok(VmaClass::Anon));
        assert_eq!(
            classify(&entry("[heap]", false, 0, &[])),
            Ok(VmaClass::Anon)
        );
        assert_eq!(
            classify(&entry("[stack]", false, 0, &["gd"])),
            Ok(VmaClass::Anon)
        );
        assert_eq!(
            classify(&entry("[vdso]", false, 0, &[])),
            Ok(VmaClass::Vdso)
        );
        assert_eq!(
            classify(&entry("[vvar]", false, 0, &["io", "pf"])),
            Ok(VmaClass::Vvar)
        );
        assert_eq!(
            classify(&entry("[vvar_vclock]", false, 0, &["io", "pf"])),
            Ok(VmaClass::Vvar)
        );
        assert_eq!(
            classify(&entry("[vsyscall]", false, 0, &[])),
            Ok(VmaClass::Vsyscall)
        );
        assert_eq!(
            classify(&entry("/dev/zero (deleted)", true, 77, &[])),
            Ok(VmaClass::Shmem { ino: 77 })
        );
        assert_eq!(
            classify(&entry("/usr/lib/libc.so.6", false, 9, &[])),
            Ok(VmaClass::File {
                path: "/usr/lib/libc.so.6".into()
            })
        );
        assert!(classify(&entry("/dev/mem", true, 9, &["io", "pf"])).is_err());
        assert!(classify(&entry("[uprobes]", false, 0, &[])).is_err());
        // A SysV attachment names its segment id as the inode.
        assert_eq!(
            classify(&entry("/SYSV00000000 (deleted)", true, 5, &[])),
            Ok(VmaClass::SysvShm { shmid: 5 })
        );
        assert!(classify(&entry("/memfd:x (deleted)", true, 5, &[])).is_err());
    }

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
