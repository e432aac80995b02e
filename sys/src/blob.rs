//! The ELF loader of the no_std blobs (the parasite and the restorer blob): parsed once, copied into an
//! area at a chosen base.
//!
//! A blob is a static PIE built by [`crate::build`]. Loading copies each `PT_LOAD` segment to
//! `base + p_vaddr` (the rest of the span zeroed) and applies its `R_X86_64_RELATIVE` relocations against
//! `base`. Any other relocation kind is refused: nothing where a blob runs could resolve it.

use std::fmt;

use goblin::elf::header::{EM_X86_64, ET_DYN};
use goblin::elf::program_header::PT_LOAD;
use goblin::elf::reloc::R_X86_64_RELATIVE;
use goblin::elf::Elf;

use crate::PAGE_SIZE;

/// Why a blob cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobError(pub String);

impl fmt::Display for BlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BlobError {}

/// A loadable image: segments, relocation slots, entry offset and page-rounded span.
#[derive(Debug, Clone)]
pub struct BlobImage {
    /// (p_vaddr, file bytes); the rest up to the segment's memory size is zero.
    segments: Vec<(u64, Vec<u8>)>,
    /// Offsets (from the base) of the 8-byte words to relocate, with their addends.
    relocations: Vec<(u64, i64)>,
    entry: u64,
    span: u64,
}

impl BlobImage {
    /// Parses and checks a blob ELF: x86-64 static PIE, only RELATIVE relocations, `entry_symbol` inside
    /// the image.
    pub fn parse(bytes: &[u8], entry_symbol: &str) -> Result<BlobImage, BlobError> {
        let bad = |why: String| BlobError(why);
        let elf = Elf::parse(bytes).map_err(|e| bad(format!("not an ELF: {e}")))?;
        if !elf.is_64 || elf.header.e_machine != EM_X86_64 || elf.header.e_type != ET_DYN {
            return Err(bad("not an x86-64 position-independent ELF64".into()));
        }
        if elf.interpreter.is_some() {
            return Err(bad("has an interpreter; it must be a static PIE".into()));
        }
        let mut segments = Vec::new();
        let mut span = 0u64;
        for ph in elf.program_headers.iter().filter(|p| p.p_type == PT_LOAD) {
            let start = usize::try_from(ph.p_offset).map_err(|_| bad("segment offset".into()))?;
            let len = usize::try_from(ph.p_filesz).map_err(|_| bad("segment size".into()))?;
            let data = start
                .checked_add(len)
                .and_then(|end| bytes.get(start..end))
                .filter(|_| ph.p_memsz >= ph.p_filesz)
                .ok_or_else(|| {
                    bad(format!(
                        "segment at {:#x} lies outside the file",
                        ph.p_vaddr
                    ))
                })?;
            let end = ph
                .p_vaddr
                .checked_add(ph.p_memsz)
                .ok_or_else(|| bad("segment end overflows".into()))?;
            span = span.max(end);
            segments.push((ph.p_vaddr, data.to_vec()));
        }
        if segments.is_empty() {
            return Err(bad("no PT_LOAD segment".into()));
        }
        let span = span.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let mut relocations = Vec::new();
        for (kind, relocs) in [
            ("rela.dyn", &elf.dynrelas),
            ("rel.dyn", &elf.dynrels),
            ("rela.plt", &elf.pltrelocs),
        ] {
            for r in relocs.iter() {
                if r.r_type != R_X86_64_RELATIVE {
                    return Err(bad(format!(
                        "relocation of type {} at {:#x} in .{kind}; only R_X86_64_RELATIVE can be applied",
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
        let entry = elf
            .syms
            .iter()
            .find(|s| elf.strtab.get_at(s.st_name) == Some(entry_symbol) && s.st_value != 0)
            .or_else(|| {
                elf.dynsyms.iter().find(|s| {
                    elf.dynstrtab.get_at(s.st_name) == Some(entry_symbol) && s.st_value != 0
                })
            })
            .map(|s| s.st_value)
            .filter(|&e| e < span)
            .ok_or_else(|| {
                bad(format!(
                    "entry symbol {entry_symbol} missing or outside the image"
                ))
            })?;
        Ok(BlobImage {
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

    /// Writes the blob into `dst` (at least [`span`](Self::span) bytes) as it must look when `dst` is
    /// mapped at `base`.
    pub fn load_into(&self, dst: &mut [u8], base: u64) -> Result<(), BlobError> {
        let have = dst.len();
        let small = || BlobError(format!("area of {have} bytes is smaller than the blob"));
        let span = usize::try_from(self.span).map_err(|_| small())?;
        dst.get_mut(..span).ok_or_else(small)?.fill(0);
        for (vaddr, data) in &self.segments {
            let at = usize::try_from(*vaddr).map_err(|_| small())?;
            dst.get_mut(at..at + data.len())
                .ok_or_else(small)?
                .copy_from_slice(data);
        }
        for &(offset, addend) in &self.relocations {
            let at = usize::try_from(offset).map_err(|_| small())?;
            dst.get_mut(at..at + 8)
                .ok_or_else(small)?
                .copy_from_slice(&base.wrapping_add_signed(addend).to_le_bytes());
        }
        Ok(())
    }

    /// Adds a relocation (tests check that loading applies them against the base).
    #[doc(hidden)]
    pub fn push_relocation_for_test(&mut self, offset: u64, addend: i64) {
        self.relocations.push((offset, addend));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (project rule)
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_static_pie() {
        assert!(BlobImage::parse(b"not an elf at all", "entry").is_err());
        // This test binary itself: a dynamically linked PIE (it has an interpreter).
        let me = std::fs::read("/proc/self/exe").unwrap();
        let err = BlobImage::parse(&me, "main").unwrap_err();
        assert!(
            err.0.contains("interpreter") || err.0.contains("relocation"),
            "{err}"
        );
    }
}
