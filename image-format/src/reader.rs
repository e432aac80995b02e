//! Reading a committed image: the inventory is read and checked on open; record files and page stores are
//! read on demand; [`ImageReader::verify`] checks everything the container knows how to check.
//!
//! The image directory is untrusted input. Every file is opened relative to the directory's fd, never
//! through a symlink, and only when it is a regular file; every read of a listed file checks its length and
//! whole-file crc32 against the inventory, so no reader decodes bytes the dump did not write.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::error::{ImageError, Result};
use crate::fsutil;
use crate::inventory::{ImageFile, Inventory};
use crate::pages::{self, PageStoreReader};
use crate::record_file::{self, read_entries, EntryReader, Header};
use crate::records::{PageExtent, Record, RecordKind};
use crate::writer::validate_name;
use crate::{ARCH, INVENTORY_FILE};

/// An open, inventory-checked image.
#[derive(Debug)]
pub struct ImageReader {
    dir: PathBuf,
    dir_fd: OwnedFd,
    inventory: Inventory,
    files: BTreeMap<String, ImageFile>,
}

/// What [`ImageReader::verify`] checked. Callers that know the schemas (cross references between records)
/// run their own checks after it (see [`crate::Image::load`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Every listed file, in name order.
    pub files: Vec<VerifiedFile>,
    /// Sum of the listed files' lengths (inventory excluded).
    pub total_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedFile {
    pub name: String,
    pub len: u64,
    pub kind: VerifiedFileKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifiedFileKind {
    /// A record file: header valid, every entry's crc matches.
    Records { kind: RecordKind, entries: usize },
    /// A page store index: decoded, checked against its data file, every extent's crc matches.
    PageIndex { extents: usize, page_bytes: u64 },
    /// A page store's raw data file (checked through its index).
    PageData,
}

/// A reader of one listed file that hashes every byte it passes on, so the whole-file crc32 is checked in
/// the same pass that decodes the file.
struct Checked<Rd> {
    rd: Rd,
    hasher: crc32fast::Hasher,
    count: u64,
}

impl<Rd: Read> Read for Checked<Rd> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.rd.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

impl ImageReader {
    /// Opens the image at `dir`: reads the inventory and checks its header, crc, format version, the
    /// header's version against the recorded one, the architecture, and the listed names.
    pub fn open(dir: &Path) -> Result<ImageReader> {
        let dir_fd = fsutil::open_dir(dir)?;
        let inv = INVENTORY_FILE;
        let Some(file) = fsutil::open_in(dir_fd.as_fd(), dir, inv)? else {
            return Err(ImageError::NotAnImage {
                dir: dir.to_path_buf(),
            });
        };
        let len = file
            .metadata()
            .map_err(|e| ImageError::fs(dir.join(inv), "stat", e))?
            .len();
        let (header, mut entries) =
            EntryReader::new(inv, BufReader::new(file), len, Some(RecordKind::Inventory))?;
        record_file::check_version::<Inventory>(inv, &header)?;
        let mut found = Vec::new();
        while let Some((offset, payload)) = entries.next_entry()? {
            found.push((offset, payload));
        }
        let [(offset, payload)] =
            <[_; 1]>::try_from(found).map_err(|v: Vec<_>| ImageError::EntryCount {
                file: inv.to_owned(),
                expected: "exactly 1",
                found: v.len(),
            })?;
        let inventory: Inventory = record_file::decode_entry(inv, &header, offset, &payload)?;

        if (inventory.format_major, inventory.format_minor) != (header.major, header.minor) {
            return Err(ImageError::Inconsistent {
                file: inv.to_owned(),
                reason: format!(
                    "header says format {}.{}, content says {}.{}",
                    header.major, header.minor, inventory.format_major, inventory.format_minor
                ),
            });
        }
        if inventory.arch != ARCH {
            return Err(ImageError::Arch {
                file: inv.to_owned(),
                found: inventory.arch,
                supported: ARCH,
            });
        }
        let mut files = BTreeMap::new();
        for f in &inventory.files {
            validate_name(&f.name).map_err(|e| ImageError::Inconsistent {
                file: inv.to_owned(),
                reason: e.to_string(),
            })?;
            if files.insert(f.name.clone(), f.clone()).is_some() {
                return Err(ImageError::Inconsistent {
                    file: inv.to_owned(),
                    reason: format!("{:?} listed twice", f.name),
                });
            }
        }
        Ok(ImageReader {
            dir: dir.to_path_buf(),
            dir_fd,
            inventory,
            files,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// Whether the inventory lists `name`.
    pub fn has_file(&self, name: &str) -> bool {
        self.files.contains_key(name)
    }

    /// Names of the page stores the inventory lists (by their index files).
    pub fn page_store_names(&self) -> Vec<String> {
        self.files
            .keys()
            .filter_map(|f| pages::store_of_index_file(f))
            .map(str::to_owned)
            .collect()
    }

    /// Opens a listed file (see the module doc) and checks its length against the inventory.
    fn open_listed(&self, name: &str) -> Result<(File, &ImageFile)> {
        let listed = self.files.get(name).ok_or_else(|| ImageError::NotListed {
            file: name.to_owned(),
        })?;
        let file = fsutil::open_in(self.dir_fd.as_fd(), &self.dir, name)?.ok_or_else(|| {
            ImageError::Missing {
                file: name.to_owned(),
            }
        })?;
        let len = file
            .metadata()
            .map_err(|e| ImageError::fs(self.dir.join(name), "stat", e))?
            .len();
        if len != listed.len {
            return Err(ImageError::Length {
                file: name.to_owned(),
                expected: listed.len,
                found: len,
            });
        }
        Ok((file, listed))
    }

    /// Runs `read` over listed record file `name` (a reader of exactly its listed length), then checks the
    /// whole-file crc32 of the file. A result of a file whose crc does not match is thrown away: the crc
    /// error says what happened (the file changed after the dump) better than what decoding it found.
    fn with_listed<T>(
        &self,
        name: &str,
        read: impl FnOnce(&mut Checked<BufReader<File>>, u64) -> Result<T>,
    ) -> Result<T> {
        let (out, crc) = self.read_listed(name, read)?;
        match crc {
            Some(e) => Err(e),
            None => out,
        }
    }

    /// Runs `read` over listed record file `name` and computes its whole-file crc32: returns what `read`
    /// returned and the crc mismatch, if any (both, for `verify` to report).
    fn read_listed<T>(
        &self,
        name: &str,
        read: impl FnOnce(&mut Checked<BufReader<File>>, u64) -> Result<T>,
    ) -> Result<(Result<T>, Option<ImageError>)> {
        let (file, listed) = self.open_listed(name)?;
        let mut rd = Checked {
            rd: BufReader::with_capacity(64 << 10, file),
            hasher: crc32fast::Hasher::new(),
            count: 0,
        };
        let out = read(&mut rd, listed.len);
        if out.is_err() {
            // The crc is of the whole file: hash what the failed read left.
            let rest = listed.len.saturating_sub(rd.count);
            io::copy(&mut (&mut rd).take(rest), &mut io::sink())
                .map_err(|e| ImageError::io(name, rd.count, "read", e))?;
        }
        let found = rd.hasher.finalize();
        let crc = (found != listed.crc32).then(|| ImageError::FileChecksum {
            file: name.to_owned(),
            expected: listed.crc32,
            found,
        });
        Ok((out, crc))
    }

    /// Every record file of an image was written by one writer: its format version is the inventory's.
    fn check_format(&self, name: &str, header: &Header) -> Result<()> {
        let inv = (self.inventory.format_major, self.inventory.format_minor);
        if (header.major, header.minor) != inv {
            return Err(ImageError::Inconsistent {
                file: name.to_owned(),
                reason: format!(
                    "header says format {}.{}, the inventory {}.{}",
                    header.major, header.minor, inv.0, inv.1
                ),
            });
        }
        Ok(())
    }

    /// Reads every entry of record file `file`, which must hold kind `R::KIND` at a schema version `R`
    /// decodes.
    pub fn read_records<R: Record>(&self, file: &str) -> Result<Vec<R>> {
        self.with_listed(file, |rd, len| {
            let (header, entries) = read_entries::<R, _>(file, rd, len)?;
            self.check_format(file, &header)?;
            Ok(entries.into_iter().map(|(_, r)| r).collect())
        })
    }

    /// Reads a record file that must hold exactly one entry.
    pub fn read_single<R: Record>(&self, file: &str) -> Result<R> {
        let records = self.read_records::<R>(file)?;
        <[R; 1]>::try_from(records)
            .map(|[r]| r)
            .map_err(|v| ImageError::EntryCount {
                file: file.to_owned(),
                expected: "exactly 1",
                found: v.len(),
            })
    }

    /// Opens page store `name`; its index is checked against the data file (not the extent crcs: see
    /// [`PageStoreReader::verify_all`]).
    pub fn page_store(&self, name: &str) -> Result<PageStoreReader> {
        let index_name = pages::index_file_name(name);
        let data_name = pages::data_file_name(name);
        let extents = self.with_listed(&index_name, |rd, len| {
            let (header, entries) = read_entries::<PageExtent, _>(&index_name, rd, len)?;
            self.check_format(&index_name, &header)?;
            Ok(entries)
        })?;
        let (data, listed) = self.open_listed(&data_name)?;
        PageStoreReader::new(name, &extents, data, listed.len)
    }

    /// Checks the whole image: every listed file exists with its length and whole-file crc32, no unlisted
    /// file exists, every record file's header and entry crcs, every page index against its data file
    /// (alignment, bounds, overlap, extent crcs). Each file is read once. Returns every problem found, not
    /// just the first.
    pub fn verify(&self) -> Result<VerifyReport, Vec<ImageError>> {
        let mut errors = Vec::new();
        match fsutil::list_dir(self.dir_fd.as_fd(), &self.dir) {
            Ok(names) => errors.extend(
                names
                    .into_iter()
                    .filter(|n| n != INVENTORY_FILE && !self.files.contains_key(n))
                    .map(|file| ImageError::Unlisted { file }),
            ),
            Err(e) => errors.push(e),
        }
        let mut report = VerifyReport {
            files: Vec::new(),
            total_bytes: 0,
        };
        for listed in self.files.values() {
            report.total_bytes += listed.len;
            match self.check_file(&listed.name) {
                Ok(kind) => report.files.push(VerifiedFile {
                    name: listed.name.clone(),
                    len: listed.len,
                    kind,
                }),
                Err(e) => errors.extend(e),
            }
        }
        if errors.is_empty() {
            Ok(report)
        } else {
            Err(errors)
        }
    }

    /// Checks a listed file by what it is: page data (with its whole-file crc) through its index, a page
    /// index against its data, a record file by its whole-file crc, framing, entry crcs and schema version.
    fn check_file(&self, name: &str) -> Result<VerifiedFileKind, Vec<ImageError>> {
        let inconsistent = |reason: String| ImageError::Inconsistent {
            file: name.to_owned(),
            reason,
        };
        if let Some(store) = pages::store_of_data_file(name) {
            let index = pages::index_file_name(store);
            if !self.files.contains_key(&index) {
                return Err(vec![inconsistent(format!(
                    "page data without its index {index:?}"
                ))]);
            }
            // The index's check reads the data file; make sure it exists here too.
            self.open_listed(name).map_err(|e| vec![e])?;
            return Ok(VerifiedFileKind::PageData);
        }
        if let Some(store) = pages::store_of_index_file(name) {
            return self.check_store(store).map_err(|e| vec![e]);
        }
        let (scanned, crc) = self
            .read_listed(name, |rd, len| {
                let mut rd = rd;
                let scanned = record_file::scan_entries(name, &mut rd, len)?;
                self.check_format(name, &scanned.0)?;
                Ok(scanned)
            })
            .map_err(|e| vec![e])?;
        // A file that is not what the inventory says and does not parse: both are reported.
        let (header, entries) = match (scanned, crc) {
            (Ok(s), None) => s,
            (Ok(_), Some(crc)) => return Err(vec![crc]),
            (Err(e), crc) => return Err(crc.into_iter().chain([e]).collect()),
        };
        match RecordKind::from_u16(header.kind) {
            Some(RecordKind::Inventory) | Some(RecordKind::PageIndex) | None => {
                Err(vec![inconsistent(format!(
                    "record kind {} does not belong in a file of this name",
                    header.kind
                ))])
            }
            Some(kind) => Ok(VerifiedFileKind::Records { kind, entries }),
        }
    }

    /// Checks page store `store`: its index against its data, every extent's crc and the data file's
    /// whole-file crc, in one pass over the data.
    fn check_store(&self, store: &str) -> Result<VerifiedFileKind> {
        let data_name = pages::data_file_name(store);
        let listed = self
            .files
            .get(&data_name)
            .ok_or_else(|| ImageError::NotListed {
                file: data_name.clone(),
            })?;
        let reader = self.page_store(store)?;
        let (page_bytes, data_crc) = reader.scan()?;
        if data_crc != listed.crc32 {
            return Err(ImageError::FileChecksum {
                file: data_name,
                expected: listed.crc32,
                found: data_crc,
            });
        }
        Ok(VerifiedFileKind::PageIndex {
            extents: reader.extents().len(),
            page_bytes,
        })
    }
}
