//! Builds the no_std parasite blob (`blob/`) with the outer cargo, its own target directory and its own
//! flags, and tells the crate where the resulting ELF is (`DORMANT_PARASITE_BLOB`).
//!
//! The blob must be a static PIE whose only dynamic relocations are `R_X86_64_RELATIVE`, built without
//! libc, start files or unwinding. Flags and environment of the outer build must not leak into it.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-gnu";

const BLOB_FLAGS: &[&str] = &[
    "-Crelocation-model=pie",
    "-Ctarget-feature=+crt-static",
    // crc32fast's folding path (crcs of spliced pages, see proto CMD_VMSPLICE); the host checks the CPU
    // has these (`blob::cpu_supported`) before it injects the blob. Keep the two lists in step.
    "-Ctarget-feature=+sse2,+ssse3,+sse4.1,+pclmulqdq",
    "-Cpanic=abort",
    "-Clink-arg=-nostartfiles",
    "-Clink-arg=-nostdlib",
    "-Clink-arg=-Wl,-e,parasite_entry",
    "-Clink-arg=-Wl,--build-id=none",
    "-Clink-arg=-Wl,-z,norelro",
];

/// Variables of the outer build that would change how (or whether) the inner build runs.
const CLEARED_ENV: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
    "CARGO_PROFILE_RELEASE_PANIC",
    "CARGO_PROFILE_RELEASE_LTO",
    "CARGO_PROFILE_RELEASE_DEBUG",
    "CARGO_PROFILE_RELEASE_STRIP",
    "CARGO_PROFILE_RELEASE_OPT_LEVEL",
    "CARGO_PROFILE_RELEASE_CODEGEN_UNITS",
    "CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS",
    "CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS",
    "CARGO_PROFILE_RELEASE_INCREMENTAL",
    "CARGO_INCREMENTAL",
];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    for path in [
        "blob/src",
        "blob/Cargo.toml",
        "blob/Cargo.lock",
        "proto/src",
        "proto/Cargo.toml",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            manifest_dir.join(path).display()
        );
    }

    let target_dir = out_dir.join("blob-target");
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--offline")
        .arg("--manifest-path")
        .arg(manifest_dir.join("blob/Cargo.toml"))
        .arg("--target")
        .arg(TARGET)
        .arg("--target-dir")
        .arg(&target_dir);
    for var in CLEARED_ENV {
        cmd.env_remove(var);
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", BLOB_FLAGS.join("\x1f"));
    let status = cmd.status().expect("running cargo for the parasite blob");
    assert!(
        status.success(),
        "building the parasite blob failed: {status}"
    );

    let blob = target_dir
        .join(TARGET)
        .join("release")
        .join("dormant-parasite-blob");
    assert!(
        blob.is_file(),
        "parasite blob not found at {}",
        blob.display()
    );
    println!("cargo:rustc-env=DORMANT_PARASITE_BLOB={}", blob.display());
}
