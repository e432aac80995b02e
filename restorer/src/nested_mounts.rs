//! Mount namespaces nested inside a plain tree (`nested-mntns`, see dormant-engine's `nested_mounts`).
//!
//! Before anything of the tree is forked, each namespace is rebuilt by a short-lived helper process forked
//! from the (single-threaded) restorer: it copies the restorer's namespace and turns the copy into the
//! dumped one (`dormant_mounts::nested::restore_nested`), then waits while the restorer takes a descriptor
//! of its namespace and one of its root, and exits (it is reaped before the tree is forked, so its pid is
//! free again). The regular files opened on the namespace's mounts are reopened through the root
//! descriptor (`/proc/self/fd/N/PATH`: the walk starts on that namespace's root mount and crosses its
//! mounts), every other file in the restorer's namespace; the identity check of every file then runs on
//! the file actually opened. Each task of the namespace `setns`es into it as its first step after its
//! children are forked, so its working and root directories are looked up there.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use dormant_image::records::{FileId, NestedMountNs, NsKind, Pid, RegFile};
use dormant_image::Image;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult};

use crate::error::RestoreError;

/// One rebuilt namespace, held by descriptors.
#[derive(Debug)]
struct Held {
    pids: Vec<Pid>,
    files: Vec<FileId>,
    ns: OwnedFd,
    root: OwnedFd,
}

/// The tree's nested mount namespaces, rebuilt.
#[derive(Debug, Default)]
pub struct NestedMounts {
    held: Vec<Held>,
}

fn bad(dir: &Path, reason: String) -> RestoreError {
    RestoreError::BadImage {
        dir: dir.to_owned(),
        reason,
    }
}

/// Refuses an image with a task in a mount namespace of its own that no `nested-mntns` record rebuilds.
fn check_members(img: &Image) -> Result<(), RestoreError> {
    let Some(ns) = &img.namespaces else {
        return Ok(());
    };
    let root = img.root().pid();
    let root_mnt = ns
        .tasks
        .iter()
        .find(|t| t.pid == root)
        .and_then(|t| t.get(NsKind::Mnt))
        .map(|n| n.id);
    for t in &ns.tasks {
        let Some(mine) = t.get(NsKind::Mnt) else {
            continue;
        };
        let listed = img.nested_mnt.iter().any(|n| n.pids.contains(&t.pid));
        if Some(mine.id) != root_mnt && !mine.external && !listed {
            return Err(bad(
                img.dir(),
                format!(
                    "pid {} is in a mount namespace of its own that the image does not rebuild",
                    t.pid.0
                ),
            ));
        }
    }
    Ok(())
}

impl NestedMounts {
    /// Rebuilds every nested namespace of `img` (none: nothing happens). Must run in the single-threaded
    /// restorer, in the tree root's mount namespace, before the tree is forked.
    pub fn build(img: &Image) -> Result<NestedMounts, RestoreError> {
        check_members(img)?;
        let mut held = Vec::new();
        for n in &img.nested_mnt {
            held.push(build_one(img.dir(), n)?);
        }
        Ok(NestedMounts { held })
    }

    /// `files` with the paths of those opened on a nested namespace's mounts made to go through its root.
    pub fn relocate(&self, files: &BTreeMap<FileId, RegFile>) -> BTreeMap<FileId, RegFile> {
        let mut out = files.clone();
        for h in &self.held {
            for id in &h.files {
                if let Some(f) = out.get_mut(id) {
                    f.path = format!("/proc/self/fd/{}{}", h.root.as_raw_fd(), f.path);
                }
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The namespace descriptor task `pid` enters, if it is in a nested namespace.
    pub fn ns_fd(&self, pid: Pid) -> Option<RawFd> {
        self.held
            .iter()
            .find(|h| h.pids.contains(&pid))
            .map(|h| h.ns.as_raw_fd())
    }
}

/// Rebuilds namespace `n` in a helper process and keeps it (see the module docs).
fn build_one(dir: &Path, n: &NestedMountNs) -> Result<Held, RestoreError> {
    let sys = |what: &str| {
        let what = format!("nested mount namespace {}: {what}", n.ns);
        move |e: nix::errno::Errno| RestoreError::sys(what.clone(), e)
    };
    let (status_r, status_w) = pipe().map_err(sys("pipe"))?;
    let (release_r, release_w) = pipe().map_err(sys("pipe"))?;
    // SAFETY: the restorer is single-threaded (checked by `Restore::run`); the child only rebuilds the
    // namespace, reports and leaves with `_exit`.
    match unsafe { fork() }.map_err(sys("fork"))? {
        ForkResult::Child => {
            drop(status_r);
            drop(release_w);
            let outer: Vec<_> = n.outer.clone();
            let msg = match dormant_mounts::nested::restore_nested(&n.mounts, &outer) {
                Ok(()) => String::new(),
                Err(e) => e.to_string(),
            };
            let mut w = std::fs::File::from(status_w);
            let _ = w.write_all(if msg.is_empty() {
                b"ok"
            } else {
                msg.as_bytes()
            });
            drop(w);
            let mut byte = [0u8; 1];
            let _ = std::fs::File::from(release_r).read(&mut byte);
            // SAFETY: ends the helper without running the restorer's exit handlers or destructors.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(status_w);
            drop(release_r);
            let mut msg = String::new();
            let read = std::fs::File::from(status_r).read_to_string(&mut msg);
            let opened = match (&read, msg.as_str()) {
                (Ok(_), "ok") => open_held(child.as_raw(), n),
                (Err(e), _) => Err(bad(dir, format!("nested mount namespace {}: {e}", n.ns))),
                _ => Err(bad(
                    dir,
                    format!(
                        "rebuilding the nested mount namespace of pid {}: {msg}",
                        n.pids.first().map_or(0, |p| p.0)
                    ),
                )),
            };
            drop(release_w);
            let waited = waitpid(child, None).map_err(sys("waiting for the helper"))?;
            let held = opened?;
            match waited {
                WaitStatus::Exited(_, 0) => Ok(held),
                other => Err(bad(
                    dir,
                    format!(
                        "nested mount namespace {}: helper ended with {other:?}",
                        n.ns
                    ),
                )),
            }
        }
    }
}

fn open_held(helper: i32, n: &NestedMountNs) -> Result<Held, RestoreError> {
    let open_it = |name: &str, flags: OFlag| {
        let path = format!("/proc/{helper}/{name}");
        open(path.as_str(), flags | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| RestoreError::sys(format!("opening {path} (nested mount namespace)"), e))
    };
    Ok(Held {
        pids: n.pids.clone(),
        files: n.files.clone(),
        ns: open_it("ns/mnt", OFlag::O_RDONLY)?,
        root: open_it("root", OFlag::O_PATH | OFlag::O_DIRECTORY)?,
    })
}
