//! Mount namespaces nested inside a plain tree (its root shares the dumper's): a task that did
//! `unshare(CLONE_NEWNS)` and the children that inherited its namespace. Each such namespace is dumped as
//! a copy of the root's plus changes (`dormant_mounts::nested`), with the tasks in it and the regular
//! files opened on its mounts (by the `mnt_id` of each fd's fdinfo: mount ids are unique machine-wide, so
//! an fd a child inherited from before its `unshare` names a mount of the root's namespace and is reopened
//! there, one opened afterwards names a mount of the child's and is reopened through it).
//!
//! Refused here: a namespace owned by a user namespace other than the dumper's (its mounts would be
//! locked), one whose tasks are all chrooted (its mountinfo does not show the namespace's root), and what
//! `dormant_mounts::nested` cannot rebuild. A container's tree (root in its own mount namespace) with a
//! task in yet another is refused by the namespace check (`dormant_restorable`).

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

use dormant_image::records::{names, FileId, NestedMountNs, Pid, SharedTables};
use dormant_image::ImageWriter;
use dormant_mounts::MountError;

use crate::error::{DumpError, Result};
use crate::proc;

/// A nested namespace as dumped, with the ids of its mounts (for the fds opened on them).
#[derive(Debug)]
pub struct Nested {
    pub record: NestedMountNs,
    mount_ids: BTreeSet<u64>,
}

fn ns_ino(pid: u32, path: &str) -> Result<u64> {
    std::fs::metadata(path)
        .map(|m| m.ino())
        .map_err(|source| DumpError::ProcRead {
            pid,
            path: path.into(),
            source,
        })
}

/// `NS_GET_USERNS` (`_IO(0xb7, 0x1)`): the user namespace owning a namespace.
const NS_GET_USERNS: libc::c_ulong = 0xb701;

/// The inode of the user namespace that owns the mount namespace of `pid`.
fn owner_userns(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/ns/mnt");
    let ns = std::fs::File::open(&path).map_err(|source| DumpError::ProcRead {
        pid,
        path: path.clone().into(),
        source,
    })?;
    // SAFETY: an ioctl without argument on an open namespace fd; it returns a new fd or -1.
    let fd = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_USERNS) };
    if fd < 0 {
        return Err(DumpError::ProcRead {
            pid,
            path: path.into(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: the kernel just returned this new fd, owned by nobody else.
    let owner = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    owner
        .metadata()
        .map(|m| m.ino())
        .map_err(|source| DumpError::ProcRead {
            pid,
            path: "NS_GET_USERNS".into(),
            source,
        })
}

/// Refuses a task in a nested mount namespace that shares the fd table of another process (its owner, see
/// `SharedTables`): at restore it would enter its namespace through a restorer fd in that very table, which
/// the owner closes when it places the table's fds, at a moment of its own.
pub fn refuse_shared_fd_table(nested: &[Nested], shared: &[SharedTables]) -> Result<()> {
    // Only the sharers: the owner places the table's fds itself, after its own setns.
    for s in shared.iter().filter(|s| s.files != s.pid) {
        if nested.iter().any(|n| n.record.pids.contains(&s.pid)) {
            return Err(refuse(
                s.pid.0,
                "it shares its fd table with another process (CLONE_FILES) and is in a mount namespace \
                 of its own; restoring both is not supported",
            ));
        }
    }
    Ok(())
}

fn refuse(pid: u32, why: &str) -> DumpError {
    DumpError::Mounts {
        pid,
        source: MountError::Nested {
            pid: pid as i32,
            mountpoint: "/".into(),
            why: why.into(),
        },
    }
}

/// Dumps every mount namespace of the tree (`pids`, root first, the tree frozen) other than the root's,
/// which must be the dumper's (a plain tree). Files are filled in by [`finish`].
pub fn dump(pids: &[Pid]) -> Result<Vec<Nested>> {
    let Some(root) = pids.first() else {
        return Ok(Vec::new());
    };
    let mine = ns_ino(root.0, "/proc/self/ns/mnt")?;
    let mut by_ns: BTreeMap<u64, Vec<Pid>> = BTreeMap::new();
    for p in pids {
        let ino = ns_ino(p.0, &format!("/proc/{}/ns/mnt", p.0))?;
        if ino != mine {
            by_ns.entry(ino).or_default().push(*p);
        }
    }
    let my_user = ns_ino(root.0, "/proc/self/ns/user")?;
    let mut out = Vec::new();
    for (ns, members) in by_ns {
        let first = members[0].0;
        if owner_userns(first)? != my_user {
            return Err(refuse(
                first,
                "its mount namespace is owned by a user namespace other than dormant's",
            ));
        }
        // A chrooted task's mountinfo shows only what its root reaches.
        let Some(reader) = members
            .iter()
            .find(|p| proc::read_link(p.0, "root").is_ok_and(|r| r == "/"))
        else {
            return Err(refuse(
                first,
                "every task in its mount namespace is chrooted",
            ));
        };
        let pid = reader.0 as i32;
        let (dump, tree) =
            dormant_mounts::nested::dump_nested(pid).map_err(|source| DumpError::Mounts {
                pid: reader.0,
                source,
            })?;
        log::info!(
            "pid {}: nested mount namespace {ns} ({} tasks): {} mounts, {} outer groups",
            reader.0,
            members.len(),
            dump.mounts.len(),
            dump.outer.len()
        );
        out.push(Nested {
            record: NestedMountNs {
                ns,
                pids: members,
                files: Vec::new(),
                mounts: dump.mounts,
                outer: dump.outer,
            },
            mount_ids: tree.mounts.iter().map(|m| u64::from(m.id.0)).collect(),
        });
    }
    Ok(out)
}

/// Assigns every regular file to the namespace its mount is in (`reg_mounts`: file and `mnt_id`) and
/// writes the records.
pub fn finish(
    mut nested: Vec<Nested>,
    reg_mounts: &[(FileId, u64)],
    root: u32,
    w: &mut ImageWriter,
) -> Result<()> {
    if nested.is_empty() {
        return Ok(());
    }
    for n in &mut nested {
        n.record.files = reg_mounts
            .iter()
            .filter(|(_, mnt)| n.mount_ids.contains(mnt))
            .map(|(id, _)| *id)
            .collect();
    }
    let records: Vec<NestedMountNs> = nested.into_iter().map(|n| n.record).collect();
    w.write_records(names::NESTED_MNT_NS, &records)
        .map_err(|source| DumpError::Image {
            pid: root,
            what: names::NESTED_MNT_NS.to_string(),
            source,
        })
}
