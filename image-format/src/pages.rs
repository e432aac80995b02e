//! Page store: process memory as a raw, page-aligned data file `pages-<name>.img` (no header, so restore can
//! preadv or mmap it at page offsets) plus an index record file `pagemap-<name>` of [`PageExtent`]s, each with
//! the crc32 of its bytes. Zero pages are never stored: the engine simply does not write them.
//!
//! The writer is shared by reference between threads: offsets are reserved with an atomic add, data goes in
//! with positional writes (or splice from a pipe), and only the small index sits behind a mutex.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::BorrowedFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::error::{ImageError, Result};

/// Every extent's `vaddr`, `len` and `file_offset` is a multiple of this.
pub const PAGE_SIZE: u64 = 4096;

/// The index record and its flags live with the record schemas (`records/pages.rs`).
pub use crate::records::{page_flags, PageExtent};

/// Bytes moved per splice/read call and per read-back chunk.
const CHUNK: usize = 1 << 20;

/// Name of the data file of page store `name`.
pub fn data_file_name(name: &str) -> String {
    format!("{}{name}{}", DATA_PREFIX, DATA_SUFFIX)
}

/// Name of the index record file of page store `name`.
pub fn index_file_name(name: &str) -> String {
    format!("{INDEX_PREFIX}{name}")
}

pub(crate) const DATA_PREFIX: &str = "pages-";
pub(crate) const DATA_SUFFIX: &str = ".img";
pub(crate) const INDEX_PREFIX: &str = "pagemap-";

/// The page store name of a data file name, if it is one.
pub(crate) fn store_of_data_file(file: &str) -> Option<&str> {
    file.strip_prefix(DATA_PREFIX)?.strip_suffix(DATA_SUFFIX)
}

/// The page store name of an index file name, if it is one.
pub(crate) fn store_of_index_file(file: &str) -> Option<&str> {
    file.strip_prefix(INDEX_PREFIX)
}

/// Fills `buf` from `file` at `off`; what lies past the end of the file reads as zero.
fn read_upto(file: &File, buf: &mut [u8], off: u64) -> io::Result<()> {
    buf.fill(0);
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], off + got as u64) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn is_page_aligned(v: u64) -> bool {
    v & (PAGE_SIZE - 1) == 0
}

/// Writes one page store. Obtained from [`ImageWriter::page_store`](crate::ImageWriter::page_store) and
/// handed back to [`ImageWriter::finish_page_store`](crate::ImageWriter::finish_page_store); every method
/// takes `&self`, so any number of threads may write extents at once.
#[derive(Debug)]
pub struct PageStoreWriter {
    owner: u64,
    name: String,
    data_name: String,
    file: File,
    next_offset: AtomicU64,
    index: Mutex<Vec<PageExtent>>,
}

/// What a finished page store leaves for the inventory and the index file.
#[derive(Debug)]
pub(crate) struct FinishedStore {
    pub(crate) data_len: u64,
    pub(crate) data_crc: u32,
    /// Sorted by `vaddr`.
    pub(crate) extents: Vec<PageExtent>,
    pub(crate) page_bytes: u64,
}

