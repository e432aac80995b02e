//! Writing a whole image: everything goes into a temporary sibling directory, and [`ImageWriter::commit`]
//! writes the inventory last, fsyncs, and renames the directory into place. Until then nothing at the target
//! path changes, and dropping the writer removes the temporary directory.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{ImageError, Result};
use crate::fsutil;
use crate::inventory::{ImageFile, Inventory, InventoryInfo};
use crate::pages::{self, PageStoreWriter};
use crate::record_file::RawRecordWriter;
use crate::records::{PageExtent, Record, RecordKind};
use crate::{ARCH, FORMAT_MAJOR, FORMAT_MINOR, INVENTORY_FILE};

/// Distinguishes temporary directories and writers created by one process.
static SERIAL: AtomicU64 = AtomicU64::new(0);

/// Longest file name accepted (the usual NAME_MAX).
const MAX_NAME_LEN: usize = 255;

#[derive(Debug, Clone, Copy)]
enum FileState {
    /// Created, being written (a streaming record file or a page store not yet finished).
    Open,
    Done {
        len: u64,
        crc32: u32,
    },
}

/// Builds one image. See the module docs for the crash-safety contract.
#[derive(Debug)]
pub struct ImageWriter {
    serial: u64,
    target: PathBuf,
    tmp: PathBuf,
    /// An exclusive flock on the temporary directory while this writer lives: a later dump into the same
    /// parent leaves it alone even when it cannot see this process (another pid namespace).
    _lock: Flock<OwnedFd>,
    files: BTreeMap<String, FileState>,
    committed: bool,
}

/// The marker in a temporary directory's name: `.{image name}.tmp-{pid}-{serial}`.
const TMP_MARK: &str = ".tmp-";

/// Checks a file (or page store) name: a single path component that is not hidden and not reserved.
pub(crate) fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(ImageError::BadName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("longer than 255 bytes");
    }
    if name.contains('/') || name.contains('\0') {
        return bad("contains '/' or NUL");
    }
    if name.starts_with('.') {
        return bad("starts with '.'");
    }
    if name == INVENTORY_FILE {
        return bad("reserved for the inventory");
    }
    Ok(())
}

/// A record file name must also stay out of the page stores' name space, so `verify` can tell the two apart.
fn validate_record_file_name(name: &str) -> Result<()> {
    validate_name(name)?;
    if name.starts_with(pages::DATA_PREFIX) || name.starts_with(pages::INDEX_PREFIX) {
        return Err(ImageError::BadName {
            name: name.to_owned(),
            reason: "reserved for page stores",
        });
    }
    Ok(())
}

