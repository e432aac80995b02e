//! The embedded restorer blob: parsing its ELF once, and loading it at a chosen base.
//!
//! The blob is a static PIE built by `build.rs`. Loading means copying each `PT_LOAD` segment to
//! `base + p_vaddr` and applying its `R_X86_64_RELATIVE` relocations against `base`; any other relocation
//! kind is refused, since nothing at restore time could resolve it.

use goblin::elf::program_header::PT_LOAD;
use goblin::elf::reloc::R_X86_64_RELATIVE;
use goblin::elf::Elf;

use crate::error::RestoreError;

/// The blob ELF, embedded at build time.
static BLOB_ELF: &[u8] = include_bytes!(env!("DORMANT_RESTORER_BLOB"));

/// Page size of the blob area.
const PAGE: u64 = 4096;

/// One loadable segment: `data` goes to `vaddr` (relative to the load base); the rest up to the segment's
/// memory size is zero.
#[derive(Debug, Clone)]
struct Segment {
    vaddr: u64,
    data: Vec<u8>,
}

/// The parsed blob: what the loader needs, checked once.
#[derive(Debug)]
pub struct Blob {
    segments: Vec<Segment>,
    /// Offsets (from the base) of the 8-byte words to relocate, with their addends.
    relocations: Vec<(u64, i64)>,
    /// Offset of [`dormant_restorer_proto::ENTRY_SYMBOL`] from the base.
    entry: u64,
    /// Bytes from the base to the end of the last segment, page rounded.
    span: u64,
}

impl Blob {
    /// Parses the embedded blob.
    pub fn embedded() -> Result<Blob, RestoreError> {
        Blob::parse(BLOB_ELF)
    }

    /// Parses a blob ELF; refuses anything the loader cannot place (non-RELATIVE relocations, no entry).
    pub fn parse(bytes: &[u8]) -> Result<Blob, RestoreError> {
        let bad = |why: String| RestoreError::Blob(why);
        let elf = Elf::parse(bytes).map_err(|e| bad(format!("not an ELF: {e}")))?;
        if !elf.is_64 || elf.header.e_machine != goblin::elf::header::EM_X86_64 {
            return Err(bad("not an x86-64 ELF64".into()));
        }
        if elf.header.e_type != goblin::elf::header::ET_DYN {
            return Err(bad("not position independent (ET_DYN)".into()));
        }
        if elf.interpreter.is_some() {
            return Err(bad("has an interpreter; it must be a static PIE".into()));
        }
        let mut segments = Vec::new();
        let mut span = 0u64;
        for ph in elf.program_headers.iter().filter(|ph| ph.p_type == PT_LOAD) {
            let file_offset =
                usize::try_from(ph.p_offset).map_err(|_| bad("segment offset".into()))?;
            let file_size = usize::try_from(ph.p_filesz).map_err(|_| bad("segment size".into()))?;
            let in_file = file_offset
                .checked_add(file_size)
                .is_some_and(|end| end <= bytes.len());
            if !in_file || ph.p_memsz < ph.p_filesz {
                return Err(bad(format!(
                    "segment at {:#x} lies outside the file",
                    ph.p_vaddr
                )));
            }
            let end = ph
                .p_vaddr
                .checked_add(ph.p_memsz)
                .ok_or_else(|| bad("segment end overflows".into()))?;
            span = span.max(end);
            segments.push(Segment {
                vaddr: ph.p_vaddr,
                data: bytes[file_offset..file_offset + file_size].to_vec(),
            });
        }
        if segments.is_empty() {
            return Err(bad("no PT_LOAD segment".into()));
        }
        let span = span.div_ceil(PAGE) * PAGE;

        let mut relocations = Vec::new();
        for (kind, relocs) in [
            ("rela.dyn", &elf.dynrelas),
            ("rel.dyn", &elf.dynrels),
            ("rela.plt", &elf.pltrelocs),
        ] {
            for r in relocs.iter() {
                if r.r_type != R_X86_64_RELATIVE {
                    return Err(bad(format!(
                        "relocation of type {} at {:#x} in .{kind}; only R_X86_64_RELATIVE is supported",
                        r.r_type, r.r_offset
                    )));
                }
                if r.r_offset.checked_add(8).is_none_or(|end| end > span) {
                    return Err(bad(format!(
                        "relocation at {:#x} outside the image",
                        r.r_offset
                    )));
                }
                relocations.push((r.r_offset, r.r_addend.unwrap_or(0)));
            }
        }

        let name = dormant_restorer_proto::ENTRY_SYMBOL;
        let entry = elf
            .syms
            .iter()
            .chain(elf.dynsyms.iter())
            .find(|s| {
                let n = elf
                    .strtab
                    .get_at(s.st_name)
                    .or_else(|| elf.dynstrtab.get_at(s.st_name));
                n == Some(name) && s.st_value != 0
            })
            .map(|s| s.st_value)
            .ok_or_else(|| bad(format!("entry symbol {name} not found")))?;
        if entry >= span {
            return Err(bad(format!(
                "entry symbol {name} at {entry:#x} outside the image"
            )));
        }
        Ok(Blob {
            segments,
            relocations,
            entry,
            span,
        })
    }

