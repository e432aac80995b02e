//! Builds the no_std restorer blob (`blob/`) with dormant-sys's blob builder and tells the crate where the
//! resulting ELF is (`DORMANT_RESTORER_BLOB`).

fn main() {
    dormant_sys::build::build_blob(&dormant_sys::build::BlobSpec {
        dir: "blob",
        bin: "dormant-restorer-blob",
        entry: "restorer_entry",
        target_features: "",
        env_var: "DORMANT_RESTORER_BLOB",
        rerun_if_changed: &["proto/src", "proto/Cargo.toml"],
    });
}