impl ImageWriter {
    /// Starts an image that will appear at `dir` on [`commit`](Self::commit). `dir` must not exist, be
    /// empty, or hold an image (which commit then replaces). The temporary directory is created next to it
    /// (same file system, so the final rename is atomic), mode 0700.
    pub fn create(dir: &Path) -> Result<ImageWriter> {
        let target = dir.to_path_buf();
        let Some(base) = target
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
        else {
            return Err(ImageError::BadName {
                name: dir.display().to_string(),
                reason: "image path must end in a UTF-8 directory name",
            });
        };
        check_replaceable(&target)?;
        let parent = parent_of(&target);
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        remove_stale_temps(&parent);
        let tmp = parent.join(format!(".{base}{TMP_MARK}{}-{serial}", std::process::id()));
        fsutil::create_dir(&tmp)?;
        let lock = match open_dir_nofollow(&tmp).and_then(lock_dir) {
            Ok(lock) => lock,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(ImageError::fs(&tmp, "lock", e));
            }
        };
        log::debug!("image {}: writing into {}", target.display(), tmp.display());
        Ok(ImageWriter {
            serial,
            target,
            tmp,
            _lock: lock,
            files: BTreeMap::new(),
            committed: false,
        })
    }

    /// Where the image will appear after commit.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The temporary directory being written (removed on drop, renamed to [`target`](Self::target) on
    /// commit).
    pub fn temp_dir(&self) -> &Path {
        &self.tmp
    }

    fn claim(&mut self, name: &str) -> Result<fs::File> {
        if self.files.contains_key(name) {
            return Err(ImageError::Duplicate {
                file: name.to_owned(),
            });
        }
        let file = fsutil::create_file(&self.tmp.join(name))?;
        self.files.insert(name.to_owned(), FileState::Open);
        Ok(file)
    }

    pub(crate) fn file_done(&mut self, name: &str, len: u64, crc32: u32) {
        self.files
            .insert(name.to_owned(), FileState::Done { len, crc32 });
    }

    /// Forgets a file that will not be completed and removes what was written of it.
    pub(crate) fn file_abandoned(&mut self, name: &str) {
        self.files.remove(name);
        let path = self.tmp.join(name);
        if let Err(e) = fs::remove_file(&path) {
            log::warn!("cannot remove abandoned image file {}: {e}", path.display());
        }
    }

    /// Writes record file `file` with `items`, in order.
    pub fn write_records<R: Record>(&mut self, file: &str, items: &[R]) -> Result<()> {
        let mut w = self.record_file::<R>(file)?;
        for item in items {
            w.push(item)?;
        }
        w.finish()
    }

    /// Starts streaming record file `file`; entries are appended with
    /// [`push`](RecordFileWriter::push) and the file completed with [`finish`](RecordFileWriter::finish).
    pub fn record_file<R: Record>(&mut self, file: &str) -> Result<RecordFileWriter<'_, R>> {
        validate_record_file_name(file)?;
        if matches!(R::KIND, RecordKind::Inventory | RecordKind::PageIndex) {
            // The writer produces these itself (commit, finish_page_store); anywhere else verify refuses them.
            return Err(ImageError::BadName {
                name: file.to_owned(),
                reason: "inventory and page index records are written by the image writer only",
            });
        }
        let f = self.claim(file)?;
        match RawRecordWriter::new(file, f, R::KIND, R::VERSION) {
            Ok(raw) => Ok(RecordFileWriter::new(self, raw)),
            Err(e) => {
                self.file_abandoned(file);
                Err(e)
            }
        }
    }

    /// Starts page store `name` (files `pages-<name>.img` and `pagemap-<name>`). The returned writer may be
    /// shared between threads; hand it back to [`finish_page_store`](Self::finish_page_store).
    pub fn page_store(&mut self, name: &str) -> Result<PageStoreWriter> {
        validate_name(name)?;
        let data_name = pages::data_file_name(name);
        let index_name = pages::index_file_name(name);
        validate_name(&data_name)?;
        validate_name(&index_name)?;
        if self.files.contains_key(&index_name) {
            return Err(ImageError::Duplicate { file: index_name });
        }
        let file = self.claim(&data_name)?;
        // Reserve the index name now so a record file cannot take it meanwhile.
        self.files.insert(index_name, FileState::Open);
        Ok(PageStoreWriter::new(self.serial, name, file))
    }

    /// Completes a page store: sorts and checks its index, fsyncs the data, writes `pagemap-<name>`.
    /// Returns the bytes of page data stored.
    pub fn finish_page_store(&mut self, store: PageStoreWriter) -> Result<u64> {
        let name = store.name().to_owned();
        let data_name = pages::data_file_name(&name);
        let index_name = pages::index_file_name(&name);
        if store.owner() != self.serial
            || !matches!(self.files.get(&data_name), Some(FileState::Open))
        {
            return Err(ImageError::ForeignPageStore { name });
        }
        let done = store.finish()?;
        self.file_done(&data_name, done.data_len, done.data_crc);

        let file = fsutil::create_file(&self.tmp.join(&index_name))?;
        let mut raw =
            RawRecordWriter::new(&index_name, file, PageExtent::KIND, PageExtent::VERSION)?;
        for extent in &done.extents {
            raw.push(extent)?;
        }
        let (len, crc32) = raw.finish()?;
        self.file_done(&index_name, len, crc32);
        log::debug!(
            "page store {name}: {} extents, {} bytes",
            done.extents.len(),
            done.page_bytes
        );
        Ok(done.page_bytes)
    }

    /// Completes the image: writes the inventory (format version and the length and crc32 of every file)
    /// last, fsyncs it and the directory, and renames the directory to the target, replacing an image that
    /// was there. Returns the target path.
    pub fn commit(mut self, info: InventoryInfo) -> Result<PathBuf> {
        if info.arch != ARCH {
            return Err(ImageError::Arch {
                file: INVENTORY_FILE.to_owned(),
                found: info.arch,
                supported: ARCH,
            });
        }
        let mut files = Vec::with_capacity(self.files.len());
        for (name, state) in &self.files {
            match *state {
                FileState::Open => return Err(ImageError::Unfinished { file: name.clone() }),
                FileState::Done { len, crc32 } => files.push(ImageFile {
                    name: name.clone(),
                    len,
                    crc32,
                }),
            }
        }
        let inventory = Inventory {
            format_major: FORMAT_MAJOR,
            format_minor: FORMAT_MINOR,
            arch: info.arch,
            kernel_release: info.kernel_release,
            xsave_features: info.xsave_features,
            xsave_size: info.xsave_size,
            tool_version: info.tool_version,
            created_unix_secs: info.created_unix_secs,
            root_pid: info.root_pid,
            files,
        };
        let file = fsutil::create_file(&self.tmp.join(INVENTORY_FILE))?;
        let mut raw =
            RawRecordWriter::new(INVENTORY_FILE, file, Inventory::KIND, Inventory::VERSION)?;
        raw.push(&inventory)?;
        raw.finish()?;
        fsutil::sync_dir(&self.tmp)?;

        self.install()?;
        self.committed = true;
        fsutil::sync_dir(&parent_of(&self.target))?;
        log::info!(
            "image {} committed ({} files)",
            self.target.display(),
            inventory.files.len()
        );
        Ok(self.target.clone())
    }

    /// Renames the finished temporary directory to the target. An empty target directory is replaced by
    /// rename(2) itself; an existing image is renamed aside first and removed once the new one is in place.
    fn install(&self) -> Result<()> {
        let replace_old = check_replaceable(&self.target)?;
        if !replace_old {
            return fs::rename(&self.tmp, &self.target)
                .map_err(|e| ImageError::fs(&self.target, "rename into place", e));
        }
        let base = self
            .target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("image");
        let old = parent_of(&self.target).join(format!(
            ".{base}.old-{}-{}",
            std::process::id(),
            self.serial
        ));
        fs::rename(&self.target, &old)
            .map_err(|e| ImageError::fs(&self.target, "rename old image aside", e))?;
        if let Err(e) = fs::rename(&self.tmp, &self.target) {
            if let Err(back) = fs::rename(&old, &self.target) {
                log::error!(
                    "cannot put old image {} back to {}: {back}",
                    old.display(),
                    self.target.display()
                );
            }
            return Err(ImageError::fs(&self.target, "rename into place", e));
        }
        if let Err(e) = fs::remove_dir_all(&old) {
            log::warn!("cannot remove replaced image {}: {e}", old.display());
        }
        Ok(())
    }
}

