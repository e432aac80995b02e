//! Generates the ttrpc service of `proto/checkpoint.proto` as kata's protocols crate generates its own:
//! ttrpc-codegen with `async_all` for the async (tokio) ttrpc 0.9 server kata-agent runs. The output goes to
//! OUT_DIR; the inner attributes and module docs the generator writes are dropped so that `src/proto.rs`
//! can `include!` the files.

use std::path::{Path, PathBuf};

use ttrpc_codegen::{Codegen, Customize, ProtobufCustomize};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/checkpoint.proto";
    println!("cargo:rerun-if-changed={proto}");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    Codegen::new()
        .out_dir(&out)
        .inputs([proto])
        .include("proto")
        .customize(Customize {
            async_all: true,
            ..Default::default()
        })
        .rust_protobuf()
        .rust_protobuf_customize(ProtobufCustomize::default().gen_mod_rs(false))
        .run()?;
    for name in ["checkpoint.rs", "checkpoint_ttrpc.rs"] {
        strip_inner_attributes(&out.join(name))?;
    }
    Ok(())
}

/// `include!` takes no inner attributes (`#![..]`) or inner docs (`//!`): drop them.
fn strip_inner_attributes(path: &Path) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("#![") && !l.trim_start().starts_with("//!"))
        .collect();
    std::fs::write(path, kept.join("\n"))
}
