//! Record files: a fixed 16-byte header, then entries framed as `u32 len (LE) | u32 crc32 (LE) | payload`.
//!
//! Header: 8-byte [`MAGIC`] (it carries the architecture), u16 format major, u16 format minor,
//! u16 [`RecordKind`], u16 schema version of that kind; all little-endian. Files of format 2.0 had a
//! reserved zero where the schema version is: they are read as version 1 of every kind (the encodings of
//! format 2.0, which version 1 is). Reading is bounded everywhere: an entry's claimed length is checked
//! against [`MAX_ENTRY_LEN`] and against the bytes left in the file before anything is allocated, and every
//! error names the file and the byte offset.

use std::fs::File;
use std::io::{BufWriter, Read, Write};

use crate::codec;
use crate::error::{ImageError, Result};
use crate::records::{Record, RecordKind};
use crate::{FORMAT_MAJOR, FORMAT_MINOR, MAGIC};

/// The one older format this build reads: 2.0, written by dormant before record kinds had schema
/// versions. Its encodings are version 1 of every kind.
pub const LEGACY_FORMAT: (u16, u16) = (2, 0);

/// Bytes of the record file header.
pub const HEADER_LEN: u64 = 16;
/// Largest payload one entry may have. Bigger claims are refused before allocating, so a corrupt length
/// cannot make a reader allocate gigabytes. Records are small; page data never goes through entries.
pub const MAX_ENTRY_LEN: u64 = 64 << 20;
/// Bytes of an entry's framing (`len` and `crc32`).
pub const ENTRY_FRAME_LEN: u64 = 8;

/// A decoded and checked record file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub major: u16,
    pub minor: u16,
    /// Raw kind value; [`RecordKind::from_u16`] maps it when this build knows it.
    pub kind: u16,
    /// Schema version of the kind's encoding (1 for every file of format 2.0).
    pub version: u16,
}

pub(crate) fn encode_header(kind: RecordKind, version: u16) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&FORMAT_MAJOR.to_le_bytes());
    h[10..12].copy_from_slice(&FORMAT_MINOR.to_le_bytes());
    h[12..14].copy_from_slice(&(kind as u16).to_le_bytes());
    h[14..16].copy_from_slice(&version.to_le_bytes());
    h
}

/// Checks magic, format version and schema version field; `expected` additionally pins the kind. Without
/// `expected`, the kind must be one this build knows at a version it reads; with it, the reader of that
/// type checks the version (see [`check_version`]).
pub(crate) fn parse_header(
    file: &str,
    h: &[u8; HEADER_LEN as usize],
    expected: Option<RecordKind>,
) -> Result<Header> {
    let mut magic = [0u8; 8];
    magic.copy_from_slice(&h[..8]);
    if magic != MAGIC {
        return Err(ImageError::BadMagic {
            file: file.to_owned(),
            expected: MAGIC_TEXT,
        });
    }
    let le = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
    let (major, minor, raw_version) = (le(8), le(10), le(14));
    let legacy = (major, minor) == LEGACY_FORMAT;
    if major != FORMAT_MAJOR && !legacy {
        return Err(ImageError::Version {
            file: file.to_owned(),
            found_major: major,
            found_minor: minor,
        });
    }
    let version = match (legacy, raw_version) {
        (true, 0) => 1,
        (false, v) if v >= 1 => v,
        (true, v) => {
            return Err(ImageError::BadHeader {
                file: file.to_owned(),
                offset: 14,
                reason: format!("reserved field of a format 2.0 file is {v:#x}, must be 0"),
            })
        }
        (false, _) => {
            return Err(ImageError::BadHeader {
                file: file.to_owned(),
                offset: 14,
                reason: "schema version 0 (versions start at 1)".into(),
            })
        }
    };
    let header = Header {
        major,
        minor,
        kind: le(12),
        version,
    };
    match expected {
        Some(kind) if kind as u16 != header.kind => Err(ImageError::WrongKind {
            file: file.to_owned(),
            expected: kind as u16,
            expected_name: kind.type_name(),
            found: header.kind,
        }),
        Some(_) => Ok(header),
        None => match RecordKind::from_u16(header.kind) {
            None => Err(ImageError::UnknownKind {
                file: file.to_owned(),
                found: header.kind,
            }),
            Some(kind) if !kind.reads_version(version) => Err(ImageError::SchemaVersion {
                file: file.to_owned(),
                kind: header.kind,
                kind_name: kind.type_name(),
                found: version,
                current: kind.version(),
            }),
            Some(_) => Ok(header),
        },
    }
}