impl PageStoreWriter {
    pub(crate) fn new(owner: u64, name: &str, file: File) -> Self {
        PageStoreWriter {
            owner,
            name: name.to_owned(),
            data_name: data_file_name(name),
            file,
            next_offset: AtomicU64::new(0),
            index: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn owner(&self) -> u64 {
        self.owner
    }

    /// The page store's name (not a file name; see [`data_file_name`] and [`index_file_name`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes reserved in the data file so far.
    pub fn bytes_reserved(&self) -> u64 {
        self.next_offset.load(Ordering::Relaxed)
    }

    fn check_extent(&self, vaddr: u64, len: u64) -> Result<()> {
        if !is_page_aligned(vaddr) {
            return Err(self.unaligned("vaddr", vaddr));
        }
        if len == 0 || !is_page_aligned(len) {
            return Err(self.unaligned("extent length", len));
        }
        if vaddr.checked_add(len).is_none() {
            return Err(ImageError::Inconsistent {
                file: self.data_name.clone(),
                reason: format!("extent {vaddr:#x}+{len:#x} wraps the address space"),
            });
        }
        Ok(())
    }

    fn unaligned(&self, what: &'static str, value: u64) -> ImageError {
        ImageError::Unaligned {
            file: self.data_name.clone(),
            what,
            value,
        }
    }

    fn reserve(&self, len: u64) -> u64 {
        self.next_offset.fetch_add(len, Ordering::Relaxed)
    }

    fn record(&self, extent: PageExtent) {
        // A panic while holding the lock can only come from a bug elsewhere; the Vec stays consistent.
        let mut index = self
            .index
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        index.push(extent);
    }

    /// Stores the first `size` bytes of `file` at their offsets in it (an extent's `vaddr` is the file
    /// offset): only the page runs that hold data (`SEEK_DATA`/`SEEK_HOLE`) and are not all zero, so
    /// holes and zero pages cost nothing; the last page is zero past `size`. Returns the bytes stored.
    /// `source` names the file in errors. For file-like objects: shmem, System V segments, deleted files.
    pub fn store_file(&self, file: &File, size: u64, flags: u32, source: &str) -> Result<u64> {
        use nix::unistd::{lseek, Whence};
        use std::os::fd::AsFd;
        let end = size.next_multiple_of(PAGE_SIZE);
        let io = |off: u64, op: &'static str, e: io::Error| ImageError::io(source, off, op, e);
        let seek = |off: u64, whence| {
            i64::try_from(off)
                .map_err(|_| io(off, "lseek", io::Error::from(io::ErrorKind::InvalidInput)))
                .and_then(|o| match lseek(file.as_fd(), o, whence) {
                    Ok(at) => Ok(Some(at as u64)),
                    Err(nix::errno::Errno::ENXIO) => Ok(None),
                    Err(e) => Err(io(off, "lseek", e.into())),
                })
        };
        let mut buf = vec![0u8; CHUNK];
        let (mut pos, mut stored) = (0u64, 0u64);
        while pos < end {
            let Some(data) = seek(pos, Whence::SeekData)? else {
                break;
            };
            let hole = seek(data, Whence::SeekHole)?.unwrap_or(end);
            let (data, hole) = (
                data & !(PAGE_SIZE - 1),
                hole.next_multiple_of(PAGE_SIZE).min(end),
            );
            let mut off = data;
            while off < hole {
                let n = ((hole - off) as usize).min(CHUNK);
                let chunk = &mut buf[..n];
                read_upto(file, chunk, off).map_err(|e| io(off, "pread", e))?;
                stored += self.store_nonzero_runs(off, flags, chunk)?;
                off += n as u64;
            }
            pos = hole.max(pos + PAGE_SIZE);
        }
        Ok(stored)
    }

    /// Stores the runs of pages of `chunk` (the contents from `vaddr` on) that are not all zero.
    fn store_nonzero_runs(&self, vaddr: u64, flags: u32, chunk: &[u8]) -> Result<u64> {
        let page = PAGE_SIZE as usize;
        let (mut run, mut stored) = (None, 0u64);
        for p in (0..=chunk.len()).step_by(page) {
            let zero = p == chunk.len() || chunk[p..p + page].iter().all(|&b| b == 0);
            match (run, zero) {
                (None, false) => run = Some(p),
                (Some(s), true) => {
                    self.write_extent(vaddr + s as u64, flags, &chunk[s..p])?;
                    stored += (p - s) as u64;
                    run = None;
                }
                _ => {}
            }
        }
        Ok(stored)
    }

    /// Stores `data` (a whole number of pages) as the contents of `vaddr..vaddr+data.len()`.
    pub fn write_extent(&self, vaddr: u64, flags: u32, data: &[u8]) -> Result<PageExtent> {
        let len = data.len() as u64;
        self.check_extent(vaddr, len)?;
        let file_offset = self.reserve(len);
        self.file
            .write_all_at(data, file_offset)
            .map_err(|e| ImageError::io(&self.data_name, file_offset, "pwrite", e))?;
        let extent = PageExtent {
            vaddr,
            len,
            file_offset,
            flags,
            crc32: crc32fast::hash(data),
        };
        self.record(extent);
        Ok(extent)
    }

    /// Stores `len` bytes read from `src` as the contents of `vaddr..vaddr+len`. A pipe source is spliced
    /// into the data file without passing through user memory (the bytes are then read back from the page
    /// cache for the crc); any other source is read and written.
    pub fn write_extent_from_fd(
        &self,
        vaddr: u64,
        flags: u32,
        src: BorrowedFd<'_>,
        len: u64,
    ) -> Result<PageExtent> {
        self.fd_extent(vaddr, flags, src, len, None)
    }

    /// Like [`write_extent_from_fd`](Self::write_extent_from_fd), but the caller already knows the
    /// crc32 (crc32fast's value) of the `len` bytes `src` will deliver, so nothing is read back: the
    /// bytes are copied once, by the splice. The caller vouches for the crc (the parasite takes it in
    /// the frozen target right before it vmsplices the same pages); a wrong one makes `verify` and
    /// restore refuse the image, it cannot corrupt what they accept.
    pub fn write_extent_from_fd_with_crc(
        &self,
        vaddr: u64,
        flags: u32,
        src: BorrowedFd<'_>,
        len: u64,
        crc32: u32,
    ) -> Result<PageExtent> {
        self.fd_extent(vaddr, flags, src, len, Some(crc32))
    }

    fn fd_extent(
        &self,
        vaddr: u64,
        flags: u32,
        src: BorrowedFd<'_>,
        len: u64,
        crc32: Option<u32>,
    ) -> Result<PageExtent> {
        self.check_extent(vaddr, len)?;
        let file_offset = self.reserve(len);
        let moved = match self.splice_in(src, file_offset, len)? {
            Some(moved) => moved,
            None => self.copy_in(src, file_offset, len)?,
        };
        if moved < len {
            return Err(ImageError::ShortSource {
                file: self.data_name.clone(),
                offset: file_offset,
                wanted: len,
                got: moved,
            });
        }
        let crc32 = match crc32 {
            Some(crc) => crc,
            None => crc_of_range(&self.file, &self.data_name, file_offset, len)?,
        };
        let extent = PageExtent {
            vaddr,
            len,
            file_offset,
            flags,
            crc32,
        };
        self.record(extent);
        Ok(extent)
    }

    /// Splices from `src` into the data file at `file_offset`. Returns `None` when the kernel refuses
    /// splice for this pair before any byte moved (source not a pipe), so the caller can copy instead.
    fn splice_in(&self, src: BorrowedFd<'_>, file_offset: u64, len: u64) -> Result<Option<u64>> {
        use nix::fcntl::{splice, SpliceFFlags};
        let mut done = 0u64;
        while done < len {
            let mut off_out = libc::loff_t::try_from(file_offset + done)
                .map_err(|_| self.offset_overflow(file_offset))?;
            let want = usize::try_from(len - done).unwrap_or(usize::MAX).min(CHUNK);
            match splice(
                src,
                None,
                &self.file,
                Some(&mut off_out),
                want,
                SpliceFFlags::SPLICE_F_MOVE,
            ) {
                Ok(0) => break,
                Ok(n) => done += n as u64,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EINVAL) if done == 0 => return Ok(None),
                Err(e) => {
                    return Err(ImageError::io(
                        &self.data_name,
                        file_offset + done,
                        "splice",
                        io::Error::from(e),
                    ));
                }
            }
        }
        Ok(Some(done))
    }

    /// Reads from `src` and pwrites at `file_offset`; the fallback for sources splice does not take.
    fn copy_in(&self, src: BorrowedFd<'_>, file_offset: u64, len: u64) -> Result<u64> {
        let mut src = File::from(
            src.try_clone_to_owned()
                .map_err(|e| ImageError::io(&self.data_name, file_offset, "dup source fd", e))?,
        );
        let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX).min(CHUNK)];
        let mut done = 0u64;
        while done < len {
            let want = usize::try_from(len - done)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let n = match src.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(ImageError::io(
                        &self.data_name,
                        file_offset + done,
                        "read source",
                        e,
                    ))
                }
            };
            self.file
                .write_all_at(&buf[..n], file_offset + done)
                .map_err(|e| ImageError::io(&self.data_name, file_offset + done, "pwrite", e))?;
            done += n as u64;
        }
        Ok(done)
    }

    fn offset_overflow(&self, offset: u64) -> ImageError {
        ImageError::Inconsistent {
            file: self.data_name.clone(),
            reason: format!("file offset {offset:#x} too large"),
        }
    }

    /// Sorts the index, checks it, fsyncs the data file and computes its whole-file crc32 (from the extent
    /// crcs when the extents tile the file, which is the normal case; by reading it back otherwise).
    pub(crate) fn finish(self) -> Result<FinishedStore> {
        let PageStoreWriter {
            data_name,
            file,
            next_offset,
            index,
            ..
        } = self;
        let mut extents = index
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let reserved = next_offset.into_inner();
        let data_len = file
            .metadata()
            .map_err(|e| ImageError::io(&data_name, 0, "fstat", e))?
            .len();

        extents.sort_by_key(|e| e.file_offset);
        let mut tiled = data_len == reserved;
        let mut whole = crc32fast::Hasher::new();
        let mut expect = 0u64;
        for e in &extents {
            if e.file_offset != expect {
                tiled = false;
                break;
            }
            whole.combine(&crc32fast::Hasher::new_with_initial_len(e.crc32, e.len));
            expect += e.len;
        }
        let data_crc = if tiled && expect == data_len {
            whole.finalize()
        } else {
            crc_of_range(&file, &data_name, 0, data_len)?
        };

        extents.sort_by_key(|e| e.vaddr);
        for pair in extents.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if a.vaddr + a.len > b.vaddr {
                return Err(ImageError::Inconsistent {
                    file: data_name,
                    reason: format!(
                        "extents {:#x}+{:#x} and {:#x}+{:#x} overlap",
                        a.vaddr, a.len, b.vaddr, b.len
                    ),
                });
            }
        }
        file.sync_all()
            .map_err(|e| ImageError::io(&data_name, 0, "fsync", e))?;
        let page_bytes = extents.iter().map(|e| e.len).sum();
        Ok(FinishedStore {
            data_len,
            data_crc,
            extents,
            page_bytes,
        })
    }
}

