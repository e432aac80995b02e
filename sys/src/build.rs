//! Building a no_std blob from a crate's build script: the outer cargo, the blob's own target directory
//! and its own flags, with the outer build's flags and environment kept out.
//!
//! A blob must be a static PIE whose only dynamic relocations are `R_X86_64_RELATIVE`, built without
//! libc, start files or unwinding, so that [`crate::blob`] can load it anywhere.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-gnu";

/// Flags every blob is built with.
const BLOB_FLAGS: &[&str] = &[
    "-Crelocation-model=pie",
    "-Ctarget-feature=+crt-static",
    "-Cpanic=abort",
    "-Clink-arg=-nostartfiles",
    "-Clink-arg=-nostdlib",
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

/// One blob to build.
#[derive(Debug, Clone)]
pub struct BlobSpec<'a> {
    /// Directory of the blob crate, relative to the calling crate's manifest (`"blob"`).
    pub dir: &'a str,
    /// Its binary name (`dormant-parasite-blob`).
    pub bin: &'a str,
    /// Its entry symbol, passed to the linker as the ELF entry.
    pub entry: &'a str,
    /// Target features on top of the baseline (empty, or e.g. `"+sse4.1,+pclmulqdq"`); the host must check
    /// the CPU has them before it runs the blob.
    pub target_features: &'a str,
    /// The environment variable the crate reads the ELF's path from with `env!`.
    pub env_var: &'a str,
    /// Further paths, relative to the calling crate's manifest, whose change rebuilds the blob (protocol
    /// crates).
    pub rerun_if_changed: &'a [&'a str],
}

/// Builds `spec` from a build script and sets `spec.env_var` for the crate. Panics (the build-script
/// way of failing) with the reason.
pub fn build_blob(spec: &BlobSpec<'_>) {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let blob_dir = manifest_dir.join(spec.dir);
    let sys_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut watched: Vec<PathBuf> = ["src", "Cargo.toml", "Cargo.lock"]
        .iter()
        .map(|p| blob_dir.join(p))
        .collect();
    watched.extend(spec.rerun_if_changed.iter().map(|p| manifest_dir.join(p)));
    // The blob links this crate (no_std): its source is part of the blob.
    watched.push(sys_dir.join("src"));
    watched.push(sys_dir.join("Cargo.toml"));
    for path in watched {
        println!("cargo:rerun-if-changed={}", path.display());
    }

    let target_dir = out_dir.join("blob-target");
    let mut flags: Vec<String> = BLOB_FLAGS.iter().map(|s| s.to_string()).collect();
    flags.push(format!("-Clink-arg=-Wl,-e,{}", spec.entry));
    if !spec.target_features.is_empty() {
        flags.push(format!("-Ctarget-feature={}", spec.target_features));
    }
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--offline")
        .arg("--manifest-path")
        .arg(blob_dir.join("Cargo.toml"))
        .arg("--target")
        .arg(TARGET)
        .arg("--target-dir")
        .arg(&target_dir);
    for var in CLEARED_ENV {
        cmd.env_remove(var);
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"));
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running cargo for {}: {e}", spec.bin));
    assert!(status.success(), "building {} failed: {status}", spec.bin);

    let blob = target_dir.join(TARGET).join("release").join(spec.bin);
    assert!(
        blob.is_file(),
        "{} not found at {}",
        spec.bin,
        blob.display()
    );
    println!("cargo:rustc-env={}={}", spec.env_var, blob.display());
}
