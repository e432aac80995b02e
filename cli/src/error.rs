//! The CLI's error type: each library error, plus what only the CLI does (files it writes, the demo).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot open log file {path}: {source}")]
    LogFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write to stdout: {0}")]
    Stdout(std::io::Error),
    #[error("JSON encoding failed: {0}")]
    Json(serde_json::Error),
    #[error(transparent)]
    Dump(#[from] dormant_engine::DumpError),
    #[error(transparent)]
    Restore(#[from] dormant_restorer::RestoreError),
    #[error(transparent)]
    Image(#[from] dormant_image::ImageError),
    #[error("image {dir} failed verification:\n{problems}")]
    Verify { dir: PathBuf, problems: String },
    #[error("demo: {0}")]
    Demo(String),
}
