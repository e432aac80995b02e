//! Reading a committed image: the inventory is read and checked on open; record files and page stores are
//! read on demand; [`ImageReader::verify`] checks everything the container knows how to check.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::{ImageError, Result};
use crate::inventory::{ImageFile, Inventory};
use crate::pages::{self, PageStoreReader};
use crate::record_file::{self, read_entries, EntryReader};
use crate::records::RecordKind;
use crate::writer::validate_name;
use crate::{Record, ARCH, INVENTORY_FILE};

/// An open, inventory-checked image.
#[derive(Debug)]
pub struct ImageReader {
    dir: PathBuf,
    inventory: Inventory,
    files: BTreeMap<String, ImageFile>,
}

/// What [`ImageReader::verify`] checked. Callers that know the schemas (cross references between records)
/// run their own checks after it, e.g. through [`ImageReader::verify_with`].
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

impl ImageReader {
    /// Opens the image at `dir`: reads the inventory and checks its header, crc, format major, the header's
    /// version against the recorded one, the architecture, and the listed names.
    pub fn open(dir: &Path) -> Result<ImageReader> {
        let path = dir.join(INVENTORY_FILE);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ImageError::NotAnImage {
                    dir: dir.to_path_buf(),
                });
            }
            Err(e) => return Err(ImageError::fs(&path, "open", e)),
        };
        let len = file
            .metadata()
            .map_err(|e| ImageError::fs(&path, "stat", e))?
            .len();
        let inv = INVENTORY_FILE;
        let (header, mut entries) =
            EntryReader::new(inv, BufReader::new(file), len, Some(RecordKind::Inventory))?;
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

    /// Opens a listed file and checks its length against the inventory.
    fn open_listed(&self, name: &str) -> Result<(BufReader<File>, u64)> {
        let listed = self.files.get(name).ok_or_else(|| ImageError::NotListed {
            file: name.to_owned(),
        })?;
        let (rd, len) = record_file::open_for_read(&self.dir.join(name))?;
        if len != listed.len {
            return Err(ImageError::Length {
                file: name.to_owned(),
                expected: listed.len,
                found: len,
            });
        }
        Ok((rd, len))
    }

    /// Reads every entry of record file `file`, which must hold kind `R::KIND`.
    pub fn read_records<R: Record>(&self, file: &str) -> Result<Vec<R>> {
        let (rd, len) = self.open_listed(file)?;
        Ok(read_entries::<R, _>(file, rd, len)?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
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
        self.open_listed(&index_name)?;
        let listed = self
            .files
            .get(&data_name)
            .ok_or_else(|| ImageError::NotListed {
                file: data_name.clone(),
            })?;
        let store = PageStoreReader::open(&self.dir, name)?;
        if store.data_len() != listed.len {
            return Err(ImageError::Length {
                file: data_name,
                expected: listed.len,
                found: store.data_len(),
            });
        }
        Ok(store)
    }

    /// Checks the whole image: every listed file exists with its length and whole-file crc32, no unlisted
    /// file exists, every record file's header and entry crcs, every page index against its data file
    /// (alignment, bounds, overlap, extent crcs). Returns every problem found, not just the first.
    pub fn verify(&self) -> Result<VerifyReport, Vec<ImageError>> {
        let mut errors = Vec::new();
        match fs::read_dir(&self.dir) {
            Ok(entries) => {
                for entry in entries {
                    match entry {
                        Ok(entry) => {
                            let name = entry.file_name().to_string_lossy().into_owned();
                            if name != INVENTORY_FILE && !self.files.contains_key(&name) {
                                errors.push(ImageError::Unlisted { file: name });
                            }
                        }
                        Err(e) => errors.push(ImageError::fs(&self.dir, "read directory", e)),
                    }
                }
            }
            Err(e) => errors.push(ImageError::fs(&self.dir, "read directory", e)),
        }

        let mut report = VerifyReport {
            files: Vec::new(),
            total_bytes: 0,
        };
        for listed in self.files.values() {
            report.total_bytes += listed.len;
            if let Err(e) = self.check_whole_file(listed) {
                errors.push(e);
            }
            match self.check_structure(&listed.name) {
                Ok(kind) => report.files.push(VerifiedFile {
                    name: listed.name.clone(),
                    len: listed.len,
                    kind,
                }),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(report)
        } else {
            Err(errors)
        }
    }

    /// [`verify`](Self::verify), then `extra` (schema-level checks) on the report; all errors together.
    pub fn verify_with<F>(&self, extra: F) -> Result<VerifyReport, Vec<ImageError>>
    where
        F: FnOnce(&ImageReader, &VerifyReport) -> Vec<ImageError>,
    {
        let report = self.verify()?;
        let errors = extra(self, &report);
        if errors.is_empty() {
            Ok(report)
        } else {
            Err(errors)
        }
    }

    /// Exists, is a regular file, has the listed length and whole-file crc32.
    fn check_whole_file(&self, listed: &ImageFile) -> Result<()> {
        let name = &listed.name;
        let path = self.dir.join(name);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ImageError::Missing { file: name.clone() })
            }
            Err(e) => return Err(ImageError::fs(&path, "open", e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| ImageError::fs(&path, "stat", e))?;
        if !meta.is_file() {
            return Err(ImageError::Inconsistent {
                file: name.clone(),
                reason: "not a regular file".into(),
            });
        }
        if meta.len() != listed.len {
            return Err(ImageError::Length {
                file: name.clone(),
                expected: listed.len,
                found: meta.len(),
            });
        }
        let mut hasher = crc32fast::Hasher::new();
        let mut rd = file.take(listed.len);
        let mut buf = vec![0u8; 1 << 20];
        let mut offset = 0u64;
        loop {
            let n = match rd.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ImageError::io(name, offset, "read", e)),
            };
            hasher.update(&buf[..n]);
            offset += n as u64;
        }
        let found = hasher.finalize();
        if found != listed.crc32 {
            return Err(ImageError::FileChecksum {
                file: name.clone(),
                expected: listed.crc32,
                found,
            });
        }
        Ok(())
    }

    /// Checks a listed file by what it is: page data through its index, a page index against its data, a
    /// record file by its framing and entry crcs.
    fn check_structure(&self, name: &str) -> Result<VerifiedFileKind> {
        let inconsistent = |reason: String| ImageError::Inconsistent {
            file: name.to_owned(),
            reason,
        };
        if let Some(store) = pages::store_of_data_file(name) {
            let index = pages::index_file_name(store);
            if !self.files.contains_key(&index) {
                return Err(inconsistent(format!(
                    "page data without its index {index:?}"
                )));
            }
            return Ok(VerifiedFileKind::PageData);
        }
        if let Some(store) = pages::store_of_index_file(name) {
            let reader = self.page_store(store)?;
            let page_bytes = reader.verify_all()?;
            return Ok(VerifiedFileKind::PageIndex {
                extents: reader.extents().len(),
                page_bytes,
            });
        }
        let (rd, len) = self.open_listed(name)?;
        let (header, entries) = record_file::scan_entries(name, rd, len)?;
        match RecordKind::from_u16(header.kind) {
            Some(RecordKind::Inventory) | Some(RecordKind::PageIndex) | None => {
                Err(inconsistent(format!(
                    "record kind {} does not belong in a file of this name",
                    header.kind
                )))
            }
            Some(kind) => Ok(VerifiedFileKind::Records { kind, entries }),
        }
    }
}
