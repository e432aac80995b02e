//! The embedded parasite blob (built by `build.rs`, loaded by dormant-sys's blob loader) and the CPU check
//! it needs.

use dormant_sys::blob::BlobImage;

use crate::error::ParasiteError;

static BLOB_ELF: &[u8] = include_bytes!(env!("DORMANT_PARASITE_BLOB"));

pub(crate) const PAGE: u64 = dormant_sys::PAGE_SIZE;

/// The blob built into this crate, parsed and checked.
pub fn embedded() -> Result<BlobImage, ParasiteError> {
    BlobImage::parse(BLOB_ELF, dormant_parasite_proto::ENTRY_SYMBOL)
        .map_err(|e| ParasiteError::Blob(e.to_string()))
}

/// Whether this CPU runs the blob: `build.rs` compiles it with SSSE3, SSE4.1 and PCLMULQDQ (for the crc32
/// of spliced pages), so on a CPU without them it would fault inside the target. Keep in step with
/// `target_features` in build.rs.
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use goblin::elf::reloc::R_X86_64_RELATIVE;
    use goblin::elf::Elf;

    #[test]
    fn embedded_blob_is_a_static_pie_with_only_relative_relocations() {
        let blob = embedded().unwrap();
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
        let mut blob = embedded().unwrap();
        blob.push_relocation_for_test(0, 0x10);
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
