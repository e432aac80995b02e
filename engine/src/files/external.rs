//! Descriptions recorded as external: what the dump does not carry but names, so the restore's caller
//! hands in a replacement (`--inherit-fd fd[N]:KEY`). Today: pipe ends whose other end only processes
//! outside the dump hold ([`super::pipe::Pipes::outside`]), keyed `pipe:[INODE]` as CRIU keys them.

use dormant_image::records::{DescKind, FileDesc};

/// The key of pipe `ino` as an external description.
pub fn pipe_key(ino: u64) -> String {
    format!("pipe:[{ino}]")
}

/// Turns the pipe ends `ends` ((pipe inode, write end)) of `descs` into external descriptions.
pub fn mark_pipes(descs: &mut [FileDesc], ends: &[(u64, bool)]) {
    for d in descs {
        if let DescKind::PipeEnd { pipe, write, .. } = d.kind {
            if ends.contains(&(pipe, write)) {
                d.kind = DescKind::External {
                    key: pipe_key(pipe),
                };
            }
        }
    }
}
