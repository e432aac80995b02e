//! Record files: a fixed 16-byte header, then entries framed as `u32 len (LE) | u32 crc32 (LE) | payload`.
//!
//! Header: 8-byte [`MAGIC`] (it carries the architecture), u16 format major, u16 format minor,
//! u16 [`RecordKind`], u16 reserved (zero); all little-endian. Reading is bounded everywhere: an entry's
//! claimed length is checked against [`MAX_ENTRY_LEN`] and against the bytes left in the file before anything
//! is allocated, and every error names the file and the byte offset.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::marker::PhantomData;

use crate::codec;
use crate::error::{ImageError, Result};
use crate::records::RecordKind;
use crate::writer::ImageWriter;
use crate::{Record, FORMAT_MAJOR, FORMAT_MINOR, MAGIC};

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
}

pub(crate) fn encode_header(kind: RecordKind) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&FORMAT_MAJOR.to_le_bytes());
    h[10..12].copy_from_slice(&FORMAT_MINOR.to_le_bytes());
    h[12..14].copy_from_slice(&(kind as u16).to_le_bytes());
    // 14..16: reserved, zero.
    h
}

/// Checks magic, major version and the reserved field; `expected` additionally pins the kind.
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
            found: magic,
            expected: MAGIC,
        });
    }
    let le = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
    let header = Header {
        major: le(8),
        minor: le(10),
        kind: le(12),
    };
    if header.major != FORMAT_MAJOR {
        return Err(ImageError::Version {
            file: file.to_owned(),
            found_major: header.major,
            found_minor: header.minor,
            supported: FORMAT_MAJOR,
        });
    }
    let reserved = le(14);
    if reserved != 0 {
        return Err(ImageError::BadHeader {
            file: file.to_owned(),
            offset: 14,
            reason: format!("reserved field is {reserved:#x}, must be 0"),
        });
    }
    match expected {
        Some(kind) if kind as u16 != header.kind => Err(ImageError::WrongKind {
            file: file.to_owned(),
            expected: kind,
            found: header.kind,
        }),
        Some(_) => Ok(header),
        None if RecordKind::from_u16(header.kind).is_none() => Err(ImageError::UnknownKind {
            file: file.to_owned(),
            found: header.kind,
        }),
        None => Ok(header),
    }
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

/// Decodes one entry of a file with header `header` (its minor version decides whether unknown trailing
/// fields are tolerated).
pub(crate) fn decode_entry<R: Record>(
    file: &str,
    header: &Header,
    offset: u64,
    payload: &[u8],
) -> Result<R> {
    codec::decode(payload, header.minor > FORMAT_MINOR).map_err(|reason| ImageError::Decode {
        file: file.to_owned(),
        offset,
        reason,
    })
}

/// Decodes every entry of a record file of kind `R::KIND`, with each entry's byte offset.
pub(crate) fn read_entries<R: Record, Rd: Read>(
    file: &str,
    rd: Rd,
    len: u64,
) -> Result<Vec<(u64, R)>> {
    let (header, mut entries) = EntryReader::new(file, rd, len, Some(R::KIND))?;
    let mut out = Vec::new();
    while let Some((offset, payload)) = entries.next_entry()? {
        out.push((offset, decode_entry::<R>(file, &header, offset, &payload)?));
    }
    Ok(out)
}

/// Decodes a whole record file held in memory. `file` names it in errors. This is the entry point fuzzers
/// and tools use on untrusted bytes; it never panics and allocates at most the input size per entry.
pub fn decode_records<R: Record>(file: &str, bytes: &[u8]) -> Result<Vec<R>> {
    Ok(read_entries::<R, _>(file, bytes, bytes.len() as u64)?
        .into_iter()
        .map(|(_, r)| r)
        .collect())
}

/// Encodes a whole record file in memory (header and every entry), the inverse of [`decode_records`].
pub fn encode_records<R: Record>(file: &str, items: &[R]) -> Result<Vec<u8>> {
    let mut out = encode_header(R::KIND).to_vec();
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

/// Opens `path` for reading and returns a buffered reader plus its length from the file system.
pub(crate) fn open_for_read(path: &std::path::Path) -> Result<(BufReader<File>, u64)> {
    let f = File::open(path).map_err(|e| ImageError::fs(path, "open", e))?;
    let len = f
        .metadata()
        .map_err(|e| ImageError::fs(path, "stat", e))?
        .len();
    Ok((BufReader::with_capacity(64 << 10, f), len))
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
    pub(crate) fn new(name: &str, file: File, kind: RecordKind) -> Result<Self> {
        let mut w = RawRecordWriter {
            name: name.to_owned(),
            out: BufWriter::with_capacity(64 << 10, file),
            hasher: crc32fast::Hasher::new(),
            len: 0,
        };
        w.write(&encode_header(kind))?;
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
        let name = raw.name.clone();
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
            let name = raw.name.clone();
            drop(raw);
            self.image.file_abandoned(&name);
        }
    }
}
