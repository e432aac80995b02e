//! What the restorer reads about its own process: thread count, memory layout, vDSO.

use std::path::PathBuf;

use dormant_sys::procfs;

use crate::error::RestoreError;

/// One line of /proc/self/maps: range and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapLine {
    pub start: u64,
    pub end: u64,
    pub name: String,
}

fn read(path: &str) -> Result<String, RestoreError> {
    std::fs::read_to_string(path).map_err(|source| RestoreError::Proc {
        path: PathBuf::from(path),
        source,
    })
}

/// Number of threads of this process (`Threads:` of /proc/self/status).
pub fn thread_count() -> Result<u32, RestoreError> {
    let status = read("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| RestoreError::Proc {
            path: PathBuf::from("/proc/self/status"),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "no Threads: line"),
        })
}

/// Parses maps text (`start-end perms offset dev inode [name]`) with dormant-sys's maps parser.
pub fn parse_maps(text: &str) -> Result<Vec<MapLine>, procfs::MapsError> {
    Ok(procfs::parse_maps(text)?
        .into_iter()
        .map(|m| MapLine {
            start: m.start,
            end: m.end,
            name: m.name,
        })
        .collect())
}

/// This process's mappings.
pub fn maps() -> Result<Vec<MapLine>, RestoreError> {
    parse_maps(&read("/proc/self/maps")?).map_err(|e| RestoreError::Proc {
        path: PathBuf::from("/proc/self/maps"),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

/// Where the running kernel put this process's vDSO and vvar pages, and the vDSO's bytes.
#[derive(Debug, Clone)]
pub struct OwnVdso {
    /// `[vvar]`, `[vvar_vclock]`: (start, end, name), ascending.
    pub vvars: Vec<MapLine>,
    pub vdso_start: u64,
    pub bytes: Vec<u8>,
}

/// Reads this process's vDSO, `None` when it has none.
pub fn vdso() -> Result<Option<OwnVdso>, RestoreError> {
    let maps = maps()?;
    let Some(vdso) = maps.iter().find(|m| m.name == "[vdso]") else {
        return Ok(None);
    };
    let vvars = maps
        .iter()
        .filter(|m| m.name.starts_with("[vvar"))
        .cloned()
        .collect();
    let len = (vdso.end - vdso.start) as usize;
    // SAFETY: [vdso] is a readable mapping of this process for its whole lifetime (nothing here unmaps it),
    // and `len` is its length from /proc/self/maps.
    let bytes = unsafe { std::slice::from_raw_parts(vdso.start as *const u8, len) }.to_vec();
    Ok(Some(OwnVdso {
        vvars,
        vdso_start: vdso.start,
        bytes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps_lines() {
        let m = parse_maps(
            "7f38caa05000-7f38caa07000 r-xp 00000000 00:00 0                          [vdso]\n\
             7f38caa08000-7f38caa21000 rw-p 00000000 00:00 0 \n",
        )
        .unwrap();
        assert_eq!(
            m[0],
            MapLine {
                start: 0x7f38caa05000,
                end: 0x7f38caa07000,
                name: "[vdso]".into()
            }
        );
        assert_eq!(m[1].name, "");
    }

    #[test]
    fn own_vdso_is_an_elf_after_its_vvar() {
        let v = vdso().unwrap().unwrap();
        assert_eq!(&v.bytes[..4], b"\x7fELF");
        assert!(v.vvars.iter().all(|m| m.end <= v.vdso_start));
    }
}
