//! The embedded parasite blob: its ELF parsed once, and copied into an area at a chosen base.
//!
//! `build.rs` builds it as a static PIE; loading copies each `PT_LOAD` segment to `base + p_vaddr` and
//! applies its `R_X86_64_RELATIVE` relocations against `base`. Any other relocation kind is refused:
//! nothing inside the target could resolve it.

use goblin::elf::header::{EM_X86_64, ET_DYN};
use goblin::elf::program_header::PT_LOAD;
use goblin::elf::reloc::R_X86_64_RELATIVE;
use goblin::elf::Elf;

use crate::error::ParasiteError;

static BLOB_ELF: &[u8] = include_bytes!(env!("DORMANT_PARASITE_BLOB"));

pub(crate) const PAGE: u64 = 4096;

/// Whether this CPU runs the blob: `build.rs` compiles it with SSSE3, SSE4.1 and PCLMULQDQ (for the crc32
/// of spliced pages), so on a CPU without them it would fault inside the target. Keep in step with
/// `BLOB_FLAGS` in build.rs.
pub(crate) fn cpu_supported() -> Result<(), ParasiteError> {
    let missing: Vec<&str> = [
        ("sse2", std::arch::is_x86_feature_detected!("sse2")),
        ("ssse3", std::arch::is_x86_feature_detected!("ssse3")),
        ("sse4.1", std::arch::is_x86_feature_detected!("sse4.1")),
        (
            "pclmulqdq",
            std::arch::is_x86_feature_detected!("pclmulqdq"),
        ),
    ]
    .into_iter()
    .filter(|(_, have)| !have)
    .map(|(name, _)| name)
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ParasiteError::Blob(format!(
            "this CPU lacks {} the blob is built with",
            missing.join(", ")
        )))
    }
}

/// A loadable image: segments, relocation slots, entry offset and page-rounded span.
#[derive(Debug)]
pub struct BlobImage {
    segments: Vec<(u64, Vec<u8>)>,
    relocations: Vec<(u64, i64)>,
    entry: u64,
    span: u64,
}

impl BlobImage {
    /// The blob built into this crate.
    pub fn embedded() -> Result<BlobImage, ParasiteError> {
        BlobImage::parse(BLOB_ELF)
    }

    /// Parse and check a blob ELF (static PIE, x86-64, only RELATIVE relocations, entry symbol present).
    pub fn parse(bytes: &[u8]) -> Result<BlobImage, ParasiteError> {
        let bad = |why: String| ParasiteError::Blob(why);
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
                .ok_or_else(|| bad(format!("segment at {:#x} outside the file", ph.p_vaddr)))?;
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
        let span = span.div_ceil(PAGE) * PAGE;
        let mut relocations = Vec::new();
        for r in elf
            .dynrelas
            .iter()
            .chain(elf.dynrels.iter())
            .chain(elf.pltrelocs.iter())
        {
            if r.r_type != R_X86_64_RELATIVE {
                return Err(bad(format!(
                    "relocation type {} at {:#x}; only R_X86_64_RELATIVE can be applied",
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
        let name = dormant_parasite_proto::ENTRY_SYMBOL;
        let entry = elf
            .syms
            .iter()
            .find(|s| elf.strtab.get_at(s.st_name) == Some(name) && s.st_value != 0)
            .or_else(|| {
                elf.dynsyms
                    .iter()
                    .find(|s| elf.dynstrtab.get_at(s.st_name) == Some(name) && s.st_value != 0)
            })
            .map(|s| s.st_value)
            .filter(|&e| e < span)
            .ok_or_else(|| bad(format!("entry symbol {name} missing or outside the image")))?;
        Ok(BlobImage {
            segments,
            relocations,
            entry,
            span,
        })
    }

    /// Bytes the loaded blob occupies (page rounded).
    pub fn span(&self) -> u64 {
        self.span
    }

    /// Offset of the entry point from the load base.
    pub fn entry_offset(&self) -> u64 {
        self.entry
    }

    /// Number of relocations applied on load.
    pub fn relocation_count(&self) -> usize {
        self.relocations.len()
    }

    /// Write the blob into `dst` as it must look when `dst` is mapped at `base` in the target.
    pub fn load_into(&self, dst: &mut [u8], base: u64) -> Result<(), ParasiteError> {
        let have = dst.len();
        let small = || ParasiteError::Blob(format!("area of {have} bytes is too small"));
        let span = usize::try_from(self.span).map_err(|_| small())?;
        dst.get_mut(..span).ok_or_else(small)?.fill(0);
        for (vaddr, data) in &self.segments {
            let at = *vaddr as usize;
            dst.get_mut(at..at + data.len())
                .ok_or_else(small)?
                .copy_from_slice(data);
        }
        for &(offset, addend) in &self.relocations {
            let at = offset as usize;
            dst.get_mut(at..at + 8)
                .ok_or_else(small)?
                .copy_from_slice(&base.wrapping_add_signed(addend).to_le_bytes());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn embedded_blob_is_a_static_pie_with_only_relative_relocations() {
        let blob = BlobImage::embedded().unwrap();
        assert!(blob.span() >= PAGE && blob.span().is_multiple_of(PAGE));
        let elf = Elf::parse(BLOB_ELF).unwrap();
        assert!(elf.interpreter.is_none());
        assert!(elf
            .dynrelas
            .iter()
            .chain(elf.dynrels.iter())
            .all(|r| r.r_type == R_X86_64_RELATIVE));
        // The entry starts with `and rsp, -16` (48 83 e4 f0).
        let mut area = vec![0u8; blob.span() as usize];
        blob.load_into(&mut area, 0x7f00_0000_0000).unwrap();
        let e = blob.entry_offset() as usize;
        assert_eq!(&area[e..e + 4], &[0x48, 0x83, 0xe4, 0xf0]);
    }

    #[test]
    fn relocations_are_applied_against_the_base() {
        let mut blob = BlobImage::embedded().unwrap();
        blob.relocations.push((0, 0x10));
        let mut area = vec![0u8; blob.span() as usize];
        blob.load_into(&mut area, 0x1000_0000).unwrap();
        assert_eq!(
            u64::from_le_bytes(area[..8].try_into().unwrap()),
            0x1000_0010
        );
        assert!(
            blob.load_into(&mut [0u8; 16], 0).is_err(),
            "too small an area is refused"
        );
    }
}