/// crc32 of `len` bytes of `file` at `offset`, read in bounded chunks.
fn crc_of_range(file: &File, name: &str, offset: u64, len: u64) -> Result<u32> {
    let mut hasher = crc32fast::Hasher::new();
    hash_range(file, name, offset, len, &mut [&mut hasher])?;
    Ok(hasher.finalize())
}

/// Feeds `len` bytes of `file` at `offset` to every hasher in `into`, read in bounded chunks.
fn hash_range(
    file: &File,
    name: &str,
    offset: u64,
    len: u64,
    into: &mut [&mut crc32fast::Hasher],
) -> Result<()> {
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX).min(CHUNK)];
    let mut done = 0u64;
    while done < len {
        let n = usize::try_from(len - done)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let pos = offset + done;
        file.read_exact_at(&mut buf[..n], pos)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => ImageError::Truncated {
                    file: name.to_owned(),
                    offset: pos,
                    wanted: len - done,
                    left: 0,
                },
                _ => ImageError::io(name, pos, "pread", e),
            })?;
        for h in into.iter_mut() {
            h.update(&buf[..n]);
        }
        done += n as u64;
    }
    Ok(())
}

/// Reads one page store of a committed image.
#[derive(Debug)]
pub struct PageStoreReader {
    name: String,
    data_name: String,
    file: File,
    data_len: u64,
    extents: Vec<PageExtent>,
}

