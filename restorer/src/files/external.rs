//! `--inherit-fd fd[N]:KEY` (CRIU's meaning): descriptions dumped as external ([`DescKind::External`],
//! e.g. a container's stdio pipe whose other end the agent held) are not recreated; every fd of the tree
//! that had one gets a copy of the restoring process's own fd N, handed in by the caller for that key.

use std::collections::BTreeMap;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

use dormant_image::records::{DescKind, FileDesc};
use nix::fcntl::{fcntl, FcntlArg};

use super::error::FileRestoreError;
use crate::external::InheritFd;

/// The fds the caller hands in, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inherited {
    by_key: BTreeMap<String, RawFd>,
}

/// Why an inherited fd (`--inherit-fd fd[N]:KEY`) is unusable.
#[derive(Debug, thiserror::Error)]
#[error("--inherit-fd {spec}: {reason}")]
pub struct InheritSpecError {
    pub spec: String,
    pub reason: String,
}

impl Inherited {
    /// The fds handed in; each must be open in this process, each key given once.
    pub fn new(fds: &[InheritFd]) -> Result<Self, InheritSpecError> {
        let mut by_key = BTreeMap::new();
        for InheritFd { fd, key } in fds {
            let bad = |reason: &str| InheritSpecError {
                spec: format!("fd[{fd}]:{key}"),
                reason: reason.to_string(),
            };
            if key.is_empty() {
                return Err(bad("the key is empty"));
            }
            // SAFETY: F_GETFD only asks whether the number is open; nothing is closed or changed.
            if *fd < 0 || unsafe { libc::fcntl(*fd, libc::F_GETFD) } < 0 {
                return Err(bad(&format!("fd {fd} is not open in dormant")));
            }
            if by_key.insert(key.clone(), *fd).is_some() {
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

    fn inherit(fd: RawFd, key: &str) -> InheritFd {
        InheritFd {
            fd,
            key: key.into(),
        }
    }

    #[test]
    fn takes_open_fds_and_refuses_bad_ones() {
        let ok = Inherited::new(&[inherit(0, "pipe:[123]")]).unwrap();
        assert_eq!(ok.get("pipe:[123]"), Some(0));
        assert_eq!(ok.get("pipe:[124]"), None);
        for bad in [
            inherit(0, ""),
            inherit(999_999, "pipe:[1]"),
            inherit(-1, "k"),
        ] {
            let e = Inherited::new(std::slice::from_ref(&bad)).unwrap_err();
            assert!(e.to_string().contains("--inherit-fd"), "{bad:?}: {e}");
        }
        assert!(Inherited::new(&[inherit(0, "k"), inherit(1, "k")]).is_err());
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
