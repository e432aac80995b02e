//! Credentials, per thread (credentials belong to a thread in the kernel, and glibc's setxid broadcast
//! is a library convention, not a rule): uids, gids, supplementary groups, capability sets and
//! no_new_privs from `/proc/<pid>/task/<tid>/status`, securebits (which hold keep-caps) asked from the
//! thread itself ([`super::remote`]), since `/proc` does not show them. The process record carries the
//! leader's; dumpable belongs to the mm and is in [`super::attrs`].
//!
//! Nothing is refused here: which credentials a restore can rebuild is decided for the whole tree by
//! `dormant-restorable` before anything is injected.

use dormant_image::records::Creds;

/// A thread's credentials: what its status shows, with the securebits it reported.
pub fn of_thread(status: &Creds, securebits: u32) -> Creds {
    Creds {
        securebits: Some(securebits),
        ..status.clone()
    }
}