impl Drop for ImageWriter {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        match fs::remove_dir_all(&self.tmp) {
            Ok(()) => log::debug!("discarded uncommitted image {}", self.tmp.display()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!(
                "cannot remove uncommitted image {}: {e}",
                self.tmp.display()
            ),
        }
    }
}

/// Removes the temporary directories that dumps killed before commit left in `parent`
/// (`.NAME.tmp-PID-N`, up to an image's size each): those whose writer pid no longer exists and whose lock
/// nobody holds, owned by this user and holding only regular files. Anything else is left alone; each
/// removal is logged. Nothing here fails the dump that is starting.
fn remove_stale_temps(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(stale_candidate_pid) else {
            continue;
        };
        let path = entry.path();
        match remove_if_stale(&path, pid) {
            Ok(Some(bytes)) => log::warn!(
                "removed {}: the temporary directory ({bytes} bytes) of a dump by pid {pid}, which \
                 ended before committing its image",
                path.display()
            ),
            Ok(None) => {}
            Err(e) => log::warn!("cannot remove stale {}: {e}", path.display()),
        }
    }
}

/// The writer pid in a temporary directory's name `.NAME.tmp-PID-N`, if it is one.
fn stale_candidate_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix('.')?;
    let at = rest.rfind(TMP_MARK).filter(|&at| at > 0)?;
    let (pid, serial) = rest[at + TMP_MARK.len()..].split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(pid) && digits(serial)).then(|| pid.parse().ok())?
}

