//! External mount mappings A → B (CRIU's `--external mnt[A]:B`, parsed by the command line). At dump, A is
//! a mountpoint inside the namespace and B the key the image stores for it; at restore, A is a key of the
//! image and B the path to bind it from. A key restore is not
//! told about maps to itself: auto-detected external mounts and external masters are keyed by the path the
//! dumper found them at, so restoring in the same place needs no option.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// A set of A → B mappings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExternalMap {
    map: BTreeMap<String, String>,
}

impl ExternalMap {
    pub fn new() -> Self {
        Self::default()
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
    fn maps_and_resolves() {
        let mut m = ExternalMap::new();
        m.insert("/dev/shm", "shm");
        m.insert("k", "/a/b]c");
        assert_eq!(m.get("/dev/shm"), Some("shm"));
        assert_eq!(m.get("k"), Some("/a/b]c"));
        assert_eq!(m.get("x"), None);
        assert_eq!(m.resolve("k"), PathBuf::from("/a/b]c"));
        assert_eq!(m.resolve("/not/mapped"), PathBuf::from("/not/mapped"));
    }
}