/// The magic as text, for messages (never the bytes found in its place).
const MAGIC_TEXT: &str = match std::str::from_utf8(MAGIC.split_at(7).0) {
    Ok(s) => s,
    Err(_) => "DRMT",
};

/// Checks that `R` decodes files at the header's schema version: its own version, or an older one it kept
/// a decoder for.
pub(crate) fn check_version<R: Record>(file: &str, header: &Header) -> Result<()> {
    let kept = header.version < R::VERSION && R::decode_older(header.version, &[]).is_some();
    if header.version == R::VERSION || kept {
        return Ok(());
    }
    Err(ImageError::SchemaVersion {
        file: file.to_owned(),
        kind: R::KIND as u16,
        kind_name: R::KIND.type_name(),
        found: header.version,
        current: R::VERSION,
    })
}

/// Reads framed entries from `rd`, which holds exactly `len` bytes (the file's length, taken from the file
/// system, never from the content).
pub(crate) struct EntryReader<'f, Rd> {
    file: &'f str,
    rd: Rd,
    pos: u64,
    end: u64,
}

impl<'f, Rd: Read> EntryReader<'f, Rd> {
    /// Reads and checks the header; the reader is then positioned at the first entry.
    pub(crate) fn new(
        file: &'f str,
        mut rd: Rd,
        len: u64,
        expected: Option<RecordKind>,
    ) -> Result<(Header, Self)> {
        if len < HEADER_LEN {
            return Err(ImageError::Truncated {
                file: file.to_owned(),
                offset: 0,
                wanted: HEADER_LEN,
                left: len,
            });
        }
        let mut h = [0u8; HEADER_LEN as usize];
        rd.read_exact(&mut h)
            .map_err(|e| ImageError::io(file, 0, "read header", e))?;
        let header = parse_header(file, &h, expected)?;
        Ok((
            header,
            EntryReader {
                file,
                rd,
                pos: HEADER_LEN,
                end: len,
            },
        ))
    }

    /// Returns the next entry's offset and checked payload, or `None` at a clean end of file.
    pub(crate) fn next_entry(&mut self) -> Result<Option<(u64, Vec<u8>)>> {
        let offset = self.pos;
        let left = self.end - self.pos;
        if left == 0 {
            return Ok(None);
        }
        if left < ENTRY_FRAME_LEN {
            return Err(self.truncated(offset, ENTRY_FRAME_LEN, left));
        }
        let mut frame = [0u8; ENTRY_FRAME_LEN as usize];
        self.rd
            .read_exact(&mut frame)
            .map_err(|e| ImageError::io(self.file, offset, "read entry frame", e))?;
        let len = u64::from(u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]));
        let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        if len > MAX_ENTRY_LEN {
            return Err(ImageError::EntryTooLarge {
                file: self.file.to_owned(),
                offset,
                len,
                max: MAX_ENTRY_LEN,
            });
        }
        let left = left - ENTRY_FRAME_LEN;
        if len > left {
            return Err(self.truncated(offset + ENTRY_FRAME_LEN, len, left));
        }
        // Both bounds checked above: len <= 64 MiB and len <= bytes really in the file.
        let mut payload = vec![0u8; len as usize];
        self.rd.read_exact(&mut payload).map_err(|e| {
            ImageError::io(self.file, offset + ENTRY_FRAME_LEN, "read entry payload", e)
        })?;
        let found = crc32fast::hash(&payload);
        if found != crc {
            return Err(ImageError::Checksum {
                file: self.file.to_owned(),
                offset,
                expected: crc,
                found,
            });
        }
        self.pos = offset + ENTRY_FRAME_LEN + len;
        Ok(Some((offset, payload)))
    }

    fn truncated(&self, offset: u64, wanted: u64, left: u64) -> ImageError {
        ImageError::Truncated {
            file: self.file.to_owned(),
            offset,
            wanted,
            left,
        }
    }
}

/// Decodes one entry of a file with header `header` (already checked with [`check_version`]) at the
/// header's schema version: as `R` itself, or through the decoder `R` kept for that older version.
pub(crate) fn decode_entry<R: Record>(
    file: &str,
    header: &Header,
    offset: u64,
    payload: &[u8],
) -> Result<R> {
    let decoded = if header.version == R::VERSION {
        codec::decode(payload)
    } else {
        R::decode_older(header.version, payload)
            .unwrap_or_else(|| Err(format!("no decoder for schema version {}", header.version)))
    };
    decoded.map_err(|reason| ImageError::Decode {
        file: file.to_owned(),
        offset,
        reason,
    })
}

