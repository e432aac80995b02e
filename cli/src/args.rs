//! The command line's edge: CRIU-style flag strings parsed into the libraries' typed options. Nothing past
//! this module sees a flag string.

use dormant_engine::External;

/// `mnt[A]:B` → (A, B), both non-empty.
fn bracketed_pair<'a>(spec: &'a str, prefix: &str) -> Result<(&'a str, &'a str), String> {
    let rest = spec
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('['))
        .ok_or_else(|| format!("{spec:?}: expected {prefix}[...]:..."))?;
    let (a, b) = rest
        .split_once("]:")
        .ok_or_else(|| format!("{spec:?}: expected {prefix}[A]:B"))?;
    if a.is_empty() || b.is_empty() {
        return Err(format!(
            "{spec:?}: empty value inside or after the brackets"
        ));
    }
    Ok((a, b))
}

/// `dump --external mnt[MOUNTPOINT]:KEY`.
pub fn dump_external(spec: &str) -> Result<External, String> {
    let (mountpoint, key) = bracketed_pair(spec, "mnt")
        .map_err(|e| format!("{e} (only mnt[MOUNTPOINT]:KEY is supported)"))?;
    Ok(External::Mount {
        mountpoint: mountpoint.to_string(),
        key: key.to_string(),
    })
}

/// `restore --external mnt[KEY]:PATH`.
pub fn restore_external(spec: &str) -> Result<dormant_restorer::External, String> {
    let (key, path) = bracketed_pair(spec, "mnt")
        .map_err(|e| format!("{e} (only mnt[KEY]:PATH is supported)"))?;
    Ok(dormant_restorer::External::Mount {
        key: key.to_string(),
        path: path.into(),
    })
}

/// `restore --inherit-fd fd[N]:KEY`: dormant's fd N stands for the external description KEY.
pub fn inherit_fd(spec: &str) -> Result<dormant_restorer::InheritFd, String> {
    let (fd, key) = bracketed_pair(spec, "fd")?;
    let fd = fd
        .parse()
        .ok()
        .filter(|n: &i32| *n >= 0)
        .ok_or_else(|| format!("{spec:?}: N is not a descriptor number"))?;
    Ok(dormant_restorer::InheritFd {
        fd,
        key: key.to_string(),
    })
}

/// `--page-copy` values.
pub fn page_copy(s: &str) -> Result<dormant_engine::CopyMethod, String> {
    match s {
        "vm-readv" => Ok(dormant_engine::CopyMethod::VmReadv),
        "parasite" => Ok(dormant_engine::CopyMethod::Parasite),
        "proc-mem" => Ok(dormant_engine::CopyMethod::ProcMem),
        other => Err(format!(
            "{other:?}: expected vm-readv, parasite or proc-mem"
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn externals() {
        assert_eq!(
            dump_external("mnt[/dev/shm]:shm").unwrap(),
            External::Mount {
                mountpoint: "/dev/shm".into(),
                key: "shm".into()
            }
        );
        // The key may itself hold brackets; the first "]:" ends the mountpoint.
        assert_eq!(
            dump_external("mnt[/a]:k]:x").unwrap(),
            External::Mount {
                mountpoint: "/a".into(),
                key: "k]:x".into()
            }
        );
        assert!(dump_external("mnt[/x]").is_err());
        assert!(dump_external("mnt[]:k").is_err());
        assert!(dump_external("mnt[/x]:").is_err());
        let e = dump_external("dev[x]:y").unwrap_err();
        assert!(e.contains("only mnt[MOUNTPOINT]:KEY"), "{e}");
        assert_eq!(
            restore_external("mnt[shm]:/run/shm").unwrap(),
            dormant_restorer::External::Mount {
                key: "shm".into(),
                path: "/run/shm".into()
            }
        );
    }

    #[test]
    fn inherited_fds() {
        assert_eq!(
            inherit_fd("fd[3]:pipe:[123]").unwrap(),
            dormant_restorer::InheritFd {
                fd: 3,
                key: "pipe:[123]".into()
            }
        );
        for bad in [
            "fd3:pipe:[1]",
            "fd[x]:pipe:[1]",
            "fd[0]:",
            "fd[-1]:k",
            "fd[]:k",
        ] {
            assert!(inherit_fd(bad).is_err(), "{bad}");
        }
    }
}
