//! How a restore recognises the files behind mappings and executables (`file-identity`).
//!
//! By default a file must be the very inode it was at dump (device, inode, size, mtime): the restore runs
//! on the machine and filesystem of the dump. A container moved to a new VM finds the same root filesystem
//! image on other devices and inodes, so such a dump records [`FileCheck::Content`]: size, mtime and a
//! [`ContentDigest`] (the ELF build-id when the file has one, else a crc32 of its whole content) of every
//! file a mapping or an executable uses. An image without this file is checked by device and inode.
//!
//! The digest is computed here, by the one function both sides call, so dump and restore cannot disagree
//! on what it covers.

use std::io::{Read, Seek, SeekFrom};

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use std::collections::BTreeMap;

use super::file_names::REG_FILES;
use super::files::RegFile;
use super::ids::FileId;
use crate::error::Problems;

/// File name of the single [`FileIdentity`] record.
pub use super::file_names::FILE_IDENTITY;

/// Which identity of a file restore requires.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum FileCheck {
    /// Device, inode, type, size and mtime: the same filesystem (what an image without the record means).
    #[default]
    DevIno,
    /// Type, size, mtime and the content digest; device and inode may differ (a new VM).
    Content,
}

/// What identifies a file's content.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContentDigest {
    /// The `NT_GNU_BUILD_ID` note of an ELF file (its linker's hash of the whole object).
    BuildId(Vec<u8>),
    /// crc32 of the whole file, for files without a build-id.
    Crc32(u32),
}

/// The digest of one file-table entry.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub id: FileId,
    pub digest: ContentDigest,
}

/// The check a dump chose and, for [`FileCheck::Content`], the digest of every file behind a mapping or an
/// executable (`reg-files` entries; files only open through an fd need none: restore reopens them as they
/// are then).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FileIdentity {
    pub check: FileCheck,
    pub digests: Vec<FileDigest>,
}

/// Checks the record: one entry, each digest for a file of `reg-files`, each file once.
pub(crate) fn check_file_identity(
    entries: &[FileIdentity],
    files: &BTreeMap<FileId, RegFile>,
    p: &mut Problems,
) {
    if entries.len() != 1 {
        p.add(
            FILE_IDENTITY,
            format!("{} entries, one expected", entries.len()),
        );
    }
    for fi in entries {
        let mut seen = std::collections::BTreeSet::new();
        for d in &fi.digests {
            if !files.contains_key(&d.id) {
                p.add(
                    FILE_IDENTITY,
                    format!("digest of file {}, which is not in {REG_FILES}", d.id.0),
                );
            }
            if !seen.insert(d.id) {
                p.add(FILE_IDENTITY, format!("file {} has two digests", d.id.0));
            }
        }
    }
}

/// At most this many program headers and this many bytes of one note segment are looked at: a build-id
/// note sits in the first note segment of every linker's output, and bad input must not cost more.
const MAX_PHDRS: usize = 256;
const MAX_NOTE_BYTES: u64 = 64 * 1024;

const PT_NOTE: u32 = 4;
const NT_GNU_BUILD_ID: u32 = 3;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The build-id in a note segment's bytes (`align`: the segment's note alignment, 4 or 8).
fn build_id_in_notes(notes: &[u8], align: usize) -> Option<Vec<u8>> {
    let up = |n: usize| n.checked_add(align - 1).map(|v| v & !(align - 1));
    let mut at = 0usize;
    while at + 12 <= notes.len() {
        let namesz = u32_at(notes, at)? as usize;
        let descsz = u32_at(notes, at + 4)? as usize;
        let kind = u32_at(notes, at + 8)?;
        let name_at = at + 12;
        let desc_at = name_at.checked_add(up(namesz)?)?;
        let end = desc_at.checked_add(up(descsz)?)?;
        if kind == NT_GNU_BUILD_ID && notes.get(name_at..name_at + namesz)? == b"GNU\0" {
            return notes.get(desc_at..desc_at + descsz).map(<[u8]>::to_vec);
        }
        at = end;
    }
    None
}