    /// Bytes the loaded blob occupies from its base (page rounded).
    pub fn span(&self) -> u64 {
        self.span
    }

    /// Offset of the entry point from the base.
    pub fn entry_offset(&self) -> u64 {
        self.entry
    }

    /// Number of relocations applied on load.
    pub fn relocation_count(&self) -> usize {
        self.relocations.len()
    }

    /// Copies the blob into `dst` (the first [`span`](Self::span) bytes of the area) as it must look when
    /// the area sits at `base`.
    pub fn load_into(&self, dst: &mut [u8], base: u64) -> Result<(), RestoreError> {
        let have = dst.len();
        let too_small =
            || RestoreError::Blob(format!("area of {have} bytes is smaller than the blob"));
        if (dst.len() as u64) < self.span {
            return Err(too_small());
        }
        dst[..self.span as usize].fill(0);
        for s in &self.segments {
            let at = s.vaddr as usize;
            dst.get_mut(at..at + s.data.len())
                .ok_or_else(too_small)?
                .copy_from_slice(&s.data);
        }
        for &(offset, addend) in &self.relocations {
            let value = base.wrapping_add_signed(addend);
            let at = offset as usize;
            dst.get_mut(at..at + 8)
                .ok_or_else(too_small)?
                .copy_from_slice(&value.to_le_bytes());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_blob_parses_with_entry_and_only_relative_relocations() {
        let blob = Blob::embedded().unwrap();
        assert!(blob.span() >= PAGE && blob.span().is_multiple_of(PAGE));
        assert!(blob.entry_offset() < blob.span());
        // Re-read the raw ELF independently: every dynamic relocation is RELATIVE.
        let elf = Elf::parse(BLOB_ELF).unwrap();
        assert!(elf
            .dynrelas
            .iter()
            .chain(elf.dynrels.iter())
            .chain(elf.pltrelocs.iter())
            .all(|r| r.r_type == R_X86_64_RELATIVE));
        assert_eq!(
            blob.relocation_count(),
            elf.dynrelas.len() + elf.dynrels.len()
        );
        assert!(elf.interpreter.is_none());
        // The entry's first instruction is `and rsp, -16` (48 83 e4 f0).
        let mut area = vec![0u8; blob.span() as usize];
        blob.load_into(&mut area, 0x7000_0000_0000).unwrap();
        let e = blob.entry_offset() as usize;
        assert_eq!(&area[e..e + 4], &[0x48, 0x83, 0xe4, 0xf0]);
    }

    #[test]
    fn relocations_are_applied_against_the_base() {
        let mut blob = Blob::embedded().unwrap();
        blob.relocations.push((0, 0x10));
        let mut area = vec![0u8; blob.span() as usize];
        blob.load_into(&mut area, 0x1000_0000).unwrap();
        assert_eq!(
            u64::from_le_bytes(area[0..8].try_into().unwrap()),
            0x1000_0010
        );
    }
}
