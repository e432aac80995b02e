//! Builds the no_std parasite blob (`blob/`) with dormant-sys's blob builder and tells the crate where the
//! resulting ELF is (`DORMANT_PARASITE_BLOB`).

fn main() {
    dormant_sys::build::build_blob(&dormant_sys::build::BlobSpec {
        dir: "blob",
        bin: "dormant-parasite-blob",
        entry: "parasite_entry",
        // crc32fast's folding path (crcs of spliced pages, see proto CMD_VMSPLICE); the host checks the
        // CPU has these (`blob::cpu_supported`) before it injects the blob. Keep the two lists in step.
        target_features: "+sse2,+ssse3,+sse4.1,+pclmulqdq",
        env_var: "DORMANT_PARASITE_BLOB",
        rerun_if_changed: &["proto/src", "proto/Cargo.toml"],
    });
}
