//! `--inherit-fd fd[N]:KEY` (CRIU's meaning): descriptions dumped as external ([`DescKind::External`],
//! e.g. a container's stdio pipe whose other end the agent held) are not recreated; every fd of the tree
//! that had one gets a copy of the restoring process's own fd N, handed in by the caller for that key.

use std::collections::BTreeMap;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

use dormant_image::records::{DescKind, FileDesc};
use nix::fcntl::{fcntl, FcntlArg};

use super::error::FileRestoreError;

/// The fds the caller hands in, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inherited {
    by_key: BTreeMap<String, RawFd>,
}

/// Why an `--inherit-fd` spec is unusable.
#[derive(Debug, thiserror::Error)]
#[error("--inherit-fd {spec}: {reason}")]
pub struct InheritSpecError {
    pub spec: String,
    pub reason: String,
}

impl Inherited {
    /// Parses `fd[N]:KEY` specs; each N must be open in this process.
    pub fn parse(specs: &[String]) -> Result<Self, InheritSpecError> {
        let mut by_key = BTreeMap::new();
        for spec in specs {
            let bad = |reason: &str| InheritSpecError {
                spec: spec.clone(),
                reason: reason.to_string(),
            };
            let (fd, key) = spec
                .strip_prefix("fd[")
                .and_then(|r| r.split_once("]:"))
                .ok_or_else(|| bad("not of the form fd[N]:KEY"))?;
            let fd: RawFd = fd
                .parse()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| bad("N is not a descriptor number"))?;
            if key.is_empty() {
                return Err(bad("the key is empty"));
            }
            // SAFETY: F_GETFD only asks whether the number is open; nothing is closed or changed.
            if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                return Err(bad(&format!("fd {fd} is not open in dormant")));
            }
            if by_key.insert(key.to_string(), fd).is_some() {
                return Err(bad("the key is given twice"));
            }
        }
        Ok(Self { by_key })
    }

    /// The restoring process's fd handed in for `key`.
    pub fn get(&self, key: &str) -> Option<RawFd> {
        self.by_key.get(key).copied()
    }

    /// Checks that every external description of `descs` has its fd handed in, before anything changes.
    pub fn check(&self, descs: &[FileDesc]) -> Result<(), FileRestoreError> {
        for d in descs {
            if let DescKind::External { key } = &d.kind {
                if self.get(key).is_none() {
                    return Err(missing(d.id.0, key));
                }
            }
        }
        Ok(())
    }

    /// A new descriptor (close-on-exec) on the description handed in for `key`.
    pub(super) fn dup(&self, id: u32, key: &str) -> Result<OwnedFd, FileRestoreError> {
        let fd = self.get(key).ok_or_else(|| missing(id, key))?;
        // SAFETY: `fd` was open when the spec was parsed and dormant never closes descriptors it did not
        // open; the borrow lasts only for the fcntl call.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let new = fcntl(borrowed, FcntlArg::F_DUPFD_CLOEXEC(0)).map_err(|source| {
            FileRestoreError::Sys {
                id,
                kind: "external",
                what: format!("duplicating fd {fd} handed in for {key}"),
                source,
            }
        })?;
        // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
        Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(new) })
    }
}

fn missing(id: u32, key: &str) -> FileRestoreError {
    FileRestoreError::Bad {
        id,
        kind: "external",
        reason: format!(
            "{key} was held outside the dump and is not in the image; hand a descriptor in for it with \
             --inherit-fd fd[N]:{key}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs_and_refuses_bad_ones() {
        let ok = Inherited::parse(&["fd[0]:pipe:[123]".to_string()]).unwrap();
        assert_eq!(ok.get("pipe:[123]"), Some(0));
        assert_eq!(ok.get("pipe:[124]"), None);
        for bad in [
            "fd0:pipe:[1]",
            "fd[x]:pipe:[1]",
            "fd[0]:",
            "fd[999999]:pipe:[1]",
        ] {
            assert!(Inherited::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
        let twice = ["fd[0]:k".to_string(), "fd[1]:k".to_string()];
        assert!(Inherited::parse(&twice).is_err());
    }

    #[test]
    fn a_missing_key_names_the_key_and_the_flag() {
        let d = FileDesc {
            id: dormant_image::records::DescId(7),
            flags: 0,
            kind: DescKind::External {
                key: "pipe:[42]".into(),
            },
            owner: None,
        };
        let e = Inherited::default().check(&[d]).unwrap_err().to_string();
        assert!(
            e.contains("pipe:[42]") && e.contains("--inherit-fd fd[N]:pipe:[42]"),
            "{e}"
        );
    }
}