impl PageStoreReader {
    /// Store `name` from its decoded index (`(entry offset, extent)` pairs) and its data file of
    /// `data_len` bytes, after checking the index against the data file: every extent page-aligned,
    /// non-empty, inside the file, sorted by address without overlap, and no two extents sharing bytes of
    /// the file.
    pub(crate) fn new(
        name: &str,
        entries: &[(u64, PageExtent)],
        file: File,
        data_len: u64,
    ) -> Result<Self> {
        validate_index(&index_file_name(name), data_len, entries)?;
        Ok(PageStoreReader {
            name: name.to_owned(),
            data_name: data_file_name(name),
            file,
            data_len,
            extents: entries.iter().map(|(_, e)| *e).collect(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A second reader of the same store (its data file's fd duplicated), for a caller that keeps one of
    /// its own.
    pub fn try_clone(&self) -> Result<Self> {
        Ok(PageStoreReader {
            name: self.name.clone(),
            data_name: self.data_name.clone(),
            file: self
                .file
                .try_clone()
                .map_err(|e| ImageError::io(&self.data_name, 0, "dup", e))?,
            data_len: self.data_len,
            extents: self.extents.clone(),
        })
    }

    /// The extents, sorted by `vaddr`, already checked for alignment, bounds and overlap.
    pub fn extents(&self) -> &[PageExtent] {
        &self.extents
    }

    /// Total bytes of stored pages.
    pub fn page_bytes(&self) -> u64 {
        self.extents.iter().map(|e| e.len).sum()
    }

    /// Reads one extent into `buf` (exactly `extent.len` bytes) and checks its crc.
    pub fn read_extent(&self, extent: &PageExtent, buf: &mut [u8]) -> Result<()> {
        if buf.len() as u64 != extent.len {
            return Err(ImageError::BufferSize {
                file: self.data_name.clone(),
                expected: extent.len,
                found: buf.len(),
            });
        }
        let in_bounds =
            matches!(extent.file_offset.checked_add(extent.len), Some(end) if end <= self.data_len);
        if !in_bounds {
            return Err(ImageError::Truncated {
                file: self.data_name.clone(),
                offset: extent.file_offset,
                wanted: extent.len,
                left: self.data_len.saturating_sub(extent.file_offset),
            });
        }
        self.file
            .read_exact_at(buf, extent.file_offset)
            .map_err(|e| ImageError::io(&self.data_name, extent.file_offset, "pread", e))?;
        let found = crc32fast::hash(buf);
        if found != extent.crc32 {
            return Err(ImageError::Checksum {
                file: self.data_name.clone(),
                offset: extent.file_offset,
                expected: extent.crc32,
                found,
            });
        }
        Ok(())
    }

    /// Writes the store into `file` as the first `size` bytes of it, each extent at its `vaddr` as file
    /// offset (checked), and truncates `file` to `size`: the inverse of
    /// [`PageStoreWriter::store_file`]. `target` names the file in errors.
    pub fn write_into(&self, file: &File, size: u64, target: &str) -> Result<()> {
        file.set_len(size)
            .map_err(|e| ImageError::io(target, size, "ftruncate", e))?;
        let mut buf = Vec::new();
        for e in &self.extents {
            let len = usize::try_from(e.len).map_err(|_| self.outside(e, size))?;
            if e.vaddr >= size || e.vaddr.saturating_add(e.len) > size.next_multiple_of(PAGE_SIZE) {
                return Err(self.outside(e, size));
            }
            buf.resize(len, 0);
            self.read_extent(e, &mut buf)?;
            let keep = (size - e.vaddr).min(e.len) as usize;
            file.write_all_at(&buf[..keep], e.vaddr)
                .map_err(|err| ImageError::io(target, e.vaddr, "pwrite", err))?;
        }
        Ok(())
    }

    fn outside(&self, e: &PageExtent, size: u64) -> ImageError {
        ImageError::Inconsistent {
            file: index_file_name(&self.name),
            reason: format!(
                "extent {:#x}+{:#x} lies outside the {size} bytes it fills",
                e.vaddr, e.len
            ),
        }
    }

    /// Checks the crc of every extent; returns the bytes checked.
    pub fn verify_all(&self) -> Result<u64> {
        self.scan().map(|(bytes, _)| bytes)
    }

    /// Reads the whole data file once, in file order: checks the crc of every extent and returns the bytes
    /// of pages checked and the crc32 of the whole file (for the inventory's check).
    pub fn scan(&self) -> Result<(u64, u32)> {
        let mut order: Vec<&PageExtent> = self.extents.iter().collect();
        order.sort_by_key(|e| e.file_offset);
        let mut whole = crc32fast::Hasher::new();
        let mut pos = 0u64;
        let mut total = 0u64;
        for e in order {
            // Bytes between extents belong to no page, but to the file.
            hash_range(
                &self.file,
                &self.data_name,
                pos,
                e.file_offset - pos,
                &mut [&mut whole],
            )?;
            let mut one = crc32fast::Hasher::new();
            hash_range(
                &self.file,
                &self.data_name,
                e.file_offset,
                e.len,
                &mut [&mut whole, &mut one],
            )?;
            let found = one.finalize();
            if found != e.crc32 {
                return Err(ImageError::Checksum {
                    file: self.data_name.clone(),
                    offset: e.file_offset,
                    expected: e.crc32,
                    found,
                });
            }
            pos = e.file_offset + e.len;
            total += e.len;
        }
        hash_range(
            &self.file,
            &self.data_name,
            pos,
            self.data_len - pos,
            &mut [&mut whole],
        )?;
        Ok((total, whole.finalize()))
    }

    /// The data file, for callers that read it themselves (the restorer blob preadv's at `file_offset`).
    pub fn data_file(&self) -> &File {
        &self.file
    }

    /// Length of the data file.
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    /// Maps the whole data file read-only. Extent crcs are not checked here; use [`verify_all`] first.
    ///
    /// [`verify_all`]: PageStoreReader::verify_all
    pub fn mmap(&self) -> Result<memmap2::Mmap> {
        // SAFETY: the map is read-only and private to this process. The data file belongs to a committed
        // image (mode 0600, never written after commit); if another root process truncated it while
        // mapped, touching the lost pages would raise SIGBUS, which is the documented risk of mapping files.
        unsafe { memmap2::Mmap::map(&self.file) }
            .map_err(|e| ImageError::io(&self.data_name, 0, "mmap", e))
    }
}

/// Checks a decoded index (`(entry offset, extent)` pairs) against a data file of `data_len` bytes.
fn validate_index(index_name: &str, data_len: u64, entries: &[(u64, PageExtent)]) -> Result<()> {
    let bad = |index: usize, offset: u64, reason: String| ImageError::BadExtent {
        file: index_name.to_owned(),
        index,
        offset,
        reason,
    };
    for (i, &(offset, e)) in entries.iter().enumerate() {
        if e.len == 0 {
            return Err(bad(i, offset, "empty extent".into()));
        }
        for (what, v) in [
            ("vaddr", e.vaddr),
            ("len", e.len),
            ("file_offset", e.file_offset),
        ] {
            if !is_page_aligned(v) {
                return Err(bad(i, offset, format!("{what} {v:#x} is not page-aligned")));
            }
        }
        if e.vend().is_none() {
            return Err(bad(
                i,
                offset,
                format!("{:#x}+{:#x} wraps the address space", e.vaddr, e.len),
            ));
        }
        match e.file_offset.checked_add(e.len) {
            Some(end) if end <= data_len => {}
            _ => {
                return Err(bad(
                    i,
                    offset,
                    format!(
                        "data {:#x}+{:#x} is beyond the data file's {data_len:#x} bytes",
                        e.file_offset, e.len
                    ),
                ))
            }
        }
        if i > 0 {
            let prev = entries[i - 1].1;
            if prev.vaddr + prev.len > e.vaddr {
                return Err(bad(
                    i,
                    offset,
                    format!(
                        "{:#x} is below the end {:#x} of the previous extent",
                        e.vaddr,
                        prev.vaddr + prev.len
                    ),
                ));
            }
        }
    }
    let mut by_offset: Vec<(u64, usize)> = entries
        .iter()
        .enumerate()
        .map(|(i, (_, e))| (e.file_offset, i))
        .collect();
    by_offset.sort_unstable();
    for pair in by_offset.windows(2) {
        let (a, b) = (entries[pair[0].1].1, pair[1].1);
        if a.file_offset + a.len > pair[1].0 {
            return Err(bad(
                b,
                entries[b].0,
                format!("data at {:#x} overlaps another extent's data", pair[1].0),
            ));
        }
    }
    Ok(())
}
