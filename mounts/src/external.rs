//! `--external mnt[A]:B` options. At dump, A is a mountpoint inside the namespace and B the key the image
//! stores for it; at restore, A is a key of the image and B the path to bind it from. A key restore is not
//! told about maps to itself: auto-detected external mounts and external masters are keyed by the path the
//! dumper found them at, so restoring in the same place needs no option.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{MountError, Result};

/// A set of `mnt[A]:B` mappings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExternalMap {
    map: BTreeMap<String, String>,
}

impl ExternalMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `--external` values; specs of other kinds (`dev[..]`, `veth[..]`, ...) are not ours and are
    /// skipped, so one option list can be shared with other parts of dormant.
    pub fn parse<'a>(specs: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let mut m = Self::new();
        for spec in specs {
            let Some(rest) = spec.strip_prefix("mnt[") else {
                continue;
            };
            let (a, b) = rest.split_once("]:").ok_or(MountError::BadExternal {
                spec: spec.to_string(),
                why: "expected mnt[A]:B",
            })?;
            if a.is_empty() || b.is_empty() {
                return Err(MountError::BadExternal {
                    spec: spec.to_string(),
                    why: "empty mountpoint, key or path",
                });
            }
            m.insert(a, b);
        }
        Ok(m)
    }

    pub fn insert(&mut self, from: impl Into<String>, to: impl Into<String>) {
        self.map.insert(from.into(), to.into());
    }

    pub fn get(&self, from: &str) -> Option<&str> {
        self.map.get(from).map(String::as_str)
    }

    /// Restore side: where key `key` is bound from.
    pub fn resolve(&self, key: &str) -> PathBuf {
        PathBuf::from(self.get(key).unwrap_or(key))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_mnt_specs_and_skips_others() {
        let m = ExternalMap::parse(["mnt[/dev/shm]:shm", "dev[x]:y", "mnt[k]:/a/b]c"]).unwrap();
        assert_eq!(m.get("/dev/shm"), Some("shm"));
        assert_eq!(m.get("k"), Some("/a/b]c"));
        assert_eq!(m.get("x"), None);
        assert_eq!(m.resolve("/not/mapped"), PathBuf::from("/not/mapped"));
        assert!(ExternalMap::parse(["mnt[/x]"]).is_err());
        assert!(ExternalMap::parse(["mnt[]:k"]).is_err());
    }
}
