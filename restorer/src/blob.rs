//! The embedded restorer blob (built by `build.rs`, loaded by dormant-sys's blob loader, the same one the
//! parasite uses).

use dormant_sys::blob::BlobImage;

use crate::error::RestoreError;

/// The blob ELF, embedded at build time.
static BLOB_ELF: &[u8] = include_bytes!(env!("DORMANT_RESTORER_BLOB"));

/// The parsed blob: what the loader needs, checked once.
#[derive(Debug)]
pub struct Blob(BlobImage);

impl Blob {
    /// Parses the embedded blob.
    pub fn embedded() -> Result<Blob, RestoreError> {
        Blob::parse(BLOB_ELF)
    }

    /// Parses a blob ELF; refuses anything the loader cannot place (non-RELATIVE relocations, no entry).
    pub fn parse(bytes: &[u8]) -> Result<Blob, RestoreError> {
        BlobImage::parse(bytes, dormant_restorer_proto::ENTRY_SYMBOL)
            .map(Blob)
            .map_err(|e| RestoreError::Blob(e.to_string()))
    }

    /// Bytes the loaded blob occupies from its base (page rounded).
    pub fn span(&self) -> u64 {
        self.0.span()
    }

    /// Offset of the entry point from the base.
    pub fn entry_offset(&self) -> u64 {
        self.0.entry_offset()
    }

    /// Number of relocations applied on load.
    pub fn relocation_count(&self) -> usize {
        self.0.relocation_count()
    }

    /// Copies the blob into `dst` (the first [`span`](Self::span) bytes of the area) as it must look when
    /// the area sits at `base`.
    pub fn load_into(&self, dst: &mut [u8], base: u64) -> Result<(), RestoreError> {
        self.0
            .load_into(dst, base)
            .map_err(|e| RestoreError::Blob(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use goblin::elf::reloc::R_X86_64_RELATIVE;
    use goblin::elf::Elf;

    const PAGE: u64 = dormant_sys::PAGE_SIZE;

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
        blob.0.push_relocation_for_test(0, 0x10);
        let mut area = vec![0u8; blob.span() as usize];
        blob.load_into(&mut area, 0x1000_0000).unwrap();
        assert_eq!(
            u64::from_le_bytes(area[0..8].try_into().unwrap()),
            0x1000_0010
        );
    }
}
