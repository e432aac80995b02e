//! Readers and parsers for `/proc/<pid>/*`.
//!
//! The parsers are pure functions over the file text (property-tested); the readers attach the pid and the
//! path to every error. Own parsers rather than the `procfs` crate because the dumper needs fields that crate
//! does not expose uniformly (smaps `VmFlags` as raw mnemonics, stat fields 45-52 as plain numbers, limits
//! keyed by `RLIMIT_*` number) and wants its errors to name the pid and the file.

pub mod fdinfo;
pub mod smaps;
pub mod stat;
pub mod status;

use std::io;
use std::path::PathBuf;

use crate::error::{DumpError, Result};

/// `/proc/<pid>/<name>`.
pub fn path(pid: u32, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{name}"))
}

/// Reads a whole `/proc/<pid>/<name>` file as text.
pub fn read_string(pid: u32, name: &str) -> Result<String> {
    let path = path(pid, name);
    std::fs::read_to_string(&path).map_err(|source| DumpError::ProcRead { pid, path, source })
}

/// Reads a whole `/proc/<pid>/<name>` file as bytes.
pub fn read_bytes(pid: u32, name: &str) -> Result<Vec<u8>> {
    let path = path(pid, name);
    std::fs::read(&path).map_err(|source| DumpError::ProcRead { pid, path, source })
}

/// Reads the target of a `/proc/<pid>/<name>` symlink (exe, cwd, fd/N).
pub fn read_link(pid: u32, name: &str) -> Result<String> {
    let path = path(pid, name);
    std::fs::read_link(&path)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|source| DumpError::ProcRead { pid, path, source })
}

/// `/proc/<pid>/auxv` as native words, up to and including the `AT_NULL` pair.
pub fn parse_auxv(bytes: &[u8]) -> Vec<u64> {
    let mut words = Vec::new();
    for pair in bytes.chunks_exact(16) {
        let mut k = [0u8; 8];
        let mut v = [0u8; 8];
        k.copy_from_slice(&pair[..8]);
        v.copy_from_slice(&pair[8..]);
        let (k, v) = (u64::from_ne_bytes(k), u64::from_ne_bytes(v));
        words.push(k);
        words.push(v);
        if k == 0 {
            break;
        }
    }
    words
}

/// `/proc/<pid>/personality` is one hex number.
pub fn parse_personality(text: &str) -> Option<u32> {
    u32::from_str_radix(text.trim(), 16).ok()
}

/// The threads listed in `/proc/<pid>/task`, ascending.
pub fn thread_ids(pid: u32) -> Result<Vec<u32>> {
    numbered_entries(pid, "task")
}

/// The numeric entries of directory `/proc/<pid>/<name>` (tids in `task`, fds in `fd`), ascending.
pub fn numbered_entries<T: std::str::FromStr + Ord>(pid: u32, name: &str) -> Result<Vec<T>> {
    let path = path(pid, name);
    let err = |source| DumpError::ProcRead {
        pid,
        path: path.clone(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&path).map_err(err)? {
        if let Some(n) = entry
            .map_err(err)?
            .file_name()
            .to_str()
            .and_then(|s| s.parse().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Whether an I/O error means "the process is gone".
pub fn is_gone(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ESRCH) | Some(libc::ENOENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auxv_stops_at_null() {
        let mut b = Vec::new();
        for w in [6u64, 4096, 0, 0, 99, 99] {
            b.extend_from_slice(&w.to_ne_bytes());
        }
        assert_eq!(parse_auxv(&b), vec![6, 4096, 0, 0]);
    }

    #[test]
    fn personality_hex() {
        assert_eq!(parse_personality("00400000\n"), Some(0x0040_0000));
        assert_eq!(parse_personality("zz"), None);
    }
}