/// The `NT_GNU_BUILD_ID` of a little-endian 64-bit ELF file; `None` for anything else (not ELF, no note,
/// malformed headers).
pub fn elf_build_id(file: &mut (impl Read + Seek)) -> std::io::Result<Option<Vec<u8>>> {
    let mut ehdr = [0u8; 64];
    file.seek(SeekFrom::Start(0))?;
    if file.read_exact(&mut ehdr).is_err() {
        return Ok(None);
    }
    // ELFCLASS64, ELFDATA2LSB.
    if &ehdr[..4] != b"\x7fELF" || ehdr[4] != 2 || ehdr[5] != 1 {
        return Ok(None);
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (
        u64_at(&ehdr, 0x20),
        u16_at(&ehdr, 0x36),
        u16_at(&ehdr, 0x38),
    ) else {
        return Ok(None);
    };
    let (phentsize, phnum) = (usize::from(phentsize), usize::from(phnum).min(MAX_PHDRS));
    if phentsize < 56 {
        return Ok(None);
    }
    let mut phdrs = vec![0u8; phentsize * phnum];
    file.seek(SeekFrom::Start(phoff))?;
    if file.read_exact(&mut phdrs).is_err() {
        return Ok(None);
    }
    for ph in phdrs.chunks_exact(phentsize) {
        let (Some(kind), Some(offset), Some(size), Some(align)) = (
            u32_at(ph, 0),
            u64_at(ph, 8),
            u64_at(ph, 0x20),
            u64_at(ph, 0x30),
        ) else {
            continue;
        };
        if kind != PT_NOTE || size > MAX_NOTE_BYTES {
            continue;
        }
        let mut notes = vec![0u8; size as usize];
        file.seek(SeekFrom::Start(offset))?;
        if file.read_exact(&mut notes).is_err() {
            continue;
        }
        if let Some(id) = build_id_in_notes(&notes, if align == 8 { 8 } else { 4 }) {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

impl ContentDigest {
    /// The digest of `file`: its ELF build-id when it has one, else the crc32 of its whole content.
    pub fn of(file: &mut (impl Read + Seek)) -> std::io::Result<ContentDigest> {
        if let Some(id) = elf_build_id(file)? {
            return Ok(ContentDigest::BuildId(id));
        }
        file.seek(SeekFrom::Start(0))?;
        let mut h = crc32fast::Hasher::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => h.update(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ContentDigest::Crc32(h.finalize()))
    }
}

impl std::fmt::Display for ContentDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContentDigest::BuildId(id) => {
                f.write_str("build-id ")?;
                id.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
            ContentDigest::Crc32(c) => write!(f, "crc32 {c:08x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Cursor;

    #[test]
    fn executables_here_have_build_ids() {
        let mut exe = std::fs::File::open("/proc/self/exe").unwrap();
        let id = elf_build_id(&mut exe).unwrap();
        // rustc passes --build-id to the linker on Linux.
        assert!(id.as_ref().is_some_and(|i| i.len() >= 16), "{id:?}");
        assert_eq!(
            ContentDigest::of(&mut exe).unwrap(),
            ContentDigest::BuildId(id.unwrap())
        );
    }

    #[test]
    fn other_files_get_a_crc32_and_bad_elf_never_panics() {
        let mut text = Cursor::new(b"hello".to_vec());
        assert_eq!(
            ContentDigest::of(&mut text).unwrap(),
            ContentDigest::Crc32(crc32fast::hash(b"hello"))
        );
        // ELF magic with nonsense headers: no build-id, a crc32.
        let mut bad = b"\x7fELF\x02\x01".to_vec();
        bad.resize(64, 0xff);
        let mut c = Cursor::new(bad.clone());
        assert_eq!(elf_build_id(&mut c).unwrap(), None);
        assert_eq!(
            ContentDigest::of(&mut c).unwrap(),
            ContentDigest::Crc32(crc32fast::hash(&bad))
        );
    }

    #[test]
    fn notes_are_walked_with_their_alignment() {
        let mut notes = Vec::new();
        // An unrelated note first (name "XY\0", padded to 4; desc of 3 bytes padded to 4).
        notes.extend(3u32.to_le_bytes());
        notes.extend(3u32.to_le_bytes());
        notes.extend(1u32.to_le_bytes());
        notes.extend(b"XY\0\0abc\0");
        notes.extend(4u32.to_le_bytes());
        notes.extend(2u32.to_le_bytes());
        notes.extend(NT_GNU_BUILD_ID.to_le_bytes());
        notes.extend(b"GNU\0\x12\x34\0\0");
        assert_eq!(build_id_in_notes(&notes, 4), Some(vec![0x12, 0x34]));
        assert_eq!(build_id_in_notes(&notes[..20], 4), None);
        assert_eq!(
            ContentDigest::BuildId(vec![0xab, 1]).to_string(),
            "build-id ab01"
        );
    }
}