/// Removes temporary directory `path` of writer `pid` if it is stale (see [`remove_stale_temps`]);
/// `Some(bytes removed)` when it was.
fn remove_if_stale(path: &Path, pid: i32) -> io::Result<Option<u64>> {
    use nix::errno::Errno;
    use std::os::unix::fs::MetadataExt;
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) != Err(Errno::ESRCH) {
        return Ok(None);
    }
    let dir = open_dir_nofollow(path)?;
    let meta = fs::File::from(dir.try_clone()?).metadata()?;
    if !meta.is_dir() || meta.uid() != nix::unistd::geteuid().as_raw() {
        return Ok(None);
    }
    // Held by a live writer this process cannot see (another pid namespace): not stale.
    let Ok(_lock) = lock_dir(dir) else {
        return Ok(None);
    };
    let mut bytes = 0;
    for entry in fs::read_dir(path)? {
        let meta = entry?.metadata()?;
        if !meta.is_file() {
            return Ok(None);
        }
        bytes += meta.len();
    }
    fs::remove_dir_all(path)?;
    Ok(Some(bytes))
}

fn open_dir_nofollow(path: &Path) -> io::Result<OwnedFd> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    Ok(open(path, flags, Mode::empty())?)
}

/// An exclusive flock on directory `dir`, without waiting.
fn lock_dir(dir: OwnedFd) -> io::Result<Flock<OwnedFd>> {
    Flock::lock(dir, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| e.into())
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Whether `target` may be replaced: `Ok(false)` if absent or an empty directory (plain rename does it),
/// `Ok(true)` if it holds an image, an error otherwise.
fn check_replaceable(target: &Path) -> Result<bool> {
    let meta = match fs::symlink_metadata(target) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(ImageError::fs(target, "stat", e)),
    };
    if !meta.is_dir() {
        return Err(ImageError::Exists {
            dir: target.to_path_buf(),
            reason: "is not a directory",
        });
    }
    let mut entries =
        fs::read_dir(target).map_err(|e| ImageError::fs(target, "read directory", e))?;
    if entries.next().is_none() {
        return Ok(false);
    }
    if target.join(INVENTORY_FILE).is_file() {
        Ok(true)
    } else {
        Err(ImageError::Exists {
            dir: target.to_path_buf(),
            reason: "is neither empty nor an image",
        })
    }
}

/// Streams entries of one record file into an image being written. Dropping it without [`finish`]
/// removes the partial file, so the image never lists half a file.
///
/// [`finish`]: RecordFileWriter::finish
#[derive(Debug)]
pub struct RecordFileWriter<'w, R: Record> {
    image: &'w mut ImageWriter,
    raw: Option<RawRecordWriter>,
    _kind: PhantomData<fn(&R)>,
}

impl<'w, R: Record> RecordFileWriter<'w, R> {
    pub(crate) fn new(image: &'w mut ImageWriter, raw: RawRecordWriter) -> Self {
        RecordFileWriter {
            image,
            raw: Some(raw),
            _kind: PhantomData,
        }
    }

    /// Appends one entry.
    pub fn push(&mut self, item: &R) -> Result<()> {
        // `raw` is only taken by `finish(self)`, after which `self` no longer exists.
        match self.raw.as_mut() {
            Some(raw) => raw.push(item),
            None => Ok(()),
        }
    }

    /// Flushes, fsyncs and records the file (length, crc32) for the inventory.
    pub fn finish(mut self) -> Result<()> {
        let Some(raw) = self.raw.take() else {
            return Ok(());
        };
        let name = raw.name().to_owned();
        match raw.finish() {
            Ok((len, crc)) => {
                self.image.file_done(&name, len, crc);
                Ok(())
            }
            Err(e) => {
                self.image.file_abandoned(&name);
                Err(e)
            }
        }
    }
}

impl<R: Record> Drop for RecordFileWriter<'_, R> {
    fn drop(&mut self) {
        if let Some(raw) = self.raw.take() {
            let name = raw.name().to_owned();
            drop(raw);
            self.image.file_abandoned(&name);
        }
    }
}
