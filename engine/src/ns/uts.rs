//! uts namespace: host and domain name, read from inside the namespace by a helper thread.

use std::path::PathBuf;

use dormant_image::records::{NsKind, Pid, UtsNamespace};

use super::error::{NsError, Result};
use super::membership::{in_namespace, task_namespaces};

/// A `/proc/sys` value (`kernel/hostname`) of the calling thread's namespaces, without the newline.
pub(super) fn sysctl(pid: Pid, name: &str) -> Result<String> {
    let path = PathBuf::from(format!("/proc/sys/{name}"));
    let mut s = std::fs::read_to_string(&path).map_err(|source| NsError::Proc {
        pid,
        path: path.clone(),
        source,
    })?;
    if s.ends_with('\n') {
        s.pop();
    }
    Ok(s)
}

/// Host and domain name of task `pid`'s uts namespace.
pub fn read_uts_namespace(pid: Pid) -> Result<UtsNamespace> {
    let id = task_namespaces(pid)?
        .get(NsKind::Uts)
        .map(|n| n.id)
        .ok_or_else(|| NsError::Unsupported {
            pid,
            reason: "the kernel shows no uts namespace".into(),
        })?;
    in_namespace(pid, NsKind::Uts, || {
        Ok(UtsNamespace {
            id,
            hostname: sysctl(pid, "kernel/hostname")?,
            domainname: sysctl(pid, "kernel/domainname")?,
        })
    })
}
