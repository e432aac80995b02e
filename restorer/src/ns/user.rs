//! User namespace: create one with the dumped uid/gid maps. The maps of a new namespace must be written by
//! a process with CAP_SETUID/CAP_SETGID in the *parent* namespace, which the unsharing process no longer
//! has there; so it first forks a small helper that stays outside, unshares, and lets the helper write
//! `/proc/<pid>/{setgroups,uid_map,gid_map}` before going on.

use std::io::{Read, Write};

use dormant_image::records::{IdMapRange, UserNamespace};
use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

use super::error::{NsRestoreError, Result};

/// The id inside a namespace that `outside` (an id of its parent) maps to, if any.
pub fn to_inside(map: &[IdMapRange], outside: u32) -> Option<u32> {
    map.iter().find_map(|r| {
        let off = outside.checked_sub(r.outside)?;
        (off < r.count).then(|| r.inside + off)
    })
}

/// The text written to `uid_map`/`gid_map`.
pub fn map_text(map: &[IdMapRange]) -> String {
    map.iter()
        .map(|r| format!("{} {} {}\n", r.inside, r.outside, r.count))
        .collect()
}

/// Writes the maps of process `pid`'s user namespace (from a process in the parent namespace).
pub fn write_id_maps(pid: u32, user: &UserNamespace) -> Result<()> {
    let write = |file: &str, text: &str| {
        let path = std::path::PathBuf::from(format!("/proc/{pid}/{file}"));
        std::fs::write(&path, text).map_err(|source| NsRestoreError::File {
            what: "writing",
            path,
            source,
        })
    };
    if !user.setgroups_allowed {
        write("setgroups", "deny")?;
    }
    write("uid_map", &map_text(&user.uid_map))?;
    write("gid_map", &map_text(&user.gid_map))
}

/// Moves the calling (single-threaded) process into a new user namespace with `user`'s maps. Afterwards it
/// holds every capability in that namespace, and namespaces it creates next are owned by it.
pub fn create_user_namespace(user: &UserNamespace) -> Result<()> {
    let sys = |step| move |source| NsRestoreError::Syscall { step, source };
    let (go_r, go_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("pipe2"))?;
    let (res_r, res_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("pipe2"))?;
    let me = std::process::id();
    // SAFETY: the caller is single-threaded (a restore child), so the helper may run ordinary code; it
    // leaves with _exit and never returns into the caller's stack frames.
    match unsafe { fork() }.map_err(sys("fork (user namespace helper)"))? {
        ForkResult::Child => {
            drop(go_w);
            drop(res_r);
            let mut go = std::fs::File::from(go_r);
            let mut res = std::fs::File::from(res_w);
            let mut b = [0u8; 1];
            let msg = match go.read_exact(&mut b) {
                Ok(()) => match write_id_maps(me, user) {
                    Ok(()) => String::new(),
                    Err(e) => e.to_string(),
                },
                Err(e) => format!("waiting for the namespace: {e}"),
            };
            let _ = res.write_all(msg.as_bytes());
            // SAFETY: _exit ends the helper without running the parent's atexit handlers or destructors.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(go_r);
            drop(res_w);
            let unshared = nix::sched::unshare(CloneFlags::CLONE_NEWUSER);
            let mut go = std::fs::File::from(go_w);
            // On failure, closing `go` without a byte tells the helper to stop.
            let signalled = unshared.is_ok() && go.write_all(b"g").is_ok();
            drop(go);
            let mut msg = String::new();
            let _ = std::fs::File::from(res_r).read_to_string(&mut msg);
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, 0)) => {}
                other => log::warn!("user namespace helper {child} ended with {other:?}"),
            }
            unshared.map_err(sys("unshare(CLONE_NEWUSER)"))?;
            if !signalled || !msg.is_empty() {
                return Err(NsRestoreError::UserNs {
                    ns: user.id,
                    reason: if msg.is_empty() {
                        "the helper writing the id maps went away".into()
                    } else {
                        msg
                    },
                });
            }
            Ok(())
        }
    }
}

/// The id maps of user namespace `id`.
pub(super) fn read(
    src: &super::read::Source<'_>,
    id: dormant_image::records::NsId,
) -> Result<UserNamespace> {
    let file = dormant_image::records::ns_names::user(id);
    src.state(&file, |s| match s {
        dormant_image::records::NsState::User(u) => Ok(u),
        other => Err(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_outside_ids_inside() {
        let map = [
            IdMapRange {
                inside: 0,
                outside: 100_000,
                count: 10,
            },
            IdMapRange {
                inside: 1000,
                outside: 5,
                count: 1,
            },
        ];
        assert_eq!(to_inside(&map, 100_000), Some(0));
        assert_eq!(to_inside(&map, 100_009), Some(9));
        assert_eq!(to_inside(&map, 100_010), None);
        assert_eq!(to_inside(&map, 5), Some(1000));
        assert_eq!(to_inside(&map, 4), None);
        assert_eq!(map_text(&map), "0 100000 10\n1000 5 1\n");
    }
}
