//! Errors of the mount crate; every variant names the mount, path or line it is about.

use std::path::PathBuf;

use dormant_image::records::{MountId, PeerGroup};

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mountinfo line {line:?}: {why}")]
    Parse { line: String, why: String },

    #[error("{what} {}: {source}", path.display())]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{what} (mount {mount:?} at {mountpoint}): {errno}")]
    Sys {
        what: &'static str,
        mount: Option<MountId>,
        mountpoint: String,
        errno: nix::errno::Errno,
    },

    #[error("the mount namespace of pid {pid} has no root mount in its mountinfo")]
    NoRoot { pid: i32 },

    #[error(
        "mount {mountpoint} ({fstype} {fs_source}, root {root}) can be neither recreated nor found outside the \
         namespace; name it with --external mnt[{mountpoint}]:KEY and give --external mnt[KEY]:PATH at restore"
    )]
    NotRestorable {
        mountpoint: String,
        fstype: String,
        fs_source: String,
        root: String,
    },

    #[error(
        "mount {mountpoint} is a slave of peer group {group} (master:{group}) that no dumped mount and no mount \
         of the dumper's namespace carries (unreachable external master); run the dump where that group is \
         mounted, or name the mount with --external mnt[{mountpoint}]:KEY and give --external mnt[KEY]:PATH \
         (a mount of that group) at restore"
    )]
    UnreachableMaster { mountpoint: String, group: u32 },

    #[error(
        "pid {pid}: mount {mountpoint} of its nested mount namespace cannot be restored: {why}"
    )]
    Nested {
        pid: i32,
        mountpoint: String,
        why: String,
    },

    #[error("mount plan: {0}")]
    Plan(String),

    #[error("mount {id:?} at {mountpoint}: peer group {group:?}: {why}")]
    Sharing {
        id: MountId,
        mountpoint: String,
        group: PeerGroup,
        why: String,
    },

    #[error("image: {0}")]
    Image(#[from] dormant_image::ImageError),
}

pub type Result<T, E = MountError> = std::result::Result<T, E>;