/// Decodes every entry of a record file of kind `R::KIND`, with each entry's byte offset; also returns the
/// file's header.
pub(crate) fn read_entries<R: Record, Rd: Read>(
    file: &str,
    rd: Rd,
    len: u64,
) -> Result<(Header, Vec<(u64, R)>)> {
    let (header, mut entries) = EntryReader::new(file, rd, len, Some(R::KIND))?;
    check_version::<R>(file, &header)?;
    let mut out = Vec::new();
    while let Some((offset, payload)) = entries.next_entry()? {
        out.push((offset, decode_entry::<R>(file, &header, offset, &payload)?));
    }
    Ok((header, out))
}

/// Decodes a whole record file held in memory. `file` names it in errors. This is the entry point fuzzers
/// and tools use on untrusted bytes; it never panics and allocates at most the input size per entry.
pub fn decode_records<R: Record>(file: &str, bytes: &[u8]) -> Result<Vec<R>> {
    Ok(read_entries::<R, _>(file, bytes, bytes.len() as u64)?
        .1
        .into_iter()
        .map(|(_, r)| r)
        .collect())
}

/// Encodes a whole record file in memory (header and every entry), the inverse of [`decode_records`].
pub fn encode_records<R: Record>(file: &str, items: &[R]) -> Result<Vec<u8>> {
    let mut out = encode_header(R::KIND, R::VERSION).to_vec();
    for item in items {
        let payload = encode_payload(file, item)?;
        push_frame(&mut out, &payload);
    }
    Ok(out)
}

fn encode_payload<R: Record>(file: &str, item: &R) -> Result<Vec<u8>> {
    let payload = codec::encode(item).map_err(|reason| ImageError::Encode {
        file: file.to_owned(),
        reason,
    })?;
    if payload.len() as u64 > MAX_ENTRY_LEN {
        return Err(ImageError::Encode {
            file: file.to_owned(),
            reason: format!(
                "record of {} bytes exceeds the entry limit of {MAX_ENTRY_LEN}",
                payload.len()
            ),
        });
    }
    Ok(payload)
}

fn push_frame(out: &mut Vec<u8>, payload: &[u8]) {
    // encode_payload bounds the length by MAX_ENTRY_LEN, which fits in u32.
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Checks the framing and every entry crc of a record file whose kind is not known in advance (`verify`).
/// Returns the header and the number of entries.
pub(crate) fn scan_entries<Rd: Read>(file: &str, rd: Rd, len: u64) -> Result<(Header, usize)> {
    let (header, mut entries) = EntryReader::new(file, rd, len, None)?;
    let mut count = 0;
    while entries.next_entry()?.is_some() {
        count += 1;
    }
    Ok((header, count))
}

/// Writes one record file, tracking its length and whole-file crc32 as it goes (so committing the image
/// needs no read-back of record files).
#[derive(Debug)]
pub(crate) struct RawRecordWriter {
    name: String,
    out: BufWriter<File>,
    hasher: crc32fast::Hasher,
    len: u64,
}

impl RawRecordWriter {
    pub(crate) fn new(name: &str, file: File, kind: RecordKind, version: u16) -> Result<Self> {
        let mut w = RawRecordWriter {
            name: name.to_owned(),
            out: BufWriter::with_capacity(64 << 10, file),
            hasher: crc32fast::Hasher::new(),
            len: 0,
        };
        w.write(&encode_header(kind, version))?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| ImageError::io(&self.name, self.len, "write", e))?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn push<R: Record>(&mut self, item: &R) -> Result<()> {
        let payload = encode_payload(&self.name, item)?;
        let mut frame = [0u8; ENTRY_FRAME_LEN as usize];
        frame[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        frame[4..].copy_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        self.write(&frame)?;
        self.write(&payload)
    }

    /// Flushes and fsyncs; returns the file's length and whole-file crc32.
    pub(crate) fn finish(self) -> Result<(u64, u32)> {
        let RawRecordWriter {
            name,
            out,
            hasher,
            len,
        } = self;
        let file = out
            .into_inner()
            .map_err(|e| ImageError::io(&name, len, "flush", e.into_error()))?;
        file.sync_all()
            .map_err(|e| ImageError::io(&name, len, "fsync", e))?;
        Ok((len, hasher.finalize()))
    }
}
