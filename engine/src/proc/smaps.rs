//! `/proc/<pid>/smaps`: every mapping with its `VmFlags`, read with dormant-sys's maps parser (the one
//! the parasite, the restorer and the probes use).

pub use dormant_sys::procfs::MapsEntry as SmapsEntry;

/// Parses the text of `/proc/<pid>/smaps`. Each entry must carry a `VmFlags` line.
pub fn parse(text: &str) -> Result<Vec<SmapsEntry>, String> {
    dormant_sys::procfs::parse_smaps(text).map_err(|e| e.to_string())
}
